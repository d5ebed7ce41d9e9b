"""The token store: a corpus tokenized once into memory-mapped shards (docs/data.md).

A store is a folder:

    manifest.json        format, corpus, fingerprint, tokenizer hash, dtype, token and document
                         counts, the sha256 of every file below and a digest over them
    tokens-00000.bin     token ids, little-endian uint16 (vocab <= 65536) or uint32; whole
    tokens-00001.bin     documents, each followed by one [SEP]; a new shard after SHARD_TOKENS
    ends.bin             int64, per document: where it ends in the concatenation of the shards
    tokenizer/           the tokenizer the ids belong to (save_pretrained)
    verified.json        not part of the store: the size and mtime of each file when its sha256
                         last matched, so that opening an unchanged store does not read it all

It is written into a temporary sibling folder, fsynced and renamed, so a killed or failed
preparation never leaves a folder that looks complete; only a folder with a manifest whose
checksums match is ever read.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from growlang.corpus_format import STORE_MANIFEST
from growlang.runtime.errors import UserError

FORMAT = 1
KIND = "growlang-token-store"
SHARD_TOKENS = 1 << 26  # 64M tokens: 128 MiB of uint16 per shard
HASH_BLOCK = 1 << 22
TMP_MARK = ".tmp-"
VERIFIED = "verified.json"
# A file modified within this long of its verification is not trusted by its mtime (git's "racily
# clean" rule): a same-size overwrite inside one timestamp tick would otherwise look unchanged.
RACY_NS = 2_000_000_000


def token_dtype(vocab: int) -> np.dtype:
    return np.dtype("<u2") if vocab <= 1 << 16 else np.dtype("<u4")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:  # read(), not a memmap: hashing must not grow the resident set
        while block := f.read(HASH_BLOCK):
            h.update(block)
    return h.hexdigest()


def _digest(files: list[dict], dtype: str) -> str:
    """One hash for the store's content: equal digests, equal token streams."""
    return hashlib.sha256(json.dumps([dtype, [f["sha256"] for f in files]]).encode()).hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StoreWriter:
    """Appends documents' ids into shards of a temporary folder; `commit` makes it the store."""

    def __init__(self, folder: Path, vocab: int):
        self.folder, self.dtype = Path(folder), token_dtype(vocab)
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(self.folder)
        self.tmp = Path(tempfile.mkdtemp(prefix=f".{self.folder.name}{TMP_MARK}{os.getpid()}-",
                                         dir=self.folder.parent))
        self.shards: list[dict] = []
        self.ends = open(self.tmp / "ends.bin", "wb")
        self.shard, self.shard_tokens, self.tokens, self.documents = None, 0, 0, 0

    def add(self, docs: list[np.ndarray]) -> None:
        """Documents' ids, each already ending in [SEP]; a shard never splits a document."""
        if self.shard is None or self.shard_tokens >= SHARD_TOKENS:
            self._next_shard()
        lengths = np.fromiter((len(d) for d in docs), dtype=np.int64, count=len(docs))
        self.shard.write(np.concatenate(docs).astype(self.dtype, copy=False).tobytes() if docs else b"")
        self.ends.write((self.tokens + np.cumsum(lengths)).astype("<i8").tobytes())
        n = int(lengths.sum())
        self.tokens, self.shard_tokens, self.documents = self.tokens + n, self.shard_tokens + n, self.documents + len(docs)
        self.shards[-1]["tokens"] += n

    def _next_shard(self) -> None:
        self._close_shard()
        name = f"tokens-{len(self.shards):05d}.bin"
        self.shard, self.shard_tokens = open(self.tmp / name, "wb"), 0
        self.shards.append({"file": name, "tokens": 0})

    def _close_shard(self) -> None:
        if self.shard is not None:
            self.shard.flush()
            os.fsync(self.shard.fileno())
            self.shard.close()
            self.shard = None

    def commit(self, tokenizer, meta: dict) -> Path:
        """Checksums, tokenizer, manifest, fsync, rename; returns the store folder."""
        self._close_shard()
        self.ends.flush()
        os.fsync(self.ends.fileno())
        self.ends.close()
        tokenizer.save_pretrained(str(self.tmp / "tokenizer"))
        files = [{**s, "sha256": _sha256(self.tmp / s["file"])} for s in self.shards]
        files.append({"file": "ends.bin", "documents": self.documents, "sha256": _sha256(self.tmp / "ends.bin")})
        manifest = {"kind": KIND, "format": FORMAT, **meta, "dtype": self.dtype.str, "tokens": self.tokens,
                    "documents": self.documents, "files": files, "digest": _digest(files, self.dtype.str)}
        with open(self.tmp / STORE_MANIFEST, "w", encoding="utf-8") as f:
            json.dump(manifest, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        _fsync(self.tmp)
        try:
            os.rename(self.tmp, self.folder)
        except OSError:
            if not (self.folder / STORE_MANIFEST).exists():  # not another process winning the race
                raise
            shutil.rmtree(self.tmp, ignore_errors=True)
        _fsync(self.folder.parent)
        return self.folder

    def abort(self) -> None:
        for f in (self.shard, self.ends):
            if f is not None and not f.closed:
                f.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


def remove_stale_temporaries(folder: Path) -> None:
    """Temporary folders of preparations that died (their process is gone) next to `folder`."""
    for tmp in folder.parent.glob(f".{folder.name}{TMP_MARK}*"):
        pid = tmp.name[len(folder.name) + len(TMP_MARK) + 1:].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class TokenStore:
    """A verified store, memory-mapped: `read(start, stop)` gives ids of the concatenated shards."""

    def __init__(self, folder: Path, manifest: dict):
        self.folder, self.manifest = Path(folder), manifest
        self.dtype = np.dtype(manifest["dtype"])
        shards = [f for f in manifest["files"] if f["file"] != "ends.bin"]
        self.shards = [np.memmap(self.folder / f["file"], dtype=self.dtype, mode="r") if f["tokens"] else
                       np.zeros(0, self.dtype) for f in shards]
        self.shard_starts = np.cumsum([0] + [f["tokens"] for f in shards], dtype=np.int64)
        ends = np.fromfile(self.folder / "ends.bin", dtype="<i8")
        self.lengths = np.diff(ends, prepend=0)  # tokens per document, [SEP] included
        self.starts = ends - self.lengths

    @property
    def digest(self) -> str:
        return self.manifest["digest"]

    @property
    def n_tokens(self) -> int:
        return int(self.manifest["tokens"])

    @property
    def n_documents(self) -> int:
        return int(self.manifest["documents"])

    def read(self, start: int, stop: int) -> np.ndarray:
        """ids[start:stop] of the whole store (a view when it lies in one shard)."""
        k = int(np.searchsorted(self.shard_starts, start, side="right")) - 1
        local = start - int(self.shard_starts[k])
        if stop <= self.shard_starts[k + 1]:
            return self.shards[k][local:local + stop - start]
        head = self.shards[k][local:]
        return np.concatenate([head, self.read(start + len(head), stop)])

    def document(self, i: int) -> np.ndarray:
        return self.read(int(self.starts[i]), int(self.starts[i] + self.lengths[i]))


def _bad(folder: Path, what: str) -> UserError:
    return UserError(f"token store {folder}: {what}; delete the folder and prepare it again "
                     "(`growlang prepare FILE.grow`, or `growlang run` rebuilds a store in the cache)")


def read_manifest(folder: Path) -> dict:
    try:
        manifest = json.loads((Path(folder) / STORE_MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise _bad(folder, f"its {STORE_MANIFEST} cannot be read ({getattr(e, 'strerror', None) or e})") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != KIND:
        raise _bad(folder, f"its {STORE_MANIFEST} is not a token store manifest")
    if manifest.get("format") != FORMAT:
        raise _bad(folder, f"it has format {manifest.get('format')}, this growlang reads format {FORMAT}")
    return manifest


def _file_state(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _verified_states(folder: Path, digest: str) -> dict:
    """The file states recorded when their checksums last matched, for this manifest; {} if none."""
    try:
        record = json.loads((folder / VERIFIED).read_text(encoding="utf-8"))
        return record["files"] if record.get("digest") == digest else {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}


def _record_verified(folder: Path, digest: str, states: dict) -> None:
    """Atomically record the states of the files just verified, leaving out racily fresh ones;
    silently nothing on a read-only store (it is then checksummed on every open)."""
    cutoff = time.time_ns() - RACY_NS
    trusted = {name: state for name, state in states.items() if state[1] < cutoff}
    if not trusted:
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=VERIFIED + TMP_MARK, dir=folder)
    except OSError:
        return
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump({"digest": digest, "files": trusted}, f)
        os.replace(tmp, folder / VERIFIED)
    except OSError:
        Path(tmp).unlink(missing_ok=True)


def open_store(folder: Path, verify: bool = True) -> TokenStore:
    """The store in `folder`, its manifest and sizes checked and, with `verify`, every file's
    sha256, except a file whose size, mtime and inode are those it had when its checksum last
    matched (verified.json): opening an unchanged store costs no pass over its shards."""
    folder = Path(folder)
    m = read_manifest(folder)
    try:
        files, itemsize = m["files"], np.dtype(m["dtype"]).itemsize
        if _digest(files, m["dtype"]) != m["digest"]:
            raise _bad(folder, f"its {STORE_MANIFEST} was edited (its digest does not match its file list)")
        trusted = _verified_states(folder, m["digest"]) if verify else {}
        states = {}
        for f in files:
            path = folder / f["file"]
            size = f["documents"] * 8 if f["file"] == "ends.bin" else f["tokens"] * itemsize
            if not path.is_file():
                raise _bad(folder, f"{f['file']} is missing")
            states[f["file"]] = _file_state(path)
            if states[f["file"]][0] != size:
                raise _bad(folder, f"{f['file']} has {states[f['file']][0]:,} bytes, its manifest says {size:,}")
            if verify and trusted.get(f["file"]) != states[f["file"]] and _sha256(path) != f["sha256"]:
                raise _bad(folder, f"{f['file']} does not match its sha256 checksum (the file is corrupted)")
        if sum(f.get("tokens", 0) for f in files) != m["tokens"]:
            raise _bad(folder, f"its {STORE_MANIFEST} is inconsistent (shard sizes do not add up to its token count)")
    except (KeyError, TypeError) as e:
        raise _bad(folder, f"its {STORE_MANIFEST} lacks {e}") from None
    if verify and states != trusted:
        _record_verified(folder, m["digest"], states)
    return TokenStore(folder, m)
