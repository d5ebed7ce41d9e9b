"""`growlang grow SRC --to 'depth=12 width=768' --by 'depth by stack'`: the same syntax and checks
as a schedule, applied to one transition (see compiler.parse_growth_request)."""

from __future__ import annotations

from growlang.diagnostics import Problems, Span
from growlang.growth import check_items, transition_ops
from growlang.schema import StageBlock, validate_part
from growlang.syntax import parse_schedule

SHAPE_KEYS = ("depth", "width", "heads", "ffn", "len")


def parse_growth_request(to: str, by: str, old=None, model=None):
    text = f"stage grown: {to} steps=1" + (f" ; grow {by}" if by.strip() else "")
    syntax, found = parse_schedule(text)
    stage = syntax.stages[0]
    block, problems = validate_part(StageBlock, stage.settings, "`--to`", stage.name_span)
    found += problems
    named, problems = check_items(stage.growth)
    found += problems
    if block is not None:
        for s in stage.settings:
            if s.key not in SHAPE_KEYS and s.key != "steps":
                from growlang.diagnostics import error

                found.append(error("E101", f"`{s.key}` is not a shape key", s.key_span, "--to takes " + ", ".join(SHAPE_KEYS)))
    if any(d.is_error for d in found):
        raise Problems(found)
    shape = {k: getattr(block, k) for k in SHAPE_KEYS if getattr(block, k) is not None}
    if old is None or model is None:
        from growlang.growth import item_args
        from growlang.plan import OpUse

        return shape, tuple(OpUse(d, i.op, item_args(i)) for d, i in named.items())
    from growlang.schema import ModelBlock
    from growlang.shapes import resolve_shape

    mb = ModelBlock(family=model.family, vocab=model.vocab, head_dim=model.head_dim, max_len=model.max_len)
    new, problems = resolve_shape("grown", stage, block, old, mb, block.ffn if block.ffn is not None else old.ffn)
    found += problems
    if new is not None:
        ops, problems = transition_ops(old, new, model.family, named, {}, Span(1, 1, 1, 1), "this growth")
        found += problems
    if any(d.is_error for d in found):
        raise Problems(found)
    return {k: getattr(new, k) for k in SHAPE_KEYS}, ops
