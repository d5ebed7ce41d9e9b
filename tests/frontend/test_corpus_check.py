"""`check` looks at a local corpus cheaply and torch-free: missing, empty, binary, UTF-16, not UTF-8,
or a single document is E209 before any training; a good file passes."""

from __future__ import annotations

import pytest

from growlang.compiler import compile_text


def diagnose(tmp_path, name: str, data: bytes):
    (tmp_path / name).write_bytes(data)
    text = f'data {{ corpus="{name}" }}\nstage 1: depth=1 width=64 len=32 steps=1\n'
    return [(d.code, d.message) for d in compile_text(text, tmp_path / "s.grow").diagnostics]


@pytest.mark.parametrize("name, data, words", [
    ("empty.txt", b"", "is empty"),
    ("blank.jsonl", b"\n\n  \n", "is empty"),
    ("one.txt", b"just one document without any blank line", "only one document"),
    ("wide.txt", "hello\n\nworld".encode("utf-16"), "UTF-16"),
    ("bin.txt", b"\x00\x01\x02\x03" * 100, "binary"),
    ("latin.txt", "caf\u00e9\n\nna\u00efve".encode("latin-1"), "not valid UTF-8"),
    ("a.csv", b"text\nhello\n", "unsupported type"),
])
def test_bad_corpus_is_e209(tmp_path, name, data, words):
    found = diagnose(tmp_path, name, data)
    assert [c for c, _ in found] == ["E209"] and words in found[0][1] and name in found[0][1]


def test_good_corpora_pass(tmp_path):
    assert diagnose(tmp_path, "lines.txt", b"one document\nanother document\n") == []
    assert diagnose(tmp_path, "a.jsonl", b'{"text": "x"}\n') == []
    assert diagnose(tmp_path, "a.txt.gz", b"\x1f\x8b") == []  # compressed: only run reads it
