"""A schedule's corpus as a token store: reused when the corpus and tokenizer are unchanged,
else tokenized once (`growlang prepare`, or `growlang run` when the store is missing).

Reuse is decided without reading the corpus: the store's folder in the cache is named by a hash
of the corpus fingerprint (`corpus.fingerprint`: each file's path, size, mtime and a hash of
sampled blocks, plus the reading rules), of the tokenizer's content hash and, for a causal-LM
family, of its objective ("clm": documents end with eos instead of [SEP], `document_separator`).
"""

from __future__ import annotations

import hashlib
import os
import queue
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from growlang.corpus_format import STORE_MANIFEST
from growlang.families import family
from growlang.plan import DataSpec
from growlang.runtime.crash_points import pause
from growlang.runtime.corpus import ReadCounts, fingerprint, fingerprint_key, is_store, iter_documents
from growlang.runtime.errors import UserError
from growlang.runtime.failures import FULL, free_space, human_bytes
from growlang.runtime.store import FORMAT, StoreWriter, TokenStore, open_store, read_manifest
from growlang.runtime.tokenizer import (DOCUMENT_END, OBJECTIVES, cache_root, document_separator, load_tokenizer,
                                        local_tokenizer, tokenizer_hash)

ENCODE_CHARS = 1 << 20  # text per encode_batch call: bounds memory, keeps the Rust threads busy


@dataclass
class Prepared:
    tokenizer: object  # PreTrainedTokenizerFast
    store: TokenStore


class Progress:
    """One line on stderr: MB read, MB/s, tokens, ETA; redrawn on a terminal, every 10 s otherwise."""

    def __init__(self, what: str, counts: ReadCounts, stream=None, enabled: bool = True):
        stream = stream if stream is not None else sys.stderr  # looked up now: sys.stderr may be replaced
        self.what, self.counts, self.stream, self.enabled = what, counts, stream, enabled
        self.tty = enabled and stream.isatty()
        self.t0 = self.last = time.monotonic()

    def update(self, tokens: int, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self.last < (0.5 if self.tty else 10)):
            return
        self.last = now
        mb, total, secs = self.counts.done / 1e6, self.counts.total / 1e6, max(now - self.t0, 1e-9)
        eta = "" if final or not total or mb <= 0 else f"  ETA {max(0.0, (total - mb) / (mb / secs)):.0f}s"
        line = (f"preparing {self.what}: {mb:,.1f}/{total:,.1f} MB  {mb / secs:.1f} MB/s  "
                f"{tokens / 1e6:,.2f}M tokens  {secs:.0f}s{eta}")
        self.stream.write(("\r" + line + ("\n" if final else "")) if self.tty else line + "\n")
        self.stream.flush()


def _batches(docs: Iterator[str], chars: int) -> Iterator[list[str]]:
    batch, n = [], 0
    for d in docs:
        batch.append(d)
        n += len(d)
        if n >= chars:
            yield batch
            batch, n = [], 0
    if batch:
        yield batch


def _prefetch(items: Iterator, depth: int = 2) -> Iterator:
    """`items` produced in a thread: reading the next batch overlaps with encoding this one (the
    Rust encoder releases the GIL)."""
    q: queue.Queue = queue.Queue(depth)
    done = object()

    def work():
        try:
            for x in items:
                q.put(x)
            q.put(done)
        except BaseException as e:  # re-raised in the consumer
            q.put(e)

    threading.Thread(target=work, daemon=True).start()
    while (x := q.get()) is not done:
        if isinstance(x, BaseException):
            raise x
        yield x


def encode(docs: Iterator[str], tok, sep: int) -> Iterator[list[np.ndarray]]:
    """Batches of documents' ids (no [CLS], no bos), each followed by one `sep` (`document_separator`)."""
    backend = tok.backend_tokenizer
    for batch in _prefetch(_batches(docs, ENCODE_CHARS)):
        # encode_batch_fast skips the offsets we never use; the Rust side runs on all cores
        yield [np.array(e.ids + [sep], dtype=np.uint32) for e in
               backend.encode_batch_fast(batch, add_special_tokens=False)]


def _store_key(fp_key: str, tok_hash: str, objective: str) -> str:
    # One tokenizer can end documents with [SEP] or with eos; "mlm" keys stay as they were before
    # objectives existed, so the stores already in caches are still found.
    tail = "" if objective == "mlm" else f":{objective}"
    return hashlib.blake2b(f"{fp_key}:{tok_hash}:{FORMAT}{tail}".encode(), digest_size=12).hexdigest()


def build_store(spec: DataSpec, tok, folder: Path, meta: dict, progress: bool = True) -> TokenStore:
    """Tokenize the corpus into a new store at `folder` (atomically: see runtime/store.py), every
    document ending with `meta["separator"]`."""
    counts = ReadCounts()
    writer = StoreWriter(folder, len(tok))
    bar = Progress(spec.corpus, counts, enabled=progress)
    try:
        for docs in encode(iter_documents(spec, counts), tok, meta["separator"]):
            writer.add(docs)
            bar.update(writer.tokens)
            pause("store-write", str(writer.tmp))
        if writer.documents == 0:
            raise UserError(f"corpus {spec.corpus} is empty: it holds no non-blank documents")
        bar.update(writer.tokens, final=True)
        if counts.nulls:
            print(f"note: skipped {counts.nulls:,} rows whose `{spec.text_field}` is null", file=sys.stderr)
        writer.commit(tok, {**meta, "nulls_skipped": counts.nulls})
    except OSError as e:
        writer.abort()
        if e.errno not in FULL:
            raise
        share = writer.tokens * writer.dtype.itemsize / max(1, counts.done)
        raise UserError(f"the disk is full writing the token store {folder} ({free_space(folder.parent)}; the store "
                        f"needs about {human_bytes(share * counts.total)}); nothing was kept. Free space there, or "
                        "put the store on another disk (`growlang prepare FILE --out DIR`, or $GROWLANG_CACHE)") from None
    except BaseException:
        writer.abort()
        raise
    return open_store(folder, verify=False)


def _store_objective(manifest: dict) -> str:
    return manifest.get("objective", "mlm")  # stores written before objectives existed end with [SEP]


def _store_tokenizer(spec: DataSpec, folder: Path, vocab: int, manifest: dict, objective: str):
    """`tokenizer=builtin` with a store: the store's own; else the named one, which must match it.
    Either way the store's documents must end as the objective needs."""
    if (made := _store_objective(manifest)) != objective:
        raise UserError(f"the token store {folder} was prepared for a {OBJECTIVES[made]} family (its documents end "
                        f"with {DOCUMENT_END[made]}), but `model {{ ... }}` names a {OBJECTIVES[objective]} family; "
                        "prepare the corpus again with this schedule (`growlang prepare FILE.grow`)")
    if spec.tokenizer == "builtin":
        return local_tokenizer(str(folder / "tokenizer"), vocab, objective)
    tok = local_tokenizer(spec.tokenizer, vocab, objective)
    if tokenizer_hash(tok) != manifest["tokenizer_hash"]:
        raise UserError(f"tokenizer {spec.tokenizer} does not fit the token store {folder}: the store was prepared "
                        "with another tokenizer; use `data { tokenizer=builtin }` to use the store's own, or "
                        "prepare the corpus again with this tokenizer")
    return tok


def prepare(spec: DataSpec, vocab: int, cache_dir: Path | None = None, out: Path | None = None,
            progress: bool = True, objective: str = "mlm") -> Prepared:
    """The corpus' tokenizer and token store for the family's `objective` ("mlm" or "clm"): the
    named store, a matching one in the cache (or at `out`), or a new one built there."""
    if is_store(spec.corpus):
        folder = Path(os.path.expanduser(spec.corpus))
        store = open_store(folder)
        return Prepared(_store_tokenizer(spec, folder, vocab, store.manifest, objective), store)
    fp = fingerprint(spec)
    fp_key = fingerprint_key(fp)
    tok = load_tokenizer(spec, vocab, cache_dir, fp_key=fp_key, objective=objective)
    tok_hash = tokenizer_hash(tok)
    key = _store_key(fp_key, tok_hash, objective)
    folder = Path(out) if out is not None else cache_root(cache_dir) / "stores" / key
    if (folder / STORE_MANIFEST).exists():
        m = read_manifest(folder)
        if (m.get("fingerprint_key"), m.get("tokenizer_hash"), _store_objective(m)) == (fp_key, tok_hash, objective):
            return Prepared(tok, open_store(folder))
        raise UserError(f"{folder} holds a token store of another corpus, tokenizer or kind of model family; delete "
                        "it or choose another --out")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
        raise UserError(f"{folder} exists and is not an empty folder or a token store; choose another --out")
    meta = {"corpus": spec.corpus, "fingerprint_key": fp_key, "fingerprint": fp, "tokenizer_hash": tok_hash,
            "vocab": len(tok), "objective": objective, "separator": document_separator(tok, objective)}
    return Prepared(tok, build_store(spec, tok, folder, meta, progress))


def main(plan, out: Path | None) -> int:
    """`growlang prepare`: exit 0 with the store's folder and counts on stdout, 1 on a user error."""
    from growlang.runtime.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PROBLEM

    try:
        p = prepare(plan.data, plan.model.vocab, out=out, objective=family(plan.model.family).objective)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_PROBLEM
    except KeyboardInterrupt:
        print("interrupted: nothing was kept; run the same command again to prepare the store", file=sys.stderr)
        return EXIT_INTERRUPTED
    s = p.store
    print(f"token store {s.folder}: {s.n_tokens:,} tokens in {s.n_documents:,} documents, "
          f"{len(s.shards)} shard(s) of {s.dtype.name}, tokenizer {len(p.tokenizer)} tokens")
    return EXIT_OK
