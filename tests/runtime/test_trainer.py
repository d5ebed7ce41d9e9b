"""Trainer: resume reaches bitwise the same weights, mid-stage and across a growth boundary."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import load_file

from growlang.plan import OpUse, Shape
from growlang.runtime import checkpoint as ck
from growlang.runtime.metrics import read_metrics
from growlang.runtime.run import run_plan

try:
    from test_trainer_plans import grow_all_plan, make_plan, on_corpus, train_spec
except ImportError:  # tests collected as a package
    from tests.runtime.test_trainer_plans import grow_all_plan, make_plan, on_corpus, train_spec


def same_files(a, b, names=("model.safetensors", "optimizer.safetensors")):
    for name in names:
        x, y = load_file(a / name), load_file(b / name)
        assert x.keys() == y.keys()
        for k in x:
            assert torch.equal(x[k], y[k]), f"{name}:{k} differs"


def comparable(rows):
    drop = ("time", "tokens_per_s", "flops_per_s", "mfu")
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


@pytest.mark.parametrize("on_grow,lr_on_grow", [("reset", "restart"),
                                               pytest.param("carry", "rewarm", marks=pytest.mark.slow)])
def test_resume_is_bitwise_equal(tmp_path, corpus, on_grow, lr_on_grow, capsys):
    plan = on_corpus(grow_all_plan(checkpoint_every=3, eval_every=2, on_grow=on_grow, lr_on_grow=lr_on_grow), corpus)
    ref = tmp_path / "ref"
    assert run_plan(plan, ref, resume=False, device="cpu") == 0
    out = tmp_path / "out"
    # stop one step into `big`: the newest checkpoint is small's end, so the resume regrows
    assert run_plan(plan, out, resume=False, device="cpu", stop_after_steps=5) == 130
    assert ck.latest(out / "checkpoints").path.name == "small-4"
    assert "continue with --resume" in capsys.readouterr().err
    # then stop at step 7: the newest is the periodic big-6, in the middle of a stage
    assert run_plan(plan, out, resume=True, device="cpu", stop_after_steps=3) == 130
    assert ck.latest(out / "checkpoints").path.name == "big-6"
    assert run_plan(plan, out, resume=True, device="cpu") == 0
    assert "resuming from big-6" in capsys.readouterr().err
    for name in ("small-4", "big-8"):
        same_files(ref / "checkpoints" / name, out / "checkpoints" / name)
    same_files(ref / "final", out / "final", names=("model.safetensors",))
    assert comparable(read_metrics(out / "metrics.jsonl")) == comparable(read_metrics(ref / "metrics.jsonl"))


def test_resume_without_checkpoints_starts_over(tmp_path, corpus, capsys):
    plan = on_corpus(grow_all_plan(), corpus)
    out = tmp_path / "out"
    assert run_plan(plan, out, resume=False, device="cpu", stop_after_steps=2) == 130
    assert ck.latest(out / "checkpoints") is None
    assert run_plan(plan, out, resume=True, device="cpu") == 0
    assert "starting from the beginning" in capsys.readouterr().err
    assert len([r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]) == 8


@pytest.mark.slow
def test_resume_skips_a_corrupted_checkpoint(tmp_path, corpus, capsys):
    plan = on_corpus(grow_all_plan(checkpoint_every=3), corpus)
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert run_plan(plan, ref, resume=False, device="cpu") == 0
    assert run_plan(plan, out, resume=False, device="cpu", stop_after_steps=7) == 130
    damaged = out / "checkpoints" / "big-6" / "model.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:-8])  # truncated
    assert run_plan(plan, out, resume=True, device="cpu") == 0
    err = capsys.readouterr().err
    assert "big-6" in err and "sha256" in err and "resuming from small-4" in err
    same_files(ref / "checkpoints" / "big-8", out / "checkpoints" / "big-8")


def test_resume_refuses_a_changed_finished_stage(tmp_path, corpus, capsys):
    plan = on_corpus(grow_all_plan(), corpus)
    out = tmp_path / "out"
    assert run_plan(plan, out, resume=False, device="cpu", stop_after_steps=5) == 130
    small = dataclasses.replace(plan.stages[0], steps=5)
    changed = dataclasses.replace(plan, stages=(small, plan.stages[1]))
    assert run_plan(changed, out, resume=True, device="cpu") == 1
    err = capsys.readouterr().err
    assert "error: cannot resume" in err and "stage small changed (steps 4 -> 5)" in err
    # a change to the stage still to train is fine
    big = dataclasses.replace(plan.stages[1], steps=5)
    assert run_plan(dataclasses.replace(plan, stages=(plan.stages[0], big)), out, resume=True, device="cpu") == 0


def test_tree_children_start_from_the_parent_end(tmp_path, corpus):
    s = Shape(depth=1, width=32, heads=2, ffn=64, len=16)
    plan = make_plan([("root", None, s, 3), ("deep", "root", dataclasses.replace(s, depth=2), 2),
                      ("wide", "root", dataclasses.replace(s, width=64, heads=4), 2)],
                     {"deep": (OpUse("depth", "zero", preservation="approximate"),),
                      "wide": (OpUse("width", "stack", preservation="exact"),)},
                     train=train_spec(on_grow="carry", lr_on_grow="continue"))
    out = tmp_path / "out"
    assert run_plan(on_corpus(plan, corpus), out, resume=False, device="cpu") == 0
    rows = read_metrics(out / "metrics.jsonl")
    growth = {r["stage"]: r for r in rows if r["kind"] == "growth"}
    assert growth["deep"]["eval_loss_before"] == growth["wide"]["eval_loss_before"]
    assert abs(growth["wide"]["delta"]) < 1e-4  # an exact operator
    train = [r for r in rows if r["kind"] == "train"]
    assert [(r["stage"], r["step"]) for r in train] == [("root", 1), ("root", 2), ("root", 3), ("deep", 4),
                                                       ("deep", 5), ("wide", 4), ("wide", 5)]
    assert train[3]["tokens"] == train[5]["tokens"]  # each child continues the same stream position
    deep, wide = (ck.find_stage_end(out / "checkpoints", n) for n in ("deep", "wide"))
    assert deep.state["stream"] == wide.state["stream"]
    assert (out / "final" / "deep" / "config.json").exists() and (out / "final" / "wide" / "config.json").exists()
