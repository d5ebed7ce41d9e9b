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
from growlang.schema import Parts
from growlang.shapes import INHERITED, resolve_shape, value_spans, written_ffn


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


def build_plan(syntax, parts: Parts, graph, path: Path, complete: bool = True) -> tuple[Plan | None, list[Diagnostic]]:
    """Checks every relation it can (a part that failed validation is skipped with whatever depends
    on it), then assembles the Plan when `complete` (no errors before) and none were found here."""
    import networkx as nx

    found: list[Diagnostic] = []
    m, d, t = parts.model, parts.data, parts.train
    blocks = {}
    for b in syntax.blocks:
        blocks.setdefault(b.kind, b)  # a repeated block is an error; the first one is the one validated
    data_paths = {}
    if d is not None:
        for key in ("corpus", "tokenizer"):
            resolved, exists = resolve_path(getattr(d, key), path.parent.absolute())
            data_paths[key] = resolved
            if not exists:
                setting = next(s for s in blocks["data"].settings if s.key == key)
                found.append(error("E207", f"{key} `{getattr(d, key)}` not found (looked for {resolved})",
                                   setting.value.span, "paths are relative to the schedule file"))

    # Growth clauses name operators and arguments: checkable without shapes or the graph.
    clauses, vias = {}, {}
    for st in syntax.stages:
        clauses[id(st)], problems = check_items(st.growth)
        found += problems
        vias[id(st)], problems = check_items(st.via)
        found += problems
    if not graph.graph["acyclic"] or not len(graph):
        return None, found

    order = list(nx.lexicographical_topological_sort(graph, key=lambda n: graph.nodes[n]["index"]))
    parents = {n: next(iter(graph.predecessors(n)), None) for n in graph}
    children_of: dict[str, list[str]] = {n: [] for n in graph}
    for n in order:
        if parents[n] is not None:
            children_of[parents[n]].append(n)
    stage_blocks = {n: (graph.nodes[n]["syntax"], parts.stages[graph.nodes[n]["index"]]) for n in graph}
    unsure = graph.graph["unsure"]
    shapes: dict[str, Shape] = {}
    ffn_in_force: dict[str, tuple] = {}  # (expression or None for the model's, known?), parents first
    for name in order:
        st, block = stage_blocks[name]
        parent = parents[name]
        ffn_in_force[name] = written_ffn(st, block, ffn_in_force.get(parent, (None, True)), name in unsure)
        if m is None or block is None:
            continue  # this stage or the model block failed validation; that error is reported
        ffn_expr, ffn_known = ffn_in_force[name]
        if name in unsure or (parent is not None and parent not in shapes):
            # The parent's shape is unknown (its error is reported): check this stage on its own
            # only when it writes every shape key it would otherwise inherit.
            if not ffn_known or any(getattr(block, k) is None for k in INHERITED):
                continue
            parent = None
        shape, problems = resolve_shape(name, st, block, shapes.get(parent), m, ffn_expr)
        found += problems
        if shape is not None:
            shapes[name] = shape

    family = m.family if m is not None else "bert"
    transitions: dict[tuple[str, str], TransitionPlan] = {}
    for name in order:
        st = stage_blocks[name][0]
        children = children_of[name]
        if st.growth and not children:
            found.append(warning("W409", f"stage `{name}` has no child stage; this grow clause has no effect",
                                 st.growth[0].span, f"remove it, or add a stage after it (or one `from {name}`)"))
        if st.via and parents[name] is None and name not in unsure:
            found.append(warning("W409", f"stage `{name}` has no parent stage; this via clause has no effect",
                                 st.via[0].span, "remove it, or name a parent with `from NAME`"))
        for child in children:
            cst = stage_blocks[child][0]
            if name in shapes and child in shapes and child not in unsure:
                ops, problems = transition_ops(shapes[name], shapes[child], family, {**clauses[id(st)], **vias[id(cst)]},
                                               value_spans(cst), cst.name_span, f"`{name}` -> `{child}`")
                found += problems
                transitions[(name, child)] = TransitionPlan(name, child, ops)

    # `len by pool` on an edge makes the parent read the child's length (operators.md, len).
    pooling: dict[str, tuple[int, int]] = {}
    for name in order:
        children = children_of[name]
        if name not in shapes or any((name, c) not in transitions for c in children):
            continue
        reads = {}
        for child in children:
            op = transitions[(name, child)].op_for("len")
            reads[child] = (shapes[child].len, shapes[child].len // shapes[name].len) if op and op.op == "pool" else None
        kinds = set(reads.values())
        if len(kinds) > 1:
            st = stage_blocks[name][0]
            listing = ", ".join(f"`{c}` " + (f"pools to len {r[0]}" if r else "does not pool") for c, r in reads.items())
            found.append(error("E406", f"the children of stage `{name}` disagree on `len by pool`: {listing}",
                               st.name_span, "the parent's training depends on it; give every child the same `len` operator and length"))
        pooling[name] = next(iter(kinds)) or (shapes[name].len, 1) if kinds else (shapes[name].len, 1)
    schedule = parts.schedule()
    if not complete or schedule is None or any(x.is_error for x in found):
        return None, found

    from growlang.plan_costs import assemble

    model = ModelSpec(m.family, m.vocab, m.head_dim, m.max_len, m.type_vocab, m.dropout, m.layer_norm_eps)
    data = DataSpec(data_paths["corpus"], data_paths["tokenizer"], d.mask, d.holdout)
    return assemble(path, model, data, t, schedule, stage_blocks, order, parents, shapes, transitions, pooling, found)
