"""Smoke test of scripts/kill_resume.py: two SIGKILLs, two resumes, bitwise the same final weights.

The full run (20+ kills) is documented in docs/reliability.md; this checks the script still works.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "kill_resume.py"


@pytest.mark.slow
def test_two_kills_resume_to_the_same_weights(tmp_path, capsys, monkeypatch):
    spec = importlib.util.spec_from_file_location("kill_resume", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "kill_resume", mod)  # dataclasses look their module up
    spec.loader.exec_module(mod)
    assert mod.main(["--kills", "2", "--seed", "3", "--steps", "6", "--workdir", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "verdict: 2/2 kills recovered" in out
    assert re.search(r"bitwise equal to the reference in (\d+)/\1 rounds", out), out
