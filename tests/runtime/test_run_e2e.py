"""End to end on the CPU: a tiny schedule that grows every dimension, its outputs, and I/O errors."""

from __future__ import annotations

import json
import os
import time

import pytest
import torch

from growlang.runtime import failures
from growlang.runtime import checkpoint as ck
from growlang.runtime.metrics import read_metrics
from growlang.runtime.model import Encoder, EncoderConfig
from growlang.runtime.run import run_plan

try:
    from test_trainer_plans import grow_all_plan, on_corpus, with_train
except ImportError:  # tests collected as a package
    from tests.runtime.test_trainer_plans import grow_all_plan, on_corpus, with_train


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory):
    """One run of the grow-everything plan, shared by the output checks."""
    out = tmp_path_factory.mktemp("run") / "out"
    plan = on_corpus(grow_all_plan(eval_every=2, checkpoint_every=3, log_every=1), corpus)
    t0 = time.perf_counter()
    rc = run_plan(plan, out, resume=False, device="cpu")
    print(f"tiny e2e run took {time.perf_counter() - t0:.2f}s")
    assert rc == 0
    return plan, out


def test_outputs_and_metrics(finished, capsys):
    plan, out = finished
    assert json.loads((out / "plan.json").read_text()) == json.loads(json.dumps(plan.to_dict()))
    rows = read_metrics(out / "metrics.jsonl")
    train = [r for r in rows if r["kind"] == "train"]
    assert [r["step"] for r in train] == list(range(1, 9))
    assert [r["stage"] for r in train] == ["small"] * 4 + ["big"] * 4
    assert [r["stage_step"] for r in train] == [1, 2, 3, 4] * 2
    assert all(r["loss"] > 0 and r["lr"] > 0 and r["tokens_per_s"] > 0 for r in train)
    assert [r["step"] for r in train if "eval_loss" in r] == [2, 4, 6, 8]
    small, big = plan.stages
    assert train[3]["tokens"] == 4 * small.batch * small.reading.read_len
    assert train[-1]["tokens"] == 4 * (small.batch * small.reading.read_len + big.batch * big.reading.read_len)
    flops = 4 * small.batch * small.cost.flops_per_seq + 4 * big.batch * big.cost.flops_per_seq
    assert train[-1]["flops"] == pytest.approx(flops)
    assert all(a["time"] <= b["time"] for a, b in zip(train, train[1:]))
    growth = [r for r in rows if r["kind"] == "growth"]
    assert len(growth) == 1 and rows.index(growth[0]) == 5  # after small's kernel and its 4 steps
    kernels = [i for i, r in enumerate(rows) if r["kind"] == "attention"]  # each stage's, as it starts
    assert kernels == [0, 6] and [rows[i]["name"] for i in kernels] == ["fused", "fused"]
    g = growth[0]
    assert (g["stage"], g["src"], g["step"]) == ("big", "small", 4)
    assert g["eval_loss_before"] == pytest.approx(train[3]["eval_loss"], abs=1e-6)
    assert g["delta"] == pytest.approx(g["eval_loss_after"] - g["eval_loss_before"])
    assert {o["dim"]: o["preservation"] for o in g["ops"]} == {"depth": "none", "width": "exact",
                                                              "ffn": "exact", "len": "none"}
    # checkpoints: the two stage ends; the periodic ones (3, 6) were superseded
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["big-8", "small-4"]
    summary = (out / "summary.txt").read_text()
    assert "small" in summary and "big" in summary and "eval loss" in summary


def test_final_loads_in_transformers_with_same_logits(finished):
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    plan, out = finished
    tok = AutoTokenizer.from_pretrained(out / "final")
    hf = AutoModelForMaskedLM.from_pretrained(out / "final").eval()
    assert len(tok) == plan.model.vocab
    c = ck.find_stage_end(out / "checkpoints", "big")
    ours = Encoder(EncoderConfig(**c.state["config"]))
    ours.load_state_dict(c.model_state())
    ours.eval()
    ids = tok("the cat sat on the mat. then the dog ran.", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        ref = ours(ids)
        got = hf(input_ids=ids).logits
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-4)


def test_cli_run_says_where_the_model_is(tmp_path, corpus):
    import subprocess
    import sys

    grow = tmp_path / "t.grow"
    grow.write_text(f'model bert {{ vocab=300 head_dim=16 max_len=32 }}\ndata {{ corpus="{corpus}" holdout=0.1 }}\n'
                    'train { batch=4 }\nstage 1: depth=1 width=32 len=32 steps=2\n')
    r = subprocess.run([sys.executable, "-m", "growlang", "run", str(grow), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"model written to {tmp_path / 'o' / 'final'} (AutoModelForMaskedLM" in r.stderr


def test_exported_tokenizer_is_bounded_by_the_model(finished):
    """Issue 12 item 1: model_max_length = the position table, so truncation=True cuts to it."""
    from transformers import AutoTokenizer

    plan, out = finished
    tok = AutoTokenizer.from_pretrained(out / "final")
    assert tok.model_max_length == plan.model.max_len
    long_text = " ".join(["the cat sat on the mat."] * 40)
    assert len(tok(long_text, truncation=True)["input_ids"]) == plan.model.max_len


def test_existing_out_is_refused(finished, corpus, capsys):
    plan, out = finished
    assert run_plan(plan, out, resume=False, device="cpu") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--resume" in err and "--out" in err and "Traceback" not in err


def test_out_is_a_file(tmp_path, corpus, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert run_plan(on_corpus(grow_all_plan(), corpus), f, resume=False, device="cpu") == 1
    assert "is a file" in capsys.readouterr().err


def test_out_not_writable(tmp_path, corpus, capsys):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")  # a file where a parent folder should be: mkdir fails, as read-only would
    assert run_plan(on_corpus(grow_all_plan(), corpus), blocker / "out", resume=False, device="cpu") == 1
    err = capsys.readouterr().err
    assert "cannot write to --out" in err and "Traceback" not in err


def test_missing_corpus_is_a_message(tmp_path, capsys):
    plan = on_corpus(grow_all_plan(), tmp_path / "nope.txt")
    assert run_plan(plan, tmp_path / "out", resume=False, device="cpu") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: corpus") and "Traceback" not in err


def test_local_tokenizer_of_wrong_size_is_refused(finished, tmp_path, corpus, capsys):
    import dataclasses

    plan, out = finished
    bad = dataclasses.replace(plan, model=dataclasses.replace(plan.model, vocab=320),
                              data=dataclasses.replace(plan.data, tokenizer=str(out / "final")))
    assert run_plan(bad, tmp_path / "out", resume=False, device="cpu") == 1
    assert "vocab" in capsys.readouterr().err


def test_non_finite_loss_advice_fits_precision_and_checkpoints(tmp_path):
    from growlang.runtime.trainer import NonFiniteLoss

    plan = grow_all_plan()
    e = NonFiniteLoss("a", 3, 3, float("nan"))
    fp32 = failures.non_finite_loss(e, None, plan, tmp_path, "cpu", amp_in_use=False)
    assert "precision" not in fp32 and "--resume" not in fp32 and "starts from the beginning" in fp32
    amp = failures.non_finite_loss(e, tmp_path / "ck", plan, tmp_path, "auto", amp_in_use=True)
    assert "use precision=fp32" in amp and "--resume" in amp and str(tmp_path / "ck") in amp


def test_gpu_asked_without_one(tmp_path, corpus, capsys):
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    assert run_plan(on_corpus(grow_all_plan(), corpus), tmp_path / "out", resume=False, device="cuda") == 1
    assert "--device cpu" in capsys.readouterr().err


def test_non_finite_loss_stops_with_a_message(tmp_path, corpus, capsys):
    plan = on_corpus(grow_all_plan(lr=1e30, grad_clip=0.0, warmup=0, checkpoint_every=1), corpus)
    out = tmp_path / "out"
    assert run_plan(plan, out, resume=False, device="cpu") == 1
    err = capsys.readouterr().err
    assert "error: loss is" in err and "stage" in err and "--resume" in err and "Traceback" not in err
    assert "the last good checkpoint is" in err
    assert "precision=fp32" not in err  # a CPU run is already fp32: advice it cannot follow is noise
    rows = read_metrics(out / "metrics.jsonl")
    last = ck.latest(out / "checkpoints")
    assert last is not None and last.state["global_step"] == len([r for r in rows if r["kind"] == "train"])


def test_plot_of_a_real_run(finished, tmp_path):
    from argparse import Namespace

    from growlang.runtime.plot import main

    plan, out = finished
    png = tmp_path / "loss.png"
    assert main(Namespace(runs=[str(out)], out=str(png))) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_cli_run_from_a_grow_file(tmp_path, corpus):
    """The real command on a .grow file: parse, compile, train, refuse a second run, resume a done one."""
    import subprocess
    import sys

    grow = tmp_path / "tiny.grow"
    grow.write_text(
        f"# growlang run tiny.grow --out out\n"
        f"model bert {{ vocab=300 head_dim=16 max_len=64 }}\n"
        f"data {{ corpus=\"{corpus}\" tokenizer=builtin mask=0.15 holdout=0.2 }}\n"
        f"train {{ batch=4 lr=1e-3 warmup=2 seed=0 eval_every=2 eval_batches=2 checkpoint_every=3 log_every=1 }}\n"
        f"stage 1: depth=1 width=32 ffn=64 len=16 steps=3 ; grow depth by stack, width by interpolate, len by pool\n"
        f"stage 2: depth=2 width=64 ffn=128 len=32 steps=3\n")
    cmd = [sys.executable, "-m", "growlang", "run", str(grow), "--out", str(tmp_path / "out"), "--device", "cpu"]
    env = {**os.environ}
    first = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    assert "eval loss" in first.stdout and "Traceback" not in first.stderr
    again = subprocess.run(cmd, capture_output=True, text=True, env=env)
    # the schedule's own warnings (W213 here) come first, then the one error line
    assert again.returncode == 1 and "\nerror: " in "\n" + again.stderr and "--resume" in again.stderr
    done = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env)
    # the run is complete: --resume says so and changes nothing (issue 12 item 24)
    assert done.returncode == 0 and "nothing to do" in done.stderr and str(tmp_path / "out" / "final") in done.stderr


def test_resume_of_a_finished_run_says_complete_or_reexports(tmp_path, corpus, capsys):
    plan = on_corpus(grow_all_plan(), corpus)
    out = tmp_path / "out"
    assert run_plan(plan, out, resume=False, device="cpu") == 0
    written = (out / "final" / "model.safetensors").stat().st_mtime_ns
    capsys.readouterr()
    assert run_plan(plan, out, resume=True, device="cpu") == 0
    err = capsys.readouterr().err
    assert "already complete" in err and "nothing to do" in err
    assert (out / "final" / "model.safetensors").stat().st_mtime_ns == written  # not re-exported
    import shutil

    shutil.rmtree(out / "final")
    assert run_plan(plan, out, resume=True, device="cpu") == 0
    assert "exporting it again" in capsys.readouterr().err
    assert (out / "final" / "model.safetensors").is_file()
