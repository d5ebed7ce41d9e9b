"""Keep freed CPU memory in the process, so a training step's big tensors reuse warm pages.

Why: torch's CPU tensors come from plain malloc. glibc serves a block above its mmap threshold
(128 KiB at start, raised as such blocks are freed) with fresh pages from mmap and unmaps it on
free, and it returns a heap's free top to the system above its trim threshold. A training step
allocates and frees the same big tensors every step (the MLM head's N x V logits and their fp32
softmax: 10 MB each for 608 masked tokens x 4096 words), so each of them page-faults again on first
touch: measured on a 2-core AMD EPYC, the head's bias-broadcast copy 2.8 ms instead of 0.3, its
bf16-to-fp32 cast 5.7 ms instead of 1.3 (torch.profiler; benchmarks/allocator.py times whole steps).
Raising both thresholds keeps such blocks in the heap: the process's resident memory stays at its
peak instead of shrinking between steps, which a training process reaches every step anyway.

Only on Linux with glibc, detected, never assumed; elsewhere (musl, macOS, a preloaded jemalloc or
tcmalloc that replaces malloc and ignores mallopt) it does nothing and says so to the caller.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform

# glibc's malloc.h parameter numbers; the mmap threshold's ceiling for mallopt on 64-bit is
# HEAP_MAX_SIZE / 2 = 32 MiB (larger blocks keep coming from mmap)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Raise glibc malloc's mmap and trim thresholds for this process; True if glibc took both."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    mmap_ok = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
    trim_ok = mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    return mmap_ok and trim_ok
