"""Estimated against measured training time: `growlang check --profile` vs `growlang run`.

    .venv/bin/python benchmarks/time_estimate.py [--profile cpu.json] [--out /tmp/...] [--tiny]

Calibrates this device (`growlang calibrate`, unless --profile names one), then runs the shipped
CPU quickstart (schedules/base.grow) and three schedules of its own that are not in the
calibration grid (other widths, lengths, pooling, width growth), each with the calibration's
thread count, and prints each stage's and each path's estimated and measured training-loop
seconds (summary.txt's `time`: the stage's steps and its evaluations) and the relative error.
Prints `lscpu`'s model name and the load average: a shared machine inflates measured times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from growlang.compiler import compile_text  # noqa: E402
from growlang.time_model import load_profile, plan_seconds  # noqa: E402

HEAD = ("model bert {{ vocab=4096 head_dim={hd} max_len=128 dropout=0 }}\n"
        "data {{ corpus=builtin tokenizer=builtin mask=0.15 }}\n"
        "train {{ batch={batch} lr=1e-3 warmup=10 seed=0 eval_every=50 eval_batches=4 log_every=50 on_grow=carry }}\n")
OWN = {
    "wide-ffn": HEAD.format(hd=64, batch=16)
    + "stage 1: depth=1 width=256 ffn=512 len=64 steps=150 ; grow depth by stack, ffn by stack\n"
      "stage 2: depth=2 ffn=1024 steps=100\n",
    "width-growth": HEAD.format(hd=32, batch=24)
    + "stage 1: depth=3 width=96 ffn=384 len=128 steps=150 ; grow width by interpolate, ffn by stack\n"
      "stage 2: width=192 ffn=768 steps=100\n",
    "pooled-compound": HEAD.format(hd=32, batch=16)
    + "stage 1: depth=2 width=160 ffn=320 len=32 steps=200 ; grow depth by stack, len by pool, ffn by stack\n"
      "stage 2: depth=4 ffn=640 len=128 steps=100\n",
}
TINY = {"tiny": HEAD.format(hd=32, batch=4) + "stage 1: depth=1 width=32 ffn=64 len=32 steps=4\n"}


def stage_times(summary: Path) -> dict[str, float]:
    """summary.txt's per-stage `time` column (the run's own measurement)."""
    times = {}
    for line in summary.read_text().splitlines():
        cols = line.split()
        if len(cols) >= 3 and cols[2].endswith("s") and cols[1].isdigit():
            times[cols[0]] = float(cols[2][:-1])
    return times


def error(estimated: float, measured: float) -> float:
    return estimated / measured - 1 if measured > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", help="a profile to use instead of calibrating now")
    ap.add_argument("--out", help="work folder (default: a temporary one)")
    ap.add_argument("--tiny", action="store_true", help="one 4-step schedule and a quick calibration: checks the script")
    args = ap.parse_args()
    work = Path(args.out or tempfile.mkdtemp(prefix="growlang-time-"))
    work.mkdir(parents=True, exist_ok=True)
    cpu = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if ln.startswith("Model name")), "?")
    print(f"cpu: {cpu}, {os.cpu_count()} cores; load average before: {os.getloadavg()}", flush=True)
    growlang = [sys.executable, "-m", "growlang"]
    profile_path = Path(args.profile) if args.profile else work / "profile.json"
    if not args.profile:
        subprocess.run([*growlang, "calibrate", "--out", str(profile_path), *(["--quick"] if args.tiny else [])],
                       check=True)
    profile = load_profile(str(profile_path))
    env = {**os.environ, "OMP_NUM_THREADS": str(profile["threads"])}
    schedules = TINY if args.tiny else {"base (shipped)": (ROOT / "schedules/base.grow").read_text(), **OWN}
    rows, paths = [], []
    for name, text in schedules.items():
        plan = compile_text(text, f"{name}.grow").plan
        est = plan_seconds(plan, profile)
        src = work / f"{name.split()[0]}.grow"
        src.write_text(text)
        out = work / f"run-{src.stem}"
        subprocess.run([*growlang, "run", str(src), "--out", str(out), "--device", "cpu"], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        measured = stage_times(out / "summary.txt")
        for stage, seconds in est["stages"].items():
            rows.append((name, stage, seconds, measured[stage]))
        for p in est["paths"]:
            paths.append((name, " -> ".join(p["stages"]), p["seconds"], sum(measured[s] for s in p["stages"])))
    print(f"\nprofile: {profile_path} ({profile['device']}, torch {profile['torch']}, {profile['precision']}, "
          f"{profile['threads']} thread(s); fit on its grid: mean |error| {profile['fit']['mean_abs_rel_error']:.1%})")
    print(f"\n{'schedule':<18} {'stage':<8} {'estimated s':>11} {'measured s':>10} {'error':>7}")
    for name, stage, e, m in rows:
        print(f"{name:<18} {stage:<8} {e:>11.1f} {m:>10.1f} {error(e, m):>+7.1%}")
    print(f"\n{'schedule':<18} {'path':<14} {'estimated s':>11} {'measured s':>10} {'error':>7}")
    for name, path, e, m in paths:
        print(f"{name:<18} {path:<14} {e:>11.1f} {m:>10.1f} {error(e, m):>+7.1%}")
    worst_stage = max(abs(error(e, m)) for *_, e, m in rows)
    worst_path = max(abs(error(e, m)) for *_, e, m in paths)
    print(f"\nworst stage error {worst_stage:.1%} (goal <= 30%), worst path error {worst_path:.1%} (goal <= 20%)")
    print(f"load average after: {os.getloadavg()}")
    (work / "time_estimate.json").write_text(json.dumps({"stages": rows, "paths": paths}, indent=1))


if __name__ == "__main__":
    main()
