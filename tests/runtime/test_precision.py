"""Precision: `auto` resolution with the hardware probe mocked, fp16 refused off CUDA, and bf16
autocast on the CPU that trains (a loss different from fp32's, fp32 master weights) and resumes
to the same losses as an uninterrupted run."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from growlang.runtime import precision as prec
from growlang.runtime.errors import UserError
from growlang.runtime.metrics import read_metrics
from growlang.runtime.run import run_plan

try:
    from test_trainer_plans import grow_all_plan, on_corpus
except ImportError:  # tests collected as a package
    from tests.runtime.test_trainer_plans import grow_all_plan, on_corpus

CPU = torch.device("cpu")


@pytest.mark.parametrize("flags, name", [({"avx2", "amx_bf16", "amx_tile"}, "bf16"), ({"avx2", "avx512_bf16"}, "bf16"),
                                         ({"avx2", "fma"}, "fp32"), (set(), "fp32")])
def test_auto_on_a_cpu_follows_its_bf16_instructions(flags, name):
    p = prec.resolve("auto", CPU, frozenset(flags))
    assert p.name == name and p.requested == "auto"
    assert ("amx_bf16" in p.why or "avx512_bf16" in p.why)  # the reason names what was looked for
    assert p.describe().startswith(f"precision: {name}")
    assert p.amp_dtype == (torch.bfloat16 if name == "bf16" else None) and not p.scales_loss


@pytest.mark.parametrize("supported, name", [(True, "bf16"), (False, "fp32")])
def test_auto_on_cuda_follows_bf16_support(monkeypatch, supported, name):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=None: "Mock GPU")
    p = prec.resolve("auto", torch.device("cuda", 0))
    assert p.name == name and "Mock GPU" in p.why


def test_explicit_requests():
    assert prec.resolve("fp32", CPU, frozenset()).amp_dtype is None
    slow = prec.resolve("bf16", CPU, frozenset({"avx2"}))  # asked for: honoured, with a note
    assert slow.name == "bf16" and "slower" in slow.why and "precision=auto trains in fp32" in slow.why
    assert prec.resolve("bf16", CPU, frozenset({"amx_bf16"})).why == "as the schedule asks"
    assert prec.resolve("fp16", torch.device("cuda", 0)).scales_loss
    with pytest.raises(UserError, match="fp16 needs a CUDA GPU.*precision=bf16"):
        prec.resolve("fp16", CPU)


def test_cpu_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx2 amx_bf16\n\n")
    assert prec.cpu_flags(info) == {"fpu", "sse2", "avx2", "amx_bf16"}
    assert prec.cpu_flags(tmp_path / "missing") == frozenset()


def test_fp16_on_the_cpu_stops_before_writing_anything(tmp_path, corpus, capsys):
    out = tmp_path / "out"
    assert run_plan(on_corpus(grow_all_plan(precision="fp16"), corpus), out, resume=False, device="cpu") == 1
    err = capsys.readouterr().err
    assert "fp16 needs a CUDA GPU" in err and "Traceback" not in err and not out.exists()


def losses(out):
    return [(r["kind"], r["step"], r.get("loss")) for r in read_metrics(out / "metrics.jsonl")]


def test_bf16_on_the_cpu_trains_and_resumes(tmp_path, corpus, capsys):
    plan32 = on_corpus(grow_all_plan(checkpoint_every=3), corpus)
    plan16 = on_corpus(grow_all_plan(checkpoint_every=3, precision="bf16"), corpus)
    whole, fp32 = tmp_path / "whole", tmp_path / "fp32"
    assert run_plan(plan16, whole, resume=False, device="cpu") == 0
    assert "precision: bf16 autocast" in capsys.readouterr().err
    assert run_plan(plan32, fp32, resume=False, device="cpu") == 0
    # autocast really ran: the losses differ from fp32's, by little
    a, b = [x[2] for x in losses(whole) if x[2] is not None], [x[2] for x in losses(fp32) if x[2] is not None]
    assert a != b and max(abs(x - y) / y for x, y in zip(a, b)) < 0.05
    weights = load_file(whole / "final" / "model.safetensors")
    assert all(w.dtype == torch.float32 for w in weights.values())  # master weights stay fp32

    cut = tmp_path / "cut"  # stopped one step into the grown stage, then resumed
    assert run_plan(plan16, cut, resume=False, device="cpu", stop_after_steps=5) == 130
    assert run_plan(plan16, cut, resume=True, device="cpu") == 0
    assert losses(cut) == losses(whole)  # bf16 autocast on one CPU thread is deterministic too
    again = load_file(cut / "final" / "model.safetensors")
    assert all(torch.equal(again[k], weights[k]) for k in weights)
