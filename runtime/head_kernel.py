"""The head's softmax cross-entropy on fp32 or bf16 logits as a C kernel (runtime/head_ce.c), where
the CPU runs it faster than torch's ops: `softmax_cross_entropy` runs it with the library
runtime/c_kernels.py chose for this process (`c_kernels()`), else torch's ops.

Why a kernel of our own: runtime/linear_ce.py needs three things from the (N, V) logits: each row's
loss, softmax - onehot in the logits' type for the backward GEMMs, and the column sums for the bias
gradient. torch has them only as three passes, two of them evaluating exp over all N x V elements
(an fp32 log_softmax, a softmax) and one summing the (N, V) gradient. That work is the same in every
stage of a grown model, because every stage predicts the same tokens, so it makes the small first
stage slower per FLOP than the last (issue 11). The kernel evaluates exp once per element, reads
each row from cache, and writes the gradient and the column sums in the same pass. Measured by
benchmarks/head_speed.py (docs/precision.md, "The head's C kernel").

How it is built and when torch's ops run instead: runtime/c_kernels.py.

Numerics: torch's formulas in fp32, except that the loss and p_t - 1 come from the sum of the
non-target terms (runtime/head_ce.c), so confident rows keep fp32's relative precision where
torch's path keeps about 1e-7 absolute. tests/runtime/test_head_kernel.py bounds the differences
(loss rows to fp32 rounding, gradient elements within one bf16 step of torch's, 1 in 10^3 or
fewer apart; fp32 within a few fp32 ulps) and checks confident rows against float64. The bias
gradient is the fp32 sum of the gradient (for bf16 logits torch's path rounds that sum to bf16).
Deterministic for a given machine and thread count, so a run resumed on the same machine repeats
its losses bit for bit, in fp32 (the resume guarantee, docs/precision.md) as in bf16.
"""

from __future__ import annotations

import torch

from growlang.runtime.c_kernels import CKernels, c_kernels, row_parts, run_rows

KERNEL_ENTRY = {torch.bfloat16: "head_ce_bf16", torch.float32: "head_ce_f32"}  # logits' dtype -> head_ce.c


def self_check(kernel: CKernels) -> str | None:
    """None when the head's kernel matches the torch path on a small case in both types (a
    miscompiled library is not used): one of runtime/c_kernels.py's checks."""
    g = torch.Generator().manual_seed(0)
    z32 = torch.randn(5, 3 * kernel.lanes + 3, generator=g) * 4
    t = torch.tensor([0, 7, 3 * kernel.lanes + 2, 11, 1])
    worst = 0.0
    for z, bound in ((z32.bfloat16(), 1e-2), (z32, 1e-5)):
        loss, grad, colsum = softmax_cross_entropy(z, t, kernel)
        ref_loss, ref_grad, ref_colsum = torch_softmax_cross_entropy(z, t)
        worst = max(float((loss - ref_loss).abs().max()), float((grad.float() - ref_grad.float()).abs().max()),
                    float((colsum - ref_colsum).abs().max()))
        if not worst < bound:
            return f"head: largest difference {worst:.3g} for {str(z.dtype).removeprefix('torch.')} logits"
    return None


def torch_softmax_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, column_sums: bool = True):
    """(loss per row fp32, softmax - onehot in logits' dtype, its column sums fp32, or None without
    `column_sums`: a head with no bias needs none): torch's ops."""
    n, v = logits.shape
    at_target = torch.log_softmax(logits, -1, dtype=torch.promote_types(logits.dtype, torch.float32)).gather(
        1, targets[:, None])
    # softmax(z) in the backward GEMMs' dtype, as autograd's fp32 one rounded to it: torch's softmax
    # reads bf16, computes in fp32 and rounds once (tests/runtime/test_linear_ce.py). Not
    # exp(logp, out=<bf16>): its dtype-changing output is a slower loop (benchmarks/head_speed.py)
    grad = torch.softmax(logits, dim=-1)
    # then p - 1 at the targets, from fp32; index_put_ on the flat view: scatter_ copies the whole
    # (N, V) tensor twice on CPU (torch 2.13's profiler), index_put_ writes the N elements
    at = torch.arange(n, device=targets.device) * v + targets
    grad.view(-1).index_put_((at,), (at_target.exp() - 1.0).to(grad.dtype).view(-1))  # softmax - onehot
    # the column sums in the gradient's dtype, as autograd's addmm backward makes the bias gradient
    # (summing a bf16 tensor accumulates in fp32; an fp32 result would first copy all N x V to fp32)
    return -at_target.view(-1), grad, grad.sum(0).float() if column_sums else None


# Outside torch.compile's graph: it calls a C library through ctypes, and under `compile=on` dynamo
# would otherwise trace into c_kernels()'s build and self-check (lru_cache, stat and lock warnings)
# only to break the graph at the ctypes call anyway.
@torch.compiler.disable
def softmax_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, kernel: CKernels | None = None,
                          column_sums: bool = True):
    """torch_softmax_cross_entropy's three results; by the C kernel where `kernel` (default: this
    process's) is one and the logits are bf16 or fp32 on the CPU (its column sums come with the same
    pass), else by torch's ops."""
    entry = KERNEL_ENTRY.get(logits.dtype)
    if logits.device.type != "cpu" or entry is None or logits.dim() != 2:
        return torch_softmax_cross_entropy(logits, targets, column_sums)  # a GPU run never builds the kernel
    kernel = kernel or c_kernels()
    if kernel.lib is None:
        return torch_softmax_cross_entropy(logits, targets, column_sums)
    n, v = logits.shape
    logits, targets = logits.contiguous(), targets.to(torch.int64).contiguous()
    if n and not (0 <= int(targets.min()) and int(targets.max()) < v):  # the kernel indexes rows by them
        raise IndexError(f"target out of range for {v} classes: {int(targets.min())}..{int(targets.max())}")
    parts = row_parts(n)
    grad = torch.empty_like(logits)
    loss = torch.empty(n, dtype=torch.float32)
    colsums = torch.zeros(parts, v, dtype=torch.float32)
    bufs = torch.empty(parts, -(-v // kernel.lanes) * kernel.lanes, dtype=torch.float32)
    entry = getattr(kernel.lib, entry)

    def rows(p: int, r0: int, r1: int) -> None:  # each part its own buffer and column sums
        entry(logits.data_ptr(), r0, r1, v, targets.data_ptr(), grad.data_ptr(), loss.data_ptr(),
              colsums[p].data_ptr(), bufs[p].data_ptr())

    run_rows(n, parts, rows)
    return loss, grad, colsums[0] if parts == 1 else colsums.sum(0)
