"""Checked schedule + stage graph -> the frozen `Plan` (plan.py): shapes, transitions with
resolved operators, pooling, costs (accounting.py) and one `PathCost` per root-to-leaf path.
"""

from __future__ import annotations

import glob
from pathlib import Path

from growlang import accounting
from growlang.diagnostics import Diagnostic, error, warning
from growlang.growth import check_items, transition_ops
from growlang.plan import DataSpec, ModelSpec, PathCost, Plan, Shape, StagePlan, TrainSpec, TransitionPlan
from growlang.schema import Schedule
from growlang.shapes import resolve_shape, value_spans, written_ffn


def _fmt(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def resolve_path(value: str, base: Path) -> tuple[str, bool]:
    """`builtin`, or an absolute path (relative ones are relative to the schedule file)."""
    if value == "builtin":
        return value, True
    full = Path(value).expanduser()
    full = full if full.is_absolute() else base / full
    text = str(full.resolve()) if not any(c in value for c in "*?[") else str(full.absolute())
    return text, bool(glob.glob(text)) if any(c in value for c in "*?[") else full.exists()


def build_plan(syntax, schedule: Schedule, graph, path: Path) -> tuple[Plan | None, list[Diagnostic]]:
    import networkx as nx

    found: list[Diagnostic] = []
    m, d, t = schedule.model, schedule.data, schedule.train
    blocks = {b.kind: b for b in syntax.blocks}
    model = ModelSpec(m.family, m.vocab, m.head_dim, m.max_len, m.type_vocab, m.dropout, m.layer_norm_eps)
    data_paths = {}
    for key in ("corpus", "tokenizer"):
        resolved, exists = resolve_path(getattr(d, key), path.parent.absolute())
        data_paths[key] = resolved
        if not exists:
            setting = next(s for s in blocks["data"].settings if s.key == key)
            found.append(error("E207", f"{key} `{getattr(d, key)}` not found (looked for {resolved})",
                               setting.value.span, "paths are relative to the schedule file"))
    data = DataSpec(data_paths["corpus"], data_paths["tokenizer"], d.mask, d.holdout)

    order = list(nx.lexicographical_topological_sort(graph, key=lambda n: graph.nodes[n]["index"]))
    parents = {n: next(iter(graph.predecessors(n)), None) for n in graph}
    stage_blocks = {st.name: (st, schedule.stages[i]) for i, st in enumerate(syntax.stages)}
    shapes: dict[str, Shape] = {}
    for name in order:
        st, block = stage_blocks[name]
        parent = parents[name]
        if parent is not None and parent not in shapes:
            continue  # the parent's shape failed; its error is reported
        ffn_expr, _ = written_ffn(name, stage_blocks, parents)
        shape, problems = resolve_shape(name, st, block, shapes.get(parent), m, ffn_expr)
        found += problems
        if shape is not None:
            shapes[name] = shape

    transitions: dict[tuple[str, str], TransitionPlan] = {}
    for name in order:
        st = stage_blocks[name][0]
        clause, problems = check_items(st.growth)
        found += problems
        children = [c for c in order if parents[c] == name]
        if st.growth and not children:
            found.append(warning("W404", f"stage `{name}` has no next stage; its growth clause is unused",
                                 st.growth[0].span, "remove it, or add a stage after it"))
        for child in children:
            cst = stage_blocks[child][0]
            via, problems = check_items(cst.via)
            found += problems
            if name in shapes and child in shapes:
                ops, problems = transition_ops(shapes[name], shapes[child], m.family, {**clause, **via},
                                               value_spans(cst), cst.name_span, f"`{name}` -> `{child}`")
                found += problems
                transitions[(name, child)] = TransitionPlan(name, child, ops)
        if cst_via := stage_blocks[name][0].via:
            if parents[name] is None:
                found.append(warning("W404", f"stage `{name}` has no parent; its `via` operators are unused",
                                     cst_via[0].span))
    if any(x.is_error for x in found):
        return None, found

    # `len by pool` on an edge makes the parent read the child's length (operators.md, len).
    pooling: dict[str, tuple[int, int]] = {}
    for name in order:
        reads = {}
        for child in (c for c in order if parents[c] == name):
            op = transitions[(name, child)].op_for("len")
            reads[child] = (shapes[child].len, shapes[child].len // shapes[name].len) if op and op.op == "pool" else None
        kinds = set(reads.values())
        if len(kinds) > 1:
            st = stage_blocks[name][0]
            listing = ", ".join(f"`{c}` " + (f"pools to len {r[0]}" if r else "does not pool") for c, r in reads.items())
            found.append(error("E406", f"the children of stage `{name}` disagree on `len by pool`: {listing}",
                               st.name_span, "the parent's training depends on it; give every child the same `len` operator and length"))
        pooling[name] = next(iter(kinds)) or (shapes[name].len, 1) if kinds else (shapes[name].len, 1)
    if any(x.is_error for x in found):
        return None, found

    from growlang.plan_costs import assemble

    return assemble(path, model, data, t, schedule, stage_blocks, order, parents, shapes, transitions, pooling, found)
