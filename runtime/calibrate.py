"""`growlang calibrate`: time real training steps on this device and fit the step cost model.

Each grid point is a one-stage schedule compiled by the front end and trained by the runtime's own
Trainer (model, AdamW, gradient clipping, the MLM batch builder) on a synthetic token stream, so
the profile follows the trainer as it changes. The cost model and its fit live in the torch-free
growlang/time_model.py; `growlang check --profile` reads the JSON written here (docs/time.md).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from growlang.compiler import compile_text
from growlang.families import FAMILIES
from growlang.runtime.ceiling import device_name
from growlang.runtime.data import Specials, TokenStream
from growlang.runtime.errors import UserError, exit_code_of
from growlang.runtime.metrics import MetricsLog
from growlang.runtime.precision import resolve as resolve_precision
from growlang.runtime.run import resolve_device
from growlang.runtime.trainer import Trainer
from growlang.run_times import stage_times
from growlang.time_model import (SCHEMA, ProfileError, check_enough_shapes, features, fit, precision_warning, predict,
                                 read_profile, render, stage_step_shape)

VOCAB = 4096
# (depth, width, ffn, len, pool, batch[, family]): widths, FFN ratios, lengths and batches spread so
# that each feature of the cost model varies independently of the others; two small GPT-2 points so
# a decoder's step (every position predicted, no pooling) is in the fit. --quick keeps every other row.
GRID = [
    (1, 64, 128, 64, 1, 16), (2, 64, 256, 128, 1, 16), (2, 128, 256, 64, 1, 32), (4, 128, 512, 128, 1, 16),
    (2, 128, 512, 128, 2, 32), (1, 256, 512, 64, 1, 16), (2, 256, 1024, 128, 1, 8), (4, 256, 512, 64, 1, 16),
    (3, 192, 768, 128, 1, 16), (2, 192, 384, 256, 2, 8), (6, 128, 256, 64, 1, 32), (2, 320, 1280, 64, 1, 16),
    (2, 128, 512, 64, 1, 16, "gpt2"), (3, 192, 768, 128, 1, 8, "gpt2"),
]
TIMED_STEPS, WARMUP_STEPS = 6, 2


def schedule_text(depth: int, width: int, ffn: int, length: int, pool: int, batch: int, family: str,
                  precision: str) -> str:
    heads = max(1, width // 64)
    grow = "" if pool == 1 else "; grow len by pool"
    child = "" if pool == 1 else f"\nstage b: len={length * pool} steps=1"
    mask = " mask=0.15" if FAMILIES[family].objective == "mlm" else ""
    return (f"model {family} {{ vocab={VOCAB} head_dim={width // heads} max_len={length * pool} dropout=0 }}\n"
            f"data {{ corpus=builtin tokenizer=builtin{mask} }}\n"
            f"train {{ batch={batch} lr=1e-4 warmup=1 precision={precision} seed=0 eval_batches=1 }}\n"
            f"stage a: depth={depth} width={width} ffn={ffn} len={length} steps=1000 {grow}{child}\n")


def synthetic_stream(objective: str) -> TokenStream:
    special = (0, 1, 2, 3, 4)  # pad, unk, cls, sep, mask: the builtin tokenizer's order
    ids = np.random.default_rng(0).integers(len(special), VOCAB, size=1 << 20, dtype=np.int64)
    return TokenStream(ids, 0, Specials(VOCAB, 2, 3, 4, special), salt="calibrate", objective=objective)


def measure(point: tuple, precision: str, device: torch.device, work: Path) -> dict:
    """Median seconds of one optimizer step of the grid point's first stage."""
    *shape, family = point if len(point) == 7 else (*point, "bert")
    compiled = compile_text(schedule_text(*shape, family, precision), "<calibrate>.grow")
    if compiled.plan is None:  # the grid is ours: a diagnostic here is a bug in it
        raise RuntimeError(f"calibration grid point {point} does not compile: {compiled.diagnostics}")
    plan = compiled.plan
    log = MetricsLog(work / "metrics.jsonl")
    try:
        trainer = Trainer(plan, work, synthetic_stream(FAMILIES[family].objective), [], device, log)
        trainer.start_root(0)
        times = []
        for i in range(WARMUP_STEPS + TIMED_STEPS):
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            trainer.step()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if i >= WARMUP_STEPS:
                times.append(time.perf_counter() - start)
    finally:
        log.close()
    stage = plan.stages[0]
    return {"depth": point[0], "width": point[1], "ffn": point[2], "len": point[3], "pool": point[4],
            "batch": point[5], "family": family, "features": features(stage_step_shape(plan, stage)),
            "seconds": statistics.median(times)}


def calibrate(device: str = "auto", precision: str = "fp32", quick: bool = False,
              progress=print) -> dict:
    dev = resolve_device(device)
    resolved = resolve_precision(precision, dev)  # fp16 off CUDA is refused here, before any timing
    progress(resolved.describe())
    precision = resolved.name  # the profile records what was timed, `auto` resolved
    grid = GRID[::2] if quick else GRID
    rows = []
    with tempfile.TemporaryDirectory(prefix="growlang-calibrate-") as tmp:
        for n, point in enumerate(grid, 1):
            work = Path(tmp) / str(n)
            work.mkdir()
            rows.append(measure(point, precision, dev, work))
            progress(f"[{n}/{len(grid)}] depth {point[0]} width {point[1]} ffn {point[2]} len {point[3]} "
                     f"pool {point[4]} batch {point[5]} {rows[-1]['family']}: {rows[-1]['seconds'] * 1e3:.1f} ms/step")
    for r in rows:
        r["source"] = "grid"
    coef, quality = fit_summary(rows)
    return {"schema": SCHEMA, "device": device_name(dev), "device_type": dev.type, "torch": torch.__version__,
            "precision": precision, "threads": torch.get_num_threads(), "quick": quick,
            "coefficients": coef, "fit": quality, "measurements": rows}


def fit_summary(rows: list[dict]) -> tuple[dict, dict]:
    """(coefficients, fit errors) of measurement rows, grid and run ones alike."""
    coef = fit([r["features"] for r in rows], [r["seconds"] for r in rows])
    errors = [predict(coef, r["features"]) / r["seconds"] - 1 for r in rows]
    runs = [abs(e) for e, r in zip(errors, rows) if r.get("source") == "run"]
    return coef, {"max_abs_rel_error": max(abs(e) for e in errors),
                  "mean_abs_rel_error": sum(abs(e) for e in errors) / len(errors),
                  **({"runs_mean_abs_rel_error": sum(runs) / len(runs)} if runs else {})}


def refit(folders: list[str], base: dict | None, base_source: str | None, base_path: str, device: str,
          warn=print) -> tuple[dict, list]:
    """A profile refitted with the measured stages of `folders` (runtime/metrics.py records), with
    `base`'s measurements when given (a run already in it is replaced); (profile, stage times)."""
    measured, precisions = [], set()
    for folder in folders:
        plan, times = stage_times(folder)
        precisions.add(plan.train.precision)
        if base is not None:
            for w in precision_warning(base, plan.train.precision, f"the run {folder}", base_source):
                warn(render(w, base_source, base_path))
        measured += times
    if base is None:
        dev = resolve_device(device)  # a profile from runs alone describes this machine, as calibrate's does
        if len(precisions) > 1:
            raise ProfileError("E503", f"the runs train at different precisions ({', '.join(sorted(precisions))})",
                               "a profile times one precision: refit each precision's runs into its own profile",
                               " ".join(folders))
        precision = resolve_precision(precisions.pop(), dev).name
        base = {"schema": SCHEMA, "device": device_name(dev), "device_type": dev.type, "torch": torch.__version__,
                "precision": precision, "threads": torch.get_num_threads(), "quick": False, "measurements": []}
    again = {(str(Path(t.run).resolve()), t.stage) for t in measured}
    kept = [m for m in base["measurements"] if m.get("source") != "run"
            or (str(Path(m["run"]).resolve()), m["stage"]) not in again]
    rows = kept + [t.row() for t in measured]
    check_enough_shapes(rows, " ".join(folders))
    coef, quality = fit_summary(rows)
    return {**base, "coefficients": coef, "fit": quality, "measurements": rows,
            "runs": sorted({m["run"] for m in rows if m.get("source") == "run"})}, measured


def write_profile(profile: dict, out: Path) -> None:
    """Atomically: a half-written profile never sits at `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(profile, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)


def main(args: argparse.Namespace) -> int:
    return exit_code_of(lambda: _main(args))


def _main(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; name the profile file, e.g. {out / 'profile.json'}")
    if getattr(args, "from_runs", None):
        return main_from(args, out)
    profile = calibrate(args.device, args.precision, args.quick, progress=lambda m: print(m, flush=True))
    write_profile(profile, out)
    f = profile["fit"]
    print(f"{out}: {profile['device']}, torch {profile['torch']}, {profile['precision']}, "
          f"{profile['threads']} thread(s); fit over {len(profile['measurements'])} shapes: mean |error| "
          f"{f['mean_abs_rel_error']:.1%}, max {f['max_abs_rel_error']:.1%}")
    print(f"use it: growlang check FILE.grow --profile {out}")
    return 0


def main_from(args: argparse.Namespace, out: Path) -> int:
    """`calibrate --from RUN...`: refit --profile (or the profile at --out) with the runs' stages."""
    base_path = args.profile or (str(out) if out.is_file() else None)
    base, source = read_profile(base_path) if base_path else (None, None)
    profile, measured = refit(args.from_runs, base, source, base_path or str(out), args.device,
                              warn=lambda m: print(m, file=sys.stderr))
    write_profile(profile, out)
    f, grid = profile["fit"], sum(m.get("source") != "run" for m in profile["measurements"])
    print(f"{out}: refitted {'from ' + base_path if base_path else 'from the runs alone'} with {len(measured)} "
          f"stage(s) of {len(args.from_runs)} run(s)" + (f" and {grid} grid measurement(s)" if grid else "")
          + f"; mean |error| {f['mean_abs_rel_error']:.1%} (runs {f['runs_mean_abs_rel_error']:.1%}), "
          f"max {f['max_abs_rel_error']:.1%}")
    w = max(len("run"), *(len(t.run) for t in measured))
    print(f"  {'run':<{w}} {'stage':<8} {'steps':>6} {'measured s':>10} " + (f"{'before s':>9} " if base else "")
          + f"{'now s':>8} {'error':>7}")
    for t in measured:
        now = t.estimate(profile["coefficients"])
        before = f"{t.estimate(base['coefficients']):>9.1f} " if base else ""
        print(f"  {t.run:<{w}} {t.stage:<8} {t.steps:>6} {t.seconds:>10.1f} {before}{now:>8.1f} "
              f"{now / t.seconds - 1:>+7.1%}")
    print(f"use it: growlang check FILE.grow --profile {out}")
    return 0
