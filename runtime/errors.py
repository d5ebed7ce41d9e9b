"""Errors the runtime reports to the user as a message (no traceback), exit code 1."""

from __future__ import annotations

# The exit codes of `run`, `prepare` and the process launcher (growlang/cli.py's epilog lists them).
# 130 = 128 + SIGINT, the shell's code for a Ctrl-C: stopped after a checkpoint, continue with --resume.
EXIT_OK, EXIT_PROBLEM, EXIT_INTERRUPTED = 0, 1, 130


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
