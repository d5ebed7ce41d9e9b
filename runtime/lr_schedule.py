"""Learning rate across stages: the three `lr_on_grow` policies of docs/operators.md.

Every schedule is a multiplier m in [min_lr, 1] times the stage's peak `lr`, evaluated at a
1-based position k = step + 1 of n steps, so no step is wasted at rate 0: the first step already
has a non-zero rate, and the decay reaches `min_lr * peak` just after the last step (with the
default min_lr=0 the last step still learns):

    warmup (k <= w):  m = k / w
    decay  (k >  w):  p = (k - w) / (n - w + 1)
        linear    m = 1 - (1 - min_lr) * p
        cosine    m = min_lr + (1 - min_lr) * (1 + cos(pi * p)) / 2
        constant  m = 1

- `restart`  (CompoundGrow): each stage warms up over min(warmup, steps) and decays over its own
  steps.
- `continue` (MSG): one schedule over the whole root-to-leaf path, unbroken by growth.
- `rewarm(N)` (staged training): the `continue` schedule, but after a growth the rate ramps
  linearly from 0 to where that schedule is over N steps, then follows it.

Global steps count along the path (a stage's first global step is the sum of its ancestors'
steps). In a tree, a shared ancestor's `continue` schedule spans its longest path, so siblings of
different lengths share the same ancestor schedule (each child then decays over its own path).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from growlang.plan import Plan, TrainSpec


def multiplier(k: int, total: int, warmup: int, decay: str, min_lr: float) -> float:
    """Schedule multiplier at 1-based position k of `total` steps (see the module docstring)."""
    w = min(warmup, total)
    if w > 0 and k <= w:
        return k / w
    if decay == "constant" or total <= w:
        return 1.0
    p = min(1.0, max(0.0, (k - w) / (total - w + 1)))
    if decay == "linear":
        return 1.0 - (1.0 - min_lr) * p
    if decay == "cosine":
        return min_lr + (1.0 - min_lr) * 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"unknown decay {decay!r}")


@dataclass(frozen=True)
class StageSchedule:
    """The rate of one stage as a function of its own step (0-based)."""

    peak: float
    steps: int
    offset: int  # global step of this stage's first step
    path_total: int  # steps of the longest root-to-leaf path through this stage
    is_root: bool
    train: TrainSpec

    def lr(self, stage_step: int) -> float:
        t = self.train
        if t.lr_on_grow == "restart":
            m = multiplier(stage_step + 1, self.steps, t.warmup, t.decay, t.min_lr)
        else:
            m = multiplier(self.offset + stage_step + 1, self.path_total, t.warmup, t.decay, t.min_lr)
            if t.lr_on_grow == "rewarm" and not self.is_root and t.rewarm_steps > 0:
                m *= min(1.0, (stage_step + 1) / t.rewarm_steps)
            elif t.lr_on_grow not in ("continue", "rewarm"):
                raise ValueError(f"unknown lr_on_grow {t.lr_on_grow!r}")
        return self.peak * m


def offsets(plan: Plan) -> dict[str, int]:
    """Global step of each stage's first step: the steps of all its ancestors."""
    out: dict[str, int] = {}
    for s in plan.stages:  # topological order
        out[s.name] = 0 if s.parent is None else out[s.parent] + plan.stage(s.parent).steps
    return out


def path_totals(plan: Plan) -> dict[str, int]:
    """Steps of the longest root-to-leaf path through each stage."""
    off = offsets(plan)
    below: dict[str, int] = {}  # longest run of steps from a stage's start to a leaf's end
    for s in reversed(plan.stages):
        kids = plan.children(s.name)
        below[s.name] = s.steps + max((below[c] for c in kids), default=0)
    return {name: off[name] + below[name] for name in off}


def stage_schedules(plan: Plan) -> dict[str, StageSchedule]:
    off, tot = offsets(plan), path_totals(plan)
    return {
        s.name: StageSchedule(s.lr, s.steps, off[s.name], tot[s.name], s.parent is None, plan.train)
        for s in plan.stages
    }
