"""Errors the runtime reports to the user as a message (no traceback), exit code 1."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a missing folder, a model we cannot read, a shape that shrinks."""


def exit_code_of(run) -> int:
    """`run()`'s exit code; a UserError, or a profile's ProfileError (rendered like `check`'s
    diagnostics), becomes its message on stderr and exit 1 (`calibrate`, `plot`)."""
    import sys

    from growlang.time_model import ProfileError

    try:
        return run()
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except ProfileError as e:
        print(e.render(), file=sys.stderr)
        return 1
