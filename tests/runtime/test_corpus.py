"""Corpus loading: every supported source (compressed ones too), the held-out split, the
fingerprint, and the user-facing errors."""

from __future__ import annotations

import bz2
import gzip
import json
import lzma
import sys

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from growlang.plan import DataSpec
from growlang.runtime.corpus import fingerprint, read_documents, split_documents, split_indices
from growlang.runtime.errors import UserError

DOCS = [f"document number {i} says something about topic {i % 7}." for i in range(40)]


def spec(corpus, holdout=0.1, text_field="text") -> DataSpec:
    return DataSpec(corpus=str(corpus), tokenizer="builtin", mask=0.15, holdout=holdout, text_field=text_field)


def texts(s: DataSpec) -> list[str]:
    return read_documents(s)


def test_text_file_one_document_per_paragraph(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("first para\nstill first\n\n\n  second para  \r\n\r\nthird\n", encoding="utf-8")
    assert texts(spec(f)) == ["first para\nstill first", "second para", "third"]


def test_jsonl_text_field(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text("\n".join(json.dumps({"text": d, "id": i}) for i, d in enumerate(DOCS)) + "\n\n")
    assert texts(spec(f)) == DOCS


def test_parquet_text_column(tmp_path):
    f = tmp_path / "a.parquet"
    pq.write_table(pa.table({"text": DOCS, "n": list(range(len(DOCS)))}), f)
    assert texts(spec(f)) == DOCS


def test_glob_and_folder_read_files_sorted(tmp_path):
    (tmp_path / "b.txt").write_text("bee\n\nbuzz")
    (tmp_path / "a.txt").write_text("ant")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "c.jsonl").write_text('{"text": "cat"}\n')
    (tmp_path / "notes.bin").write_bytes(b"\xff")  # ignored: not a corpus type
    assert texts(spec(tmp_path / "*.txt")) == ["ant", "bee", "buzz"]
    assert texts(spec(tmp_path / "**" / "*.jsonl")) == ["cat"]
    assert texts(spec(tmp_path)) == ["ant", "bee", "buzz", "cat"]


def test_saved_datasets_folder(tmp_path):
    datasets.Dataset.from_dict({"text": DOCS}).save_to_disk(str(tmp_path / "ds"))
    assert texts(spec(tmp_path / "ds")) == DOCS
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": DOCS[:5]}),
                               "test": datasets.Dataset.from_dict({"text": DOCS[5:]})})
    dd.save_to_disk(str(tmp_path / "dd"))
    assert texts(spec(tmp_path / "dd")) == DOCS[:5]


def test_builtin_is_the_state_of_the_union():
    docs = texts(spec("builtin"))
    assert len(docs) > 20_000 and sum(map(len, docs)) > 10_000_000
    assert docs[0].startswith("Fellow-Citizens of the Senate")


def test_split_is_deterministic_disjoint_and_sized():
    train, ev = split_documents(DOCS, 0.1, seed=3)
    assert (train, ev) == split_documents(DOCS, 0.1, seed=3)
    assert len(ev) == 4 and len(train) == 36 and not set(train) & set(ev)
    assert sorted(train + ev) == sorted(DOCS)
    other_train, other_ev = split_documents(DOCS, 0.1, seed=4)
    assert other_ev == ev  # the held-out set does not depend on the training seed
    assert other_train != train and sorted(other_train) == sorted(train)  # only the order does
    assert train != sorted(train, key=DOCS.index)  # shuffled, not in corpus order
    assert len(split_documents(DOCS[:3], 0.01, seed=0)[1]) == 1  # at least one eval document


def test_eval_set_grows_to_one_batch_in_the_fixed_order():
    lengths = [10] * 40
    _, ev = split_indices(40, 0.01, seed=0)
    _, big = split_indices(40, 0.01, 0, lengths, need=35)  # 1 document of 10 tokens < 35: take 4
    assert len(ev) == 1 and len(big) == 4 and set(ev) <= set(big)
    train, most = split_indices(40, 0.01, 0, lengths, need=10_000)  # never all: one stays for training
    assert len(most) == 39 and len(train) == 1


def test_text_without_blank_lines_is_one_document_per_line(tmp_path):
    f = tmp_path / "lines.txt"
    f.write_text("first line\r\nsecond line\n  \nthird\n", encoding="utf-8")  # "  " is not empty
    assert texts(spec(f)) == ["first line", "second line", "third"]
    f.write_bytes(b"\xef\xbb\xbfwith a bom\n\nsecond")
    assert texts(spec(f)) == ["with a bom", "second"]


def test_streaming_matches_whole_file_split(tmp_path, monkeypatch):
    from growlang.runtime import corpus, readers

    monkeypatch.setattr(readers, "READ_BLOCK", 7)  # blocks cut separators, CRLF pairs and characters
    body = "un\u00e9 para\r\n\r\n\r\ndeux\n\n\ntrois \u4e2d\u6587\r\n\r\nquatre"
    f = tmp_path / "a.txt"
    f.write_text(body, encoding="utf-8")
    assert texts(spec(f)) == corpus.paragraphs(body)


def test_jsonl_null_text_is_skipped_and_counted(tmp_path):
    from growlang.runtime.corpus import ReadCounts, iter_documents

    f = tmp_path / "a.jsonl"
    f.write_text('{"text": "one"}\n{"text": null}\n{"text": "two"}\n')
    counts = ReadCounts()
    assert list(iter_documents(spec(f), counts)) == ["one", "two"] and counts.nulls == 1
    pq.write_table(pa.table({"text": ["a", None, "b", None]}), tmp_path / "b.parquet")
    counts = ReadCounts()
    assert list(iter_documents(spec(tmp_path / "b.parquet"), counts)) == ["a", "b"] and counts.nulls == 2


def test_json_array_file_and_text_field(tmp_path):
    f = tmp_path / "a.json"
    f.write_text(json.dumps([{"body": d} for d in DOCS[:5]], indent=2))
    assert texts(spec(f, text_field="body")) == DOCS[:5]
    with pytest.raises(UserError, match=r"item 1 has no `text` field.*text_field"):
        texts(spec(f))
    pq.write_table(pa.table({"content": DOCS}), tmp_path / "c.parquet")
    assert texts(spec(tmp_path / "c.parquet", text_field="content")) == DOCS


COMPRESSORS = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}


@pytest.mark.parametrize("inner", [".txt", ".jsonl", ".json"])
@pytest.mark.parametrize("suffix", sorted(COMPRESSORS))
def test_compressed_formats(tmp_path, inner, suffix):
    body = "\n\n".join(DOCS) if inner == ".txt" else "\n".join(json.dumps({"text": d}) for d in DOCS)
    f = tmp_path / f"a{inner}{suffix}"
    f.write_bytes(COMPRESSORS[suffix](body.encode()))
    assert texts(spec(f)) == DOCS


@pytest.mark.parametrize("inner", [".txt", ".jsonl"])
def test_zstd(tmp_path, inner, monkeypatch):
    import zstandard

    body = "\n\n".join(DOCS) if inner == ".txt" else "\n".join(json.dumps({"text": d}) for d in DOCS)
    f = tmp_path / f"a{inner}.zst"
    z = zstandard.ZstdCompressor()
    f.write_bytes(z.compress(body.encode()))
    assert texts(spec(f)) == DOCS
    half = len(body) // 2
    f.write_bytes(z.compress(body[:half].encode()) + z.compress(body[half:].encode()))  # two frames
    assert texts(spec(f)) == DOCS
    monkeypatch.setitem(sys.modules, "zstandard", None)  # an environment without the package
    with pytest.raises(UserError, match="pip install zstandard"):
        texts(spec(f))


@pytest.mark.parametrize("suffix", [".gz", ".bz2", ".xz", ".zst"])
def test_damaged_compressed_file(tmp_path, suffix):
    import zstandard

    compress = {**COMPRESSORS, ".zst": zstandard.ZstdCompressor().compress}[suffix]
    good = compress(("some words " * 5000).encode())
    f = tmp_path / f"a.txt{suffix}"
    f.write_bytes(good[:len(good) // 2])  # truncated
    with pytest.raises(UserError, match="cannot be decompressed"):
        texts(spec(f))
    f.write_bytes(good[:12] + bytes(b ^ 0x55 for b in good[12:40]) + good[40:])  # damaged
    with pytest.raises(UserError, match="cannot be decompressed|not valid UTF-8"):
        texts(spec(f))


def test_fingerprint_is_cheap_and_sees_edits(tmp_path):
    f = tmp_path / "a.txt"
    f.write_text("\n\n".join(DOCS))
    one = fingerprint(spec(f))
    assert fingerprint(spec(f)) == one
    f.write_text("\n\n".join(DOCS[::-1]))  # same size
    assert fingerprint(spec(f)) != one
    assert fingerprint(spec(f, text_field="body")) != fingerprint(spec(f))


@pytest.mark.parametrize("corpus, words", [
    ("missing.txt", ["missing.txt", "does not exist", "builtin"]),
    ("nothing/*.txt", ["matches no files"]),
])
def test_missing_path_or_empty_glob(tmp_path, corpus, words):
    with pytest.raises(UserError) as e:
        read_documents(spec(tmp_path / corpus))
    assert all(w in str(e.value) for w in words)


def test_empty_corpus(tmp_path):
    f = tmp_path / "empty.txt"
    f.write_text("\n\n   \n")
    with pytest.raises(UserError, match="is empty"):
        read_documents(spec(f))
    (tmp_path / "d").mkdir()
    with pytest.raises(UserError, match="holds no"):
        read_documents(spec(tmp_path / "d"))


def test_invalid_utf8_names_file_and_offset(tmp_path):
    f = tmp_path / "latin1.txt"
    f.write_bytes("caf\u00e9 ok\n\n".encode("utf-8") + "na\u00efve".encode("latin-1"))
    with pytest.raises(UserError) as e:
        read_documents(spec(f))
    msg = str(e.value)
    assert "latin1.txt" in msg and "UTF-8" in msg and "byte offset 12" in msg and "iconv -f latin1" in msg


def test_utf16_gets_utf16_advice(tmp_path):
    f = tmp_path / "wide.txt"
    f.write_bytes("hello there\n\nsecond paragraph".encode("utf-16"))
    with pytest.raises(UserError) as e:
        read_documents(spec(f))
    assert "UTF-16" in str(e.value) and "iconv -f utf-16 -t utf-8" in str(e.value) and "latin1" not in str(e.value)


def test_jsonl_without_text_field(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"text": "fine"}\n{"body": "oops"}\n')
    with pytest.raises(UserError, match=r"a.jsonl line 2 has no `text` field.*text_field"):
        read_documents(spec(f))
    f.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(UserError, match="line 2 is not valid JSON"):
        read_documents(spec(f))


def test_parquet_and_saved_without_text_column(tmp_path):
    f = tmp_path / "a.parquet"
    pq.write_table(pa.table({"body": DOCS}), f)
    with pytest.raises(UserError, match=r"no `text` column \(columns: body\).*text_field"):
        read_documents(spec(f))
    datasets.Dataset.from_dict({"content": DOCS}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(UserError, match="no `text` column"):
        read_documents(spec(tmp_path / "ds"))


def test_unsupported_file_type(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("text\nhello\n")
    with pytest.raises(UserError, match="unsupported type `.csv`.*gz"):
        read_documents(spec(f))
