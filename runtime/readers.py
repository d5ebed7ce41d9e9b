"""Readers of one corpus file each, streamed in blocks: text, JSON Lines / JSON arrays, Parquet,
and saved `datasets` folders, with their `.gz`, `.bz2`, `.xz` and `.zst` forms. How a file splits
into documents is `growlang.corpus_format`'s table; `growlang.runtime.corpus` chains the readers
over a corpus' files. Memory does not grow with a file (except a JSON array file, read whole).
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import json
import lzma
import mmap
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from growlang.corpus_format import binary_problem, has_blank_line, not_utf8_message, split_name
from growlang.runtime.errors import UserError

READ_BLOCK = 1 << 22  # bytes read (and decompressed) at a time


@dataclass
class ReadCounts:
    """What a pass over the corpus has read so far (for the progress bar and the manifest)."""

    total: int = 0  # on-disk bytes of every file (compressed size for compressed files)
    done: int = 0  # on-disk bytes consumed
    nulls: int = 0  # rows skipped because their text field was null


@contextmanager
def _open(path: Path):
    """(raw file, decompressed binary stream); raw.tell() is the on-disk progress."""
    compression = split_name(path)[1]
    damaged: tuple = (OSError, EOFError, lzma.LZMAError, zlib.error)
    raw = open(path, "rb")
    try:
        if compression == ".zst":
            try:
                import zstandard
            except ImportError:
                raise UserError(f"corpus file {path} is zstd-compressed and the `zstandard` package (a growlang "
                                "dependency) is missing; `pip install zstandard`, or decompress it with `zstd -d`") from None
            stream = _ZstdFrames(raw, zstandard.ZstdDecompressor())
            damaged += (zstandard.ZstdError,)
        else:
            opener = {".gz": lambda f: gzip.GzipFile(fileobj=f, mode="rb"), ".bz2": bz2.BZ2File,
                      ".xz": lzma.LZMAFile}.get(compression, lambda f: f)
            stream = opener(raw)
        yield raw, stream
    except Exception as e:
        if not isinstance(e, damaged) or (isinstance(e, OSError) and e.errno is not None):
            raise
        raise UserError(f"corpus file {path} cannot be decompressed ({e}); check that it is a complete "
                        f"{compression or 'uncompressed'} file") from None
    finally:
        raw.close()


class _ZstdFrames:
    """A .zst file's frames, decompressed one read at a time; unlike zstandard's stream_reader it
    raises EOFError for a file that ends inside a frame (a truncated download)."""

    def __init__(self, raw, decompressor):
        self.raw, self.decompressor = raw, decompressor
        self.obj, self.pending, self.inside = decompressor.decompressobj(), b"", False

    def read(self, size: int) -> bytes:
        while True:
            data, self.pending = self.pending or self.raw.read(size), b""
            if not data:
                if self.inside:
                    raise EOFError("the file ends inside a zstd frame")
                return b""
            out = self.obj.decompress(data)
            self.inside = not self.obj.eof
            if self.obj.eof:  # the next frame (if any) starts in what this one left over
                self.pending, self.obj = self.obj.unused_data, self.decompressor.decompressobj()
            if out:
                return out


def _decoded(path: Path, counts: ReadCounts) -> Iterator[str]:
    """The file's text in blocks, UTF-8 checked, a leading BOM dropped, CRLF made LF."""
    with _open(path) as (raw, stream):
        decoder = codecs.getincrementaldecoder("utf-8")()
        head, offset, pending, last = None, 0, "", raw.tell()
        while True:
            data = stream.read(READ_BLOCK)
            if head is None:
                head = data[:4096]
                if problem := binary_problem(str(path), head):
                    raise UserError(problem)
            buffered = decoder.getstate()[0]
            try:
                text = decoder.decode(data, final=not data)
            except UnicodeDecodeError as e:
                both = buffered + data
                raise UserError(not_utf8_message(str(path), head, both, e.start, offset - len(buffered) + e.start,
                                                 e.reason)) from None
            if offset == 0 and text.startswith("\ufeff"):
                text = text[1:]
            offset += len(data)
            counts.done += raw.tell() - last
            last = raw.tell()
            text = pending + text
            pending = "\r" if data and text.endswith("\r") else ""
            text = text[:-1] if pending else text
            if text:
                yield text.replace("\r\n", "\n")
            if not data:
                return


def _has_blank_line(path: Path) -> bool:
    if split_name(path)[1] == "":
        if path.stat().st_size == 0:
            return False
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
            return m.find(b"\n\n") >= 0 or m.find(b"\n\r\n") >= 0
    tail = ""
    for text in _decoded(path, ReadCounts()):
        if has_blank_line(tail + text):
            return True
        tail = text[-1:]
    return False


def _split_stream(blocks: Iterator[str], sep: str) -> Iterator[str]:
    """The pieces of the concatenated blocks between `sep`s, as str.split would give them."""
    carry = ""
    for block in blocks:
        parts = (carry + block).split(sep)
        carry = parts.pop()
        yield from parts
    yield carry


def text_documents(path: Path, counts: ReadCounts) -> Iterator[str]:
    sep = "\n\n" if _has_blank_line(path) else "\n"  # no empty line at all: one document per line
    for piece in _split_stream(_decoded(path, counts), sep):
        if piece.strip():
            yield piece.strip()


def _row_text(row, where: str, field: str, counts: ReadCounts) -> str | None:
    if isinstance(row, str):
        return row
    if not isinstance(row, dict) or field not in row:
        raise UserError(f"corpus file {where} has no `{field}` field; each row must look like "
                        f'{{"{field}": "..."}}, or set `data {{ text_field=... }}` to the field holding the text')
    value = row[field]
    if value is None:
        counts.nulls += 1
        return None
    if not isinstance(value, str):
        raise UserError(f"corpus file {where}: `{field}` must be a string, got {type(value).__name__}")
    return value


def json_documents(path: Path, field: str, counts: ReadCounts) -> Iterator[str]:
    """JSON Lines, or one JSON array when the file starts with `[`."""
    blocks = _decoded(path, counts)
    first = ""
    for first in blocks:
        if first.strip():
            break
    if first.lstrip().startswith("["):
        try:
            rows = json.loads(first + "".join(blocks))
        except json.JSONDecodeError as e:
            raise UserError(f"corpus file {path} line {e.lineno} is not valid JSON ({e.msg}); a `.json` corpus "
                            "is JSON Lines or one JSON array of objects") from None
        for i, row in enumerate(rows if isinstance(rows, list) else [rows]):
            text = _row_text(row, f"{path} item {i + 1}", field, counts)
            if text and text.strip():
                yield text
        return
    for lineno, line in enumerate(_split_stream(_chain(first, blocks), "\n"), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise UserError(f"corpus file {path} line {lineno} is not valid JSON ({e.msg}); "
                            "a JSONL corpus holds one JSON object per line") from None
        text = _row_text(row, f"{path} line {lineno}", field, counts)
        if text and text.strip():
            yield text


def _chain(first: str, rest: Iterator[str]) -> Iterator[str]:
    yield first
    yield from rest


def _check_column(where: str, field: str, columns: list[str], dtype: str) -> None:
    if field not in columns:
        raise UserError(f"corpus {where} has no `{field}` column (columns: {', '.join(columns) or 'none'}); "
                        "set `data { text_field=... }` to the column holding the documents")
    if dtype not in ("string", "large_string"):
        raise UserError(f"corpus {where}: the `{field}` column holds {dtype}, not strings")


def _texts(values, counts: ReadCounts) -> Iterator[str]:
    for t in values:
        if t is None:
            counts.nulls += 1
        elif t.strip():
            yield t


def parquet_documents(path: Path, field: str, counts: ReadCounts) -> Iterator[str]:
    import pyarrow.parquet as pq  # a dependency of datasets

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a damaged file
        raise UserError(f"corpus file {path} is not a readable Parquet file: {e}") from None
    schema = pf.schema_arrow
    _check_column(str(path), field, schema.names, str(schema.field(field).type) if field in schema.names else "")
    size, rows, seen = path.stat().st_size, max(1, pf.metadata.num_rows), 0
    for batch in pf.iter_batches(columns=[field], batch_size=8192):
        yield from _texts(batch.column(0).to_pylist(), counts)
        counts.done += size * (seen + batch.num_rows) // rows - size * seen // rows
        seen += batch.num_rows


def saved_documents(folder: Path, field: str, counts: ReadCounts) -> Iterator[str]:
    import datasets

    try:
        ds = datasets.load_from_disk(str(folder))  # memory-mapped Arrow: nothing is read yet
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
    dtype = getattr(ds.features.get(field), "dtype", "")
    _check_column(str(folder), field, ds.column_names, dtype)
    size, rows = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()), max(1, len(ds))
    for start in range(0, len(ds), 8192):
        yield from _texts(ds[start:start + 8192][field], counts)
        counts.done += size * min(len(ds), start + 8192) // rows - size * start // rows
