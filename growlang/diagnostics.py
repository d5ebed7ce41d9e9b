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

# Every rejection class of the language, with its code (docs/language.md lists them).
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
    "E109": "key of another model family (`rope_theta` on gpt2, `kv_heads` without GQA)",
    "E110": "`len by pool` on a causal-LM family",
    "E201": "value out of range (zero/negative size, rate outside its interval)",
    "E202": "wrong kind of value (non-integer count, word where a number belongs)",
    "E203": "width not divisible by heads or head_dim",
    "E204": "len above max_len",
    "E205": "stage needs exactly one of steps/tokens",
    "E206": "root stage misses a shape key",
    "E207": "file or folder not found",
    "E208": "inconsistent settings (batch vs micro_batch, warmup)",
    "E209": "corpus file empty, unreadable, not UTF-8 text, or a single document",
    "E210": "heads not a multiple of kv_heads",
    "E211": "GQA group size heads/kv_heads changes across a growth",
    "W213": "position-table rows no stage trains (`max_len` above every stage's `len`)",
    "W214": "`warmup` or `rewarm(N)` longer than the stage it warms",
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
    "W409": "grow clause on a stage with no child, or via clause on a stage with no parent: no effect",
    "W410": "data key the family's objective ignores (`mask` on a causal LM)",
}

# Problems with a calibration profile, or with the run folders it is refitted from (growlang/
# time_model.py, growlang/run_times.py): not a schedule's, so docs/time.md lists them, and their
# goldens are under tests/frontend/golden/profile/.
PROFILE_CODES = {
    "E501": "profile unreadable: no such file, not UTF-8, not JSON, or not a JSON object",
    "E502": "profile field missing or invalid (schema, device, torch, precision, coefficients, measurements)",
    "E503": "run folder unusable (not a run, no timed steps), or too few measured shapes to fit",
    "W501": "profile measured with another torch release",
    "W502": "profile measured on another CPU model",
    "W503": "profile measured at another precision than the schedule or run trains at",
}


@dataclass(frozen=True, order=True)
class Span:
    """1-based line and column; the end column is exclusive. `whole_file()` stands for the whole file."""

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


def short(text: str, limit: int = 40) -> str:
    """A user's word as a message quotes it: a long one (a fuzzed 100k-character key) is elided."""
    return text if len(text) <= limit else text[:limit - 12] + "..." + text[-9:]


def _quote_short(text: str) -> str:
    """Elide every long `quoted` word of a message (odd pieces between backticks are quoted)."""
    if len(text) <= 80:
        return text
    pieces = text.split("`")  # 80: longer than any example a hint quotes
    return "`".join(short(p, 80) if i % 2 and i < len(pieces) - 1 else p for i, p in enumerate(pieces))


def error(code: str, message: str, span: Span, hint: str = "") -> Diagnostic:
    return Diagnostic(code, ERROR, _quote_short(message), span, _quote_short(hint))


def warning(code: str, message: str, span: Span, hint: str = "") -> Diagnostic:
    return Diagnostic(code, WARNING, _quote_short(message), span, _quote_short(hint))


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """'did you mean `len`?' for the closest choice (difflib), else the list of choices."""
    choices = sorted(set(choices))
    if len(word) <= 64:  # difflib is quadratic in length; a fuzzed 1 MB name matches nothing anyway
        near = choices if len(choices) <= 500 else sorted(choices, key=lambda c: abs(len(c) - len(word)))[:500]
        close = difflib.get_close_matches(word, near, n=1, cutoff=0.6)
        if close:
            return f"did you mean `{close[0]}`?"
    shown = ", ".join(f"`{c}`" for c in choices[:12])
    return "expected one of " + shown + (f" (and {len(choices) - 12} more)" if len(choices) > 12 else "")


class Problems(Exception):
    """Raised by a pass that cannot go on; carries the diagnostics found so far."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__("; ".join(d.message for d in diagnostics))
        self.diagnostics = diagnostics


def sort_key(d: Diagnostic) -> tuple:
    return (d.span.line, d.span.col, d.code)


def source_lines(source: str) -> list[str]:
    """Lines as spans count them: split at "\n" only (Lark's line counting), so U+2028, form feeds
    and other characters `str.splitlines` breaks at stay inside their line; a "\r" before the
    "\n" is not shown."""
    return [line.removesuffix("\r") for line in source.split("\n")]


SHOWN = 200  # characters of a long source line shown around the caret


def _window(line: str, col: int, width: int) -> tuple[str, int, int]:
    """(text to show, caret column, caret width): a long line is cut to SHOWN characters around
    the caret, marked with `...`, so a 100k-character line is not printed once per diagnostic."""
    if len(line) <= SHOWN:
        return line.expandtabs(1), col, width
    start = max(0, min(col - 1 - SHOWN // 3, len(line) - SHOWN))
    text = line[start:start + SHOWN].expandtabs(1)
    lead = "..." if start else ""
    tail = "..." if start + SHOWN < len(line) else ""
    col = col - start + len(lead)
    return lead + text + tail, col, max(1, min(width, len(lead) + len(text) + 1 - col))


def render_text(diagnostics: list[Diagnostic], source: str, display_path: str) -> str:
    """ruff-style text for the diagnostics of one file (no trailing count)."""
    lines = source_lines(source)
    out = []
    for d in sorted(diagnostics, key=sort_key):
        out.append(f"{d.severity}[{d.code}]: {d.message}")
        out.append(f" --> {display_path}:{d.span.line}:{d.span.col}")
        if 1 <= d.span.line <= len(lines):
            line = lines[d.span.line - 1]
            end = d.span.end_col if d.span.end_line == d.span.line else len(line) + 1
            text, col, width = _window(line, d.span.col, max(1, end - d.span.col))
            gutter = " " * len(str(d.span.line))
            out.append(f"{gutter} |")
            out.append(f"{d.span.line} | {text}")
            out.append(f"{gutter} | {' ' * (col - 1)}{'^' * width}")
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
