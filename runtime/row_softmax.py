"""softmax over the last dimension, by runtime/row_softmax.c on a CPU where runtime/c_kernels.py
built it, else by torch: `softmax_last_dim`. The gemm attention's probabilities
(runtime/attention_gemm.py) use it.

Why: torch's CPU softmax of bf16 rows costs much more per element on short rows (1.85 ns at the
pooled first stage's 84 keys against 0.85 ns at 128, Zen 4 EPYC, one thread), a share of the small
stage's step that the big stage does not pay (issue 11; docs/precision.md, "The attention's row
softmax"). The kernel computes in fp32 and rounds once to the rows' type, as torch's does; its exp
and summation order differ, so results may differ from torch's by rounding:
tests/runtime/test_row_softmax.py bounds it (fp32 within a few ulps; bf16 within one bf16 step, and
rarely apart). Deterministic for a given machine and thread count (rows are independent), so the
resume guarantees (docs/precision.md) hold.
"""

from __future__ import annotations

import torch

from growlang.runtime.c_kernels import CKernels, c_kernels, row_parts, run_rows

KERNEL_ENTRY = {torch.bfloat16: "softmax_rows_bf16", torch.float32: "softmax_rows_f32"}  # dtype -> row_softmax.c


# Outside torch.compile's graph, as the head's kernel (runtime/head_kernel.py): a ctypes call
@torch.compiler.disable
def softmax_last_dim(x: torch.Tensor, kernel: CKernels | None = None) -> torch.Tensor:
    """torch.softmax(x, -1) in x's dtype: by the C kernel where `kernel` (default: this process's)
    has one and x is bf16 or fp32 on the CPU, else by torch."""
    entry = KERNEL_ENTRY.get(x.dtype)
    if x.device.type != "cpu" or entry is None or x.dim() == 0 or x.numel() == 0:
        return torch.softmax(x, -1)  # a GPU run never builds the kernels
    kernel = kernel or c_kernels()
    if kernel.lib is None:
        return torch.softmax(x, -1)
    x = x.contiguous()
    t = x.shape[-1]
    n = x.numel() // t
    y = torch.empty_like(x)
    parts = row_parts(n)
    bufs = torch.empty(parts, -(-t // kernel.lanes) * kernel.lanes, dtype=torch.float32)
    entry = getattr(kernel.lib, entry)

    def rows(p: int, r0: int, r1: int) -> None:
        entry(x.data_ptr(), r0, r1, t, y.data_ptr(), bufs[p].data_ptr())

    run_rows(n, parts, rows)
    return y


def self_check(kernel: CKernels) -> str | None:
    """None when the kernel matches torch's softmax on a small case in both types (row lengths
    with and without a partial last vector, and a row of one element); one of
    runtime/c_kernels.py's checks."""
    g = torch.Generator().manual_seed(0)
    for t in (1, kernel.lanes, 2 * kernel.lanes + 3):
        x32 = torch.randn(7, t, generator=g) * 4
        for x, bound in ((x32.bfloat16(), 1e-2), (x32, 1e-6)):
            worst = float((softmax_last_dim(x, kernel).float() - torch.softmax(x, -1).float()).abs().max())
            if not worst < bound:
                dtype = str(x.dtype).removeprefix("torch.")
                return f"row softmax: largest difference {worst:.3g} for {dtype} rows of {t}"
    return None
