"""Lark's UnexpectedInput -> one Diagnostic in the user's words (language.md: "expected '=' after
'width'"; never EQUAL, $END or Token(...)). Lark's `get_context` idea, our vocabulary.
"""

from __future__ import annotations

import re

import lark

from growlang.diagnostics import Diagnostic, Span, error, short
from growlang.families import FAMILIES

# What each terminal is called in a message.
WORDS = {
    "EQUAL": "'='", "COLON": "':'", "SEMICOLON": "';'", "COMMA": "','", "LBRACE": "'{'",
    "RBRACE": "'}'", "LPAR": "'('", "RPAR": "')'", "WORD": "a name", "NUMBER": "a number",
    "STRING": "a quoted string", "STAGE": "'stage'", "MODEL": "'model'", "DATA": "'data'",
    "TRAIN": "'train'", "FROM": "'from'", "VIA": "'via'", "GROW": "'grow'", "BY": "'by'",
    "$END": "the end of the file",
}
_ORDER = list(WORDS)
_TOKEN = re.compile(r'"[^"\n]*"|[A-Za-z0-9_.\-+]+|[^\s]')


def _words(expected: set[str]) -> str:
    names = [WORDS.get(t, t.lower()) for t in sorted(expected, key=lambda t: _ORDER.index(t) if t in _ORDER else 99)]
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _strip_comments(text: str) -> str:
    return re.sub(r"#[^\n]*", lambda m: " " * len(m.group()), text)


def _previous_token(text: str, pos: int) -> str | None:
    start = text.rfind("\n", 0, max(0, pos - 4096)) + 1  # a whole-line window: comments stay comments
    before = _TOKEN.findall(_strip_comments(text[start:pos]))
    return short(before[-1]) if before else None


def _end_span(text: str) -> Span:
    """Just after the last non-blank character of the file."""
    stripped = _strip_comments(text).rstrip()
    line = stripped.count("\n") + 1
    col = len(stripped) - (stripped.rfind("\n") + 1) + 1
    return Span(line, col, line, col)  # zero-width: nothing is there (render_text draws one caret)


def _open_brace(text: str, pos: int) -> Span | None:
    """The `{` left open before `pos` (blocks do not nest)."""
    clean = _strip_comments(text[:pos])
    opened = clean.rfind("{")
    if opened < 0 or clean.rfind("}") > opened:
        return None
    line = clean.count("\n", 0, opened) + 1
    col = opened - (clean.rfind("\n", 0, opened) + 1) + 1
    return Span(line, col, line, col + 1)


def _in_grow_clause(text: str, pos: int) -> bool:
    """Whether `pos` is inside a stage's `; grow ...` clause (after it, before the next stage)."""
    clean = _strip_comments(text[:pos])
    starts = [m.start() for m in re.finditer(r"(?m)^\s*stage\b", clean)]
    return bool(starts) and re.search(r";\s*grow\b", clean[starts[-1]:]) is not None


def _family_names() -> str:
    return ", ".join(FAMILIES)


def describe_syntax_error(exc, text: str) -> Diagnostic:
    if isinstance(exc, lark.exceptions.UnexpectedCharacters):
        char = text[exc.pos_in_stream] if exc.pos_in_stream < len(text) else ""
        span = Span(exc.line, exc.column, exc.line, exc.column + 1)
        if char == '"':
            return error("E002", "unterminated string", span, 'close the string with `"` on the same line')
        if char == "'":
            return error("E001", "strings use double quotes, not '", span,
                         'write `"..."`, e.g. `corpus="data/*.txt"`')
        if char == "-" and text[exc.pos_in_stream + 1:exc.pos_in_stream + 2].isalpha():
            return error("E001", "a name cannot start with '-'", span)
        found = f"'{char}'" if char.isprintable() else f"character U+{ord(char):04X}"
        prev = _previous_token(text, exc.pos_in_stream)
        where = f" after '{prev}'" if prev else ""
        return error("E001", f"unexpected {found}{where}", span, f"expected {_words(set(exc.allowed))}")

    token = exc.token
    expected = set(exc.expected) if getattr(exc, "expected", None) else set()
    at_end = token.type == "$END"
    pos = len(text) if at_end else token.start_pos
    prev = _previous_token(text, pos)
    if at_end:
        span = _end_span(text)
    else:
        span = Span(token.line, token.column, token.end_line or token.line,
                    token.end_column or token.column + len(str(token)))
    brace = _open_brace(text, pos)
    if "RBRACE" in expected and brace and (at_end or token.type in ("STAGE", "MODEL", "DATA", "TRAIN")):
        return error("E002", "unterminated block: expected '}'", brace,
                     "close the block with '}' before " + ("the end of the file" if at_end else f"'{short(str(token))}'"))
    if "RPAR" in expected and at_end:
        return error("E002", "unterminated argument list: expected ')'", span)
    found = WORDS["$END"] if at_end else f"'{short(str(token))}'"
    after = f" after '{prev}'" if prev else ""
    if prev == "model" and token.type == "LBRACE":
        return error("E001", "expected the model family after 'model', found '{'", span,
                     f"name it: `model bert {{ ... }}` (families: {_family_names()})")
    trailing = None if at_end else re.search(r",\s*stage\s*$", _strip_comments(text[:pos]))
    if trailing and _in_grow_clause(text, trailing.start()):
        line = text.count("\n", 0, trailing.start()) + 1
        col = trailing.start() - (text.rfind("\n", 0, trailing.start()) + 1) + 1
        return error("E001", "trailing ',' at the end of a grow clause", Span(line, col, line, col + 1),
                         "remove the ','; items are separated by commas: `grow depth by stack, width by interpolate`")
    if not at_end and _in_grow_clause(text, pos):
        if token.type == "WORD" and "COMMA" in expected:
            return error("E001", f"expected ',' before '{short(str(token))}' in the grow clause", span,
                         "separate the items with commas: `grow depth by stack, width by interpolate`")
    if expected == {"EQUAL"} and prev == "grow":
        return error("E001", "expected ';' before 'grow'", span, "a growth clause reads `; grow DIM by OP`")
    if expected == {"EQUAL"}:
        return error("E001", f"expected '=' after '{prev}'", span, f"write `{prev}=VALUE`")
    if token.type == "GROW" and "SEMICOLON" in expected:
        return error("E001", f"expected ';' before 'grow'", span, "a growth clause reads `; grow DIM by OP`")
    hint = ""
    if "COLON" in expected and token.type == "WORD" and prev and "=" not in str(token):
        hint = "a stage header reads `stage NAME [from PARENT] [via DIM by OP]:`"
    if expected <= {"WORD", "NUMBER", "STRING"} and token.type in WORDS and not at_end:
        hint = f"'{short(str(token))}' is a keyword; quote it or use another name" if token.type not in ("EQUAL", "COLON", "SEMICOLON", "COMMA", "LBRACE", "RBRACE", "LPAR", "RPAR") else hint
    if len(expected) > 3:
        return error("E001", f"unexpected {found}{after}", span, hint or f"expected {_words(expected)}")
    return error("E001", f"expected {_words(expected)}{after}, found {found}", span, hint)
