"""One layer's attention, forward and backward, per kernel (train.attention, runtime/attention.py) on
the shapes the project's schedules train, timed by the runtime's own probe (`time_kernels`: the
kernels alternated round by round, medians), in fp32 and, where the CPU has fast bf16, in bf16.

    flock /tmp/timing.lock .venv/bin/python benchmarks/attention_speed.py [--threads 1] [--repeat 3]

Shapes (micro batch, heads, length, head dim): the quickstart's stage 1 (pooled to 84 positions)
and stage 3 (schedules/base.grow), benchmarks/trainer_speed.py's 4 x 256 shape with its dropout,
and a causal decoder shape at length 512. --repeat N runs the probe N times and prints each
kernel's median of the N medians. To compare two versions of a kernel, run this script at both
commits, alternately (runtime/attention_gemm.py's docstring quotes such a run).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from trainer_speed import add_bf16_option, cpu_op_setup  # noqa: E402

SHAPES = {  # name: (micro batch, heads, length, head dim, causal, dropout)
    "quickstart stage 1": (32, 2, 84, 64, False, 0.0),
    "quickstart stage 3": (32, 2, 128, 64, False, 0.0),
    "4x256, dropout 0.1": (16, 4, 128, 64, False, 0.1),
    "decoder, causal": (8, 4, 512, 64, True, 0.0),
}
TINY = {"tiny": (2, 2, 16, 8, False, 0.0), "tiny, causal, dropout": (2, 2, 16, 8, True, 0.1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=1, help="probe runs per shape and dtype (median of them)")
    p.add_argument("--tiny", action="store_true", help="tiny shapes, for a smoke test")
    add_bf16_option(p)
    a = p.parse_args(argv)
    import torch

    from growlang.runtime import attention as attn

    with_bf16, header, note = cpu_op_setup(a.threads, a.bf16)
    print(f"{header}; ms per forward and backward of one layer's attention, median of {a.repeat} probe run(s)")
    if note:
        print(note)
    cpu = torch.device("cpu")
    dtypes = (torch.float32, torch.bfloat16) if with_bf16 else (torch.float32,)
    print(f"{'shape':<22} {'(B, h, T, d)':<27} {'dtype':<9} " + " ".join(f"{k:>10}" for k in attn.KERNELS))
    for name, (b, h, t, d, causal, dropout) in (TINY if a.tiny else SHAPES).items():
        shape = attn.AttentionShape(1, b, h, t, d, causal, dropout)
        for dtype in dtypes:
            kernels = attn.candidates(shape, dtype)
            runs = [attn.time_kernels(shape, dtype, cpu, kernels) for _ in range(a.repeat)]
            ms = {k: statistics.median(r[k] for r in runs) * 1e3 for k in kernels}
            cells = " ".join(f"{ms[k]:10.2f}" if k in ms else f"{'-':>10}" for k in attn.KERNELS)
            print(f"{name:<22} {shape.describe():<27} {str(dtype).removeprefix('torch.'):<9} {cells}")
    print("'-': a kernel that computes as another does there (runtime/attention.py candidates: math is fused "
          "under dropout on a CPU, fused-fp32 is fused in fp32)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
