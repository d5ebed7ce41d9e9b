"""Every benchmark script runs end to end in its --tiny (or cheapest) mode, as a subprocess.

Seconds each on an idle 2-core machine; the whole file stays under about a minute there. The
analysis helpers of benchmarks/growth/run.py and its committed schedules are checked in-process
(torch-free, milliseconds).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"


def run(*args: str, timeout: int = 300) -> str:
    p = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, f"{args} exited {p.returncode}\nstdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}"
    return p.stdout


def growth_module():
    spec = importlib.util.spec_from_file_location("growth_run", BENCH / "growth" / "run.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_growth_tiny(tmp_path):
    out = run(str(BENCH / "growth" / "run.py"), "--tiny", "--out", str(tmp_path))
    assert "Growth vs scratch" in out
    text = (tmp_path / "results.md").read_text()
    assert "| scratch |" in text and "| compound |" in text and "not run" in text
    assert (tmp_path / "results.png").stat().st_size > 0
    for name in ("scratch", "compound"):
        assert (tmp_path / name / "metrics.jsonl").exists() and (tmp_path / name / "bench.json").exists()
    # docs/ is only written by a full-scale run into the default folder
    assert not (tmp_path / "docs").exists()


def test_trainer_speed_tiny(tmp_path):
    out = run(str(BENCH / "trainer_speed.py"), "--tiny", "--save", str(tmp_path / "t.txt"))
    assert "ratio growlang / transformers" in out
    assert "transformers BertForMaskedLM sdpa loop" in (tmp_path / "t.txt").read_text()


def test_model_speed_tiny():
    assert "ratio runtime/HF" in run(str(BENCH / "model_speed.py"), "--tiny")


def test_grow_bench_tiny():
    assert "operators" in run(str(BENCH / "grow_bench.py"), "--tiny")


def test_check_latency_one_run():
    assert "import torch" in run(str(BENCH / "check_latency.py"), "--runs", "1")


def test_committed_growth_schedules_share_final_model_and_budget():
    """benchmarks/growth/schedules/ is what run.py writes at the full scale: same final shape, and
    every root-to-leaf path within 5% of the scratch run's training FLOPs."""
    from growlang.compiler import compile_file

    g = growth_module()
    sc = g.SCALES["full"]
    folder = BENCH / "growth" / "schedules"
    for s in g.SCHEDULES:
        assert (folder / f"{s.name}.grow").read_text() == g.schedule_text(sc, s, *steps_of(folder / f"{s.name}.grow"))
    scratch = compile_file(folder / "scratch.grow").plan
    budget = scratch.paths[0].flops
    fin = sc["final"]
    for s in g.SCHEDULES:
        plan = compile_file(folder / f"{s.name}.grow").plan
        leaf = plan.stages[-1].shape
        if s.shape:  # a control that trains another shape on the same FLOPs
            assert (leaf.depth, leaf.ffn) == (s.shape["depth"], s.shape["ffn"])
        else:
                assert (leaf.depth, leaf.width, leaf.ffn, leaf.len, leaf.heads) == (fin["depth"], fin["width"],
                                                                               fin["ffn"], fin["len"], 4)
        for path in plan.paths:
            assert abs(path.flops / budget - 1) < 0.05, (s.name, path.stages, path.flops / budget)


def steps_of(path: Path) -> tuple[int, int]:
    import re

    steps = [int(x) for x in re.findall(r"steps=(\d+)", path.read_text())]
    return steps[0], steps[-1]


def test_reach_and_at_interpolate():
    g = growth_module()
    c = g.Curve("x", "x", "final", flops=[1.0, 2.0, 4.0], time=[10.0, 20.0, 40.0], loss=[7.0, 6.0, 5.0],
                growth=None, steps=3, tokens=3, bench={})
    assert g.reach(c, 5.5) == (3.0, 30.0)
    assert g.reach(c, 7.5) == (1.0, 10.0)
    assert g.reach(c, 4.0) == (None, None)
    assert g.at(c, 3.0) == pytest.approx(5.5)
    assert g.at(c, 0.5) is None


@pytest.mark.slow  # trains two tokenizers and starts a run: about a minute on an idle 2-core machine
def test_data_scale_tiny(tmp_path):
    out = run(str(BENCH / "data_scale.py"), "--tiny", "--dir", str(tmp_path))
    assert "old in-memory, 0.001 GB" in out and "store, 0.002 GB" in out and "load average after" in out
    assert not list(tmp_path.glob(".store-*.tmp-*"))


@pytest.mark.slow  # a quick calibration and a 4-step run: about 20 s on an idle 2-core machine
def test_time_estimate_tiny(tmp_path):
    out = run(str(BENCH / "time_estimate.py"), "--tiny", "--out", str(tmp_path))
    assert "estimated s" in out and "worst path error" in out and (tmp_path / "profile.json").exists()
