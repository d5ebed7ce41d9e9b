"""One `Diagnostic` type for every problem in a schedule (syntax, schema, graph, growth), rendered
like ruff (`error[E101]: ...`, `--> file:line:col`, the line with a caret, `= help: ...`) or as
JSON for editors and CI (terraform validate -json). Stdlib only.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass
from typing import Iterable

ERROR = "error"
WARNING = "warning"

# Every rejection class of ../shared/spec/language.md, with its code (docs/language.md lists them).
CODES = {
    "E001": "syntax: unexpected or missing token",
    "E002": "syntax: unterminated block, string or clause",
    "E003": "syntax: bad number or number suffix",
    "E101": "unknown key",
    "E102": "key given twice",
    "E103": "unknown model family",
    "E104": "unknown operator",
    "E105": "unknown dimension",
    "E106": "bad operator argument",
    "E107": "value not one of the allowed words",
    "E201": "value out of range (zero/negative size, rate outside its interval)",
    "E202": "wrong kind of value (non-integer count, word where a number belongs)",
    "E203": "width not divisible by heads or head_dim",
    "E204": "len above max_len",
    "E205": "stage needs exactly one of steps/tokens",
    "E206": "root stage misses a shape key",
    "E207": "file or folder not found",
    "E208": "inconsistent settings (batch vs micro_batch, warmup)",
    "E301": "duplicate stage name",
    "E302": "unknown parent stage",
    "E303": "cycle between stages",
    "E304": "more than one root stage",
    "E305": "no stages",
    "E401": "a dimension shrinks",
    "E402": "operator does not apply to that dimension",
    "E403": "operator precondition fails",
    "W404": "operator named for a dimension that does not change",
    "E405": "heads change at fixed width (heads follow width at fixed head_dim)",
    "E406": "children of one stage disagree on `len by pool`",
    "E407": "dimension named twice in one growth clause",
    "E408": "head_dim changes across a transition",
}


@dataclass(frozen=True, order=True)
class Span:
    """1-based line and column; the end column is exclusive. (0, 0, 0, 0) = the whole file."""

    line: int
    col: int
    end_line: int
    end_col: int

    @staticmethod
    def whole_file() -> "Span":
        return Span(1, 1, 1, 1)


@dataclass(frozen=True)
class Diagnostic:
    code: str
    severity: str  # ERROR | WARNING
    message: str
    span: Span
    hint: str = ""

    @property
    def is_error(self) -> bool:
        return self.severity == ERROR


def error(code: str, message: str, span: Span, hint: str = "") -> Diagnostic:
    return Diagnostic(code, ERROR, message, span, hint)


def warning(code: str, message: str, span: Span, hint: str = "") -> Diagnostic:
    return Diagnostic(code, WARNING, message, span, hint)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'did you mean `len`?' for the closest choice (difflib), else the list of choices."""
    choices = sorted(set(choices))
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if close:
        return f"did you mean `{close[0]}`?"
    return "expected one of " + ", ".join(f"`{c}`" for c in choices)


class Problems(Exception):
    """Raised by a pass that cannot go on; carries the diagnostics found so far."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics


def sort_key(d: Diagnostic) -> tuple:
    return (d.span.line, d.span.col, d.code)


def render_text(diagnostics: list[Diagnostic], source: str, display_path: str) -> str:
    """ruff-style text for the diagnostics of one file (no trailing count)."""
    lines = source.splitlines()
    out = []
    for d in sorted(diagnostics, key=sort_key):
        out.append(f"{d.severity}[{d.code}]: {d.message}")
        out.append(f" --> {display_path}:{d.span.line}:{d.span.col}")
        if 1 <= d.span.line <= len(lines):
            text = lines[d.span.line - 1].expandtabs(1)
            gutter = " " * len(str(d.span.line))
            end = d.span.end_col if d.span.end_line == d.span.line else len(text) + 1
            width = max(1, end - d.span.col)
            out.append(f"{gutter} |")
            out.append(f"{d.span.line} | {text}")
            out.append(f"{gutter} | {' ' * (d.span.col - 1)}{'^' * width}")
        if d.hint:
            out.append(f"  = help: {d.hint}")
        out.append("")
    return "\n".join(out)


def summary_line(diagnostics: list[Diagnostic]) -> str:
    errors = sum(d.is_error for d in diagnostics)
    warnings = len(diagnostics) - errors
    if not diagnostics:
        return "All checks passed."
    return f"Found {errors} error{'s' * (errors != 1)} ({warnings} warning{'s' * (warnings != 1)})."


def to_json_dict(d: Diagnostic, display_path: str) -> dict:
    return {"file": display_path, "code": d.code, "severity": d.severity, "message": d.message,
            "hint": d.hint, "range": asdict(d.span)}


def dumps(obj: object) -> str:
    return json.dumps(obj, indent=2, sort_keys=False)
