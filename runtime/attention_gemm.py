"""Attention as two batched matrix products in the operands' dtype, its softmax in fp32 at least,
and a backward of four more (train.attention=gemm, runtime/attention.py).

Why: on a CPU without fast bf16 attention kernels, torch's flash kernel runs its bf16 backward
at a small fraction of the machine's bf16 matmul rate, and the T x T products of short
sequences are cheap GEMMs. Measured on this project's AMD EPYC (avx512_bf16, one thread),
batch 32, 2 heads, head dim 64, bf16, forward and backward: 3.1 ms here against 14.2 for torch's
fused kernel and 7.2 for it on fp32 copies at length 84; 7.7 against 21.7 and 13.6 at 128
(docs/precision.md, "Attention kernel"); at length 512 (causal, batch 8) the fused kernel wins
(37.5 against 47.4 ms), which is why `auto` times them per stage.

The cost is memory: the probabilities P (and with dropout the dropped P and its mask) are kept
for backward, micro batch x heads x T^2 values per layer, as torch's math kernel keeps its own.

    forward:  S = Q K^T / sqrt(d) (+ causal -inf),  P = softmax(S) (fp32),  O = drop(P) V
    backward: dV = drop(P)^T dO,  dP = drop'(dO V^T),  dS = P * (dP - rowsum(dP * P)) / sqrt(d),
              dQ = dS K,  dK = dS^T Q
(the softmax Jacobian: dS_ij = P_ij (dP_ij - sum_k dP_ik P_ik); with dropout, rowsum(dO * O) is not
that sum, so the sum is taken from dP and P directly). Dropout draws a Bernoulli keep mask from
torch's global generator, like torch's own kernels, so a run's RNG state decides it and resume
replays it.
"""

from __future__ import annotations

import torch


class GemmAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, is_causal: bool, dropout_p: float):
        with torch.autocast(q.device.type, enabled=False):  # the dtypes as written, not autocast's
            return GemmAttention._forward(ctx, q, k, v, is_causal, dropout_p)

    @staticmethod
    def _forward(ctx, q, k, v, is_causal: bool, dropout_p: float):
        scale = q.shape[-1] ** -0.5
        acc = torch.promote_types(q.dtype, torch.float32)  # the softmax's dtype: fp32, or fp64 for fp64 operands
        s = torch.matmul(q, k.transpose(-2, -1)).to(acc).mul_(scale)
        if is_causal:
            t, u = s.shape[-2:]
            s.masked_fill_(torch.ones(t, u, dtype=torch.bool, device=s.device).triu_(1), float("-inf"))
        p = torch.softmax(s, dim=-1)
        del s
        kept = p.to(q.dtype)  # P for backward, in the operands' dtype (p itself for fp32 operands)
        keep = None
        if dropout_p > 0:
            keep = torch.empty_like(p).bernoulli_(1 - dropout_p).to(torch.bool)
            dropped = (p * keep).mul_(1 / (1 - dropout_p)).to(q.dtype)
        else:
            dropped = kept  # one tensor saved twice, not a second copy
        ctx.save_for_backward(q, k, v, kept, dropped, keep)
        ctx.scale, ctx.dropout_p, ctx.acc = scale, dropout_p, acc
        return torch.matmul(dropped, v)

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, p, dropped, keep = ctx.saved_tensors
        grad_out = grad_out.to(q.dtype)
        dv = torch.matmul(dropped.transpose(-2, -1), grad_out)
        dp = torch.matmul(grad_out, v.transpose(-2, -1)).to(ctx.acc)
        if keep is not None:
            dp = dp.mul_(keep).mul_(1 / (1 - ctx.dropout_p))
        p = p.to(ctx.acc)  # may be the saved tensor itself (fp32 operands): not changed in place
        ds = (p * (dp - (dp * p).sum(-1, keepdim=True))).mul_(ctx.scale).to(q.dtype)
        return torch.matmul(ds, k), torch.matmul(ds.transpose(-2, -1), q), dv, None, None


def gemm_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool = False,
                   dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V, as `F.scaled_dot_product_attention` with no mask computes it."""
    return GemmAttention.apply(q, k, v, is_causal, dropout_p)
