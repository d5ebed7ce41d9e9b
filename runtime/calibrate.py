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
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from growlang.compiler import compile_text
from growlang.runtime.data import Specials, TokenStream
from growlang.runtime.errors import UserError
from growlang.runtime.metrics import MetricsLog
from growlang.runtime.precision import resolve as resolve_precision
from growlang.runtime.run import resolve_device
from growlang.runtime.trainer import Trainer
from growlang.time_model import SCHEMA, features, fit, predict, stage_step_shape

VOCAB = 4096
# (depth, width, ffn, len, pool, batch): widths, FFN ratios, lengths and batches spread so that each
# feature of the cost model varies independently of the others. --quick keeps every other row.
GRID = [
    (1, 64, 128, 64, 1, 16), (2, 64, 256, 128, 1, 16), (2, 128, 256, 64, 1, 32), (4, 128, 512, 128, 1, 16),
    (2, 128, 512, 128, 2, 32), (1, 256, 512, 64, 1, 16), (2, 256, 1024, 128, 1, 8), (4, 256, 512, 64, 1, 16),
    (3, 192, 768, 128, 1, 16), (2, 192, 384, 256, 2, 8), (6, 128, 256, 64, 1, 32), (2, 320, 1280, 64, 1, 16),
]
TIMED_STEPS, WARMUP_STEPS = 6, 2


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def schedule_text(depth: int, width: int, ffn: int, length: int, pool: int, batch: int, precision: str) -> str:
    heads = max(1, width // 64)
    grow = "" if pool == 1 else "; grow len by pool"
    child = "" if pool == 1 else f"\nstage b: len={length * pool} steps=1"
    return (f"model bert {{ vocab={VOCAB} head_dim={width // heads} max_len={length * pool} dropout=0 }}\n"
            f"data {{ corpus=builtin tokenizer=builtin mask=0.15 }}\n"
            f"train {{ batch={batch} lr=1e-4 warmup=1 precision={precision} seed=0 eval_batches=1 }}\n"
            f"stage a: depth={depth} width={width} ffn={ffn} len={length} steps=1000 {grow}{child}\n")


def synthetic_stream() -> TokenStream:
    special = (0, 1, 2, 3, 4)  # pad, unk, cls, sep, mask: the builtin tokenizer's order
    ids = np.random.default_rng(0).integers(len(special), VOCAB, size=1 << 20, dtype=np.int64)
    return TokenStream(ids, 0, Specials(VOCAB, 2, 3, 4, special), salt="calibrate")


def measure(point: tuple, precision: str, device: torch.device, work: Path) -> dict:
    """Median seconds of one optimizer step of the grid point's first stage."""
    compiled = compile_text(schedule_text(*point, precision), "<calibrate>.grow")
    if compiled.plan is None:  # the grid is ours: a diagnostic here is a bug in it
        raise RuntimeError(f"calibration grid point {point} does not compile: {compiled.diagnostics}")
    plan = compiled.plan
    log = MetricsLog(work / "metrics.jsonl")
    try:
        trainer = Trainer(plan, work, synthetic_stream(), [], device, log)
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
            "batch": point[5], "features": features(stage_step_shape(plan, stage)),
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
                     f"pool {point[4]} batch {point[5]}: {rows[-1]['seconds'] * 1e3:.1f} ms/step")
    coef = fit([r["features"] for r in rows], [r["seconds"] for r in rows])
    errors = [predict(coef, r["features"]) / r["seconds"] - 1 for r in rows]
    return {"schema": SCHEMA, "device": device_name(dev), "device_type": dev.type, "torch": torch.__version__,
            "precision": precision, "threads": torch.get_num_threads(), "quick": quick,
            "coefficients": coef, "fit": {"max_abs_rel_error": max(abs(e) for e in errors),
                                          "mean_abs_rel_error": sum(abs(e) for e in errors) / len(errors)},
            "measurements": rows}


def write_profile(profile: dict, out: Path) -> None:
    """Atomically: a half-written profile never sits at `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(profile, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out)


def main(args: argparse.Namespace) -> int:
    try:
        out = Path(args.out)
        if out.is_dir():
            raise UserError(f"--out {out} is a folder; name the profile file, e.g. {out / 'profile.json'}")
        profile = calibrate(args.device, args.precision, args.quick, progress=lambda m: print(m, flush=True))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    write_profile(profile, out)
    f = profile["fit"]
    print(f"{out}: {profile['device']}, torch {profile['torch']}, {profile['precision']}, "
          f"{profile['threads']} thread(s); fit over {len(profile['measurements'])} shapes: mean |error| "
          f"{f['mean_abs_rel_error']:.1%}, max {f['max_abs_rel_error']:.1%}")
    print(f"use it: growlang check FILE.grow --profile {out}")
    return 0
