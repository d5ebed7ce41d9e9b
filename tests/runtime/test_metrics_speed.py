"""MFU in the output: the summary table's FLOP/s, MFU and compile columns, summaries of older
checkpoints (without the new fields), the progress line, and the cached ceiling probe."""

from __future__ import annotations

import json

import torch

from growlang.runtime import ceiling as ce
from growlang.runtime.metrics import Progress, StageSummary, summaries_from_json, summary_table


def test_summary_table_has_flops_per_s_and_mfu():
    rows = [StageSummary("1", steps=10, time=12.0, tokens=1000, flops=1e12, loss=6.0, eval_loss=6.1,
                         step_time=10.0, step_flops=1e12, ceiling=2e11),
            StageSummary("2", steps=0)]
    head, rule, one, two = summary_table(rows).splitlines()
    assert head.split() == ["stage", "steps", "time", "tokens", "FLOPs", "FLOP/s", "MFU", "loss", "eval", "loss"]
    assert "1e+11" in one and "50.0%" in one  # 1e12 FLOPs in 10 s of steps against a 2e11 ceiling
    assert two.split()[5:7] == ["-", "-"]
    compiled = summary_table([StageSummary("1", steps=3, time=30.0, step_time=1.0, step_flops=1e9,
                                           compile_time=28.5, ceiling=1e10)])
    assert compiled.splitlines()[0].split()[3] == "compile" and "28.5s" in compiled


def test_summaries_of_older_checkpoints_still_load():
    old = {"stage": "1", "steps": 4, "time": 1.0, "tokens": 10, "flops": 1.0, "loss": 5.0, "eval_loss": None}
    (s,) = summaries_from_json([old])
    assert s.flops_per_s is None and s.mfu is None and s.compile_time == 0.0


def test_progress_line_shows_mfu(capsys):
    p = Progress("1", 4, 0, 2)
    p.update(1, 6.0, 1e-3)
    p.update(2, 5.9, 1e-3, speed={"flops_per_s": 4.2e10, "mfu": 0.42, "tokens_per_s": 1500.0})
    err = capsys.readouterr().err
    assert "42 GFLOP/s MFU 42.0%" in err and err.count("\n") == 1


def test_progress_line_shows_speed_elapsed_and_etas(capsys):
    """Issue 12 item 15: tokens/s, elapsed, stage ETA and whole-run ETA (the plan's remaining FLOPs
    at the measured FLOP/s) without a terminal too."""
    p = Progress("1", 4, 0, 2, flops_per_step=1e9, later_flops=8e9)
    p.update(2, 5.9, 1e-3, speed={"flops_per_s": 1e9, "mfu": 0.5, "tokens_per_s": 1500.0})
    err = capsys.readouterr().err
    # 2 steps left here (2e9 FLOPs) + 8e9 later = 10 s at 1 GFLOP/s
    assert "1.5k tok/s" in err and "elapsed, stage ETA" in err and "run ETA 10s" in err


def test_ceiling_is_measured_once_and_cached(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(ce, "measure", lambda device, dtype, n=None, reps=ce.REPS: calls.append(dtype) or 1e11)
    cpu = torch.device("cpu")
    assert ce.ceiling(cpu, torch.float32, tmp_path) == 1e11
    assert ce.ceiling(cpu, torch.float32, tmp_path) == 1e11 and calls == [torch.float32]
    assert ce.ceiling(cpu, torch.bfloat16, tmp_path) == 1e11 and len(calls) == 2  # another dtype: measured
    keys = json.loads((tmp_path / "ceilings.json").read_text())
    assert all(f"torch {torch.__version__}" in k and f"threads {torch.get_num_threads()}" in k for k in keys)


def test_the_probe_leaves_the_global_rng_alone():
    torch.manual_seed(3)
    want = torch.rand(3)
    torch.manual_seed(3)
    ce.measure(torch.device("cpu"), torch.float32, n=64, reps=1)
    assert torch.equal(torch.rand(3), want)  # a run seeds the model right after probing
