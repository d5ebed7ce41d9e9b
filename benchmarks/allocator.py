"""Step time with glibc malloc's defaults against runtime/allocator.py's keep_freed_memory().

    .venv/bin/python benchmarks/allocator.py [--rounds 3] [--steps 15] [--threads 1]

Each round runs one subprocess per allocator setting, alternating, so a change of machine load
hits both alike; each subprocess times `--steps` optimizer steps (after 3 warm-ups) of the first
and the last stage of schedules/base.grow in fp32 and bf16 (benchmarks/one_step.py's step: the
trainer's loss, backward, clip and AdamW on a fixed random batch). Prints, per setting, precision
and stage, the median step time over rounds, GFLOP/s of the plan's FLOPs, and the small stage's
seconds per FLOP against the big stage's (issue 11's 1.15x goal), with the CPU model and its
measured matmul ceilings.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETTINGS = ("glibc default", "keep_freed_memory")


def child(keep: bool, steps: int, threads: int) -> dict:
    import torch

    sys.path.insert(0, str(HERE))
    from one_step import base_stages, make_step

    from growlang.runtime.allocator import keep_freed_memory

    torch.set_num_threads(threads)
    took = keep_freed_memory() if keep else False
    plan, stages = base_stages()
    out = {"took": took}
    for precision in ("fp32", "bf16"):
        for stage in (stages[0], stages[-1]):
            _, _, step = make_step(plan, stage, precision)
            for _ in range(3):
                step()
            times = []
            for _ in range(steps):
                t0 = time.perf_counter()
                step()
                times.append(time.perf_counter() - t0)
            out[f"{precision} {stage.name}"] = [statistics.median(times), stage.cost.flops_per_seq * stage.batch]
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=15)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--child", choices=("0", "1"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child is not None:
        print(json.dumps(child(a.child == "1", a.steps, a.threads)))
        return 0

    import torch

    from growlang.runtime.ceiling import measure
    from trainer_speed import device_model

    torch.set_num_threads(a.threads)
    cpu = torch.device("cpu")
    ceilings = {"fp32": measure(cpu, torch.float32) / 1e9, "bf16": measure(cpu, torch.bfloat16) / 1e9}
    runs = {s: [] for s in SETTINGS}
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    for _ in range(a.rounds):
        for keep, setting in enumerate(SETTINGS):
            r = subprocess.run([sys.executable, __file__, "--child", str(keep), "--steps", str(a.steps),
                                "--threads", str(a.threads)], capture_output=True, text=True, env=env, check=True)
            runs[setting].append(json.loads(r.stdout.strip().splitlines()[-1]))
    print(f"{device_model('cpu')}; matmul ceiling ({a.threads} thread(s)): fp32 {ceilings['fp32']:.0f}, "
          f"bf16 {ceilings['bf16']:.0f} GFLOP/s; torch {torch.__version__}; schedules/base.grow's first and last "
          f"stage, {a.steps} steps x {a.rounds} rounds, medians; load average at the end "
          f"{os.getloadavg()[0]:.2f}")
    print(f"keep_freed_memory took effect: {all(r['took'] for r in runs[SETTINGS[1]])}\n")
    print(f"{'allocator':<18} {'precision':<9} {'stage':<6} {'ms/step':>8} {'GFLOP/s':>8} {'of ceiling':>10} "
          f"{'s/FLOP vs last':>14}")
    ms = {}
    for setting in SETTINGS:
        for precision in ("fp32", "bf16"):
            keys = [k for k in runs[setting][0] if k.startswith(precision + " ")]
            per_flop = {}
            for k in keys:
                seconds = statistics.median(r[k][0] for r in runs[setting])
                per_flop[k] = seconds / runs[setting][0][k][1]
                ms[setting, k] = seconds
            for k in keys:
                gflops = 1 / per_flop[k] / 1e9
                print(f"{setting:<18} {precision:<9} {k.split()[1]:<6} {ms[setting, k] * 1e3:>8.1f} {gflops:>8.1f} "
                      f"{gflops / ceilings[precision]:>10.0%} {per_flop[k] / per_flop[keys[-1]]:>13.2f}x")
    print("\nstep time, keep_freed_memory / default: " + "; ".join(
        f"{k} {ms[SETTINGS[1], k] / ms[SETTINGS[0], k]:.2f}x" for k in runs[SETTINGS[0]][0] if k != "took"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
