"""The front end's modules import each other in one direction: no cycle, even through imports
inside functions (which only hide one)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx

PACKAGE = Path(__file__).resolve().parents[2] / "growlang"


def front_end_imports() -> nx.DiGraph:
    graph = nx.DiGraph()
    modules = {p.stem for p in PACKAGE.glob("*.py")}
    for path in PACKAGE.glob("*.py"):
        graph.add_node(path.stem)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] == "growlang" and len(parts) > 1 and parts[1] in modules:
                    graph.add_edge(path.stem, parts[1])
    return graph


def test_the_walk_sees_the_imports():
    graph = front_end_imports()
    assert graph.has_edge("compiler", "checks") and graph.has_edge("assemble", "accounting")
    assert graph.has_edge("syntax", "parser_build")  # an import inside a function counts too


def test_no_import_cycle_in_the_front_end():
    graph = front_end_imports()
    cycles = list(nx.simple_cycles(graph))
    assert not cycles, f"import cycles in growlang/: {cycles}"


def test_nothing_imports_the_compiler_but_the_cli():
    graph = front_end_imports()
    assert set(graph.predecessors("compiler")) <= {"cli"}
