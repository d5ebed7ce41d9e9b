"""Measured training-loop seconds of a `growlang run` folder, per stage, beside the cost model's
estimate of the same steps (issue 14: `calibrate --from` refits with them, `plot --profile` draws
them). Torch-free: it reads plan.json and metrics.jsonl (runtime/metrics.py documents the records).

A train record's `time` is cumulative along the stage's root-to-leaf path, and the trainer writes
one at every evaluation and at the stage's end, so a stage's measured seconds are its last
record's `time` minus its parent's final one, over its last record's `stage_step` steps and the
evaluations recorded among them. A partial stage (a run stopped or still going) counts the steps
it recorded.

With `train { compile=on }` the first step after each build traces and compiles; the trainer
writes its wall time as a `compile` record and counts it in `time`. The cost model fits training
steps only, so a stage's measured seconds leave those records' seconds out, and the compiled
steps with them (their own compute is in the compile record, as in the trainer's FLOP/s); both
stay available as `compile_seconds` and `compiled_steps`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from growlang.time_model import FEATURES, ProfileError, eval_features, features, predict, stage_step_shape

HINT = "pass the --out folder of a `growlang run` (it holds plan.json and metrics.jsonl)"


@dataclass(frozen=True)
class StageTime:
    run: str  # the run folder, as given
    stage: str
    steps: int  # optimizer steps recorded: all the stage's when `finished`
    evals: int  # evaluations among them
    seconds: float  # measured: the timed steps and the evaluations, no compile
    finished: bool
    features: dict[str, float]  # of the timed steps and the evaluations, per timed step (cost-model rows)
    compile_seconds: float = 0.0  # the stage's `compile` records, left out of `seconds`
    compiled_steps: int = 0  # the steps those records timed, left out of `timed_steps`

    @property
    def timed_steps(self) -> int:
        """The steps `seconds` measured: the recorded ones less the compiled ones."""
        return self.steps - self.compiled_steps

    def estimate(self, coefficients: dict[str, float]) -> float:
        """The cost model's seconds for the same timed steps and evaluations."""
        return predict(coefficients, self.features) * self.timed_steps

    def row(self) -> dict:
        """A profile measurement: per-step features and seconds, comparable with the grid's."""
        return {"source": "run", "run": self.run, "stage": self.stage, "steps": self.timed_steps,
                "evals": self.evals, "finished": self.finished, "features": self.features,
                "seconds": self.seconds / self.timed_steps}


def _unusable(folder: str, message: str, hint: str = HINT) -> ProfileError:
    return ProfileError("E503", message, hint, folder)


def read_run(folder: str):
    """(Plan, train records, compile records) of a run folder; E503 for anything that is not a run
    with timed steps."""
    from growlang.plan import Plan

    root = Path(folder)
    if not root.is_dir():
        raise _unusable(folder, f"{folder} is not a run folder (no such directory)")
    if not (root / "plan.json").is_file():
        raise _unusable(folder, f"{folder} is not a run folder: it has no plan.json")
    try:
        plan = Plan.from_dict(json.loads((root / "plan.json").read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _unusable(folder, f"{folder}/plan.json cannot be read by this growlang ({type(exc).__name__}: {exc})",
                        "it was written by another growlang version: rerun the schedule with this one") from None
    path = root / "metrics.jsonl"
    if not path.is_file():
        raise _unusable(folder, f"{folder} has no metrics.jsonl: the run has not trained a step yet")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except ValueError:
            raise _unusable(folder, f"{path} line {n} is not JSON",
                            "the file was edited or cut: rerun, or resume the run to rewrite it") from None
    train = [r for r in rows if isinstance(r, dict) and r.get("kind", "train") == "train"]
    if not train:
        raise _unusable(folder, f"{path} records no training step yet", "let the run train past its first "
                        "log_every steps, or pass another run")
    if any(not isinstance(r.get(k), (int, float)) for r in train for k in ("time", "stage_step")) or any(
            not isinstance(r.get("stage"), str) for r in train):
        raise _unusable(folder, f"{path}: train records lack `time` or `stage_step`",
                        "it was written by an older growlang: rerun the schedule with this one")
    compiled = [r for r in rows if isinstance(r, dict) and r.get("kind") == "compile"]
    if any(not isinstance(r.get(k), (int, float)) for r in compiled for k in ("seconds", "step")) or any(
            not isinstance(r.get("stage"), str) for r in compiled):
        raise _unusable(folder, f"{path}: compile records lack `seconds`, `step` or `stage`",
                        "it was written by an older growlang: rerun the schedule with this one")
    return plan, train, compiled


def stage_times(folder: str) -> tuple[object, list[StageTime]]:
    """(Plan, each stage's measured time) of a run folder, stages in plan order, the untrained left out."""
    plan, train, compiled = read_run(folder)
    names = {s.name for s in plan.stages}
    by_stage: dict[str, list[dict]] = {}
    for r in train:
        if r["stage"] not in names:
            raise _unusable(folder, f"{folder}/metrics.jsonl has steps of stage {r['stage']!r}, which plan.json "
                            "does not have", "the metrics are from another schedule: rerun it into an empty --out")
        by_stage.setdefault(r["stage"], []).append(r)
    out = []
    for s in plan.stages:
        rows = sorted(by_stage.get(s.name, []), key=lambda r: r["stage_step"])
        if not rows:
            continue
        start = 0.0
        if s.parent is not None:
            parent = by_stage.get(s.parent, [])
            if not parent:
                continue  # the parent's history is gone (a lost metrics file): nothing to subtract
            start = max(parent, key=lambda r: r["stage_step"])["time"]
        last = rows[-1]
        steps, evals = int(last["stage_step"]), sum(r.get("eval_loss") is not None for r in rows)
        # the compiles counted in `last["time"]`: a stopped run may have compiled after its last record
        mine = [r for r in compiled if r["stage"] == s.name and r["step"] <= last.get("step", float("inf"))]
        compile_seconds = sum(r["seconds"] for r in mine)
        seconds, timed = last["time"] - start - compile_seconds, steps - len(mine)
        if timed <= 0 or seconds <= 0:
            continue
        step = features(stage_step_shape(plan, s))
        ev = eval_features(plan, s)
        feats = {k: (timed * step[k] + evals * ev[k]) / timed for k in FEATURES}
        out.append(StageTime(folder, s.name, steps, evals, seconds, steps == s.steps, feats,
                             compile_seconds, len(mine)))
    if not out:
        raise _unusable(folder, f"{folder}/metrics.jsonl has no stage with a timed step",
                        "let the run train past its first log_every steps, or pass another run")
    return plan, out
