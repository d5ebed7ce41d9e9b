"""CompoundGrow's embedding pooling (Gu et al. 2021; docs/operators.md, len by pool) as one autograd
step, so that its backward writes the embeddings' gradient once.

[CLS] stays first; the unmasked embeddings of positions 1..T-1 are averaged in consecutive groups
of k (masked ones left out of the mean, an all-masked group gives zeros); the masked positions'
embeddings are appended unpooled. Plain sums, no matmul, so the FLOP count is the encoder's alone.

Why not autograd of the plain formula: it reads e three times (a slice for [CLS], a padded slice
for the groups, a gather for the masked tokens), so backward made three zero-filled (B, T, d)
gradients (the slices' and the gather's backward), copied into them and added them up, and the
forward padded a copy of the body: in torch.profiler of a bf16 step of the quickstart's pooled
first stage (AMX Xeon), four `fill_` of (32, 128, 128) and their copies and adds, a cost of the small
stage that the big one does not have (issue 11; docs/precision.md). Here the forward views the
full groups without a copy, and the backward makes the groups' share and the [CLS] row once,
joined by one `cat`, and adds the masked tokens' rows where they are. Forward and backward at
the quickstart's (32, 128, 128), k = 2, 19 masked, fp32, one thread (AMD EPYC family 25 model
17, `benchmarks/pool_speed.py`, 50 alternating rounds, medians): 1.96 ms before and 1.37 after.

Numerics: the same ops on the same values as autograd of the plain formula (its padded zeros and
zero-filled gradients only ever add exact zeros), so forward and gradients are equal to it (up to
the sign of a zero): `plain_pool_embeddings` below is that formula, the reference that
tests/runtime/test_model.py checks both against (fp32 and bf16, bit for bit) and that
benchmarks/pool_speed.py times.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


class PoolEmbeddings(torch.autograd.Function):
    @staticmethod
    def forward(ctx, e: torch.Tensor, masked_positions: torch.Tensor, k: int) -> torch.Tensor:
        B, T, d = e.shape
        e = e.contiguous()  # the groups are views of it
        full = (T - 1) // k * k  # positions 1..full are whole groups, the rest (< k) the last group
        keep = torch.ones(B, T, 1, dtype=e.dtype, device=e.device)
        keep.scatter_(1, masked_positions.unsqueeze(-1), 0.0)  # 0 at the masked positions
        parts = [(s, n) for s, n in ((1, full), (1 + full, T - 1 - full)) if n > 0]  # (start, length)
        pooled, weights = [], []  # per part: (B, groups, d); then w (B, groups, size, 1), count (B, groups, 1)
        for start, length in parts:
            size = min(k, length)  # k, or the short last group
            part = e[:, start:start + length].view(B, length // size, size, d)  # a view: no copy
            w = keep[:, start:start + length].view(B, length // size, size, 1)
            count = w.sum(2).clamp(min=1.0)
            pooled.append((part * w).sum(2) / count)
            weights += [w, count]
        masked = torch.gather(e, 1, masked_positions.unsqueeze(-1).expand(-1, -1, d))  # (B, P, d)
        ctx.save_for_backward(masked_positions, *weights)
        ctx.lengths = [length for _, length in parts]
        return torch.cat([e[:, :1], *pooled, masked], dim=1)  # (B, 1 + ceil((T-1)/k) + P, d)

    @staticmethod
    def backward(ctx, g: torch.Tensor):  # g: (B, 1 + G + P, d)
        masked_positions, *weights = ctx.saved_tensors
        B, _, d = g.shape
        pieces, row = [g[:, :1]], 1  # the gradient's rows in order; row: g's row of the part's first group
        for length, w, count in zip(ctx.lengths, weights[::2], weights[1::2]):
            n = count.shape[1]
            # d(sum(part * w) / count) / d part = g / count * w
            pieces.append(((g[:, row:row + n] / count).unsqueeze(2) * w).view(B, length, d))
            row += n
        grad = torch.cat(pieces, dim=1)  # (B, T, d); not out= views: torch.compile refuses strided out=
        # the masked rows took weight 0 above (an exact zero each); their own gradient adds on top
        grad.scatter_add_(1, masked_positions.unsqueeze(-1).expand(-1, -1, d), g[:, row:])
        return grad, None, None


def pool_embeddings(e: torch.Tensor, masked_positions: torch.Tensor, k: int) -> torch.Tensor:
    """(B, T, d) embeddings -> (B, 1 + ceil((T-1)/k) + P, d): [CLS], the pooled groups, the masked
    positions' embeddings (masked_positions: (B, P))."""
    return PoolEmbeddings.apply(e, masked_positions, k)


def plain_pool_embeddings(e: torch.Tensor, masked_positions: torch.Tensor, k: int) -> torch.Tensor:
    """The same pooling as autograd of plain ops (this runtime's until 2026-12-08): the reference."""
    B, T, d = e.shape
    G = math.ceil((T - 1) / k)
    keep = torch.ones(B, T, dtype=e.dtype, device=e.device)
    keep.scatter_(1, masked_positions, 0.0)
    body, keep = e[:, 1:], keep[:, 1:, None]  # (B, T-1, d), (B, T-1, 1)
    pad = G * k - (T - 1)
    body = F.pad(body, (0, 0, 0, pad)).view(B, G, k, d)
    keep = F.pad(keep, (0, 0, 0, pad)).view(B, G, k, 1)
    pooled = (body * keep).sum(2) / keep.sum(2).clamp(min=1.0)  # (B, G, d)
    masked = torch.gather(e, 1, masked_positions.unsqueeze(-1).expand(-1, -1, d))  # (B, P, d)
    return torch.cat([e[:, :1], pooled, masked], dim=1)
