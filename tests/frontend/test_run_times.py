"""A run's measured seconds per stage leave torch.compile out (the cost model fits steps only);
the compile seconds stay available beside them. Synthetic metrics, written where the trainer
writes its records (runtime/trainer.py: a `compile` record for the first step after each build)."""

import json

import pytest

from growlang.compiler import compile_text
from growlang.run_times import stage_times
from growlang.time_model import features, predict, stage_seconds, stage_step_shape

SCHEDULE = ("model bert { vocab=512 head_dim=32 max_len=64 }\n"
            "train { batch=4 eval_every=3 log_every=2 compile=on }\n"
            "stage a: depth=1 width=32 ffn=64 len=32 steps=6 ; grow depth by stack\nstage b: depth=2 steps=4\n")
STEP, EVAL = {"a": 0.01, "b": 0.03}, 0.005
COEF = {"step": 1e-3, "gflop": 0.02, "narrow": 0.01, "mparam": 1e-3, "melem": 1e-3}


def run_folder(folder, compiles, stop_at=None):
    """`compiles` maps (stage, stage step) to that step's compile seconds; `stop_at` global steps,
    then the run stops (its last compile may come after its last train record)."""
    plan = compile_text(SCHEDULE, "fake.grow").plan
    folder.mkdir()
    (folder / "plan.json").write_text(json.dumps(plan.to_dict()))
    rows, g, clock, t = [], 0, 0.0, plan.train
    for stage in plan.stages:
        for k in range(1, stage.steps + 1):
            if stop_at is not None and g >= stop_at:
                break
            g += 1
            compiled = compiles.get((stage.name, k))
            if compiled is not None:  # the step's wall time is the compile
                rows.append({"kind": "compile", "stage": stage.name, "step": g, "seconds": compiled, "compiles": 1})
            end, evaluated = k == stage.steps, k == stage.steps or g % t.eval_every == 0
            clock += (compiled if compiled is not None else STEP[stage.name]) + (EVAL if evaluated else 0.0)
            if end or evaluated or g % t.log_every == 0:
                rows.append({"kind": "train", "step": g, "stage": stage.name, "stage_step": k, "loss": 5.0,
                             "time": clock, **({"eval_loss": 5.0} if evaluated else {})})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return plan, folder


def test_compile_seconds_are_not_training_seconds(tmp_path):
    plan, run = run_folder(tmp_path / "r", {("a", 1): 2.0, ("b", 1): 1.5, ("b", 3): 0.5})  # b: a resume's build
    _, times = stage_times(str(run))
    assert [(t.stage, t.steps, t.compiled_steps, t.timed_steps, t.evals, t.finished) for t in times] == [
        ("a", 6, 1, 5, 2, True), ("b", 4, 2, 2, 2, True)]
    assert [t.seconds for t in times] == pytest.approx([5 * 0.01 + 2 * EVAL, 2 * 0.03 + 2 * EVAL])
    assert [t.compile_seconds for t in times] == pytest.approx([2.0, 2.0])
    for t, s in zip(times, plan.stages):  # the estimate is check's less the compiled steps
        one_step = predict(COEF, features(stage_step_shape(plan, s)))
        assert t.estimate(COEF) == pytest.approx(stage_seconds(plan, s, COEF) - t.compiled_steps * one_step)
        assert t.row()["steps"] == t.timed_steps and t.row()["seconds"] == pytest.approx(t.seconds / t.timed_steps)


def test_a_compile_after_the_last_record_is_not_subtracted(tmp_path):
    """Stopped at global step 7, the first of stage b: its compile is logged, its train record is not."""
    _, run = run_folder(tmp_path / "r", {("a", 1): 2.0, ("b", 1): 1.5}, stop_at=7)
    _, times = stage_times(str(run))
    assert [(t.stage, t.compile_seconds) for t in times] == [("a", 2.0)]


def test_without_compile_nothing_changes(tmp_path):
    plan, run = run_folder(tmp_path / "r", {})
    _, times = stage_times(str(run))
    assert [(t.compile_seconds, t.compiled_steps) for t in times] == [(0.0, 0), (0.0, 0)]
    assert [t.seconds for t in times] == pytest.approx([6 * 0.01 + 2 * EVAL, 4 * 0.03 + 2 * EVAL])
    assert [t.estimate(COEF) for t in times] == pytest.approx([stage_seconds(plan, s, COEF) for s in plan.stages])
