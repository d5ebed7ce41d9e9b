"""Mutated schedules never crash the front end: only exit 0/1, no traceback, spans inside the file."""

import random
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from growlang.compiler import compile_text
from growlang.diagnostics import render_text

ROOT = Path(__file__).parents[2]
SEEDS = [p.read_text() for p in sorted((ROOT / "schedules").glob("*.grow"))]
PIECES = ["=", ";", ":", "{", "}", "(", ")", ",", "grow", "by", "from", "via", "stage", "1e999", "99999999999999999999B",
          "-0", "0x", "é", "\u202e", "\x00", "\n", '"', "#", "1m", "4x", "pool", "len", "depth", "k", "ffn=0.5x"]


@st.composite
def mutated(draw):
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text)))
        kind = draw(st.integers(0, 3))
        if kind == 0:
            text = text[:pos] + text[pos + draw(st.integers(1, 8)):]
        elif kind == 1:
            text = text[:pos] + draw(st.sampled_from(PIECES)) + text[pos:]
        elif kind == 2:
            text = text[:pos] + draw(st.text(max_size=6)) + text[pos:]
        else:
            text = text[:pos] + draw(st.binary(max_size=6)).decode("latin-1") + text[pos:]
    return text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_mutations_give_diagnostics_not_crashes(text: str) -> None:
    compiled = compile_text(text, ROOT / "schedules" / "fuzz.grow")
    lines = text.splitlines() or [""]
    for d in compiled.diagnostics:
        assert 1 <= d.span.line <= max(1, len(lines) + 1), d
        assert d.span.col >= 1
        assert "Token(" not in d.message and "$END" not in d.message and "EQUAL" not in d.message
    render_text(list(compiled.diagnostics), text, "fuzz.grow")
    assert compiled.ok == (compiled.plan is not None)
