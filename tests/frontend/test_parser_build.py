"""The shipped LALR tables (growlang/_grow_tables.py) are the grammar's: they match grammar/grow.lark
(regenerate with `python -m growlang.parser_build`) and give the same trees and errors as Lark
compiling the grammar."""

from pathlib import Path

import lark
import pytest

from growlang import _grow_tables, parser_build
from growlang.syntax import _parser

from conftest import GOLDEN, ROOT

SOURCES = sorted((ROOT / "schedules").glob("*.grow")) + sorted(GOLDEN.glob("*/*.grow"))


def test_generated_tables_are_current() -> None:
    assert _grow_tables.GRAMMAR_SHA256 == parser_build.grammar_hash(parser_build.grammar_text()), (
        "grammar/grow.lark changed: run `python -m growlang.parser_build`")
    assert _grow_tables.LARK_VERSION == lark.__version__, "Lark changed: run `python -m growlang.parser_build`"
    # (Not compared byte for byte: Lark numbers LALR states differently from run to run.)
    assert _parser().options.propagate_positions and not _parser().options.maybe_placeholders


def _outcome(parser, text: str):
    try:
        return "tree", parser.parse(text)
    except lark.exceptions.UnexpectedInput as exc:
        return type(exc).__name__, (exc.line, exc.column, sorted(getattr(exc, "expected", None) or []),
                                    sorted(getattr(exc, "allowed", None) or []))


def _positions(tree) -> list:
    if not isinstance(tree, lark.Tree):
        return [str(tree), tree.type, tree.line, tree.column, tree.end_line, tree.end_column]
    meta = tree.meta
    here = [tree.data, getattr(meta, "line", None), getattr(meta, "column", None), getattr(meta, "end_line", None),
            getattr(meta, "end_column", None)]
    return here + [_positions(c) for c in tree.children]


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_same_trees_and_errors_as_lark(path: Path) -> None:
    reference = lark.Lark(parser_build.grammar_text(), **parser_build.OPTIONS)
    text = path.read_text()
    ours, theirs = _outcome(_parser(), text), _outcome(reference, text)
    assert ours[0] == theirs[0]
    if ours[0] == "tree":
        assert _positions(ours[1]) == _positions(theirs[1])
    else:
        assert ours[1] == theirs[1]
