"""The device's matmul ceiling: the FLOP/s a large square matmul reaches in the precision a run
computes in, measured once per device and cached. MFU (model FLOPs utilisation) is a stage's
achieved FLOP/s (the plan's FLOPs per step, growlang/accounting.py, over the measured step time)
as a fraction of it: nanoGPT's `estimate_mfu` divides by the vendor's peak; a measured probe is
the peak this machine and this torch build really reach (on a CPU the vendor's number depends on
the clock, the thread count and the instructions oneDNN picks).

The cache is `$GROWLANG_CACHE/ceilings.json` (runtime/tokenizer.py `cache_root`), keyed by the
device's name (on a CPU with its family and model numbers), the torch version, the thread count
and the dtype: another CPU, a new torch or another thread count measures again.
benchmarks/trainer_speed.py reads the same probe.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from pathlib import Path

import torch

from growlang.runtime.tokenizer import cache_root

PROBE_N = {"cpu": 1024, "cuda": 8192}  # n of the n x n x n probe: ~20 ms on one CPU core, ~1 ms on an H100
REPS = 8


@functools.cache
def _lscpu_output() -> str:
    try:
        return subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def lscpu(field: str) -> str:
    """One field of lscpu's output, run once per process ('' where lscpu or the field is missing)."""
    return next((l.split(":", 1)[1].strip() for l in _lscpu_output().splitlines() if l.startswith(field + ":")), "")


def cpu_generation() -> str:
    """lscpu's CPU family and model numbers. Virtual machines often report only "AMD EPYC", and
    that one name has covered machines here whose one-thread bf16 ceilings were 217 and 463
    GFLOP/s (docs/precision.md), so the cache key and the benchmarks' headers carry them."""
    family, model = lscpu("CPU family"), lscpu("Model")
    return f"family {family} model {model}" if family and model else ""


def device_name(device: torch.device) -> str:
    """lscpu's model name on a CPU (else /proc/cpuinfo's), the CUDA device name on a GPU."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    name = lscpu("Model name")
    if not name:
        try:
            text = Path("/proc/cpuinfo").read_text()
            name = next((l.split(":", 1)[1].strip() for l in text.splitlines() if l.startswith("model name")), "")
        except OSError:
            pass
    return name or "unknown CPU"


def measure(device: torch.device, dtype: torch.dtype, n: int | None = None, reps: int = REPS) -> float:
    """FLOP/s of an n x n x n matmul in `dtype` on `device`: best of `reps` after a warm-up. The
    operands come from a private generator, so probing never moves the global RNG a run seeds."""
    n = n or PROBE_N.get(device.type, 1024)
    g = torch.Generator().manual_seed(0)
    a, b = (torch.randn(n, n, generator=g).to(device=device, dtype=dtype) for _ in range(2))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b
    sync()
    best = float("inf")
    for _ in range(reps):
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
    return 2 * n ** 3 / best


def key(device: torch.device, dtype: torch.dtype) -> str:
    threads = torch.get_num_threads() if device.type == "cpu" else 0
    name = device_name(device) if device.type != "cpu" else f"{device_name(device)} {cpu_generation()}".strip()
    return f"{name}|torch {torch.__version__}|threads {threads}|{str(dtype).removeprefix('torch.')}"


def ceiling(device: torch.device, dtype: torch.dtype, cache_dir: Path | None = None) -> float:
    """The cached FLOP/s ceiling of `device` in `dtype`, measured on the first call for its key."""
    return float(cached("ceilings.json", key(device, dtype), lambda: measure(device, dtype),
                        lambda v: isinstance(v, (int, float)) and v > 0, cache_dir))


def cached(filename: str, k: str, measure_once, valid, cache_dir: Path | None = None):
    """`$GROWLANG_CACHE/<filename>`'s entry `k` where `valid(entry)`, else `measure_once()`, stored
    there first. Shared by the per-device measurements (this file's ceilings, runtime/attention.py's
    kernel choice): one machine measures once and every later run on it reads the same value."""
    path = cache_root(cache_dir) / filename
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError):
        table = {}
    if not isinstance(table, dict):
        table = {}
    if k in table and valid(table[k]):
        return table[k]
    table[k] = measure_once()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # atomic: ranks and runs may probe at once
    tmp.write_text(json.dumps(table, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return table[k]


def dtype_of(precision) -> torch.dtype:
    """The dtype the matmuls run in under a resolved `Precision` (runtime/precision.py)."""
    return precision.amp_dtype or torch.float32
