"""Attention as two batched matrix products in the operands' dtype, its softmax computed in fp32
at least, and a backward of four more (train.attention=gemm, runtime/attention.py).

Why: on a CPU without fast bf16 attention kernels, torch's flash kernel runs its bf16 backward
at a small fraction of the machine's bf16 matmul rate, and the T x T products of short
sequences are cheap GEMMs. Measured on this project's AMD EPYC (avx512_bf16, one thread),
batch 32, 2 heads, head dim 64, bf16, forward and backward: 3.1 ms here against 14.2 for torch's
fused kernel and 7.2 for it on fp32 copies at length 84; 7.7 against 21.7 and 13.6 at 128
(docs/precision.md, "Attention kernel"); at length 512 (causal, batch 8) the fused kernel won
there (37.5 against 47.4 ms), which is why `auto` times them per stage.

The cost is memory: the probabilities P (and with dropout the dropped P and its mask) are kept
for backward, micro batch x heads x T^2 values per layer, as torch's math kernel keeps its own.

    forward:  S = Q K^T / sqrt(d) (+ causal -inf),  P = softmax(S),  O = drop(P) V
    backward: dV = drop(P)^T dO,  dP = drop'(dO V^T),  dS = P * (dP - rowsum(dP * P)),
              dQ = dS K / sqrt(d),  dK = dS^T Q / sqrt(d)
(the softmax Jacobian: dS_ij = P_ij (dP_ij - sum_k dP_ik P_ik); with dropout, rowsum(dO * O) is not
that sum, so the sum is taken from dP and P directly). Dropout draws a Bernoulli keep mask from
torch's global generator, like torch's own kernels, so a run's RNG state decides it and resume
replays it.

The T x T tensors are the memory traffic, so each is made and read as few times as possible:
S, P, dP and dS stay in the operands' dtype (torch's softmax and softmax-backward kernels read
bf16 and compute in fp32), and 1/sqrt(d) is the GEMMs' alpha, not a pass of its own. Until
2026-12-07 they went through fp32 copies, about eight passes more. benchmarks/attention_speed.py
at both versions, alternated three times (Intel Xeon with AMX, one thread, medians, ms):

    shape (B, h, T, d)              bf16 before -> after   fp32 before -> after   fused bf16 / fp32
    (32, 2, 84, 64)                       6.64 -> 4.99           6.71 -> 5.49          22.7 / 7.2
    (32, 2, 128, 64)                     12.59 -> 7.87          13.51 -> 11.30         32.1 / 13.9
    (16, 4, 128, 64), dropout 0.1        22.66 -> 19.19         24.58 -> 22.54         27.0 / 23.9
    (8, 4, 512, 64), causal             140.8  -> 38.9         184.5  -> 148.6         65.1 / 79.9

with the same error against float64 (tests/runtime/test_attention.py). At length 512 it now beats
the fused kernel in bf16 on that CPU and still loses to it in fp32: `auto` decides per stage.
"""

from __future__ import annotations

import torch

from growlang.runtime.row_softmax import softmax_last_dim


class GemmAttention(torch.autograd.Function):
    @staticmethod
    def forward(ctx, q, k, v, is_causal: bool, dropout_p: float):
        with torch.autocast(q.device.type, enabled=False):  # the dtypes as written, not autocast's
            return GemmAttention._forward(ctx, q, k, v, is_causal, dropout_p)

    @staticmethod
    def _forward(ctx, q, k, v, is_causal: bool, dropout_p: float):
        *batch, t, d = q.shape
        scale = d ** -0.5
        # (..., T, d) -> (B*h, T, d): one copy of each head-strided view (the model's q, k, v are
        # (B, T, h, d) transposed), kept for backward, so the six GEMMs read these, K^T and the
        # others as transposed views (a BLAS flag), never a transposing copy
        q, k, v = (x.reshape(-1, *x.shape[-2:]) for x in (q, k, v))
        s = torch.baddbmm(q.new_empty(()), q, k.transpose(1, 2), beta=0, alpha=scale)  # S / sqrt(d) in the GEMM
        if is_causal:
            s.masked_fill_(torch.ones(s.shape[-2:], dtype=torch.bool, device=s.device).triu_(1), float("-inf"))
        p = softmax_last_dim(s)  # P in the operands' dtype, computed in fp32 (runtime/row_softmax.py)
        del s
        keep = None
        if dropout_p > 0:  # the mask drawn on an fp32 tensor (fp64 for fp64 operands), as before 2026-12-07
            acc = torch.promote_types(q.dtype, torch.float32)
            keep = torch.empty(p.shape, dtype=acc, device=p.device).bernoulli_(1 - dropout_p).to(torch.bool)
            dropped = (p * keep).mul_(1 / (1 - dropout_p))
        else:
            dropped = p  # one tensor saved twice, not a second copy
        ctx.save_for_backward(q, k, v, p, dropped, keep)
        ctx.scale, ctx.dropout_p, ctx.batch = scale, dropout_p, batch
        return torch.bmm(dropped, v).view(*batch, t, v.shape[-1])

    @staticmethod
    def backward(ctx, grad_out):
        q, k, v, p, dropped, keep = ctx.saved_tensors
        batch, scale = ctx.batch, ctx.scale
        grad_out = grad_out.to(q.dtype).reshape(-1, *grad_out.shape[-2:])
        dv = torch.bmm(dropped.transpose(1, 2), grad_out)
        dp = torch.bmm(grad_out, v.transpose(1, 2))
        if keep is not None:
            dp = dp.mul_(keep).mul_(1 / (1 - ctx.dropout_p))
        # softmax's backward, P * (dP - rowsum(dP * P)), in one pass of torch's kernel (fp32 inside
        # for bf16/fp16); the 1/sqrt(d) is the two GEMMs' alpha, applied to their fp32 accumulators
        ds = torch._softmax_backward_data(dp, p, -1, p.dtype)
        dq = torch.baddbmm(ds.new_empty(()), ds, k, beta=0, alpha=scale)
        dk = torch.baddbmm(ds.new_empty(()), ds.transpose(1, 2), q, beta=0, alpha=scale)
        return (dq.view(*batch, *q.shape[-2:]), dk.view(*batch, *k.shape[-2:]), dv.view(*batch, *v.shape[-2:]),
                None, None)


def gemm_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool = False,
                   dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d)) V, as `F.scaled_dot_product_attention` with no mask computes it."""
    return GemmAttention.apply(q, k, v, is_causal, dropout_p)
