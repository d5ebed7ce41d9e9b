"""LR schedules for the three lr_on_grow policies, values at key steps."""

from __future__ import annotations

import math

import pytest

from growlang.plan import Shape
from growlang.runtime.lr_schedule import multiplier, offsets, path_totals, stage_schedules

try:
    from test_trainer_plans import make_plan, train_spec
except ImportError:  # tests collected as a package
    from tests.runtime.test_trainer_plans import make_plan, train_spec

S = Shape(depth=1, width=32, heads=2, ffn=64, len=16)


def two_stage(**kw):
    return make_plan([("a", None, S, 10), ("b", "a", S, 10)], {"b": ()},
                     train=train_spec(lr=1.0, warmup=4, min_lr=0.1, **kw))


def lrs(plan, name):
    sch = stage_schedules(plan)[name]
    return [sch.lr(i) for i in range(sch.steps)]


def test_multiplier_shapes():
    assert multiplier(1, 10, 4, "linear", 0.1) == pytest.approx(0.25)
    assert multiplier(4, 10, 4, "linear", 0.1) == pytest.approx(1.0)
    assert multiplier(10, 10, 4, "linear", 0.1) == pytest.approx(1 - 0.9 * 6 / 7)  # last step
    assert multiplier(11, 10, 4, "linear", 0.1) == pytest.approx(0.1)  # just after it: min_lr
    assert multiplier(10, 10, 4, "linear", 0.0) > 0  # no wasted step at rate 0
    assert multiplier(7, 10, 4, "linear", 0.1) == pytest.approx(1 - 0.9 * 3 / 7)
    assert multiplier(7, 10, 4, "cosine", 0.1) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 3 / 7)))
    assert multiplier(11, 10, 4, "cosine", 0.0) == pytest.approx(0.0, abs=1e-12)
    assert multiplier(9, 10, 4, "constant", 0.1) == 1.0
    assert multiplier(3, 3, 10, "linear", 0.1) == pytest.approx(1.0)  # warmup capped at length
    assert multiplier(1, 5, 0, "linear", 0.0) == pytest.approx(5 / 6)


def test_restart_each_stage_warms_and_decays():
    plan = two_stage(lr_on_grow="restart")
    a, b = lrs(plan, "a"), lrs(plan, "b")
    assert a == b
    assert a[0] == pytest.approx(0.25) and a[3] == pytest.approx(1.0) and a[-1] == pytest.approx(1 - 0.9 * 6 / 7)


def test_continue_is_one_schedule_over_the_path():
    plan = two_stage(lr_on_grow="continue")
    both = lrs(plan, "a") + lrs(plan, "b")
    expect = [multiplier(k, 20, 4, "linear", 0.1) for k in range(1, 21)]
    assert both == pytest.approx(expect)
    assert both[3] == pytest.approx(1.0) and both[-1] == pytest.approx(1 - 0.9 * 16 / 17)
    assert offsets(plan) == {"a": 0, "b": 10} and path_totals(plan) == {"a": 20, "b": 20}


def test_rewarm_ramps_back_to_the_global_schedule():
    plan = two_stage(lr_on_grow="rewarm", rewarm_steps=3)
    a, b = lrs(plan, "a"), lrs(plan, "b")
    g = [multiplier(k, 20, 4, "linear", 0.1) for k in range(1, 21)]
    assert a == pytest.approx(g[:10])
    assert b[0] == pytest.approx(g[10] / 3) and b[1] == pytest.approx(g[11] * 2 / 3)
    assert b[2:] == pytest.approx(g[12:])


def test_stage_lr_override_scales_the_peak():
    plan = two_stage(lr_on_grow="continue")
    import dataclasses

    plan = dataclasses.replace(plan, stages=(plan.stages[0], dataclasses.replace(plan.stages[1], lr=0.5)))
    assert lrs(plan, "b")[-1] == pytest.approx(0.5 * (1 - 0.9 * 16 / 17))


def test_tree_paths_use_the_longest_path_for_shared_ancestors():
    plan = make_plan([("r", None, S, 4), ("x", "r", S, 4), ("y", "r", S, 8)], {"x": (), "y": ()},
                     train=train_spec(lr_on_grow="continue"))
    assert offsets(plan) == {"r": 0, "x": 4, "y": 4}
    assert path_totals(plan) == {"r": 12, "x": 8, "y": 12}
