"""What a corpus file is and how it splits into documents: the one table both `check` (torch-free,
cheap) and the runtime's readers (`growlang.runtime.corpus`) use.

Rules (docs/data.md):
- a text file is one document per paragraph (paragraphs separated by an empty line); a text file
  with no empty line at all is one document per line;
- JSON Lines: one document per line, from its text field (`data { text_field }`, default `text`);
  a `.json` file whose first character is `[` is one JSON array of such objects (or strings);
- Parquet and saved `datasets` folders: one document per row of the text column;
- `.gz`, `.bz2`, `.xz` and `.zst` after any of these suffixes are decompressed while reading.
"""

from __future__ import annotations

import codecs
from pathlib import Path

TEXT_SUFFIXES = (".txt", ".text", ".md")
JSONL_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIXES = (".parquet",)
COMPRESSED_SUFFIXES = (".gz", ".bz2", ".xz", ".zst")
KINDS = {**{s: "text" for s in TEXT_SUFFIXES}, **{s: "jsonl" for s in JSONL_SUFFIXES},
         **{s: "parquet" for s in PARQUET_SUFFIXES}}
FIX = ("set `data { corpus=... }` to `builtin`, a text/JSONL/Parquet file (optionally .gz/.bz2/.xz/.zst), "
       "a glob, a saved datasets folder or a prepared token store")
STORE_MANIFEST = "manifest.json"  # a folder holding it is a prepared token store (growlang prepare)
HEAD_BYTES = 1 << 16  # what `check` reads of each file


def split_name(path: Path) -> tuple[str, str]:
    """(kind, compression): ("text", ".gz") for `a.txt.gz`, ("jsonl", "") for `a.jsonl`; kind is
    "" for an unsupported type."""
    suffixes = [s.lower() for s in path.suffixes]
    compression = suffixes.pop() if suffixes and suffixes[-1] in COMPRESSED_SUFFIXES else ""
    return KINDS.get(suffixes[-1] if suffixes else "", ""), compression


def supported(path: Path) -> bool:
    return split_name(path)[0] != ""


def unsupported_message(path: Path) -> str:
    suffix = "".join(path.suffixes) or "(none)"
    return (f"corpus file {path} has an unsupported type `{suffix}`; use one of "
            f"{', '.join(TEXT_SUFFIXES + JSONL_SUFFIXES + PARQUET_SUFFIXES)}, optionally followed by "
            f"{', '.join(COMPRESSED_SUFFIXES)}")


def has_blank_line(text: str) -> bool:
    """Whether `text` (newlines already normalized to \\n) separates paragraphs with an empty line."""
    return "\n\n" in text


def split_text(text: str, per_line: bool) -> list[str]:
    """Documents of normalized text: paragraphs, or lines when `per_line`; stripped, empty dropped."""
    parts = text.split("\n") if per_line else text.split("\n\n")
    return [p.strip() for p in parts if p.strip()]


def looks_utf16(head: bytes) -> bool:
    """A UTF-16 byte-order mark, or the zero bytes every other byte that ASCII text in UTF-16 has."""
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE):
        return True
    sample = head[:4096]
    return len(sample) >= 8 and sample.count(0) * 3 >= len(sample)


def binary_problem(where: str, head: bytes) -> str | None:
    """UTF-16 or binary data in a file's first bytes (zero bytes are valid UTF-8, never text)."""
    if looks_utf16(head):
        return (f"corpus file {where} is UTF-16, not UTF-8; re-encode it as UTF-8, e.g. "
                "`iconv -f utf-16 -t utf-8 IN > OUT`")
    if b"\0" in head[:4096]:
        return f"corpus file {where} looks binary (it holds zero bytes), not UTF-8 text; {FIX}"
    return None


def not_utf8_message(where: str, head: bytes, data: bytes, start: int, offset: int, reason: str) -> str:
    """The message for a corpus that is not UTF-8; `head` is the file's first bytes, the bad byte
    is data[start] at byte offset `offset` of the (decompressed) file."""
    return binary_problem(where, head) or (f"corpus file {where} is not valid UTF-8: byte 0x{data[start]:02x} at byte offset {offset} "
            f"({reason}); re-encode it as UTF-8, e.g. `iconv -f latin1 -t utf-8 IN > OUT` if it is Latin-1")


def check_head(path: Path, head: bytes, complete: bool, alone: bool) -> str | None:
    """A problem with a corpus file judged from its first bytes (`complete`: they are all of it;
    `alone`: it is the whole corpus), or None. Cheap: `growlang check` reads HEAD_BYTES of a file."""
    kind, compression = split_name(path)
    if compression or kind == "parquet":
        return None if head or not complete else f"corpus file {path} is empty; {FIX}"
    if not head.strip():
        return f"corpus file {path} is empty (no text); {FIX}"
    if problem := binary_problem(str(path), head):
        return problem
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
    except UnicodeDecodeError as e:
        return not_utf8_message(str(path), head, head, e.start, e.start, e.reason)
    if kind == "text" and complete and alone:
        text = text.replace("\r\n", "\n")
        if len(split_text(text, not has_blank_line(text))) < 2:
            return (f"corpus file {path} holds only one document; a held-out set needs at least two "
                    "(documents are paragraphs, or lines when the file has no empty line)")
    return None


def is_saved_dataset(folder: Path) -> bool:
    return any((folder / name).exists() for name in ("dataset_info.json", "dataset_dict.json", "state.json"))


def check_corpus(corpus: str, max_files: int = 8) -> str | None:
    """The first problem `check` can see in a local corpus (resolved path or glob) without reading
    it: an unreadable, empty, binary or non-UTF-8 file, or a single file with one document."""
    import glob

    if corpus == "builtin":
        return None
    path = Path(corpus)
    if glob.has_magic(corpus):
        files = sorted(Path(p) for p in glob.glob(corpus, recursive=True) if Path(p).is_file())
    elif path.is_dir():
        if (path / STORE_MANIFEST).exists() or is_saved_dataset(path):
            return None
        files = sorted(p for p in path.rglob("*") if p.is_file() and supported(p))
        if not files:
            return f"corpus folder {corpus} holds no corpus files and is not a saved datasets folder or token store"
    else:
        files = [path]
    for f in files[:max_files]:
        if not supported(f):
            return unsupported_message(f)
        try:
            with open(f, "rb") as fh:
                head = fh.read(HEAD_BYTES + 1)
        except OSError as e:
            return f"cannot read corpus file {f}: {e.strerror or e}"
        problem = check_head(f, head[:HEAD_BYTES], len(head) <= HEAD_BYTES, alone=len(files) == 1)
        if problem:
            return problem
    return None
