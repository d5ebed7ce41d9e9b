"""`train { attention=... }`: the kernel decision per stage (the timing probe mocked), its cache,
the two kernels' agreement, and a resumed stage that keeps the kernel it began with."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from growlang.compiler import compile_text
from growlang.runtime import attention as attn
from growlang.runtime.metrics import read_metrics
from growlang.runtime.run import run_plan

try:
    from test_trainer_plans import grow_all_plan, on_corpus
except ImportError:  # tests collected as a package
    from tests.runtime.test_trainer_plans import grow_all_plan, on_corpus

CPU = torch.device("cpu")
SHAPE = attn.AttentionShape(depth=2, micro_batch=4, heads=2, length=16, head_dim=8, causal=False, dropout=0.0)


def timer(fused: float, math: float, upcast: float = 9.0, calls: list | None = None, gemm: float = 9.0):
    def time_kernels(shape, dtype, device, kernels):
        if calls is not None:
            calls.append((shape, dtype, kernels))
        return {k: t for k, t in (("fused", fused), ("math", math), ("fused-fp32", upcast), ("gemm", gemm))
                if k in kernels}
    return time_kernels


@pytest.mark.parametrize("fused, math, upcast, gemm, name", [
    (1.0, 0.5, 0.7, 2.0, "math"), (1.0, 0.95, 2.0, 2.0, "fused"), (0.5, 1.0, 2.0, 2.0, "fused"),
    (1.0, 0.8, 0.6, 2.0, "fused-fp32"), (1.0, 2.0, 0.92, 2.0, "fused"), (1.0, 0.6, 0.7, 0.3, "gemm"),
    (1.0, 2.0, 2.0, 0.91, "fused")])
def test_auto_keeps_the_fastest_only_when_clearly_faster(tmp_path, fused, math, upcast, gemm, name):
    c = attn.resolve("auto", SHAPE, torch.bfloat16, CPU, cache_dir=tmp_path,
                     timer=timer(fused, math, upcast, gemm=gemm))
    assert (c.requested, c.name) == ("auto", name)
    assert "(4, 2, 16, 8) bfloat16" in c.why and f"fused {fused * 1e3:.2f} ms" in c.why  # what it rests on
    assert f"fused-fp32 {upcast * 1e3:.2f} ms" in c.why and f"gemm {gemm * 1e3:.2f} ms" in c.why


def test_the_candidates():
    dropped = attn.AttentionShape(**{**SHAPE.__dict__, "dropout": 0.1})  # CPU dispatch: math in training already
    assert attn.candidates(SHAPE, torch.bfloat16) == ("fused", "math", "fused-fp32", "gemm")
    assert attn.candidates(SHAPE, torch.float32) == ("fused", "math", "gemm")  # fused-fp32 is fused there
    assert attn.candidates(dropped, torch.bfloat16) == ("fused", "fused-fp32", "gemm")
    assert attn.candidates(dropped, torch.float32) == ("fused", "gemm")  # gemm draws its own dropout
    huge = attn.AttentionShape(depth=24, micro_batch=8, heads=16, length=4096, head_dim=64, causal=True, dropout=0.0)
    assert attn.candidates(huge, torch.bfloat16) == ("fused", "fused-fp32")  # T^2 tensors kept: not tried
    assert attn.candidates(huge, torch.float32) == ("fused",)


def test_the_probe_is_cached_per_shape_and_dtype(tmp_path):
    calls = []
    for _ in range(2):
        attn.resolve("auto", SHAPE, torch.bfloat16, CPU, cache_dir=tmp_path, timer=timer(1.0, 0.5, calls=calls))
    assert len(calls) == 1  # the second run on this machine reads the first one's measurement
    attn.resolve("auto", SHAPE, torch.float32, CPU, cache_dir=tmp_path, timer=timer(1.0, 0.5, calls=calls))
    longer = attn.AttentionShape(**{**SHAPE.__dict__, "length": 32})
    attn.resolve("auto", longer, torch.bfloat16, CPU, cache_dir=tmp_path, timer=timer(1.0, 0.5, calls=calls))
    assert len(calls) == 3 and calls[1][2] == ("fused", "math", "gemm")  # each time only the kernels that differ
    table = json.loads((tmp_path / "attention.json").read_text())
    assert sorted(len(v) for v in table.values()) == [3, 4, 4]


def test_a_changed_gemm_kernel_is_timed_anew(tmp_path, monkeypatch):
    """The probe's cache is keyed by runtime/attention_gemm.py's source: timings of an earlier
    version of growlang's own kernel (a stale cache after an upgrade) are not reused."""
    calls = []
    attn.resolve("auto", SHAPE, torch.bfloat16, CPU, cache_dir=tmp_path, timer=timer(1.0, 0.5, calls=calls))
    assert attn.gemm_source_hash() in attn.cache_key(CPU, torch.bfloat16, SHAPE)
    monkeypatch.setattr(attn, "gemm_source_hash", lambda: "another-version")
    c = attn.resolve("auto", SHAPE, torch.bfloat16, CPU, cache_dir=tmp_path, timer=timer(1.0, 0.9, gemm=0.2, calls=calls))
    assert len(calls) == 2 and c.name == "gemm"  # timed again, and the new timings decide
    assert len(json.loads((tmp_path / "attention.json").read_text())) == 2



def test_the_gemm_kernel_s_version_covers_its_row_softmax(monkeypatch):
    """Its speed depends on runtime/row_softmax.py's C kernel or torch's ops running: each its own
    cache key, so timings with one are not reused for the other."""
    from growlang.runtime import c_kernels as ck

    hashes = []
    try:
        for name in ("C (AVX512)", "torch"):
            monkeypatch.setattr(ck, "c_kernels", lambda name=name: ck.CKernels(name, "as the test says"))
            attn.gemm_source_hash.cache_clear()
            hashes.append(attn.gemm_source_hash())
    finally:
        attn.gemm_source_hash.cache_clear()
    assert hashes[0] != hashes[1]


def test_what_auto_does_not_probe(tmp_path):
    never = timer(1.0, 0.1, 0.1, calls := [])
    assert attn.resolve("fused", SHAPE, torch.bfloat16, CPU, timer=never).why == "as the schedule asks"
    assert attn.resolve("math", SHAPE, torch.bfloat16, CPU, timer=never).name == "math"
    assert attn.resolve("auto", SHAPE, torch.bfloat16, torch.device("cuda", 0), timer=never).name == "fused"
    assert "compiled" in attn.resolve("auto", SHAPE, torch.bfloat16, CPU, compiled=True, timer=never).why
    huge = attn.AttentionShape(depth=24, micro_batch=8, heads=16, length=4096, head_dim=64, causal=True, dropout=0.0)
    c = attn.resolve("auto", huge, torch.float32, CPU, cache_dir=tmp_path, timer=never)
    assert c.name == "fused" and "no other kernel" in c.why and "scores 384.0 GiB" in c.why  # math, gemm keep them
    assert calls == []


def test_the_probe_times_both_kernels_and_leaves_the_rng_alone():
    torch.manual_seed(3)
    before = torch.random.get_rng_state()
    dropped = attn.AttentionShape(**{**SHAPE.__dict__, "dropout": 0.1, "causal": True})
    times = attn.time_kernels(dropped, torch.bfloat16, CPU)
    assert set(times) == set(attn.KERNELS) and all(t > 0 for t in times.values())
    assert torch.equal(torch.random.get_rng_state(), before)


@pytest.mark.parametrize("causal", [False, True])
def test_the_kernels_agree(causal):
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 2, 21, 8, generator=g, requires_grad=True) for _ in range(3))
    exact = F.scaled_dot_product_attention(*(t.double() for t in (q, k, v)), is_causal=causal)
    out = {}
    for dtype in (torch.float32, torch.bfloat16):
        for name in attn.KERNELS:
            with attn.AttentionChoice(name, name, "").kernel():
                x = [t.to(dtype) for t in (q, k, v)]
                y = attn.scaled_dot_product_attention(*x, is_causal=causal)
            assert y.dtype == dtype  # fused-fp32 hands its result back in the run's dtype
            out[dtype, name] = (y.double(), *(t.double() for t in torch.autograd.grad(y.float().square().sum(), x)))
    for name in attn.KERNELS:  # in fp32 every kernel is the same function to rounding
        for a, b in zip(out[torch.float32, "fused"], out[torch.float32, name]):
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    error = {name: (out[torch.bfloat16, name][0] - exact).abs().max() for name in attn.KERNELS}
    assert error["fused-fp32"] <= error["fused"] and error["fused-fp32"] < 1e-2  # computed in fp32: more exact
    assert not torch.equal(out[torch.bfloat16, "fused-fp32"][0], out[torch.bfloat16, "fused"][0])


def test_the_schedule_key():
    head = "model bert { vocab=64 head_dim=16 max_len=16 }\n"
    stage = "stage 1: depth=1 width=32 ffn=64 len=16 steps=2\n"
    assert compile_text(head + stage).plan.train.attention == "fused"  # the default: as before the option
    assert compile_text(head + "train { attention=auto }\n" + stage).plan.train.attention == "auto"
    bad = compile_text(head + "train { attention=flash }\n" + stage)
    assert not bad.ok and any("`attention`" in d.message and "`math`" in d.hint for d in bad.diagnostics)


def no_dropout(plan):  # with dropout, torch's CPU dispatch trains on the math kernel either way
    return dataclasses.replace(plan, model=dataclasses.replace(plan.model, dropout=0.0))


def train_losses(out):
    return [(r["step"], r["loss"]) for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]


def test_math_trains_like_fused(tmp_path, corpus):
    fused, math = tmp_path / "fused", tmp_path / "math"
    assert run_plan(no_dropout(on_corpus(grow_all_plan(), corpus)), fused, resume=False, device="cpu") == 0
    assert run_plan(no_dropout(on_corpus(grow_all_plan(attention="math"), corpus)), math, resume=False,
                    device="cpu") == 0
    a, b = train_losses(fused), train_losses(math)
    assert [s for s, _ in a] == [s for s, _ in b]
    assert max(abs(x - y) / x for (_, x), (_, y) in zip(a, b)) < 1e-4  # the same function
    wa, wb = load_file(fused / "final" / "model.safetensors"), load_file(math / "final" / "model.safetensors")
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)  # other rounding: the other kernel really ran
    assert all(torch.allclose(wa[k], wb[k], rtol=1e-4, atol=1e-6) for k in wa)
    kernels = [(r["stage"], r["name"]) for r in read_metrics(math / "metrics.jsonl") if r["kind"] == "attention"]
    assert kernels == [("small", "math"), ("big", "math")]


def test_a_resumed_run_keeps_its_kernels(tmp_path, corpus, monkeypatch, capsys):
    """auto picks math (the probe mocked). A run stopped one step into the grown stage resumes from
    the small stage's end and grows again: the cached probe gives the same kernel. A run stopped
    after the grown stage's first checkpoint, with the cache then saying fused is faster, resumes
    that stage on its recorded kernel. Both end bitwise where the uninterrupted run did."""
    plan = no_dropout(on_corpus(grow_all_plan(attention="auto", checkpoint_every=3), corpus))
    cache = tmp_path / "cache"
    monkeypatch.setenv("GROWLANG_CACHE", str(cache))  # the probe's cache; the corpus's tokens are re-read
    monkeypatch.setattr(attn, "time_kernels", timer(1.0, 0.5))
    whole, regrown, restored = tmp_path / "whole", tmp_path / "regrown", tmp_path / "restored"
    assert run_plan(plan, whole, resume=False, device="cpu") == 0
    assert "attention: math (auto: forward+backward of" in capsys.readouterr().err
    weights = load_file(whole / "final" / "model.safetensors")

    def same_as_whole(out):
        assert train_losses(out) == train_losses(whole)
        again = load_file(out / "final" / "model.safetensors")
        assert all(torch.equal(again[k], weights[k]) for k in weights)

    assert run_plan(plan, regrown, resume=False, device="cpu", stop_after_steps=5) == 130  # last checkpoint: small's end
    assert run_plan(plan, regrown, resume=True, device="cpu") == 0
    same_as_whole(regrown)

    assert run_plan(plan, restored, resume=False, device="cpu", stop_after_steps=7) == 130  # last: big's step 6
    table = json.loads((cache / "attention.json").read_text())
    (cache / "attention.json").write_text(json.dumps({k: {"fused": 0.1, "math": 1.0, "gemm": 1.0} for k in table}))
    assert run_plan(plan, restored, resume=True, device="cpu") == 0
    same_as_whole(restored)
    kernels = [(r["stage"], r["name"]) for r in read_metrics(restored / "metrics.jsonl") if r["kind"] == "attention"]
    assert kernels == [("small", "math"), ("big", "math")]


def test_fused_fp32_trains_under_bf16(tmp_path, corpus):
    bf16, upcast = tmp_path / "bf16", tmp_path / "upcast"
    assert run_plan(no_dropout(on_corpus(grow_all_plan(precision="bf16"), corpus)), bf16, resume=False,
                    device="cpu") == 0
    plan = no_dropout(on_corpus(grow_all_plan(precision="bf16", attention="fused-fp32"), corpus))
    assert run_plan(plan, upcast, resume=False, device="cpu") == 0
    a, b = train_losses(bf16), train_losses(upcast)
    assert a != b and max(abs(x - y) / x for (_, x), (_, y) in zip(a, b)) < 0.05  # attention's rounding only
    kernels = [(r["stage"], r["name"]) for r in read_metrics(upcast / "metrics.jsonl") if r["kind"] == "attention"]
    assert kernels == [("small", "fused-fp32"), ("big", "fused-fp32")]


def test_the_schema_takes_every_kernel():
    """growlang/schema.py (torch-free) spells the kernels again: it must list exactly KERNELS and auto."""
    import typing

    from growlang.schema import TrainBlock

    kernels, unset = typing.get_args(TrainBlock.model_fields["attention"].annotation)  # Optional: unset is None
    assert unset is type(None) and typing.get_args(kernels) == (*attn.KERNELS, "auto")


@pytest.mark.parametrize("causal", [False, True])
def test_gemm_attention_is_attention_in_float64(causal):
    """Its hand-written backward, against finite differences (gradcheck) and against torch's kernel."""
    from growlang.runtime.attention_gemm import gemm_attention

    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 7, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda *x: gemm_attention(*x, is_causal=causal), (q, k, v))
    y = gemm_attention(q, k, v, is_causal=causal)
    torch.testing.assert_close(y, F.scaled_dot_product_attention(q, k, v, is_causal=causal), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("shape, causal", [((2, 2, 128, 64), False), ((1, 2, 512, 64), True)])
def test_gemm_attention_in_bf16_is_attention_to_bf16_rounding(shape, causal):
    """In bf16 its S, P, dP and dS stay bf16 tensors (torch's softmax and softmax-backward kernels
    compute in fp32 inside) and 1/sqrt(d) is the GEMMs' alpha: the result and the gradients are
    those of float64 attention on the same bf16 operands to a few bf16 roundings (measured
    2.9e-3 to 7.6e-3 of the largest value on these shapes, as before that change), rows of 512
    included."""
    from growlang.runtime.attention_gemm import gemm_attention

    g = torch.Generator().manual_seed(0)
    q, k, v, grad = (torch.randn(*shape, generator=g).bfloat16() for _ in range(4))
    exact = [t.double().requires_grad_() for t in (q, k, v)]
    y64 = F.scaled_dot_product_attention(*exact, is_causal=causal)
    y64.backward(grad.double())
    x = [t.clone().requires_grad_() for t in (q, k, v)]
    y = gemm_attention(*x, is_causal=causal)
    y.backward(grad)
    assert y.dtype == torch.bfloat16 and all(t.grad.dtype == torch.bfloat16 for t in x)
    for a, b in zip([y] + [t.grad for t in x], [y64] + [t.grad for t in exact]):
        assert (a.double() - b).abs().max() / b.abs().max() < 1e-2


def test_gemm_attention_with_dropout_is_dropout_of_the_probabilities():
    """Its dropout: the keep mask comes from torch's generator (re-drawn here from the same seed),
    scaled by 1/(1-p), and the gradients are those of that masked attention (autograd in float64)."""
    from growlang.runtime.attention_gemm import gemm_attention

    g = torch.Generator().manual_seed(2)
    q, k, v = (torch.randn(2, 3, 9, 4, generator=g, dtype=torch.float64, requires_grad=True) for _ in range(3))
    p = 0.3
    torch.manual_seed(5)
    y = gemm_attention(q, k, v, is_causal=True, dropout_p=p)
    grads = torch.autograd.grad(y.square().sum(), (q, k, v))
    torch.manual_seed(5)
    s = ((q @ k.transpose(-2, -1)) / 2.0).masked_fill(torch.ones(9, 9, dtype=torch.bool).triu(1), float("-inf"))
    probs = torch.softmax(s, dim=-1)
    keep = torch.empty_like(probs).bernoulli_(1 - p).to(torch.bool)
    reference = (probs * keep / (1 - p)) @ v
    torch.testing.assert_close(y, reference, rtol=1e-12, atol=1e-12)
    for a, b in zip(grads, torch.autograd.grad(reference.square().sum(), (q, k, v))):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert 0 < (~keep).float().mean() < 0.6 and torch.is_grad_enabled()


def test_gemm_trains_under_bf16_with_dropout_and_resumes_bitwise(tmp_path, corpus):
    """attention=gemm in a bf16 run with the model's dropout: close to the fused kernel's losses
    (rounding and its own dropout draws differ), and a run stopped mid-stage resumes to the same
    bits, dropout masks included (they come from the checkpointed RNG)."""
    fused, gemm, resumed = tmp_path / "fused", tmp_path / "gemm", tmp_path / "resumed"
    assert on_corpus(grow_all_plan(), corpus).model.dropout > 0
    assert run_plan(on_corpus(grow_all_plan(precision="bf16"), corpus), fused, resume=False, device="cpu") == 0
    plan = on_corpus(grow_all_plan(precision="bf16", attention="gemm", checkpoint_every=3), corpus)
    assert run_plan(plan, gemm, resume=False, device="cpu") == 0
    a, b = train_losses(fused), train_losses(gemm)
    assert a != b and max(abs(x - y) / x for (_, x), (_, y) in zip(a, b)) < 0.05
    kernels = [(r["stage"], r["name"]) for r in read_metrics(gemm / "metrics.jsonl") if r["kind"] == "attention"]
    assert kernels == [("small", "gemm"), ("big", "gemm")]
    assert run_plan(plan, resumed, resume=False, device="cpu", stop_after_steps=7) == 130
    assert run_plan(plan, resumed, resume=True, device="cpu") == 0
    assert train_losses(resumed) == b
    w, again = load_file(gemm / "final" / "model.safetensors"), load_file(resumed / "final" / "model.safetensors")
    assert all(torch.equal(w[k], again[k]) for k in w)
