"""The runtime's C kernels for the CPU, built into one library and chosen once per process:
`c_kernels()`. Two use it: the head's softmax cross-entropy (runtime/head_ce.c, run by
runtime/head_kernel.py) and the attention's row softmax (runtime/row_softmax.c, run by
runtime/row_softmax.py). Both are plain C with GCC/Clang vector extensions and share
runtime/simd.h (the vector types, bf16 loads and rounding, Cephes' expf, lane reductions).

Why C of our own: each replaces torch ops whose cost on a CPU is a fixed share per row or per
predicted token, not per FLOP, and so makes a grown model's small first stage slower per FLOP
than its last (issue 11; docs/precision.md has the measurements).

How it is built: with the C compiler (`$CC`, else `cc`), no torch headers, into `kernels/` in the
cache folder (`$GROWLANG_CACHE`, else `~/.cache/growlang`) under a name that hashes the sources,
the flags and the compiler; written to a temporary file and renamed, so concurrent processes
(torchrun ranks) never load a half-written library; each kernel is checked against torch's ops
on a small case before use (build, load and check 0.48-0.49 s, under 0.01 s from the cache, after
importing torch; two runs on the Zen 4 EPYC, 2026-12-08).
The vector width follows torch's own CPU capability: AVX-512 (16 lanes) or AVX2 (8). Elsewhere
(no AVX2, another architecture, no compiler, a failed build or check, `GROWLANG_C_KERNELS=torch`)
torch's ops run; `describe()` says which and why, and `growlang run` prints it at the start of a
run on a CPU.
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
from typing import Callable

import torch

HERE = Path(__file__).parent
SOURCES = (HERE / "head_ce.c", HERE / "row_softmax.c")  # compiled together into one library
HEADERS = (HERE / "simd.h",)  # included by both: part of the library's hash
# torch's CPU capability -> the compiler flags and the vector width (runtime/simd.h's LANES). Built
# for the x86-64 baseline's 4 lanes the head's kernel ran slower than torch's ops
# (docs/precision.md), so not there.
TARGETS = {"AVX512": (("-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx2", "-mfma"), 16),
           "AVX2": (("-mavx2", "-mfma"), 8)}
ENV = "GROWLANG_C_KERNELS"  # "torch": never build or use the C kernels
ROWS_PER_THREAD = 64  # the fewest rows a thread is handed (not tuned: the measurements ran one thread)
# each entry point's C signature, all pointers and int64 (the sources' comments say which is which)
P, I = ctypes.c_void_p, ctypes.c_int64
SIGNATURES = {"head_ce_bf16": (P, I, I, I, P, P, P, P, P),  # (z, r0, r1, v, t, g, loss, colsum, buf)
              "head_ce_f32": (P, I, I, I, P, P, P, P, P),
              "softmax_rows_bf16": (P, I, I, I, P, P),  # (x, r0, r1, t, y, buf)
              "softmax_rows_f32": (P, I, I, I, P, P)}


@dataclass(frozen=True)
class CKernels:
    name: str  # "C (AVX512)", "C (AVX2)" or "torch"
    why: str  # one clause: what was found
    lib: ctypes.CDLL | None = None
    lanes: int = 0

    def describe(self) -> str:
        what = "head softmax cross-entropy, attention row softmax"
        return f"kernels: {self.name} ({what}; {self.why})" if self.lib else f"kernels: torch ops ({self.why})"


def compiler() -> str | None:
    return shutil.which(os.environ.get("CC") or "cc")


def build(cc: str, flags: tuple[str, ...], lanes: int, folder: Path) -> Path:
    """The shared library of SOURCES for these flags, compiled into `folder` unless it is there."""
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=30).stdout
    args = ["-O3", "-fPIC", "-shared", "-fno-strict-aliasing", *flags, f"-DLANES={lanes}", f"-I{HERE}"]
    texts = [p.read_text() for p in (*SOURCES, *HEADERS)]
    key = hashlib.sha256("\0".join([*texts, cc, version, *args]).encode()).hexdigest()[:16]
    lib = folder / f"growlang-kernels-{key}.so"
    if lib.exists():
        return lib
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=lib.name + ".", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        p = subprocess.run([cc, *args, "-o", tmp, *map(str, SOURCES)], capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            raise RuntimeError(f"{cc} exited {p.returncode}: {(p.stderr or p.stdout).strip()[-500:]}")
        os.replace(tmp, lib)  # atomic: a reader sees the whole library or none
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return lib


def load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    for name, args in SIGNATURES.items():
        entry = getattr(lib, name)
        entry.argtypes, entry.restype = list(args), None
    return lib


@functools.cache
def c_kernels() -> CKernels:
    """The kernels this process uses on the CPU, chosen (and built) once."""
    if os.environ.get(ENV, "").lower() == "torch":
        return CKernels("torch", f"{ENV}=torch")
    capability = torch.backends.cpu.get_cpu_capability()
    if capability not in TARGETS:
        return CKernels("torch", f"the CPU has no AVX2 (torch's capability: {capability})")
    cc = compiler()
    if cc is None:
        return CKernels("torch", f"no C compiler ({os.environ.get('CC') or 'cc'}) on PATH to build the C kernels")
    from growlang.runtime.tokenizer import cache_root

    flags, lanes = TARGETS[capability]
    try:
        try:
            path = build(cc, flags, lanes, cache_root() / "kernels")
        except OSError:  # the cache folder is not writable: build for this process only
            path = build(cc, flags, lanes, Path(tempfile.mkdtemp(prefix="growlang-kernels-")))
        kernels = CKernels(f"C ({capability})", f"{Path(cc).name}, {lanes} lanes", load(path), lanes)
    except (RuntimeError, OSError, subprocess.SubprocessError, AttributeError) as e:
        return CKernels("torch", f"building the runtime's C kernels failed: {e}")
    if (err := self_check(kernels)) is not None:
        return CKernels("torch", f"the built kernels disagreed with torch ({err})")
    return kernels


def self_check(kernels: CKernels) -> str | None:
    """None when every kernel matches torch's ops on a small case (a miscompiled library is not used)."""
    from growlang.runtime.head_kernel import self_check as head_check
    from growlang.runtime.row_softmax import self_check as softmax_check

    for check in (head_check, softmax_check):
        if (err := check(kernels)) is not None:
            return err
    return None


_pool: tuple[ThreadPoolExecutor, int] | None = None  # the row threads and their number


def row_parts(n: int) -> int:
    """How many row ranges `run_rows` splits n rows into: up to torch's thread count, each of at
    least ROWS_PER_THREAD rows (a fixed function of n and the thread count: deterministic results)."""
    return max(1, min(torch.get_num_threads(), n // ROWS_PER_THREAD))


def run_rows(n: int, parts: int, rows: Callable[[int, int, int], None]) -> None:
    """rows(part, r0, r1) for `parts` consecutive row ranges covering [0, n), each on its own thread
    (ctypes releases the GIL for the call, so the parts run in parallel)."""
    if parts == 1:
        rows(0, 0, n)
        return
    global _pool
    if _pool is None or _pool[1] < parts:
        _pool = ThreadPoolExecutor(max_workers=parts, thread_name_prefix="growlang-kernels"), parts
    bounds = [n * p // parts for p in range(parts + 1)]
    list(_pool[0].map(lambda p: rows(p, bounds[p], bounds[p + 1]), range(parts)))
