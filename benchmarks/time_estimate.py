"""Estimated against measured training time: `growlang check --profile` vs `growlang run`.

    .venv/bin/python benchmarks/time_estimate.py [--profile cpu.json] [--out /tmp/...] [--tiny]

Calibrates this device (`growlang calibrate`, unless --profile names one), then runs the shipped
CPU quickstarts (schedules/base.grow; the decoder schedules/gpt-tiny.grow) and three schedules of
its own that are not in the calibration grid (other widths, lengths, pooling, width growth), each
with the calibration's thread count, and prints each stage's and each path's estimated and measured training-loop
seconds (metrics.jsonl's `time`, read as `calibrate --from` reads it: growlang/run_times.py) and the
relative error. `--reuse` keeps the runs in --out whose every stage finished (a rerun after one failed).
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
from growlang.run_times import stage_times  # noqa: E402
from growlang.time_model import ProfileError, load_profile, plan_seconds  # noqa: E402

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
SHIPPED = ("base", "gpt-tiny")  # the shipped schedules that train on a 2-core CPU in minutes
TINY = {"tiny": HEAD.format(hd=32, batch=4) + "stage 1: depth=1 width=32 ffn=64 len=32 steps=4\n"}


def trained(out: Path, plan) -> dict[str, float] | None:
    """Each stage's measured seconds, when the run in `out` finished every stage, else None."""
    try:
        times = stage_times(str(out))[1]
    except ProfileError:
        return None
    done = {t.stage: t.seconds for t in times if t.finished}
    return done if set(done) == {s.name for s in plan.stages} else None


def error(estimated: float, measured: float) -> float:
    return estimated / measured - 1 if measured > 0 else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", help="a profile to use instead of calibrating now")
    ap.add_argument("--out", help="work folder (default: a temporary one)")
    ap.add_argument("--reuse", action="store_true", help="keep the finished runs already in --out")
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
    shipped = {f"{n} (shipped)": (ROOT / f"schedules/{n}.grow").read_text() for n in SHIPPED
               if (ROOT / f"schedules/{n}.grow").is_file()}
    schedules = TINY if args.tiny else {**shipped, **OWN}
    rows, paths = [], []
    for name, text in schedules.items():
        plan = compile_text(text, f"{name}.grow").plan
        est = plan_seconds(plan, profile)
        src = work / f"{name.split()[0]}.grow"
        src.write_text(text)
        out = work / f"run-{src.stem}"
        measured = trained(out, plan) if args.reuse else None
        if measured is None:
            done = subprocess.run([*growlang, "run", str(src), "--out", str(out), "--device", "cpu"], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            measured = trained(out, plan)
            if measured is None:  # training failed: nothing to compare
                sys.exit(f"{name}: growlang run failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
            if done.returncode:  # trained every stage, failed after (the export): the times stand
                print(f"note: {name}: run exited {done.returncode} after training every stage: "
                      f"{done.stderr.strip().splitlines()[-1] if done.stderr.strip() else ''}", flush=True)
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
