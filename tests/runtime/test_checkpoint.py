"""Checkpoint I/O with plain tensors: round trip, atomicity, checksums, pruning, RNG state."""

from __future__ import annotations

import json

import pytest
import torch

from growlang.runtime import checkpoint as ck


def write(root, name, stage_index, stage_step, kind="periodic", value=0.0, **kw):
    model = {"w": torch.full((3, 2), value), "b": torch.arange(4.0)}
    opt = {"w": {"exp_avg": torch.ones(3, 2), "exp_avg_sq": torch.zeros(3, 2), "step": torch.tensor(5.0)}}
    state = {"stage": name.split("-")[0], "stage_index": stage_index, "stage_step": stage_step, "kind": kind}
    return ck.save(root, name, model, opt, state, **kw)


def test_round_trip(tmp_path):
    path = write(tmp_path, "a-3", 0, 3, value=1.5)
    got = ck.latest(tmp_path)
    assert got.path == path and got.state["stage"] == "a" and set(got.state["sha256"]) == {ck.MODEL, ck.OPTIMIZER}
    assert torch.equal(got.model_state()["w"], torch.full((3, 2), 1.5))
    opt = got.optimizer_state()
    assert torch.equal(opt["w"]["exp_avg"], torch.ones(3, 2)) and opt["w"]["step"].item() == 5.0
    assert not any(p.name.startswith(".tmp") for p in tmp_path.iterdir())


def test_no_pickle_in_files(tmp_path):
    path = write(tmp_path, "a-1", 0, 1)
    for f in (ck.MODEL, ck.OPTIMIZER):
        assert b"\x80\x04" not in (path / f).read_bytes()[:16]  # pickle protocol header
    json.loads((path / ck.STATE).read_text())


def test_crash_mid_write_leaves_previous_newest(tmp_path):
    write(tmp_path, "a-2", 0, 2, value=2.0)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path, "a-4", 0, 4, value=4.0, _crash_before_rename=True)
    assert not (tmp_path / "a-4").exists()
    got = ck.latest(tmp_path)
    assert got.path.name == "a-2"
    ck.remove_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["a-2"]


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete", "state"])
def test_corrupted_checkpoint_is_detected_and_skipped(tmp_path, damage):
    write(tmp_path, "a-2", 0, 2, kind="stage_end")
    bad = write(tmp_path, "b-5", 1, 3)
    target = bad / ck.MODEL
    if damage == "flip":
        data = bytearray(target.read_bytes())
        data[-1] ^= 0xFF
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:20])
    elif damage == "delete":
        target.unlink()
    else:
        (bad / ck.STATE).write_text("{not json")
    messages = []
    got = ck.latest(tmp_path, warn=messages.append)
    assert got.path.name == "a-2"
    assert len(messages) == 1 and "b-5" in messages[0]


def test_order_follows_stage_then_step(tmp_path):
    write(tmp_path, "a-10", 0, 10, kind="stage_end")
    write(tmp_path, "b-12", 1, 2)
    write(tmp_path, "c-11", 2, 1)  # a sibling processed after b
    assert ck.latest(tmp_path).path.name == "c-11"
    assert [c.path.name for c in ck.complete(tmp_path)] == ["c-11", "b-12", "a-10"]
    assert ck.find_stage_end(tmp_path, "a").path.name == "a-10"
    assert ck.find_stage_end(tmp_path, "b") is None


def test_prune_keeps_stage_ends_and_newest_periodic(tmp_path):
    write(tmp_path, "a-2", 0, 2)
    write(tmp_path, "a-4", 0, 4, kind="stage_end")
    write(tmp_path, "b-6", 1, 2)
    keep = write(tmp_path, "b-8", 1, 4)
    ck.prune(tmp_path, keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a-4", "b-8"]


def test_optimizer_flattening_round_trip():
    st = {"layers.0.attn.q.weight": {"exp_avg": torch.randn(2, 2), "step": torch.tensor(3.0)}}
    flat = ck.flatten_optimizer(st)
    assert set(flat) == {"layers.0.attn.q.weight::exp_avg", "layers.0.attn.q.weight::step"}
    back = ck.unflatten_optimizer(flat)
    assert torch.equal(back["layers.0.attn.q.weight"]["exp_avg"], st["layers.0.attn.q.weight"]["exp_avg"])


def test_rng_state_round_trips_through_json():
    torch.manual_seed(7)
    st = json.loads(json.dumps(ck.rng_state()))
    a = torch.rand(5)
    ck.set_rng_state(st)
    assert torch.equal(torch.rand(5), a)
