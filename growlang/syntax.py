"""Text -> Lark tree -> syntax objects carrying source spans (the first pass of docs/architecture.md).

`parse_schedule(text)` returns a `ScheduleSyntax` plus lexical diagnostics (bad number suffixes,
which do not stop the parse); a grammar error raises `Problems` with one diagnostic that speaks
the user's words (language.md: "expected '=' after 'width'", never `EQUAL` or `$END`).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass
from typing import Union

from growlang.diagnostics import Diagnostic, Problems, Span, error
from growlang.diagnostics import short as _short

# Number suffixes (language.md): k, M, B scale; `x` means "times the stage width" (ffn only).
SCALE = {"": 1, "k": 10**3, "M": 10**6, "B": 10**9}
_NUMBER = re.compile(r"^(-?)(\d+(?:\.\d*)?(?:[eE][+-]?\d+)?)([A-Za-z_][A-Za-z0-9_.]*)?$")


@dataclass(frozen=True)
class Multiple:
    """`4x`: a multiple of the stage width (ffn)."""

    factor: float

    def __str__(self) -> str:
        return f"{self.factor:g}x"


@dataclass(frozen=True)
class Call:
    """`rewarm(1k)`, or an operator's arguments `interpolate(noise=1e-3)`."""

    name: str
    args: tuple["Value", ...]
    kwargs: tuple["Setting", ...]


Scalar = Union[int, float, str, Multiple, Call]


@dataclass(frozen=True)
class Value:
    kind: str  # "number" | "word" | "string" | "call" | "bad"
    value: Scalar | None
    text: str  # as written
    span: Span


@dataclass(frozen=True)
class Setting:
    key: str
    key_span: Span
    value: Value


@dataclass(frozen=True)
class GrowthItem:
    dim: str
    dim_span: Span
    op: str
    op_span: Span
    args: tuple[Setting, ...]
    positional: tuple[Value, ...]
    span: Span


@dataclass(frozen=True)
class Block:
    kind: str  # "model" | "data" | "train"
    family: str | None
    family_span: Span | None
    settings: tuple[Setting, ...]
    span: Span  # the keyword


@dataclass(frozen=True)
class StageSyntax:
    name: str
    name_span: Span
    parent: str | None
    parent_span: Span | None
    via: tuple[GrowthItem, ...]  # operators of the edge into this stage, written on the child
    settings: tuple[Setting, ...]
    growth: tuple[GrowthItem, ...]  # operators of the edges out of this stage
    span: Span  # the header `stage NAME`

    def setting(self, key: str) -> Setting | None:
        return next((s for s in self.settings if s.key == key), None)


@dataclass(frozen=True)
class ScheduleSyntax:
    blocks: tuple[Block, ...]
    stages: tuple[StageSyntax, ...]


def span_of(item) -> Span:
    """Span of a Lark token or tree (meta), columns 1-based, end exclusive."""
    meta = getattr(item, "meta", item)
    return Span(meta.line, meta.column, meta.end_line, meta.end_column)


def parse_number(text: str, span: Span) -> tuple[Value, Diagnostic | None]:
    m = _NUMBER.match(text)
    if not m:
        return Value("bad", None, text, span), error("E003", f"`{_short(text)}` is not a number", span,
                                                     "numbers look like 512, 100k, 2.5M, 1e-4 or 4x")
    sign, mantissa, suffix = m.group(1), m.group(2), m.group(3) or ""
    if suffix == "x":
        return Value("number", Multiple(float(sign + mantissa)), text, span), None
    if suffix not in SCALE:
        hint = "suffixes are k (thousand), M (million), B (billion) and x (times width)"
        if suffix in ("m", "b"):
            hint = f"did you mean `{sign}{mantissa}{suffix.upper()}`? ({'million' if suffix == 'm' else 'billion'}; a lowercase `{suffix}` is not a suffix)"
        elif suffix == "K":
            hint = f"did you mean `{sign}{mantissa}k`? (thousand)"
        return Value("bad", None, text, span), error("E003", f"unknown number suffix `{_short(suffix)}` in `{_short(text)}`", span, hint)
    exact = float(sign + mantissa) * SCALE[suffix]
    if not math.isfinite(exact):  # `1e400`, or a few hundred digits: no float holds it
        return Value("bad", None, text, span), error("E003", f"`{_short(text)}` is too large to be a number", span)
    plain_int = re.fullmatch(r"\d+", mantissa) is not None
    # an integral value is whole in any syntax the docs list (512, 100k, 2.5M, 1e3); beyond 1e18
    # (no count is that big) it stays a float, and a count field then says it is too large
    if exact.is_integer() and abs(exact) < 1e18:
        number: int | float = int(sign + mantissa) * SCALE[suffix] if plain_int else int(exact)
    else:
        number = exact
    return Value("number", number, text, span), None


@functools.lru_cache(maxsize=1)
def _parser():
    """The LALR parser of grammar/grow.lark, loaded from the tables shipped in growlang/_grow_tables.py
    (growlang/parser_build.py) when they match this grammar and this Lark, else compiled."""
    import lark  # lazy: `growlang --help` need not load it

    from growlang import _grow_tables
    from growlang.parser_build import OPTIONS, grammar_hash, grammar_text, load_tables

    text = grammar_text()
    if _grow_tables.GRAMMAR_SHA256 == grammar_hash(text) and _grow_tables.LARK_VERSION == lark.__version__:
        return load_tables(_grow_tables.TABLES, lark)
    return lark.Lark(text, **OPTIONS)  # stale tables: `python -m growlang.parser_build` refreshes them


def parse_schedule(text: str) -> tuple[ScheduleSyntax, list[Diagnostic]]:
    import lark

    try:
        tree = _parser().parse(text)
    except lark.exceptions.UnexpectedInput as exc:
        from growlang.syntax_errors import describe_syntax_error

        raise Problems([describe_syntax_error(exc, text)]) from None
    builder = TreeToSyntax()
    return builder.schedule(tree), builder.diagnostics


class TreeToSyntax:
    """Walks the Lark tree (shaped by the grammar) into syntax objects with spans."""

    MAX_NESTING = 8  # `rewarm(1k)` nests once; a deeper call is a mistake (and would recurse here)

    def __init__(self) -> None:
        self.diagnostics: list[Diagnostic] = []
        self._nesting = 0

    def schedule(self, tree) -> ScheduleSyntax:
        blocks, stages = [], []
        for node in tree.children:
            if node.data == "stage":
                stages.append(self.stage(node))
            else:
                blocks.append(self.block(node))
        return ScheduleSyntax(tuple(blocks), tuple(stages))

    def block(self, node) -> Block:
        kind = node.data.removesuffix("_block")
        family = family_span = None
        children = node.children
        if kind == "model":
            family, family_span, children = str(children[0]), span_of(children[0]), children[1:]
        keyword_span = Span(node.meta.line, node.meta.column, node.meta.line, node.meta.column + len(kind))
        return Block(kind, family, family_span, tuple(self.setting(c) for c in children), keyword_span)

    def stage(self, node) -> StageSyntax:
        name_node = node.children[0]
        parent = parent_span = None
        via, growth, settings = (), (), []
        for child in node.children[1:]:
            if child.data == "parent":
                parent, parent_span = self.name(child.children[0]), span_of(child.children[0])
            elif child.data == "via":
                via = tuple(self.growth_item(g) for g in child.children)
            elif child.data == "growth":
                growth = tuple(self.growth_item(g) for g in child.children)
            else:
                settings.append(self.setting(child))
        name_span = span_of(name_node)
        header = Span(node.meta.line, node.meta.column, name_span.end_line, name_span.end_col)
        return StageSyntax(self.name(name_node), name_span, parent, parent_span, via, tuple(settings),
                           growth, header)

    @staticmethod
    def name(node) -> str:
        return str(node.children[0])

    def setting(self, node) -> Setting:
        key, value = node.children
        return Setting(str(key), span_of(key), self.value(value))

    def growth_item(self, node) -> GrowthItem:
        dim, op = node.children[0], node.children[1]
        args: tuple[Setting, ...] = ()
        positional: tuple[Value, ...] = ()
        if len(node.children) > 2:
            call = self.call_args(node.children[2])
            positional, args = call
        return GrowthItem(str(dim), span_of(dim), str(op), span_of(op), args, positional, span_of(node))

    def call_args(self, node) -> tuple[tuple[Value, ...], tuple[Setting, ...]]:
        positional, named = [], []
        for arg in node.children:
            if getattr(arg, "data", None) == "named_arg":
                named.append(self.setting(arg))
            else:
                positional.append(self.value(arg))
        return tuple(positional), tuple(named)

    def value(self, node) -> Value:
        span = span_of(node)
        if node.data == "number":
            value, problem = parse_number(str(node.children[0]), span)
            if problem:
                self.diagnostics.append(problem)
            return value
        if node.data == "word":
            return Value("word", str(node.children[0]), str(node.children[0]), span)
        if node.data == "string":
            return Value("string", str(node.children[0])[1:-1], str(node.children[0]), span)
        # call: WORD call_args
        name = str(node.children[0])
        if self._nesting >= self.MAX_NESTING:
            self.diagnostics.append(error("E001", f"calls nested more than {self.MAX_NESTING} deep", span,
                                          "a value is a number, a word, a quoted string or `name(args)`"))
            return Value("bad", None, _short(name) + "(...)", span)
        self._nesting += 1
        try:
            positional, named = self.call_args(node.children[1])
        finally:
            self._nesting -= 1
        if any(v.kind == "bad" for v in positional + tuple(a.value for a in named)):
            return Value("bad", None, _short(name) + "(...)", span)  # the inner value's error is reported
        return Value("call", Call(name, positional, named), _short(name) + "(...)", span)
