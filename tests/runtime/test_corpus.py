"""Corpus loading: every supported source, the held-out split, and the user-facing errors."""

from __future__ import annotations

import json

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from growlang.plan import DataSpec
from growlang.runtime.corpus import load_corpus, read_documents, split_documents
from growlang.runtime.errors import UserError

DOCS = [f"document number {i} says something about topic {i % 7}." for i in range(40)]


def spec(corpus, holdout=0.1) -> DataSpec:
    return DataSpec(corpus=str(corpus), tokenizer="builtin", mask=0.15, holdout=holdout)


def texts(s: DataSpec) -> list[str]:
    return list(read_documents(s)["text"])


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


def test_load_corpus_splits(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text("\n".join(json.dumps({"text": d}) for d in DOCS))
    train, ev = load_corpus(spec(f, holdout=0.25), seed=0)
    assert len(train) == 30 and len(ev) == 10


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
    assert "latin1.txt" in msg and "UTF-8" in msg and "byte offset 12" in msg


def test_jsonl_without_text_field(tmp_path):
    f = tmp_path / "a.jsonl"
    f.write_text('{"text": "fine"}\n{"body": "oops"}\n')
    with pytest.raises(UserError, match=r"a.jsonl line 2 has no `text` field"):
        read_documents(spec(f))
    f.write_text('{"text": "fine"}\nnot json\n')
    with pytest.raises(UserError, match="line 2 is not valid JSON"):
        read_documents(spec(f))


def test_parquet_and_saved_without_text_column(tmp_path):
    f = tmp_path / "a.parquet"
    pq.write_table(pa.table({"body": DOCS}), f)
    with pytest.raises(UserError, match=r"no `text` column \(columns: body\)"):
        read_documents(spec(f))
    datasets.Dataset.from_dict({"content": DOCS}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(UserError, match="no `text` column"):
        read_documents(spec(tmp_path / "ds"))


def test_unsupported_file_type(tmp_path):
    f = tmp_path / "a.csv"
    f.write_text("text\nhello\n")
    with pytest.raises(UserError, match="unsupported type `.csv`"):
        read_documents(spec(f))
