"""Golden files: valid schedules with their expected plan, invalid ones with their rendered
diagnostics. Regenerate with GROWLANG_REGEN_GOLDEN=1."""

import json
from pathlib import Path

import pytest

from growlang.compiler import compile_file
from growlang.diagnostics import render_text, summary_line
from growlang.plan import Plan
from growlang.render import check_table

from conftest import GOLDEN, REGEN

VALID = sorted((GOLDEN / "valid").glob("*.grow"))
INVALID = sorted((GOLDEN / "invalid").glob("*.grow"))
WARNING = sorted((GOLDEN / "warning").glob("*.grow"))  # valid, with warnings: the rendered diagnostics


def _plan_json(plan: Plan) -> str:
    d = plan.to_dict()
    d["source"] = Path(d["source"]).name  # machine-independent
    return json.dumps(d, indent=1, sort_keys=True) + "\n"


def _compare(expected: Path, actual: str) -> None:
    if REGEN or not expected.exists():
        expected.write_text(actual)
    assert actual == expected.read_text()


@pytest.mark.parametrize("path", VALID, ids=[p.stem for p in VALID])
def test_valid(path: Path) -> None:
    compiled = compile_file(path)
    assert compiled.ok, [d.message for d in compiled.diagnostics]
    _compare(path.with_suffix(".json"), _plan_json(compiled.plan))
    _compare(path.with_suffix(".txt"), check_table(compiled.plan, f"golden/valid/{path.name}"))  # what check prints


@pytest.mark.parametrize("path", INVALID, ids=[p.stem for p in INVALID])
def test_invalid(path: Path) -> None:
    compiled = compile_file(path)
    assert not compiled.ok and compiled.plan is None
    text = path.read_text()
    rendered = render_text(list(compiled.diagnostics), text, f"golden/invalid/{path.name}")
    rendered = rendered.replace(str(GOLDEN), "<golden>")  # resolved paths: machine-independent
    _compare(path.with_suffix(".txt"), rendered + summary_line(list(compiled.diagnostics)) + "\n")


@pytest.mark.parametrize("path", WARNING, ids=[p.stem for p in WARNING])
def test_warning(path: Path) -> None:
    compiled = compile_file(path)
    assert compiled.ok and compiled.plan is not None
    assert compiled.diagnostics and not any(d.is_error for d in compiled.diagnostics)
    rendered = render_text(list(compiled.diagnostics), path.read_text(), f"golden/warning/{path.name}")
    _compare(path.with_suffix(".txt"), rendered + summary_line(list(compiled.diagnostics)) + "\n")


def test_enough_invalid_cases_and_every_code_covered() -> None:
    from growlang.diagnostics import CODES

    assert len(INVALID) >= 30
    seen = set()
    for path in INVALID + WARNING:
        seen |= {d.code for d in compile_file(path).diagnostics}
    unreachable = {"E304"}  # default parents make a second root impossible to write; kept as a guard
    assert set(CODES) - unreachable <= seen, sorted(set(CODES) - unreachable - seen)


def test_plan_round_trip() -> None:
    for path in VALID + sorted((GOLDEN.parents[2] / "schedules").glob("*.grow")):
        plan = compile_file(path).plan
        again = Plan.from_dict(json.loads(json.dumps(plan.to_dict())))
        assert again == plan
