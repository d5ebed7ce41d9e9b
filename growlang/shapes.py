"""Each stage's full `Shape`: written keys, else inherited from the parent, else the model's
defaults (docs/language.md "Stages"). Checks that need the model block: divisibility by
heads/head_dim, `len` above `max_len`.
"""

from __future__ import annotations

from growlang.diagnostics import Diagnostic, Span, error
from growlang.plan import ModelSpec, Shape
from growlang.schema import ModelBlock, StageBlock
from growlang.syntax import Multiple, StageSyntax

INHERITED = ("depth", "width", "len")


def written_ffn(syntax: StageSyntax, block: StageBlock | None, parent_ffn: tuple, unsure: bool) -> tuple:
    """The ffn expression in force for a stage, as (expression or None for the model's default,
    known?): its own `ffn`, else its parent's (`parent_ffn`, computed first in topological order).
    Unknown when the stage writes `ffn` but failed validation, or does not write it and its
    parent edge is unsure."""
    if syntax.setting("ffn") is not None:
        return (block.ffn, True) if block is not None else (None, False)
    return (None, False) if unsure else parent_ffn


def resolve_shape(name: str, syntax: StageSyntax, block: StageBlock, parent: Shape | None,
                  model: ModelBlock | ModelSpec, ffn_expr) -> tuple[Shape | None, list[Diagnostic]]:
    """`model` gives head_dim and max_len, and the default ffn when `ffn_expr` is None (a
    ModelSpec, as `growlang grow` passes, has no default ffn: it always gives `ffn_expr`)."""
    found: list[Diagnostic] = []
    spans = {s.key: s.value.span for s in syntax.settings}
    values = {}
    for key in INHERITED:
        v = getattr(block, key)
        if v is None and parent is not None:
            v = getattr(parent, key)
        if v is None:
            found.append(error("E206", f"stage `{name}` needs `{key}`", syntax.name_span,
                               "a stage without a parent inherits nothing; write `" + key + "=N`"))
        values[key] = v
    if found:
        return None, found
    width = values["width"]
    heads = block.heads
    if heads is None:
        if width % model.head_dim:
            found.append(error("E203", f"`width` {width} is not divisible by head_dim {model.head_dim} in stage `{name}`",
                               spans.get("width", syntax.name_span), "pick a multiple of head_dim, or set `heads`"))
            return None, found
        heads = width // model.head_dim
    elif width % heads:
        found.append(error("E203", f"`width` {width} is not divisible by `heads` {heads} in stage `{name}`",
                           spans.get("heads", syntax.name_span)))
        return None, found
    expr = ffn_expr if ffn_expr is not None else model.ffn
    if isinstance(expr, Multiple):
        ffn = expr.factor * width
        if not float(ffn).is_integer():
            found.append(error("E202", f"`ffn` = {expr} of width {width} is not a whole number in stage `{name}`",
                               spans.get("ffn", syntax.name_span)))
            return None, found
        ffn = int(ffn)
    else:
        ffn = expr
    if values["len"] > model.max_len:
        found.append(error("E204", f"`len` {values['len']} is above max_len {model.max_len} in stage `{name}`",
                           spans.get("len", syntax.name_span), "raise `max_len` in the model block"))
    return Shape(values["depth"], width, heads, ffn, values["len"]), found


def value_spans(syntax: StageSyntax) -> dict[str, Span]:
    return {s.key: s.value.span for s in syntax.settings}
