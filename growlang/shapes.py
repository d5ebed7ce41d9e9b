"""Each stage's full `Shape`: written keys, else inherited from the parent, else the model's
defaults (docs/language.md "Stages"). Checks that need the model block: divisibility by
heads/head_dim, `len` above `max_len`, `kv_heads` (grouped-query attention, E109/E210/E211).
"""

from __future__ import annotations

from growlang.diagnostics import Diagnostic, Span, error
from growlang.families import family
from growlang.family_checks import other_family_key
from growlang.plan import ModelSpec, Shape
from growlang.schema import StageBlock
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
                  model: ModelSpec, ffn_expr) -> tuple[Shape | None, list[Diagnostic]]:
    """`model` gives head_dim, max_len and the family; `ffn_expr` is the ffn in force (the
    stage's, an ancestor's or the model block's default: an `Nx` multiple or a size)."""
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
    expr = ffn_expr
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
    at = next((spans[k] for k in ("kv_heads", "heads", "width") if k in spans), syntax.name_span)
    kv_heads, problems = resolve_kv_heads(name, block, heads, parent, model, at)
    found += problems
    if kv_heads is None:
        return None, found
    return Shape(values["depth"], width, heads, ffn, values["len"], kv_heads), found


def resolve_kv_heads(name: str, block: StageBlock, heads: int, parent: Shape | None, model: ModelSpec,
                     span: Span) -> tuple[int | None, list[Diagnostic]]:
    """Key/value heads (docs/language.md, GQA): written, else the parent's group size
    heads/kv_heads kept at this stage's heads, else (a root) `heads` (multi-head attention).
    Whether a written value keeps the parent's group is a transition check (growth.py)."""
    kv = block.kv_heads
    if kv is not None and not family(model.family).gqa:
        return None, [other_family_key("kv_heads", family(model.family), span)]
    if kv is not None:
        if heads % kv:
            return None, [error("E210", f"`heads` {heads} is not a multiple of `kv_heads` {kv} in stage `{name}`",
                                span, "each key/value head serves heads/kv_heads query heads: pick a divisor of heads")]
        return kv, []
    if parent is None:
        return heads, []
    group = parent.heads // parent.kv_heads
    if heads % group:
        return None, [error("E211", f"stage `{name}` has {heads} heads, not a multiple of the group size {group} "
                                    f"(heads/kv_heads) it keeps from its parent", span,
                            "the group size is fixed across growth: pick a width whose heads it divides")]
    return heads // group, []


def value_spans(syntax: StageSyntax) -> dict[str, Span]:
    return {s.key: s.value.span for s in syntax.settings}
