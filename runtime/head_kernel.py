"""The head's softmax cross-entropy on fp32 or bf16 logits as a C kernel (runtime/head_ce.c), where
the CPU runs it faster than torch's ops: `head_kernel()` chooses once per process,
`softmax_cross_entropy` runs it.

Why a kernel of our own: runtime/linear_ce.py needs three things from the (N, V) logits: each row's
loss, softmax - onehot in the logits' type for the backward GEMMs, and the column sums for the bias
gradient. torch has them only as three passes, two of them evaluating exp over all N x V elements
(an fp32 log_softmax, a softmax) and one summing the (N, V) gradient. That work is the same in every
stage of a grown model, because every stage predicts the same tokens, so it makes the small first
stage slower per FLOP than the last (issue 11). The kernel evaluates exp once per element, reads
each row from cache, and writes the gradient and the column sums in the same pass. Measured by
benchmarks/head_speed.py (docs/precision.md, "The head's C kernel").

How it is built: with the C compiler (`$CC`, else `cc`), no torch headers, into `kernels/` in the
cache folder (`$GROWLANG_CACHE`, else `~/.cache/growlang`) under a name that hashes the source, the
flags and the compiler; written to a temporary file and renamed, so concurrent processes (torchrun
ranks) never load a half-written library; checked against torch's ops on a small case before use
(build, load and check 0.2 s, 0.03 s from the cache, measured here). The vector width follows
torch's own CPU capability: AVX-512 (16 lanes) or AVX2 (8). Elsewhere (no AVX2, another
architecture, no compiler, a failed build or check, `GROWLANG_HEAD_KERNEL=torch`) torch's ops run;
`describe()` says which and why, and `growlang run` prints it at the start of a run on a CPU.

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

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("head_ce.c")
# torch's CPU capability -> the compiler flags and the vector width (runtime/head_ce.c's LANES). Built
# for the x86-64 baseline's 4 lanes it ran slower than torch's ops (docs/precision.md), so not there.
TARGETS = {"AVX512": (("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"), 16),
           "AVX2": (("-mavx2", "-mfma"), 8)}
ENV = "GROWLANG_HEAD_KERNEL"  # "torch": never build or use the C kernel
KERNEL_ENTRY = {torch.bfloat16: "head_ce_bf16", torch.float32: "head_ce_f32"}  # logits' dtype -> head_ce.c
ROWS_PER_THREAD = 64  # the fewest rows a thread is handed (not tuned: the measurements ran one thread)


@dataclass(frozen=True)
class HeadKernel:
    name: str  # "C (AVX512)", "C (AVX2)" or "torch"
    why: str  # one clause: what was found
    lib: ctypes.CDLL | None = None
    lanes: int = 0

    def describe(self) -> str:
        return f"head: {self.name} softmax cross-entropy ({self.why})"


def compiler() -> str | None:
    return shutil.which(os.environ.get("CC") or "cc")


def build(cc: str, flags: tuple[str, ...], lanes: int, folder: Path) -> Path:
    """The shared library of head_ce.c for these flags, compiled into `folder` unless it is there."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    args = ["-O3", "-fPIC", "-shared", "-fno-strict-aliasing", *flags, f"-DLANES={lanes}"]
    key = hashlib.sha256("\0".join([SOURCE.read_text(), cc, version, *args]).encode()).hexdigest()[:16]
    lib = folder / f"head_ce-{key}.so"
    if lib.exists():
        return lib
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=lib.name + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        p = subprocess.run([cc, *args, "-o", tmp, str(SOURCE)], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"{cc} exited {p.returncode}: {(p.stderr or p.stdout).strip()[-500:]}")
        os.replace(tmp, lib)  # atomic: a reader sees the whole library or none
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


def load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    for entry in (lib.head_ce_bf16, lib.head_ce_f32):  # (z, r0, r1, v, t, g, loss, colsum, buf)
        entry.argtypes = [ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                          ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        entry.restype = None
    return lib


@functools.cache
def head_kernel() -> HeadKernel:
    """The kernel this process uses for the head's logits on the CPU, chosen (and built) once."""
    if os.environ.get(ENV, "").lower() == "torch":
        return HeadKernel("torch", f"{ENV}=torch")
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in TARGETS:
        return HeadKernel("torch", f"the CPU has no AVX2 (torch's capability: {capability})")
    cc = compiler()
    if cc is None:
        return HeadKernel("torch", f"no C compiler ({os.environ.get('CC') or 'cc'}) on PATH to build runtime/head_ce.c")
    from growlang.runtime.tokenizer import cache_root

    flags, lanes = TARGETS[capability]
    try:
        try:
            path = build(cc, flags, lanes, cache_root() / "kernels")
        except OSError:  # the cache folder is not writable: build for this process only
            path = build(cc, flags, lanes, Path(tempfile.mkdtemp(prefix="growlang-head-")))
        kernel = HeadKernel(f"C ({capability})", f"{Path(cc).name}, {lanes} lanes", load(path), lanes)
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return HeadKernel("torch", f"building runtime/head_ce.c failed: {e}")
    if (err := self_check(kernel)) is not None:
        return HeadKernel("torch", f"the built kernel disagreed with torch ({err})")
    return kernel


def self_check(kernel: HeadKernel) -> str | None:
    """None when the kernel matches the torch path on a small case in both types (a miscompiled
    library is not used)."""
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
            return f"largest difference {worst:.3g} for {str(z.dtype).removeprefix('torch.')} logits"
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


_pool: tuple[ThreadPoolExecutor, int] | None = None  # the row threads and their number


# Outside torch.compile's graph: it calls a C library through ctypes, and under `compile=on` dynamo
# would otherwise trace into head_kernel()'s build and self-check (lru_cache, stat and lock warnings)
# only to break the graph at the ctypes call anyway.
@torch.compiler.disable
def softmax_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, kernel: HeadKernel | None = None,
                          column_sums: bool = True):
    """torch_softmax_cross_entropy's three results; by the C kernel where `kernel` (default: this
    process's) is one and the logits are bf16 or fp32 on the CPU (its column sums come with the same
    pass), else by torch's ops."""
    entry = KERNEL_ENTRY.get(logits.dtype)
    if logits.device.type != "cpu" or entry is None or logits.dim() != 2:
        return torch_softmax_cross_entropy(logits, targets, column_sums)  # a GPU run never builds the kernel
    kernel = kernel or head_kernel()
    if kernel.lib is None:
        return torch_softmax_cross_entropy(logits, targets, column_sums)
    n, v = logits.shape
    logits, targets = logits.contiguous(), targets.to(torch.int64).contiguous()
    if n and not (0 <= int(targets.min()) and int(targets.max()) < v):  # the kernel indexes rows by them
        raise IndexError(f"target out of range for {v} classes: {int(targets.min())}..{int(targets.max())}")
    parts = max(1, min(torch.get_num_threads(), n // ROWS_PER_THREAD))
    grad = torch.empty_like(logits)
    loss = torch.empty(n, dtype=torch.float32)
    colsums = torch.zeros(parts, v, dtype=torch.float32)
    bufs = torch.empty(parts, -(-v // kernel.lanes) * kernel.lanes, dtype=torch.float32)
    bounds = [n * p // parts for p in range(parts + 1)]

    def rows(p: int) -> None:  # ctypes releases the GIL for the call: the parts run in parallel
        getattr(kernel.lib, entry)(logits.data_ptr(), bounds[p], bounds[p + 1], v, targets.data_ptr(),
                                   grad.data_ptr(), loss.data_ptr(), colsums[p].data_ptr(), bufs[p].data_ptr())

    if parts == 1:
        rows(0)
    else:
        global _pool
        if _pool is None or _pool[1] < parts:
            _pool = ThreadPoolExecutor(max_workers=parts, thread_name_prefix="growlang-head"), parts
        list(_pool[0].map(rows, range(parts)))
    return loss, grad, colsums[0] if parts == 1 else colsums.sum(0)
