"""Does `torch.compile` pay off on this CPU? Compile time and steady step time, compiled against
eager, of the runtime's model on a compound schedule's stages (default: schedules/base.grow).

    flock /tmp/timing.lock .venv/bin/python benchmarks/compile_speed.py [--threads 1] [--steps 8]

For each stage and precision: the eager step time (median of --steps after 2 warm-ups), the
compiled step time (likewise, after the first compiled step), the compile time (the first
compiled step's wall time minus one compiled step) and the break-even: the steps a stage must run
for the saving per step to repay the compile. docs/precision.md ("Compilation") quotes a run and
runtime/precision.py's `resolve_compile` bases `compile=auto` on it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from one_step import base_stages, make_step  # noqa: E402


def timed(step, n: int) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--precision", nargs="+", default=["fp32", "bf16"])
    p.add_argument("--schedule", type=Path, default=None)
    a = p.parse_args(argv)
    import torch

    from growlang.runtime.allocator import keep_freed_memory
    from growlang.runtime.ceiling import measure
    from trainer_speed import device_model

    torch.set_num_threads(a.threads)
    keep_freed_memory()  # as `growlang run` does on a CPU: no first-touch page faults in the figures
    plan, stages = base_stages(*([a.schedule] if a.schedule else []))
    cpu = torch.device("cpu")
    print(f"{device_model('cpu')}; matmul ceiling ({a.threads} thread(s)): fp32 {measure(cpu, torch.float32) / 1e9:.0f}, "
          f"bf16 {measure(cpu, torch.bfloat16) / 1e9:.0f} GFLOP/s")
    print(f"torch {torch.__version__}, {a.threads} thread(s), load {os.getloadavg()[0]:.2f}; "
          f"schedule {plan.name}, steps timed {a.steps}")
    print(f"{'stage':<6} {'prec':<5} {'eager s/step':>12} {'compiled':>9} {'speedup':>8} {'compile s':>9} "
          f"{'break-even steps':>16} {'loss eager/compiled (step 1)':>30}")
    for stage in stages:
        for precision in a.precision:
            torch._dynamo.reset()
            _, _, eager = make_step(plan, stage, precision)
            first_eager = eager()
            eager(), eager()
            t_eager = timed(eager, a.steps)
            _, _, comp = make_step(plan, stage, precision, compile=True)
            t0 = time.perf_counter()
            first_comp = comp()
            first = time.perf_counter() - t0
            t_comp = timed(comp, a.steps)
            compile_s = first - t_comp
            saving = t_eager - t_comp
            even = f"{compile_s / saving:.0f}" if saving > 0 else "never"
            print(f"{stage.name:<6} {precision:<5} {t_eager:>12.4f} {t_comp:>9.4f} {t_eager / t_comp:>7.2f}x "
                  f"{compile_s:>9.1f} {even:>16} {first_eager:>14.4f}/{first_comp:.4f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
