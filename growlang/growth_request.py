"""`growlang grow SRC --to 'depth=12 width=768' --by 'depth by stack'`: the same syntax and checks
as a schedule, applied to one transition. The request is read as the stage

    stage grown: <--to> steps=1
      ; grow <--by>

so `--to` numbers take the `.grow` suffixes (`1k`, `4x`) and `--by` operators and arguments are
checked by growth.check_items; problems are diagnostics, rendered as `check` renders them.
"""

from __future__ import annotations

from dataclasses import dataclass

from growlang.diagnostics import Diagnostic, Problems, Span, error, render_text, summary_line
from growlang.growth import check_items, item_args, transition_ops
from growlang.plan import ModelSpec, OpUse, Shape
from growlang.schema import StageBlock, validate_part
from growlang.shapes import resolve_shape
from growlang.syntax import GrowthItem, StageSyntax, parse_schedule

SHAPE_KEYS = ("depth", "width", "heads", "kv_heads", "ffn")  # `len` is not grown by `grow` (parse_request)
DISPLAY = "growlang grow --to/--by"  # where a request's diagnostics say they are


@dataclass(frozen=True)
class GrowthRequest:
    """A parsed `--to`/`--by`: the checks that need no model have passed."""

    text: str  # the request as the stage it is read as (diagnostics point into it)
    stage: StageSyntax
    block: StageBlock
    named: dict[str, GrowthItem]  # the operators named in --by, by dimension

    @property
    def sizes(self) -> dict:
        """The shape keys written in --to (`ffn` may be an `Nx` multiple of width)."""
        return {k: getattr(self.block, k) for k in SHAPE_KEYS if getattr(self.block, k) is not None}


def request_text(to: str, by: str) -> str:
    return f"stage grown: {to} steps=1" + (f"\n  ; grow {by}" if by.strip() else "")


def parse_request(to: str, by: str) -> GrowthRequest:
    """Syntax, keys, values, operator names and arguments; raises Problems."""
    text = request_text(to, by)
    syntax, found = parse_schedule(text)
    stage = syntax.stages[0]
    block, problems = validate_part(StageBlock, stage.settings, "`--to`", stage.name_span)
    found += problems
    named, problems = check_items(stage.growth)
    found += problems
    if block is not None:
        for s in stage.settings:
            if s.key == "len":  # a model reads any length up to its position table; nothing to grow
                found.append(error("E101", "`len` is not something `grow` changes", s.key_span,
                                   "a model reads any length up to its max_len; to train on longer sequences, "
                                   "write a stage with a bigger `len` in a schedule"))
            elif s.key not in SHAPE_KEYS and s.key != "steps":
                found.append(error("E101", f"`{s.key}` is not a shape key", s.key_span,
                                   "--to takes " + ", ".join(SHAPE_KEYS)))
    if any(d.is_error for d in found):
        raise Problems(found)
    return GrowthRequest(text, stage, block, named)


def resolve_request(request: GrowthRequest, old: Shape,
                    model: ModelSpec) -> tuple[Shape, tuple[OpUse, ...], list[Diagnostic]]:
    """(new shape completed from `old`, the transition's operators, warnings), checked and
    defaulted exactly as in `check`; raises Problems on an error."""
    block = request.block
    ffn = block.ffn if block.ffn is not None else old.ffn
    new, found = resolve_shape("grown", request.stage, block, old, model, ffn)
    ops: tuple[OpUse, ...] = ()
    if new is not None:
        ops, problems = transition_ops(old, new, model.family, request.named, {}, Span.whole_file(), "this growth")
        found += problems
    if any(d.is_error for d in found):
        raise Problems(found)
    return new, ops, found


def parse_growth_request(to: str, by: str, old: Shape | None = None, model: ModelSpec | None = None):
    """(shape keys dict, tuple of OpUse); with `old` and `model` the shape is complete and the
    operators are checked against the transition with defaults filled. Raises Problems."""
    request = parse_request(to, by)
    if old is None or model is None:
        return request.sizes, tuple(OpUse(d, i.op, item_args(i)) for d, i in request.named.items())
    new, ops, _ = resolve_request(request, old, model)
    return {k: getattr(new, k) for k in SHAPE_KEYS}, ops


def render_problems(problems: Problems, to: str, by: str) -> str:
    """The diagnostics of a request as `check` prints a file's, with the summary line."""
    found = list(problems.diagnostics)
    return render_text(found, request_text(to, by), DISPLAY) + "\n" + summary_line(found)
