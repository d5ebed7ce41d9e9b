"""Seconds per training step from a calibration profile (issue 14; torch-free: it reads only JSON).

The cost model is linear in five features of one optimizer step, each with a physical reading:

    seconds/step = c_step                      fixed per-step overhead (Python, kernel launches)
                 + c_gflop   * G               matmul GFLOPs at the device's peak rate
                 + c_narrow  * G * 64 / d      the rate loss of narrow matmuls: 1/rate(d) = a + b/d
                 + c_mparam  * N               per-parameter work (AdamW update, grad zero, clip)
                 + c_melem   * E               elementwise work on activations (LayerNorm, GELU,
                                               softmax, cross-entropy), in millions of elements

G = training matmul FLOPs per step / 1e9 (growlang.accounting, 3 x forward), N = parameters / 1e6,
E = batch * (L*T*(d+f) + h*L*T^2 + P*V) / 1e6 with T the encoder length and P the masked positions.
The coefficients are fitted by non-negative least squares on relative error (`fit`).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from growlang.diagnostics import Diagnostic, Span, error, render_text, warning

SCHEMA = 1
FEATURES = ("step", "gflop", "narrow", "mparam", "melem")
NOWHERE = Span(0, 0, 0, 0)  # a profile diagnostic without a line: rendered with the file name alone


class ProfileError(ValueError):
    """A profile (or a run folder it is refitted from) that cannot be used: one E50x Diagnostic
    (growlang/diagnostics.py PROFILE_CODES) with the file's text, rendered like a schedule's."""

    def __init__(self, code: str, message: str, hint: str = "", display: str = "", source: str | None = None,
                 at: tuple[str, ...] = ()):
        super().__init__(message)
        self.display, self.source = display, source
        self.diagnostic = error(code, message, field_span(source, *at) or NOWHERE, hint)

    def render(self) -> str:
        return render(self.diagnostic, self.source, self.display)


def field_span(source: str | None, *keys: str) -> Span | None:
    """Where `"k1"`, then `"k2"` after it, ... is in a JSON text (the line a problem points at)."""
    if source is None or not keys:
        return None
    at = -1
    for key in keys:
        at = source.find(json.dumps(key), at + 1)
        if at < 0:
            return None
    line = source.count("\n", 0, at) + 1
    col = at - (source.rfind("\n", 0, at) + 1) + 1
    return Span(line, col, line, col + len(json.dumps(keys[-1])))


def render(d: Diagnostic, source: str | None, display: str) -> str:
    """A profile diagnostic: with the JSON line it is about when there is one, else the file alone."""
    if source is not None and d.span.line >= 1:
        return render_text([d], source, display)
    return "\n".join([f"{d.severity}[{d.code}]: {d.message}", f" --> {display}"]
                      + ([f"  = help: {d.hint}"] if d.hint else []) + [""])


RECALIBRATE = "make one with `growlang calibrate --out PROFILE.json` on the device you train on"


@dataclass(frozen=True)
class StepShape:
    """What the cost of one optimizer step depends on."""

    depth: int
    width: int
    heads: int
    ffn: int
    encoder_len: int
    predicted: int
    vocab: int
    batch: int
    flops: float  # training matmul FLOPs of the step
    params: int


def features(s: StepShape) -> dict[str, float]:
    g = s.flops / 1e9
    elements = s.batch * (s.depth * s.encoder_len * (s.width + s.ffn) + s.heads * s.depth * s.encoder_len ** 2
                          + s.predicted * s.vocab)
    return {"step": 1.0, "gflop": g, "narrow": g * 64 / s.width, "mparam": s.params / 1e6,
            "melem": elements / 1e6}


def predict(coefficients: dict[str, float], feats: dict[str, float]) -> float:
    return sum(coefficients[k] * feats[k] for k in FEATURES)


def fit(rows: list[dict[str, float]], seconds: list[float]) -> dict[str, float]:
    """Non-negative least squares on relative error (each row weighted by 1/seconds), by dropping
    the most negative coefficient and refitting until none is negative (Lawson-Hanson, simplified)."""
    import numpy as np  # lazy: only calibration fits

    if len(rows) != len(seconds) or not rows:
        raise ValueError("fit needs one measured time per feature row, at least one")
    y = np.asarray(seconds, dtype=float)
    X = np.array([[r[k] for k in FEATURES] for r in rows], dtype=float) / y[:, None]
    active = list(range(len(FEATURES)))
    while True:
        coef, *_ = np.linalg.lstsq(X[:, active], np.ones(len(y)), rcond=None)
        if (coef >= 0).all() or len(active) == 1:
            break
        del active[int(np.argmin(coef))]
    out = {k: 0.0 for k in FEATURES}
    for i, c in zip(active, coef):
        out[FEATURES[i]] = max(0.0, float(c))
    return out


def check_enough_shapes(rows: list[dict], display: str) -> None:
    """E503 unless the measurement rows hold at least one distinct step shape per coefficient."""
    shapes = {tuple(round(r["features"][k], 9) for k in FEATURES) for r in rows}
    if len(shapes) < len(FEATURES):
        raise ProfileError("E503", f"{len(shapes)} distinct step shape(s) measured; the cost model has "
                           f"{len(FEATURES)} coefficients and needs at least {len(FEATURES)}",
                           "add the grid's measurements (--profile PROFILE.json from `growlang calibrate`) or "
                           "runs of other shapes", display)


def check_profile(profile: object, display: str, source: str | None = None) -> dict:
    """The profile's fields, validated; a ProfileError (E501, E502) names the first bad one."""
    def bad(message: str, hint: str, *at: str) -> ProfileError:
        return ProfileError("E502", f"{display}: {message}", hint, display, source, at)

    if not isinstance(profile, dict):
        raise ProfileError("E501", f"{display}: a profile is a JSON object, this is a JSON {type(profile).__name__}",
                           RECALIBRATE, display, source)
    if profile.get("schema") != SCHEMA:
        raise bad(f"field 'schema' is {profile.get('schema')!r}, expected {SCHEMA}",
                  "the profile was written by another growlang: recalibrate with this one", "schema")
    for key in ("device", "torch", "precision"):
        if not isinstance(profile.get(key), str):
            raise bad(f"field {key!r} is missing or not a string", RECALIBRATE, key)
    coef = profile.get("coefficients")
    if not isinstance(coef, dict) or set(coef) != set(FEATURES):
        raise bad(f"field 'coefficients' must name exactly {', '.join(FEATURES)}", RECALIBRATE, "coefficients")
    for k, v in coef.items():
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
            raise bad(f"coefficients.{k} is {v!r}, expected a finite number >= 0",
                      "a fitted coefficient is never negative: recalibrate, or restore the file", "coefficients", k)
    for i, m in enumerate(profile.get("measurements", [])):
        ok = (isinstance(m, dict) and isinstance(m.get("features"), dict) and set(m["features"]) == set(FEATURES)
              and all(_finite(v) for v in m["features"].values()) and _finite(m.get("seconds"))
              and m["seconds"] > 0)
        if not ok:
            raise bad(f"measurements[{i}] needs `features` ({', '.join(FEATURES)}) and `seconds` > 0",
                      "calibrate --from refits from these rows: recalibrate, or restore the file", "measurements")
    return profile


def _finite(v: object) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and math.isfinite(v)


def stage_step_shape(plan, stage) -> StepShape:
    """One training step of `stage`, read from the Plan (shape, Reading, Cost resolved there)."""
    s, r = stage.shape, stage.reading
    return StepShape(s.depth, s.width, s.heads, s.ffn, r.encoder_len, r.predicted, plan.model.vocab,
                     stage.batch, stage.cost.flops_per_seq * stage.batch, stage.cost.params)


def evals_in_stage(plan, stage) -> int:
    """Evaluations inside the stage's training loop (runtime/trainer.py train_stage): one at every
    global step divisible by eval_every, and one at the stage end. Growth evals are outside it."""
    offset, parent = 0, stage.parent
    while parent is not None:
        p = plan.stage(parent)
        offset, parent = offset + p.steps, p.parent
    every = plan.train.eval_every
    periodic = 0 if every <= 0 else (offset + stage.steps) // every - offset // every
    ends_on_one = every > 0 and (offset + stage.steps) % every == 0
    return periodic + (0 if ends_on_one else 1)


def eval_features(plan, stage) -> dict[str, float]:
    """One evaluation: eval_batches forward passes of micro_batch sequences at eval_len. Forward
    only, so a third of a training step's matmul and elementwise work and no optimizer work."""
    from growlang.accounting import forward_flops_per_sequence, reading  # front end, no torch
    from growlang.families import family

    s, n = stage.shape, plan.train.micro_batch
    shape = dataclasses.replace(s, len=plan.eval_len)
    p = reading(plan.eval_len, plan.eval_len, 1, plan.data.mask, family(plan.model.family).objective).predicted
    fwd = forward_flops_per_sequence(plan.model, shape, plan.eval_len, p)
    one = features(StepShape(s.depth, s.width, s.heads, s.ffn, plan.eval_len, p, plan.model.vocab, n,
                             3.0 * fwd * n, 0))
    return {k: v * plan.train.eval_batches / 3.0 for k, v in one.items()}


def stage_seconds(plan, stage, coefficients: dict[str, float]) -> float:
    """Estimated seconds of the stage's training loop: its steps plus its evaluations."""
    return (stage.steps * predict(coefficients, features(stage_step_shape(plan, stage)))
            + evals_in_stage(plan, stage) * predict(coefficients, eval_features(plan, stage)))


def read_profile(path: str) -> tuple[dict, str]:
    """(profile, its text); a ProfileError E501 for a file that is not a JSON object."""
    try:
        source = open(path, encoding="utf-8").read()
    except OSError as exc:
        raise ProfileError("E501", f"cannot read profile {path}: {exc.strerror or exc}", RECALIBRATE, path) from None
    except UnicodeDecodeError:
        raise ProfileError("E501", f"{path} is not UTF-8 text", "a profile is the JSON `growlang calibrate` writes",
                           path) from None
    try:
        data = json.loads(source)
    except ValueError as exc:
        span = Span(exc.lineno, exc.colno, exc.lineno, exc.colno + 1) if isinstance(exc, json.JSONDecodeError) else None
        problem = ProfileError("E501", f"{path} is not JSON ({getattr(exc, 'msg', exc)})", RECALIBRATE, path, source)
        if span is not None:
            problem.diagnostic = dataclasses.replace(problem.diagnostic, span=span)
        raise problem from None
    return check_profile(data, path, source), source


def load_profile(path: str) -> dict:
    return read_profile(path)[0]


def this_machine() -> dict:
    """What a profile is compared with, without importing torch: the installed torch's version
    (package metadata) and this CPU's model name."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        torch_version = version("torch")
    except PackageNotFoundError:
        torch_version = None
    cpu = None
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        pass
    return {"torch": torch_version, "cpu": cpu}


def mismatch_warnings(profile: dict, here: dict | None = None, source: str | None = None) -> list[Diagnostic]:
    """A profile from another torch release (W501) or another CPU (W502) still estimates, with a
    warning pointing at the profile's field (`source`: its text)."""
    here = this_machine() if here is None else here
    found = []
    if here["torch"] and profile["torch"].split("+")[0] != here["torch"].split("+")[0]:
        found.append(warning("W501", f"the profile was measured with torch {profile['torch']}, this machine has "
                             f"{here['torch']}", field_span(source, "torch") or NOWHERE,
                             "recalibrate (`growlang calibrate`) for estimates you can trust"))
    if profile.get("device_type") == "cpu" and here["cpu"] and profile["device"] != here["cpu"]:
        found.append(warning("W502", f"the profile was measured on {profile['device']}, this machine is {here['cpu']}",
                             field_span(source, "device") or NOWHERE,
                             "its estimates are for that machine: calibrate this one to estimate here"))
    return found


def precision_warning(profile: dict, precision: str, what: str, source: str | None = None) -> list[Diagnostic]:
    """W503 when `what` (the schedule, a run) trains at another precision than the profile timed;
    `auto` resolves on the device at run time (runtime/precision.py), so any profile may match it."""
    if precision == "auto" or profile["precision"] == precision:
        return []
    return [warning("W503", f"the profile was measured at precision {profile['precision']}, {what} trains at "
                    f"{precision}", field_span(source, "precision") or NOWHERE,
                    f"recalibrate with --precision {precision}")]


def plan_seconds(plan, profile: dict, source: str | None = None) -> dict:
    """{"stages": {name: seconds}, "paths": [{"stages": [...], "seconds": s, ...}], "warnings":
    [Diagnostic]}; `source`, the profile's text, places the warnings on its lines."""
    coef = profile["coefficients"]
    stages = {s.name: stage_seconds(plan, s, coef) for s in plan.stages}
    warnings = (mismatch_warnings(profile, source=source)
                + precision_warning(profile, plan.train.precision, "the schedule", source))
    paths = []
    for p in plan.paths:
        seconds, baseline = sum(stages[n] for n in p.stages), baseline_seconds(plan, p, coef)
        paths.append({"stages": list(p.stages), "seconds": seconds, "baseline_seconds": baseline,
                      "time_saving": 1 - seconds / baseline, "time_speedup": baseline / seconds})
    return {"stages": stages, "paths": paths, "warnings": warnings}


def baseline_seconds(plan, path, coefficients: dict[str, float]) -> float:
    """The path's from-scratch baseline (the leaf model on the path's tokens, at the leaf's len and
    batch: Path.baseline_flops) in seconds: its steps at the leaf's step cost, plus an evaluation
    every eval_every steps and one at the end, as the trainer does."""
    leaf = plan.stage(path.stages[-1])
    step_flops = leaf.cost.flops_per_seq * leaf.batch
    steps = round(path.baseline_flops / step_flops)
    every = plan.train.eval_every
    evals = (steps // every if every > 0 else 0) + (0 if every > 0 and steps % every == 0 else 1)
    return (steps * predict(coefficients, features(stage_step_shape(plan, leaf)))
            + evals * predict(coefficients, eval_features(plan, leaf)))
