"""Debug-only pauses at the moments a crash is most likely to do damage (scripts/kill_resume.py).

When $GROWLANG_DEBUG_EVENTS names a file, `pause(moment, detail)` appends one line
`<moment> <detail> <unix time>` to it and sleeps $GROWLANG_DEBUG_PAUSE seconds (default 0.2), so a test
harness watching the file can SIGKILL the run inside that window: half-way through a checkpoint
write, just after its rename, in the middle of a growth, or while a token store is written. Unset (always, outside such a
harness) it is a dictionary lookup and nothing else; it never changes what is computed.
"""

from __future__ import annotations

import os
import time

ENV_EVENTS = "GROWLANG_DEBUG_EVENTS"
ENV_PAUSE = "GROWLANG_DEBUG_PAUSE"
MOMENTS = ("checkpoint-write", "checkpoint-done", "growth", "store-write")


def pause(moment: str, detail: str = "") -> None:
    path = os.environ.get(ENV_EVENTS)
    if not path:
        return
    with open(path, "a", encoding="utf-8") as f:
        f.write(f"{moment} {detail} {time.time():.6f}\n")
    time.sleep(float(os.environ.get(ENV_PAUSE) or 0.2))
