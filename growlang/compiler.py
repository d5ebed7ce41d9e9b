"""Schedule -> stage graph (networkx) -> frozen `Plan` (docs/architecture.md).

`compile_text` runs every pass and returns the plan (None on errors) with all diagnostics: a
syntax error stops at the first one, semantic errors are collected together (language.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from growlang.assemble import assemble
from growlang.checks import check_schedule
from growlang.diagnostics import Diagnostic, Problems, Span, did_you_mean, error
from growlang.plan import Plan
from growlang.schema import validate_schedule
from growlang.syntax import ScheduleSyntax, parse_schedule


@dataclass(frozen=True)
class Compiled:
    plan: Plan | None  # None when there are errors
    diagnostics: tuple[Diagnostic, ...]

    @property
    def ok(self) -> bool:
        return not any(d.is_error for d in self.diagnostics)


def compile_file(path: str | Path) -> Compiled:
    """Raises OSError/UnicodeDecodeError for an unreadable file (the CLI's exit 2)."""
    path = Path(path)
    return compile_text(path.read_text(encoding="utf-8-sig"), path)  # utf-8-sig: a leading BOM is dropped


def compile_text(text: str, path: str | Path = "<schedule>.grow") -> Compiled:
    path = Path(path)
    try:
        syntax, found = parse_schedule(text)
    except Problems as exc:
        return Compiled(None, tuple(exc.diagnostics))
    # Every layer runs even when an earlier one found errors; each check skips only the parts it
    # depends on that failed (a broken stage, a broken model block, an unsure parent edge).
    parts, problems = validate_schedule(syntax)
    found += problems
    graph = build_graph(syntax, found)
    checked, problems = check_schedule(syntax, parts, graph, path, complete=not any(d.is_error for d in found))
    found += problems
    return Compiled(assemble(checked) if checked is not None else None, tuple(found))


def build_graph(syntax: ScheduleSyntax, found: list[Diagnostic]):
    """Stages as nodes in file order; edge parent -> child (default parent: the stage before).

    `graph.graph["unsure"]` names the stages whose parent edge is unknown (an unknown or duplicated
    parent name): checks that need the parent skip them and their descendants.
    `graph.graph["acyclic"]` is False when the stages grow in a cycle.
    """
    graph = nx.DiGraph(unsure=set(), acyclic=True)
    unsure = graph.graph["unsure"]
    if not syntax.stages:
        found.append(error("E305", "the schedule has no stages", Span.whole_file(),
                           "add one: `stage 1: depth=2 width=256 len=128 steps=1k`"))
        return graph
    previous = None
    duplicated = set()
    for index, stage in enumerate(syntax.stages):
        if stage.name in graph:
            first = graph.nodes[stage.name]["syntax"]
            found.append(error("E301", f"stage `{stage.name}` is defined twice", stage.name_span,
                               f"first defined at line {first.name_span.line}; rename one"))
            duplicated.add(stage.name)
            continue
        graph.add_node(stage.name, syntax=stage, index=index)
        previous_name, previous = previous, stage.name
        if stage.parent is None and previous_name is not None:
            graph.add_edge(previous_name, stage.name)
    for stage in syntax.stages:
        if graph.nodes.get(stage.name, {}).get("syntax") is not stage:
            continue
        if stage.parent is None:
            continue
        if stage.parent not in graph:
            found.append(error("E302", f"stage `{stage.name}` grows from unknown stage `{stage.parent}`",
                               stage.parent_span, did_you_mean(stage.parent, graph.nodes)))
            unsure.add(stage.name)
        elif stage.parent == stage.name:
            found.append(error("E303", f"stage `{stage.name}` grows from itself", stage.parent_span))
            unsure.add(stage.name)
        else:
            graph.add_edge(stage.parent, stage.name)
    # A child of a name defined twice may have meant either definition.
    unsure.update(child for name in duplicated for child in graph.successors(name))
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        cycle = None
    if cycle:
        graph.graph["acyclic"] = False
        names = [u for u, _ in cycle]
        at = min(names, key=lambda n: graph.nodes[n]["index"])
        stage = graph.nodes[at]["syntax"]
        found.append(error("E303", "stages grow in a cycle: " + " -> ".join(f"`{n}`" for n in names + [names[0]]),
                           stage.parent_span or stage.name_span, "every stage must descend from the first one"))
        return graph
    roots = [n for n in graph if graph.in_degree(n) == 0 and n not in unsure]
    for extra in roots[1:]:
        found.append(error("E304", f"stage `{extra}` is a second root (first root: `{roots[0]}`)",
                           graph.nodes[extra]["syntax"].name_span, "give it a parent with `from NAME`"))
    return graph
