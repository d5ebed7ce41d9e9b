"""The pooled stage's embedding pooling, forward + backward: runtime/embedding_pool.py's one
autograd step against autograd of the plain formula it replaced, timed in the same run.

    flock /tmp/timing.lock .venv/bin/python benchmarks/pool_speed.py [--threads 1] [--rounds 50]

Shape: the quickstart's pooled first stage (schedules/base.grow: batch 32, len 128, width 128,
pool 2, 19 masked tokens a sequence); `--tiny` a small one (seconds). The two take turns, one call
each per round (benchmarks/model_speed.py `bench`), in fp32 and in bf16 (the embeddings are fp32
under autocast, so bf16 is only for a model run in it throughout). Median ms and the ratio.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_speed import bench, op_parser  # noqa: E402  (median seconds per call, the variants taking turns)
from trainer_speed import cpu_op_setup  # noqa: E402

SHAPES = {"quickstart": (32, 128, 128, 2, 19), "tiny": (2, 17, 8, 4, 3)}  # (B, T, d, k, P)


def pool_calls(B: int, T: int, d: int, k: int, P: int, dtype) -> dict:
    import torch

    from growlang.runtime.embedding_pool import plain_pool_embeddings, pool_embeddings

    g = torch.Generator().manual_seed(0)
    e = torch.randn(B, T, d, generator=g).to(dtype).requires_grad_()
    pos = torch.stack([torch.randperm(T - 1, generator=g)[:P] + 1 for _ in range(B)]).sort(1).values
    grad_out = torch.randn(B, 1 + -(-(T - 1) // k) + P, d, generator=g).to(dtype)

    def call(fn):
        return lambda: torch.autograd.grad(fn(e, pos, k), e, grad_out)

    return {"plain formula (autograd)": call(plain_pool_embeddings), "one autograd step": call(pool_embeddings)}


def main(argv: list[str] | None = None) -> int:
    a = op_parser(__doc__).parse_args(argv)
    import torch

    _, header, _ = cpu_op_setup(a.threads, "on")  # pooling is not a matmul: bf16 rows run on any CPU
    rounds = 3 if a.tiny else a.rounds
    B, T, d, k, P = SHAPES["tiny" if a.tiny else "quickstart"]
    print(f"{header}; medians of {rounds} rounds, ms")
    print(f"embeddings (B={B}, T={T}, d={d}), pool {k}, {P} masked a sequence: forward + backward")
    print(f"{'dtype':<9} {'variant':<26} {'ms':>7} {'vs plain':>9}")
    for dtype in (torch.float32, torch.bfloat16):
        m = bench(pool_calls(B, T, d, k, P, dtype), 3, rounds)
        base = m["plain formula (autograd)"]
        for name, s in m.items():
            print(f"{str(dtype).removeprefix('torch.'):<9} {name:<26} {s * 1e3:7.3f} {base / s:8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
