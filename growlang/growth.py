"""Growth clauses -> checked `OpUse`s for one transition (docs/operators.md; language.md "Growth").

Used by the compiler for every edge of the stage graph and by `growlang grow` through
`parse_growth_request`, so both validate operators the same way.
"""

from __future__ import annotations

from growlang.diagnostics import Diagnostic, Span, did_you_mean, error, warning
from growlang.families import FAMILIES
from growlang.operators import DEFAULT_OPERATOR, DIMENSIONS, OPERATORS, all_operator_names, operators_for
from growlang.plan import OpUse, Shape
from growlang.syntax import GrowthItem

GROWABLE = ("depth", "width", "ffn", "len")  # heads follow width at fixed head_dim (docs/operators.md)


def check_items(items: tuple[GrowthItem, ...]) -> tuple[dict[str, GrowthItem], list[Diagnostic]]:
    """Names, dimensions and arguments of one clause; returns the valid items by dimension."""
    found: list[Diagnostic] = []
    by_dim: dict[str, GrowthItem] = {}
    for item in items:
        if item.dim not in DIMENSIONS:
            found.append(error("E105", f"unknown dimension `{item.dim}`", item.dim_span, did_you_mean(item.dim, DIMENSIONS)))
            continue
        if item.dim == "heads":
            found.append(error("E405", "growing `heads` on its own is not supported; heads follow width at fixed head_dim",
                               item.dim_span, "grow `width` instead; heads become width/head_dim"))
            continue
        if item.dim in by_dim:
            found.append(error("E407", f"`{item.dim}` is named twice in one growth clause", item.dim_span,
                               f"first named at line {by_dim[item.dim].dim_span.line}, column {by_dim[item.dim].dim_span.col}"))
            continue
        if (item.dim, item.op) not in OPERATORS:
            if item.op in all_operator_names():
                found.append(error("E402", f"operator `{item.op}` does not apply to `{item.dim}`", item.op_span,
                                   f"`{item.dim}` grows by " + ", ".join(f"`{o}`" for o in operators_for(item.dim))))
            else:
                found.append(error("E104", f"unknown operator `{item.op}` for `{item.dim}`", item.op_span,
                                   did_you_mean(item.op, operators_for(item.dim))))
            continue
        problems = check_args(item)
        found += problems
        if not problems:
            by_dim[item.dim] = item
    return by_dim, found


def check_args(item: GrowthItem) -> list[Diagnostic]:
    info = OPERATORS[(item.dim, item.op)]
    specs = {a.name: a for a in info.args}
    found = []
    for value in item.positional:
        found.append(error("E106", f"`{item.op}` takes named arguments only, got `{value.text}`", value.span,
                           "write `NAME=VALUE`" + (f"; `{item.op}` takes " + ", ".join(f"`{n}`" for n in specs) if specs else "")))
    for arg in item.args:
        spec = specs.get(arg.key)
        if spec is None:
            hint = did_you_mean(arg.key, specs) if specs else f"`{item.op}` takes no arguments"
            found.append(error("E106", f"unknown argument `{arg.key}` for `{item.dim} by {item.op}`", arg.key_span, hint))
            continue
        v = arg.value.value
        if spec.choices and v not in spec.choices:
            found.append(error("E106", f"`{arg.key}` of `{item.op}` must be one of {', '.join(spec.choices)}, got `{arg.value.text}`",
                               arg.value.span, did_you_mean(str(v), spec.choices)))
        elif spec.kind in (int, float) and (arg.value.kind != "number" or not isinstance(v, (int, float))
                                            or (spec.kind is int and not isinstance(v, int))):
            found.append(error("E106", f"`{arg.key}` of `{item.op}` must be a number, got `{arg.value.text}`", arg.value.span))
        elif spec.minimum is not None and isinstance(v, (int, float)) and v < spec.minimum:
            found.append(error("E106", f"`{arg.key}` of `{item.op}` must be at least {spec.minimum:g}, got `{arg.value.text}`",
                               arg.value.span))
    return found


def item_args(item: GrowthItem) -> tuple[tuple[str, object], ...]:
    return tuple((a.key, a.value.value) for a in item.args)


def transition_ops(old: Shape, new: Shape, family: str, named: dict[str, GrowthItem],
                   new_spans: dict[str, Span], header: Span, edge: str) -> tuple[tuple[OpUse, ...], list[Diagnostic]]:
    """The operators of one edge: named ones checked, growing dims without one defaulted.

    `new_spans` points at the child's written values (a shrink error's caret); `header` is used
    when the value was inherited.
    """
    found: list[Diagnostic] = []
    ops: list[OpUse] = []
    fam = FAMILIES[family]
    for dim in GROWABLE:
        n, m = getattr(old, dim), getattr(new, dim)
        item = named.get(dim)
        span = new_spans.get(dim, header)
        if item is not None and (dim, item.op) == ("len", "pool") and fam.objective == "clm":
            # refused whether or not len grows (`growlang grow` never grows it)
            found.append(error("E110", f"`len by pool` does not apply to {family} on {edge}: pooling mean-pools "
                                       "the unmasked embeddings of a masked-LM encoder (CompoundGrow)", item.op_span,
                               "use `len by truncate`: train the shorter sequences, then the longer ones"))
            continue
        if m < n:
            found.append(error("E401", f"`{dim}` shrinks from {n} to {m} on {edge}", span,
                               "growth only adds; train the smaller model in an earlier stage"))
            continue
        if m == n:
            if item is not None:
                found.append(warning("W404", f"`{dim} by {item.op}` is named but `{dim}` stays {n} on {edge}",
                                     item.span, f"remove it, or change `{dim}`"))
            continue
        name = item.op if item else DEFAULT_OPERATOR[dim]
        info = OPERATORS[(dim, name)]
        why = info.precondition(n, m)
        if why:
            found.append(error("E403", f"{why} on {edge}", item.op_span if item else span))
            continue
        args = item_args(item) if item else ()
        ops.append(OpUse(dim, name, args, info.preservation(n, m, family, dict(args)), defaulted=item is None))
    found += group_problems(old, new, new_spans, header, edge)
    if new.width == old.width and new.heads != old.heads:
        found.append(error("E405", f"`heads` changes from {old.heads} to {new.heads} at fixed width on {edge}; "
                                   "not supported: heads follow width at fixed head_dim", new_spans.get("heads", header)))
    elif new.width != old.width and new.width // new.heads != old.width // old.heads:
        found.append(error("E408", f"head_dim changes from {old.width // old.heads} to {new.width // new.heads} on {edge}",
                           new_spans.get("heads", new_spans.get("width", header)),
                           f"width growth keeps head_dim {old.width // old.heads}: write `heads={new.width * old.heads // old.width}` "
                           f"in this stage, or set `model {{ head_dim={old.width // old.heads} }}` and drop `heads`" if (new.width * old.heads) % old.width == 0 else
                           f"width growth keeps head_dim {old.width // old.heads}: pick a width that is a multiple of it"))
    return tuple(ops), found


def group_problems(old: Shape, new: Shape, new_spans: dict[str, Span], header: Span, edge: str) -> list[Diagnostic]:
    """Grouped-query attention across one edge (docs/language.md, GQA): `kv_heads` does not shrink
    and the group size heads/kv_heads stays fixed (the shapes give an unwritten kv_heads the
    parent's group; a written one must keep it)."""
    span = new_spans.get("kv_heads", header)
    if new.kv_heads < old.kv_heads:
        return [error("E401", f"`kv_heads` shrinks from {old.kv_heads} to {new.kv_heads} on {edge}", span,
                      "growth only adds; train the smaller model in an earlier stage")]
    before, after = old.heads // old.kv_heads, new.heads // new.kv_heads
    if before != after:
        fix = f"write `kv_heads={new.heads // before}`" if new.heads % before == 0 else f"pick heads divisible by {before}"
        return [error("E211", f"the group size heads/kv_heads changes from {before} to {after} on {edge}", span,
                      f"the group size is fixed across growth: {fix}, or leave `kv_heads` out to inherit the group")]
    return []
