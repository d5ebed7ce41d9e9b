"""The checks across a schedule's parts and its stage graph: paths exist (E207), growth clauses,
shapes, transitions with resolved operators (W409), and how each stage reads data under
`len by pool` (E406). What they resolve goes to `assemble` as one `CheckedSchedule`.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import networkx as nx

from growlang.diagnostics import Diagnostic, error, warning
from growlang.growth import check_items, transition_ops
from growlang.corpus_format import check_corpus
from growlang.families import family
from growlang.family_checks import builtin_vocab_problem, model_spec, objective_warnings
from growlang.plan import DataSpec, ModelSpec, Shape, TransitionPlan
from growlang.schema import Parts, Schedule, StageBlock
from growlang.shapes import INHERITED, resolve_shape, value_spans, written_ffn
from growlang.stage_checks import budget_checks


@dataclass(frozen=True)
class CheckedSchedule:
    """A schedule every check passed, with the values the checks resolved (assemble's input)."""

    path: Path  # the .grow file
    schedule: Schedule  # the validated blocks; which keys were written gives `defaults_used`
    model: ModelSpec
    data: DataSpec  # paths resolved against the schedule's folder
    order: tuple[str, ...]  # stage names, parents before children (file order among siblings)
    parents: Mapping[str, str | None]
    blocks: Mapping[str, StageBlock]
    lines: Mapping[str, int]  # where each stage is written
    shapes: Mapping[str, Shape]
    transitions: Mapping[tuple[str, str], TransitionPlan]  # (parent, child) -> operators
    reads: Mapping[str, tuple[int, int]]  # stage -> (read_len, pool) under `len by pool`


def resolve_path(value: str, base: Path) -> tuple[str, bool]:
    """`builtin`, or an absolute path (relative ones are relative to the schedule file)."""
    if value == "builtin":
        return value, True
    full = Path(value).expanduser()
    full = full if full.is_absolute() else base / full
    text = str(full.resolve()) if not any(c in value for c in "*?[") else str(full.absolute())
    return text, bool(glob.glob(text)) if any(c in value for c in "*?[") else full.exists()


def check_schedule(syntax, parts: Parts, graph: nx.DiGraph, path: Path,
                   complete: bool = True) -> tuple[CheckedSchedule | None, list[Diagnostic]]:
    """Checks every relation it can (a part that failed validation is skipped with whatever depends
    on it); returns the CheckedSchedule when `complete` (no errors before) and none were found here."""
    found: list[Diagnostic] = []
    m, d = parts.model, parts.data
    spec = model_spec(m) if m is not None else None
    blocks = {}
    for b in syntax.blocks:
        blocks.setdefault(b.kind, b)  # a repeated block is an error; the first one is the one validated
    if spec is not None and "data" in blocks:
        found += objective_warnings(family(spec.family), blocks["data"].settings)
    data_paths = {}
    if d is not None:
        for key in ("corpus", "tokenizer"):
            resolved, exists = resolve_path(getattr(d, key), path.parent.absolute())
            data_paths[key] = resolved
            if not exists:
                setting = next(s for s in blocks["data"].settings if s.key == key)
                found.append(error("E207", f"{key} `{getattr(d, key)}` not found (looked for {resolved})",
                                   setting.value.span, "paths are relative to the schedule file"))
            elif key == "corpus" and (problem := check_corpus(resolved)):
                setting = next(s for s in blocks["data"].settings if s.key == key)
                found.append(error("E209", problem, setting.value.span,
                                   "fix the file, or point `corpus=` at another one (docs/data.md lists the formats)"))

    if spec is not None and d is not None and d.tokenizer == "builtin" and "model" in blocks:
        vocab_span = next((s.value.span for s in blocks["model"].settings if s.key == "vocab"), blocks["model"].span)
        if problem := builtin_vocab_problem(family(spec.family), spec.vocab, vocab_span):
            found.append(problem)

    # Growth clauses name operators and arguments: checkable without shapes or the graph.
    clauses, vias = [], []  # by the stage's index in the file (a name may be written twice)
    for st in syntax.stages:
        named, problems = check_items(st.growth)
        clauses.append(named)
        found += problems
        named, problems = check_items(st.via)
        vias.append(named)
        found += problems
    if not graph.graph["acyclic"] or not len(graph):
        return None, found

    order = list(nx.lexicographical_topological_sort(graph, key=lambda n: graph.nodes[n]["index"]))
    parents = {n: next(iter(graph.predecessors(n)), None) for n in graph}
    children_of: dict[str, list[str]] = {n: [] for n in graph}
    for n in order:
        if parents[n] is not None:
            children_of[parents[n]].append(n)
    index = {n: graph.nodes[n]["index"] for n in graph}
    stage_blocks = {n: (graph.nodes[n]["syntax"], parts.stages[index[n]]) for n in graph}
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
        shape, problems = resolve_shape(name, st, block, shapes.get(parent), spec, ffn_expr if ffn_expr is not None else m.ffn)
        found += problems
        if shape is not None:
            shapes[name] = shape

    family_name = m.family if m is not None else "bert"
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
                ops, problems = transition_ops(shapes[name], shapes[child], family_name, {**clauses[index[name]], **vias[index[child]]},
                                               value_spans(cst), cst.name_span, f"`{name}` -> `{child}`")
                found += problems
                transitions[(name, child)] = TransitionPlan(name, child, ops)

    # `len by pool` on an edge makes the parent read the child's length (docs/operators.md, len).
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
    if spec is not None and m.max_len is None and shapes:  # the default max_len: the longest stage
        spec = model_spec(m, longest=max(s.len for s in shapes.values()))
    if spec is not None:
        found += budget_checks(order, parents, stage_blocks, shapes, pooling, spec, parts.train,
                               blocks, d.mask if d is not None else 0.15)
    schedule = parts.schedule()
    if not complete or schedule is None or any(x.is_error for x in found):
        return None, found

    data = DataSpec(data_paths["corpus"], data_paths["tokenizer"], d.mask, d.holdout, d.text_field)
    checked = CheckedSchedule(
        path=path, schedule=schedule, model=spec, data=data, order=tuple(order), parents=parents,
        blocks={n: block for n, (_, block) in stage_blocks.items()},
        lines={n: st.name_span.line for n, (st, _) in stage_blocks.items()},
        shapes=shapes, transitions=transitions, reads=pooling)
    return checked, found
