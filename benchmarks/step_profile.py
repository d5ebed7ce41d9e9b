"""Where one training step's time goes, on the small and the big stage of a compound schedule
(default: schedules/base.grow's first and last), and what AdamW's implementations cost there.

    flock /tmp/timing.lock .venv/bin/python benchmarks/step_profile.py [--threads 1] [--precision fp32] [--attention gemm]

Prints torch.profiler's top ops by self CPU time for one step (after two warm-ups) of each stage,
then the median optimizer-step time of AdamW's for-loop, foreach and fused implementations on that
stage's parameters and gradients. docs/precision.md ("Work around the matmuls") quotes a run;
runtime/trainer.py's FAST_ADAMW follows it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from one_step import base_stages, make_step  # noqa: E402


def adamw_times(model, opt, reps: int = 20) -> dict[str, float]:
    """Median seconds of one AdamW step per implementation, same groups and hyper-parameters."""
    import torch

    out = {}
    for name, kw in (("for-loop", {"foreach": False}), ("foreach", {"foreach": True}), ("fused", {"fused": True})):
        groups = [{k: v for k, v in g.items() if k not in ("foreach", "fused")} for g in opt.param_groups]
        o = torch.optim.AdamW(groups, **kw)
        o.step()
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            o.step()
            times.append(time.perf_counter() - t0)
        out[name] = statistics.median(times)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"))
    p.add_argument("--rows", type=int, default=15)
    p.add_argument("--attention", default="fused", help="train.attention's kernel (runtime/attention.py KERNELS)")
    a = p.parse_args(argv)
    import torch
    from torch.profiler import ProfilerActivity, profile

    from growlang.runtime.allocator import keep_freed_memory
    from growlang.runtime.attention import KERNELS, AttentionChoice

    if a.attention not in KERNELS:
        p.error(f"--attention {a.attention!r}: choose one of {', '.join(KERNELS)}")
    kernel = AttentionChoice(a.attention, a.attention, "--attention").kernel()
    kernel.__enter__()  # every step below runs in it, as a stage's steps do in the trainer

    torch.set_num_threads(a.threads)
    keep_freed_memory()  # as `growlang run` does on a CPU: no first-touch page faults in the figures
    plan, stages = base_stages()
    for stage in (stages[0], stages[-1]):
        model, opt, step = make_step(plan, stage, a.precision)
        step(), step()
        times = []
        for _ in range(5):
            t0 = time.perf_counter()
            step()
            times.append(time.perf_counter() - t0)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        sh = stage.shape
        print(f"\n== stage {stage.name}: depth {sh.depth} width {sh.width} ffn {sh.ffn} len {sh.len} "
              f"(encoder {stage.reading.encoder_len}), batch {stage.batch}, {a.precision}, attention {a.attention}, "
              f"{a.threads} thread(s); "
              f"step {statistics.median(times) * 1e3:.1f} ms (median of 5); top ops by self CPU time")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=a.rows))
        ad = adamw_times(model, opt)
        print("AdamW step (median of 20): " + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in ad.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
