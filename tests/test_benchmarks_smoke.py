"""Every benchmark script runs end to end in its --tiny (or cheapest) mode, as a subprocess.

On the idle 2-core AMD EPYC the file took 3 min 12 s (2026-12-04, `pytest --durations=5`:
trainer_speed --tiny 84 s, growth --tiny 40 s, growth --probes --tiny 20 s, allocator 14 s). The
analysis helpers of benchmarks/growth/run.py and its committed schedules are checked in-process
(torch-free, milliseconds).
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import shutil
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
    assert "Protocol checks" in out and "unigram entropy" in out
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["unigram_entropy"] > 0 and len(res["budgets"]) == 2
    top = res["budgets"][-1]
    assert {r["schedule"] for r in top["runs"]} == {"scratch", "compound", "small-only", "depth-stack"}
    for r in top["runs"]:
        assert 0 <= r["downstream"] <= 1 and r["tokens"] > 0 and r["train_s"] > 0 and r["final_eval"] > 0
        assert r["attention"] == ["fused"]  # the tiny scale is fp32: the kernel its metrics recorded
    assert not res["missing"] and {c["check"]: c["pass"] for c in res["checks"]}[">= 3 budgets"] is False
    assert (tmp_path / "results.png").stat().st_size > 0
    assert not (tmp_path / "docs").exists()  # docs/ is only written by the full suite in its default folder
    # resumable: a second call reuses every finished run from its summary (no run folder needed)
    for name in ("b1-scratch-s0", "b1-compound-s0"):
        shutil.rmtree(tmp_path / name)
    again = subprocess.run([sys.executable, str(BENCH / "growth" / "run.py"), "--tiny", "--out", str(tmp_path)],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and " done " not in again.stderr, again.stderr[-2000:]
    assert json.loads((tmp_path / "results.json").read_text())["budgets"] == res["budgets"]


def test_growth_probes_tiny(tmp_path):
    """--probes trains each probe shape alone at its budget and tabulates it; a second call reuses it."""
    out = run(str(BENCH / "growth" / "run.py"), "--probes", "--tiny", "--out", str(tmp_path))
    assert "Regime probes" in out and "| 1x64f64 |" in out and "missing: none" in out
    summary = json.loads((tmp_path / "summaries" / "probes" / "b1-size-1x64f64-s0.json").read_text())
    assert summary["schedule"] == "size-1x64f64" and summary["machine"]
    text = (tmp_path / "schedules" / "probes" / "b1-size-1x64f64-s0.grow").read_text()
    assert "stage final: depth=1 width=64 ffn=64 len=32" in text and "eval_batches=64" in text
    again = subprocess.run([sys.executable, str(BENCH / "growth" / "run.py"), "--probes", "--tiny", "--out",
                            str(tmp_path)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and " done " not in again.stderr, again.stderr[-2000:]
    spread = run(str(BENCH / "eval_mask_spread.py"), str(tmp_path / "b1-size-1x64f64-s0"), "--batches", "2",
                 "--seeds", "0", "1")
    assert "mask seed 1: eval loss" in spread and "spread (max - min) over 2 mask seeds" in spread


def fast_bf16_here() -> bool:
    import torch

    from growlang.runtime.precision import fast_bf16

    return fast_bf16(torch.device("cpu"))[0]


def test_trainer_speed_tiny(tmp_path):
    """Its bf16 sides run where this CPU has fast bf16 (--bf16 auto); elsewhere a line says why."""
    out = run(str(BENCH / "trainer_speed.py"), "--tiny", "--save", str(tmp_path / "t.txt"))
    assert "growlang fp32 / HF fp32" in out and "matmul ceiling" in out
    saved = (tmp_path / "t.txt").read_text()
    bf16 = fast_bf16_here()
    assert "transformers BertForMaskedLM sdpa fp32" in saved
    assert ("growlang run precision=bf16" in saved) == bf16 == ("bf16 sides left out" not in saved)
    assert ("growlang bf16 compile=on / growlang bf16" in saved) == bf16
    rows = saved[saved.index("compound schedule"):].splitlines()[2:-1]  # its rows, below the header
    precisions = ("fp32", "bf16") if bf16 else ("fp32",)
    compound = [r for r in rows if r.split()[0] in ("fp32", "bf16")]
    assert {r.split()[1].rstrip("*") for r in compound} == {"fused", "auto:"}  # each precision with either kernel
    defaults = {(r.split()[0], r.split()[1].rstrip("*")) for r in compound if "*" in "".join(r.split()[1:3])}
    assert defaults == {("fp32", "fused"), ("bf16", "auto:")} & {(p, k) for p in precisions for k in ("fused", "auto:")}
    assert len(compound) == len(precisions) * 2 * 3  # fused and auto, the quickstart's three stages
    # where the C kernels were built, the defaults again with torch's ops in their place (their baseline)
    from growlang.runtime.c_kernels import c_kernels

    built = c_kernels().lib is not None
    torch_head = [f"{p},torch-ops" for p in precisions for _ in range(3)] if built else []
    assert [r.split()[0] for r in rows if r not in compound] == torch_head
    assert ("growlang fp32 / growlang fp32 kernels=torch ops" in saved) == built
    assert ("growlang bf16 / growlang bf16 kernels=torch ops" in saved) == (built and bf16)


def test_trainer_speed_leaves_bf16_out_when_asked(tmp_path):
    out = run(str(BENCH / "trainer_speed.py"), "--tiny", "--bf16", "off", "--compound-steps", "0", "--no-compile")
    assert "bf16 sides left out (--bf16 off)" in out and "precision=bf16" not in out
    assert "growlang run fp32" in out and "transformers BertForMaskedLM sdpa fp32" in out
    assert "autocast bf16" not in out and "growlang fp32 / HF fp32" in out


def test_trainer_speed_refuses_a_missing_gpu_before_any_work():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the GPU mode would run")
    p = subprocess.run([sys.executable, str(BENCH / "trainer_speed.py"), "--device", "cuda"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "--device cuda: torch sees no CUDA device" in p.stderr and not p.stdout


def test_head_speed_runs_and_names_its_rows():
    out = run(str(BENCH / "head_speed.py"), "--rounds", "2", "--shapes", "quickstart")
    assert "matmul ceiling" in out and "N=608 predicted tokens, d=128, V=4096" in out
    rows = [r.split()[:2] for r in out.splitlines() if r.startswith(("fp32 ", "bf16 ")) and "left out" not in r]
    precisions = ("fp32", "bf16") if fast_bf16_here() else ("fp32",)  # --bf16 auto, as trainer_speed's
    assert ("bf16 head rows left out" in out) == (precisions == ("fp32",))
    assert rows == [[p, v] for p in precisions for v in ("GEMMs", "unfused", "linear_cross_entropy")]
    assert "index_put_ at targets" in out and "softmax(z) bf16" in out
    assert "softmax_cross_entropy fp32: torch ops" in out and "softmax_cross_entropy bf16: torch ops" in out


def test_head_speed_refuses_an_unknown_shape():
    p = subprocess.run([sys.executable, str(BENCH / "head_speed.py"), "--shapes", "huge"], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "--shapes: unknown huge" in p.stderr and not p.stdout


def test_attention_speed_times_every_kernel_that_differs():
    out = run(str(BENCH / "attention_speed.py"), "--tiny")
    assert "matmul ceiling" in out
    rows = [r for r in out.splitlines() if r.startswith("tiny")]
    dtypes = ("float32", "bfloat16") if fast_bf16_here() else ("float32",)
    assert [r.split()[-5] for r in rows] == [d for _ in range(2) for d in dtypes]
    for r in rows:  # fused, math, fused-fp32, gemm: a time, or '-' where it computes as another does
        cells = r.split()[-4:]
        assert cells[0] != "-" and cells[3] != "-" and all(c == "-" or float(c) > 0 for c in cells)
    dropout_fp32 = next(r for r in rows if "dropout" in r and "float32" in r).split()[-4:]
    assert dropout_fp32[1:3] == ["-", "-"]  # math is fused under dropout, fused-fp32 is fused in fp32


def test_pool_speed_times_both_poolings_in_both_dtypes():
    out = run(str(BENCH / "pool_speed.py"), "--tiny")
    assert "matmul ceiling" in out
    rows = [r for r in out.splitlines() if r.startswith(("float32", "bfloat16"))]
    assert [r.split()[0] for r in rows] == ["float32"] * 2 + ["bfloat16"] * 2
    assert ["one autograd step" in r for r in rows] == [False, True] * 2
    assert all(float(r.split()[-2]) > 0 for r in rows)


def test_step_profile_with_the_gemm_kernel():
    out = run(str(BENCH / "step_profile.py"), "--precision", "bf16", "--attention", "gemm", "--rows", "60")
    assert out.count("attention gemm") == 2 and out.count("AdamW step") == 2  # the small and the big stage
    assert "GemmAttention" in out and "flash_attention" not in out  # the kernel asked for, not torch's dispatch


def test_allocator_one_round():
    out = run(str(BENCH / "allocator.py"), "--rounds", "1", "--steps", "1")
    assert "matmul ceiling" in out and "keep_freed_memory took effect: " in out
    rows = [r.split() for r in out.splitlines()
            if r.startswith(("glibc default ", "keep_freed_memory ")) and "took effect" not in r]
    assert len(rows) == 2 * 2 * 2  # two allocators x fp32, bf16 x the first and the last stage
    assert "step time, keep_freed_memory / default: fp32 1" in out


def test_compile_speed_on_a_tiny_schedule(tmp_path):
    tiny = tmp_path / "tiny.grow"
    tiny.write_text("model bert { vocab=512 head_dim=32 max_len=32 dropout=0 }\ntrain { batch=2 }\n"
                    "stage a: depth=1 width=64 ffn=128 len=32 steps=10\n")
    out = run(str(BENCH / "compile_speed.py"), "--schedule", str(tiny), "--steps", "1", "--precision", "fp32")
    assert "matmul ceiling" in out and "break-even steps" in out
    (row,) = [r.split() for r in out.splitlines() if r.startswith("a ")]
    assert row[1] == "fp32" and row[4].endswith("x")


def test_model_speed_tiny():
    assert "ratio runtime/HF" in run(str(BENCH / "model_speed.py"), "--tiny")


def test_grow_bench_tiny():
    assert "operators" in run(str(BENCH / "grow_bench.py"), "--tiny")


def test_check_latency_one_run():
    assert "import torch" in run(str(BENCH / "check_latency.py"), "--runs", "1")


def test_committed_growth_schedules_match_the_protocol():
    """benchmarks/growth/schedules/ is what run.py writes: one file per protocol run, the final shape
    for all but small-only, and every run's training FLOPs within 2% of its budget."""
    from growlang.compiler import compile_file

    g = growth_module()
    sc = g.SCALES["full"]
    folder = BENCH / "growth" / "schedules"
    runs = g.protocol(tiny=False)
    assert {p.stem for p in folder.glob("*.grow")} == {r.name for r in runs}
    top = g.budget_flops(sc, folder / "top.grow")
    fin = sc["final"]
    for r in runs:
        path = folder / f"{r.name}.grow"
        assert path.read_text() == g.schedule_text(sc, r, *g.steps_for(sc, r, path))
        plan = compile_file(path).plan
        leaf = plan.stages[-1].shape
        want = (sc["small"]["depth"], sc["small"]["ffn"]) if r.kind.alone_small else (fin["depth"], fin["ffn"])
        assert (leaf.depth, leaf.ffn, leaf.len) == (*want, fin["len"])
        assert abs(plan.paths[0].flops / (r.budget * top) - 1) < 0.02, r.name


def test_crossing_interpolates_in_log_flops():
    report = growth_module() and importlib.import_module("report")
    pts = [(1.0, 10.0, 7.0), (4.0, 40.0, 5.0)]
    f, s = report.crossing(pts, 6.0)
    assert f == pytest.approx(2.0) and s == pytest.approx(20.0)
    assert report.crossing(pts, 4.0) == (None, None)
    assert report.crossing(pts, 7.5) == (None, None)  # already below at the smallest budget: not bracketed


def test_speedups_say_when_a_schedule_is_below_the_target_at_its_only_budget():
    report = growth_module() and importlib.import_module("report")

    def run(schedule, loss):
        return {"schedule": schedule, "final_eval": loss, "train_s": 10.0}

    budgets = [{"flops": 1.0, "runs": [run("scratch", 3.0), run("compound", 2.5)]},
               {"flops": 2.0, "runs": [run("scratch", 2.0), run("compound", 1.5), run("depth-stack", 1.8)]}]
    sp = report.speedups(budgets)
    assert sp["compound"]["flops"] == pytest.approx(2 ** 0.5) and "below_from" not in sp["compound"]
    assert sp["depth-stack"]["flops"] is None and sp["depth-stack"]["below_from"] == {"flops": 2.0, "loss": 1.8}
    budgets[1]["runs"][-1] = run("depth-stack", 2.2)  # above the target: not reached, nothing below
    assert "below_from" not in report.speedups(budgets)["depth-stack"]


def test_equal_flops_rows_interpolate_each_curve_and_name_the_lowest():
    report = growth_module() and importlib.import_module("report")
    curves = [{"schedule": "size-1x", "curve": {"flops": [1.0, 2.0, 3.0], "loss": [5.0, 4.0, 3.0]}},
              {"schedule": "size-2x", "curve": {"flops": [1.5, 3.0], "loss": [4.5, 2.5]}}]
    assert report.equal_flops_rows(curves, 3.0, points=3) == [
        ["1", "5.000", "-", "1x"], ["2", "4.000", "3.833", "2x"], ["3", "3.000", "2.500", "2x"]]
    assert report.interpolate([1.0, 2.0], [5.0, 4.0], 2.5) is None  # past the end: not extrapolated


def test_the_verdict_names_the_loss_and_whether_downstream_agrees():
    report = growth_module() and importlib.import_module("report")

    def top(c_loss, s_loss, c_acc, s_acc):
        runs = [{"schedule": k, "final_eval": l, "downstream": a}
                for k, ls, accs in (("compound", c_loss, c_acc), ("scratch", s_loss, s_acc)) for l, a in zip(ls, accs)]
        return [{"runs": runs}]

    text = report.verdict(top([2.06, 2.07], [2.13, 2.19], [0.43, 0.46], [0.51, 0.52]), {"compound": {"flops_speedup": 1.37}})
    assert text.startswith("**Compound beats fully-decayed scratch") and "1.37x" in text
    assert "**Downstream disagrees**" in text and "compound 0.445 vs scratch 0.515 (-0.070" in text
    assert "**Downstream agrees**" in report.verdict(top([2.06, 2.07], [2.13, 2.19], [0.53, 0.56], [0.51, 0.52]), {})
    same = report.verdict(top([2.1, 2.2], [2.15, 2.25], [0.5], [0.52]), {})
    assert same.startswith("**No clear difference") and "Downstream: no clear difference" in same
    assert "worse than scratch" in report.verdict(top([2.3, 2.4], [2.1, 2.2], [0.4, 0.41], [0.5, 0.52]), {})


def test_downstream_split_is_by_address():
    sides = growth_module() and importlib.import_module("downstream").addresses_by_side()
    assert sides["dev"] and sides["train"] and not sides["dev"] & sides["train"]


@pytest.mark.slow  # trains two tokenizers and starts a run: about a minute on an idle 2-core machine
def test_data_scale_tiny(tmp_path):
    out = run(str(BENCH / "data_scale.py"), "--tiny", "--dir", str(tmp_path))
    assert "old in-memory, 0.001 GB" in out and "store, 0.002 GB" in out and "load average after" in out
    assert not list(tmp_path.glob(".store-*.tmp-*"))


@pytest.mark.slow  # a quick calibration and a 4-step run: about 20 s on an idle 2-core machine
def test_time_estimate_tiny(tmp_path):
    out = run(str(BENCH / "time_estimate.py"), "--tiny", "--out", str(tmp_path))
    assert "estimated s" in out and "worst path error" in out and (tmp_path / "profile.json").exists()


def test_row_softmax_speed_times_both_in_both_dtypes():
    out = run(str(BENCH / "row_softmax_speed.py"), "--tiny")
    assert "matmul ceiling" in out and "kernels:" in out
    rows = [r for r in out.splitlines() if r.startswith("tiny")]
    assert [r.split()[5] for r in rows] == ["float32"] * 2 + ["bfloat16"] * 2
    assert [r.split()[6] for r in rows] == ["torch.softmax", "softmax_last_dim"] * 2
    assert all(float(r.split()[-1].rstrip("x")) > 0 for r in rows)
