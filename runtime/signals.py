"""Ctrl-C while a checkpoint is being written: finish the write first, then stop.

A SIGINT that lands inside `deferred_interrupt()` is remembered and raised as KeyboardInterrupt
when the block ends, so the checkpoint being written is completed and renamed into place; a
second Ctrl-C raises at once and the writer removes its unfinished temporary folder. SIGKILL
cannot be caught: the write-to-temp-then-rename recipe in checkpoint.py covers that case.
Only the main thread can install signal handlers; elsewhere the block runs unprotected.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading


@contextlib.contextmanager
def deferred_interrupt(what: str):
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):  # ignored, or installed outside Python: leave it alone
        yield
        return
    pending: list[int] = []

    def handler(signum, frame):
        if pending:  # the second Ctrl-C: give up on the write
            raise KeyboardInterrupt
        pending.append(signum)
        print(f"\ninterrupted: finishing {what} first (Ctrl-C again to abandon it)", file=sys.stderr)

    signal.signal(signal.SIGINT, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if pending:
        raise KeyboardInterrupt
