"""A note when a CPU run's torch threads outnumber the cores other processes leave free.

torch's CPU kernels use one OpenMP thread per core by default, and a parallel region waits for its
slowest thread: a thread on a core that another process keeps busy stalls every matmul. Measured
with schedules/base.grow on a 2-core Xeon while a 1-thread training job ran beside it: 2.6-2.8k
tokens/s in stage 2, against 35k the moment the other job ended (12x). One thread fewer avoids it.
"""

from __future__ import annotations

import os

import torch


def busy_cores_note(threads: int, cpus: int, load: float) -> str | None:
    """The note for `threads` torch threads on `cpus` cores whose 1-minute load average (before
    this run does anything) is `load`, or None when the free cores hold them."""
    free = cpus - load
    if threads <= 1 or threads <= max(1.0, free) + 0.5:
        return None
    fit = max(1, int(free + 0.5))
    return (f"note: torch uses {threads} threads, but the load average is {load:.1f} on {cpus} cores: threads "
            f"waiting on busy cores slow every step (up to 12x measured; runtime/threads.py); if other jobs "
            f"keep running, set OMP_NUM_THREADS={fit}")


def cpu_threads_note() -> str | None:
    """busy_cores_note for this process, or None where the load average is unknown."""
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):
        return None
    return busy_cores_note(torch.get_num_threads(), os.cpu_count() or 1, load)
