"""The output layer and its cross-entropy in one autograd step: `linear_cross_entropy`.

Why: on a CPU the head's (N, V) logits cost more around their GEMM than in it. The unfused path
(`F.linear` then `F.cross_entropy`) writes the logits, casts them to fp32, runs log_softmax
forward, the NLL forward, and in backward a zero-filled NLL gradient, the log_softmax backward
and a cast back: about ten passes over N x V elements, none of them counted as FLOPs. These are a
fixed cost per predicted token that does not shrink with the model's depth or FFN, so they make a
grown model's small first stage slower per FLOP than its last (issue 11). Here the gradient
of the mean loss with respect to the logits, softmax(z) - onehot(t), is made in the forward pass
together with the loss rows and the bias gradient's column sums (runtime/head_kernel.py: torch's
log_softmax, softmax and sum, or on a CPU with AVX2 its C kernel for fp32 and bf16 logits, one
exp per element), and the backward is the two GEMMs. The 1/N of the mean and the incoming gradient scale
the small (N, d), (V, d) and (V,) results, not the (N, V) one.

Measured (benchmarks/head_speed.py, docs/precision.md): with torch's ops this is as fast as the
unfused head (0.97-1.02x on torch 2.13's CPU kernels) and under bf16 autocast keeps a bf16 (N, V)
tensor for backward where autograd keeps fp32 log-probabilities: half the head's saved memory; the
C kernel makes the work beyond the GEMMs faster again (fp32 2.9x, bf16 2.1x on the quickstart's
(608, 4096) logits).

The GEMMs' operands are cast once, in forward, and kept for backward: the (V, d) weight's cast
under bf16 autocast is the head's largest pass beyond its GEMMs at a BERT-base width, and
scaling by 1/N goes through the (N, d) operand, not the (V, d) product. Until 2026-12-07
backward cast the weight again and scaled its (V, d) gradient in a pass of its own: on an Intel
Xeon with AMX (one thread, head_speed.py, three alternating runs, medians) the bf16 head at
N=304, d=768, V=8192 took 43.1 -> 33.0 ms, 0.93x -> 1.17x the unfused head; the quickstart's
(608, 128, 4096) and fp32 were unchanged within the noise. The price: the low-precision weight
(V x d, 12.6 MB in bf16 there) lives until backward, where autocast's cache freed it at the end
of the forward's autocast region.

Numerically it is the unfused computation: the same log_softmax in fp32 of the same logits (bf16
under autocast, as `F.linear` makes them there), the same mean; the gradient differs from
autograd's by rounding only (tests/runtime/test_linear_ce.py bounds both against the unfused path,
tests/runtime/test_head_kernel.py the C kernel against torch's ops). Both paths are deterministic
on a CPU for a given thread count, so the fp32 resume guarantee holds with either.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from growlang.runtime.head_kernel import softmax_cross_entropy


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor):
        device = h.device.type
        dt = h.dtype  # the GEMMs' dtype: autocast's where it is on, as F.linear would cast (not fp64)
        if torch.is_autocast_enabled(device) and h.dtype != torch.float64:
            dt = torch.get_autocast_dtype(device)
        with torch.autocast(device, enabled=False):
            # cast here, not by autocast inside F.linear, so that backward reuses these casts: the
            # (V, d) weight is the largest tensor the head reads (a pass over it saved per step)
            hl, wl = h.to(dt), weight.to(dt)
            logits = F.linear(hl, wl, None if bias is None else bias.to(dt))  # (N, V)
        n = logits.shape[0]
        # loss per row, d(sum of losses)/d(logits) = softmax - onehot in the GEMMs' dtype, and its
        # column sums (the bias gradient): runtime/head_kernel.py (its C kernel on a CPU)
        rows, grad, colsum = softmax_cross_entropy(logits, targets, column_sums=bias is not None)
        del logits
        ctx.save_for_backward(hl, wl, grad, colsum if bias is not None else None)
        ctx.n, ctx.dtypes = n, (h.dtype, weight.dtype)
        return rows.mean()

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        hl, wl, grad, colsum = ctx.saved_tensors  # grad: d(sum of losses)/d(logits), (N, V)
        h_dtype, w_dtype = ctx.dtypes
        scale = g / ctx.n  # the mean's 1/N and the incoming gradient, applied to the small operands
        grad_h = (grad @ wl).mul_(scale).to(h_dtype)  # (N, d)
        grad_w = (grad.t() @ (hl * scale)).to(w_dtype)  # (V, d): scaled through h, no pass over it
        grad_b = colsum * scale if colsum is not None else None  # (V,), fp32
        return grad_h, grad_w, grad_b, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         targets: torch.Tensor) -> torch.Tensor:
    """mean over rows of cross_entropy(h @ weight.T + bias, targets): h (N, d), weight (V, d),
    bias (V,) or None, targets (N,) int64. Equal to `F.cross_entropy(F.linear(h, weight,
    bias).float(), targets)` up to rounding, with fewer passes over the (N, V) logits."""
    return _LinearCrossEntropy.apply(h, weight, bias, targets)
