"""Errors the runtime reports to the user as a message (no traceback), exit code 1."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a missing folder, a model we cannot read, a shape that shrinks."""
