"""The MLM/LM head's cost around its GEMMs: runtime/linear_ce.py against the unfused autograd path,
and the two op choices inside it, timed in the same run on this machine's CPU.

    flock /tmp/timing.lock .venv/bin/python benchmarks/head_speed.py [--threads 1] [--rounds 30]

Shapes (N predicted tokens x d -> V): the quickstart's (schedules/base.grow: batch 32 x 19 masked
tokens, width 128, vocab 4096) and a BERT-base-shaped one (batch 16 x 19, width 768, vocab 8192).
Rows, forward + backward of one loss, median ms:
- `GEMMs alone`: the head's three matrix products (logits, grad_h, grad_w) and nothing else: the floor;
- `unfused`: `F.cross_entropy(F.linear(h, W, b).float(), t)` under autograd, what a model would write;
- `linear_cross_entropy`: the runtime's fused head (in bf16 with the kernel runtime/c_kernels.py
  chose for this process: its C kernel where it is built, else torch's ops);
and, on the (N, V) fp32 and bf16 tensors alone, the loss rows, gradient and column sums from
torch's ops against runtime/head_ce.c (`softmax_cross_entropy`), and the torch ops linear_ce.py
chose against the ones it replaced: `exp(logp, out=<bf16>)` vs `softmax(z)` in bf16, and
`scatter_` vs `index_put_` at the targets.
The variants take turns, one call each per round, so a noisy neighbour slows all of them alike.
The bf16 head rows run where the CPU has fast bf16 (--bf16, as in trainer_speed.py): without AMX or
AVX512-BF16 a bf16 GEMM runs at about 1 GFLOP/s and one round of them takes seconds.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from model_speed import bench  # noqa: E402  (median seconds per call, the variants taking turns)
from trainer_speed import add_bf16_option, cpu_op_setup  # noqa: E402

SHAPES = {"quickstart": (32 * 19, 128, 4096), "bert-base": (16 * 19, 768, 8192)}  # (N, d, V)


def head_calls(n: int, d: int, v: int, precision: str) -> dict:
    import torch
    import torch.nn.functional as F

    from growlang.runtime.linear_ce import linear_cross_entropy

    g = torch.Generator().manual_seed(0)
    h = torch.randn(n, d, generator=g, requires_grad=True)
    w = (torch.randn(v, d, generator=g) * d ** -0.5).requires_grad_()
    b = torch.zeros(v, requires_grad=True)
    t = torch.randint(0, v, (n,), generator=g)
    low = torch.bfloat16 if precision == "bf16" else torch.float32

    def amp():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16")

    def fwd_bwd(loss_of):
        def call():
            h.grad = w.grad = b.grad = None
            with amp():
                loss = loss_of()
            loss.backward()
        return call

    hl, wl = h.detach().to(low), w.detach().to(low)
    gl = torch.softmax(hl @ wl.t(), -1)

    def gemms():
        hl @ wl.t(), gl @ wl, gl.t() @ hl

    return {"GEMMs alone": gemms,
            "unfused": fwd_bwd(lambda: F.cross_entropy(F.linear(h, w, b).float(), t)),
            "linear_cross_entropy": fwd_bwd(lambda: linear_cross_entropy(h, w, b, t))}


def op_calls(n: int, v: int) -> dict:
    import torch

    from growlang.runtime import head_kernel as hk
    from growlang.runtime.c_kernels import c_kernels

    g = torch.Generator().manual_seed(0)
    z32 = torch.randn(n, v, generator=g) * 3
    z = z32.bfloat16()
    logp = torch.log_softmax(z, -1, dtype=torch.float32)
    out = torch.empty(n, v, dtype=torch.bfloat16)
    t = torch.randint(0, v, (n,), generator=g)
    at = torch.arange(n) * v + t
    src = torch.full((n, 1), -0.5, dtype=torch.bfloat16)
    kernel = c_kernels()
    calls = {}
    for label, logits in (("fp32", z32), ("bf16", z)):
        calls[f"softmax_cross_entropy {label}: torch ops"] = lambda x=logits: hk.torch_softmax_cross_entropy(x, t)
        if kernel.lib is not None:
            calls[f"softmax_cross_entropy {label}: {kernel.name}"] = lambda x=logits: hk.softmax_cross_entropy(x, t, kernel)
    return calls | {"exp(logp, out=<bf16>)": lambda: torch.exp(logp, out=out),
            "softmax(z) bf16": lambda: torch.softmax(z, -1),
            "scatter_ at targets": lambda: out.scatter_(1, t[:, None], src),
            "index_put_ at targets": lambda: out.view(-1).index_put_((at,), src.view(-1))}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, of {', '.join(SHAPES)}")
    add_bf16_option(p)
    a = p.parse_args(argv)
    names = a.shapes.split(",")
    if bad := [s for s in names if s not in SHAPES]:
        p.error(f"--shapes: unknown {', '.join(bad)}; choose from {', '.join(SHAPES)}")
    from growlang.runtime.c_kernels import c_kernels

    with_bf16, header, note = cpu_op_setup(a.threads, a.bf16, "head rows")
    print(f"{header}; medians of {a.rounds} rounds, ms; {c_kernels().describe()}")
    if note:
        print(note)
    for name in names:
        n, d, v = SHAPES[name]
        print(f"\n{name}: N={n} predicted tokens, d={d}, V={v}")
        print(f"{'precision':<10} {'variant':<24} {'ms':>7} {'vs unfused':>10} {'beyond GEMMs':>13}")
        for precision in ("fp32", "bf16") if with_bf16 else ("fp32",):
            m = bench(head_calls(n, d, v, precision), 3, a.rounds)
            for k, s in m.items():
                print(f"{precision:<10} {k:<24} {s * 1e3:7.2f} {m['unfused'] / s:9.2f}x "
                      f"{(s - m['GEMMs alone']) * 1e3:11.2f}ms")
        m = bench(op_calls(n, v), 3, a.rounds)
        print(f"{'(N, V) op':<44} {'ms':>7}")
        for k, s in m.items():
            print(f"{k:<44} {s * 1e3:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
