"""The gemm attention's row softmax: runtime/row_softmax.py (its C kernel, runtime/row_softmax.c)
against torch.softmax, forward only (the backward is torch's in both), timed in the same run.

    flock /tmp/timing.lock .venv/bin/python benchmarks/row_softmax_speed.py [--threads 1] [--rounds 50]

Shapes (B, h, T, T): the attention scores of the quickstart's stage 1 (pooled to 84 positions)
and stage 3 (128), schedules/base.grow, and a causal decoder's (8, 4, 512, 512); `--tiny` a small
one (seconds). The two take turns, one call each per round (benchmarks/model_speed.py `bench`),
in fp32 and in bf16 (softmax is not a matmul: bf16 runs on any CPU). Median ms, ns per element
and the ratio. Where no C kernels were built here (runtime/c_kernels.py), both rows are torch's.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_speed import bench, op_parser  # noqa: E402  (median seconds per call, the variants taking turns)
from trainer_speed import cpu_op_setup  # noqa: E402

SHAPES = {"quickstart stage 1": (32, 2, 84), "quickstart stage 3": (32, 2, 128), "decoder": (8, 4, 512)}
TINY = {"tiny": (2, 2, 21)}


def main(argv: list[str] | None = None) -> int:
    a = op_parser(__doc__).parse_args(argv)
    import torch

    from growlang.runtime.c_kernels import c_kernels
    from growlang.runtime.row_softmax import softmax_last_dim

    _, header, _ = cpu_op_setup(a.threads, "on")
    rounds = 3 if a.tiny else a.rounds
    print(f"{header}; medians of {rounds} rounds; {c_kernels().describe()}")
    print(f"{'shape':<20} {'(B, h, T, T)':<18} {'dtype':<9} {'variant':<20} {'ms':>7} {'ns/elem':>8} {'vs torch':>9}")
    g = torch.Generator().manual_seed(0)
    for name, (B, h, T) in (TINY if a.tiny else SHAPES).items():
        for dtype in (torch.float32, torch.bfloat16):
            s = (torch.randn(B, h, T, T, generator=g) * 3).to(dtype)
            m = bench({"torch.softmax": lambda: torch.softmax(s, -1), "softmax_last_dim": lambda: softmax_last_dim(s)},
                      3, rounds)
            base = m["torch.softmax"]
            for variant, sec in m.items():
                print(f"{name:<20} {str((B, h, T, T)):<18} {str(dtype).removeprefix('torch.'):<9} {variant:<20} "
                      f"{sec * 1e3:7.3f} {sec * 1e9 / s.numel():8.2f} {base / sec:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
