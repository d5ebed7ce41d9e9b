"""Signals: Ctrl-C, SIGTERM or SIGHUP while training finishes the step and writes a checkpoint
(`StopRequest`); Ctrl-C while a checkpoint is being written outside training (no StopRequest
installed, e.g. a library caller of checkpoint.save) finishes the write first, then stops.

A SIGINT that lands inside `deferred_interrupt()` is remembered and raised as KeyboardInterrupt
when the block ends, so the checkpoint being written is completed and renamed into place; a
second Ctrl-C raises at once and the writer removes its unfinished temporary folder. SIGKILL
cannot be caught: the write-to-temp-then-rename recipe in checkpoint.py covers that case.
Only the main thread can install signal handlers; elsewhere the block runs unprotected.
"""

from __future__ import annotations

import contextlib
import os
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
    if isinstance(getattr(previous, "__self__", None), StopRequest):
        # training's handler already lets the write finish (the first Ctrl-C only asks to stop
        # after the step) and a second one raises at once, which abandons the write
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


def silence_hung_up_terminal(signum: int) -> None:
    """After SIGHUP from a terminal that went away every write to it fails (EIO): the resume
    message, then the error printing that failure, would turn a clean stop (130, checkpoint
    written) into exit 1. Output to a terminal goes to /dev/null from then on; output to a file
    (nohup, redirection) still works and is kept."""
    if signum != getattr(signal, "SIGHUP", None):
        return
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        try:
            tty = stream.isatty()
        except (ValueError, OSError):  # closed
            tty = True
        if tty:
            setattr(sys, name, open(os.devnull, "w"))


class StopRequest:
    """Ctrl-C (SIGINT), SIGTERM (what docker, Kubernetes and Slurm send before they kill) or SIGHUP
    (the terminal or ssh session went away; left alone under `nohup`, which ignores it) while
    training: the first one is remembered, the trainer finishes its step, writes a checkpoint and
    stops (exit 130, with the resume command); a second SIGINT stops at once (KeyboardInterrupt).
    `received` names the signal once one came."""

    SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))

    def __init__(self):
        self.received: str | None = None

    def _handler(self, signum, frame):
        if self.received is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        if self.received is None:
            self.received = signal.Signals(signum).name
            silence_hung_up_terminal(signum)
            print(f"\n{self.received}: finishing this step, then writing a checkpoint "
                  "(Ctrl-C again to stop at once)", file=sys.stderr)

    @contextlib.contextmanager
    def installed(self):
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = {s: signal.getsignal(s) for s in self.SIGNALS}
        for s, old in previous.items():
            if old is not signal.SIG_IGN and old is not None:  # ignored on purpose: leave it
                signal.signal(s, self._handler)
        try:
            yield self
        finally:
            for s, old in previous.items():
                if old is not None:
                    signal.signal(s, old)
