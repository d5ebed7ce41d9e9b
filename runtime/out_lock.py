"""One run per --out: an exclusive flock on `<out>/.lock`, held by rank 0 for the whole run.

Two runs (or two `--resume`s) on one folder would delete each other's temporary checkpoints and
interleave metrics.jsonl; the second one is refused with the PID of the first. flock is released
by the kernel when the holder dies, so a killed run never leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from growlang.runtime.errors import UserError

LOCK_NAME = ".lock"


class OutLock:
    def __init__(self, fd: int):
        self._fd: int | None = fd

    @classmethod
    def acquire(cls, out: Path) -> "OutLock":
        fd = os.open(out / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise UserError(f"--out {out} is in use by another growlang run (PID {holder}); wait for it "
                            "to finish, or choose another --out") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return cls(fd)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
