"""The output layer and its cross-entropy in one autograd step: `linear_cross_entropy`.

Why: on a CPU the head's (N, V) logits cost more around their GEMM than in it. The unfused path
(`F.linear` then `F.cross_entropy`) writes the logits, casts them to fp32, runs log_softmax
forward, the NLL forward, and in backward a zero-filled NLL gradient, the log_softmax backward
and a cast back: about ten passes over N x V elements, none of them counted as FLOPs. These are a
fixed cost per predicted token that does not shrink with the model's depth or FFN, so they make a
grown model's small first stage slower per FLOP than its last (issue 11). Here the gradient
of the mean loss with respect to the logits, softmax(z) - onehot(t), is made in the forward pass
(a softmax in the GEMMs' dtype, minus one at the targets): log_softmax for the loss, one softmax,
and the backward is the two GEMMs and the bias sum. The 1/N of the mean and the incoming
gradient scale the small (N, d), (V, d) and (V,) results, not the (N, V) one.

Measured (benchmarks/head_speed.py, docs/precision.md "Measured"): on torch 2.13's CPU kernels this
is as fast as the unfused head (0.97-1.02x; the passes it saves no longer show in time there),
and under bf16 autocast it keeps a bf16 (N, V) tensor for backward where autograd keeps fp32
log-probabilities: half the head's saved memory.

Numerically it is the unfused computation: the same log_softmax in fp32 of the same logits (bf16
under autocast, as `F.linear` makes them there), the same mean; the gradient differs from
autograd's by rounding only (tests/runtime/test_linear_ce.py bounds both against the unfused path).
Deterministic on CPU like the ops it uses, so the fp32 resume guarantee holds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, targets: torch.Tensor):
        logits = F.linear(h, weight, bias)  # (N, V), in autocast's dtype where it is on
        n, v = logits.shape
        logp = torch.log_softmax(logits, dim=-1, dtype=torch.promote_types(logits.dtype, torch.float32))  # (N, V)
        at_target = logp.gather(1, targets[:, None])  # (N, 1), fp32
        del logp
        loss = -at_target.mean()
        # softmax(z) in the backward GEMMs' dtype, as autograd's fp32 one rounded to it: torch's
        # softmax reads bf16, computes in fp32 and rounds once (tests/runtime/test_linear_ce.py).
        # Not exp(logp, out=<bf16>): its dtype-changing output is a slower loop (benchmarks/head_speed.py)
        grad = torch.softmax(logits, dim=-1)
        del logits
        # then p - 1 at the targets, from fp32; index_put_ on the flat view: scatter_ copies the
        # whole (N, V) tensor twice on CPU (torch 2.13's profiler), index_put_ writes the N elements
        at = torch.arange(n, device=targets.device) * v + targets
        grad.view(-1).index_put_((at,), (at_target.exp() - 1.0).to(grad.dtype).view(-1))  # softmax - onehot
        ctx.save_for_backward(h, weight, grad)
        ctx.n = n
        ctx.has_bias = bias is not None
        return loss

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        h, weight, grad = ctx.saved_tensors  # grad: d(sum of losses)/d(logits), (N, V)
        scale = g / ctx.n  # the mean's 1/N and the incoming gradient, applied to the small results
        dt = grad.dtype
        grad_h = (grad @ weight.to(dt)).mul_(scale).to(h.dtype)  # (N, d)
        grad_w = (grad.t() @ h.to(dt)).mul_(scale).to(weight.dtype)  # (V, d)
        # the bias gradient in the GEMMs' dtype, as autograd's addmm backward makes it (summing a bf16
        # tensor accumulates in fp32; asking for an fp32 result would first copy all N x V to fp32)
        grad_b = grad.sum(0).float().mul_(scale) if ctx.has_bias else None  # (V,)
        return grad_h, grad_w, grad_b, None


def linear_cross_entropy(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                         targets: torch.Tensor) -> torch.Tensor:
    """mean over rows of cross_entropy(h @ weight.T + bias, targets): h (N, d), weight (V, d),
    bias (V,) or None, targets (N,) int64. Equal to `F.cross_entropy(F.linear(h, weight,
    bias).float(), targets)` up to rounding, with fewer passes over the (N, V) logits."""
    return _LinearCrossEntropy.apply(h, weight, bias, targets)
