"""`train { compile=... }`: the decision per device, a rebuild (and recompile) after every growth,
compile time logged and kept out of tokens/s, and compiled losses close to eager ones."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from growlang.runtime.metrics import read_metrics
from growlang.runtime.precision import resolve_compile
from growlang.runtime.run import run_plan

try:
    from test_trainer_plans import grow_all_plan, on_corpus
except ImportError:  # tests collected as a package
    from tests.runtime.test_trainer_plans import grow_all_plan, on_corpus

CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


@pytest.mark.parametrize("requested, device, processes, on", [
    ("off", CUDA, 1, False), ("on", CPU, 1, True), ("auto", CUDA, 1, True), ("auto", CPU, 1, False),
    ("on", CPU, 2, False)])
def test_the_decision(requested, device, processes, on):
    c = resolve_compile(requested, device, processes)
    assert c.on is on and c.requested == requested and c.why
    if requested == "auto" and device.type == "cpu":
        assert "measured" in c.why  # auto says what it rests on
    if processes > 1:
        assert "not supported" in c.why


def no_dropout(plan):
    return dataclasses.replace(plan, model=dataclasses.replace(plan.model, dropout=0.0))


def test_compile_off_builds_nothing(tmp_path, corpus):
    out = tmp_path / "off"
    assert run_plan(on_corpus(grow_all_plan(), corpus), out, resume=False, device="cpu") == 0
    rows = read_metrics(out / "metrics.jsonl")
    assert not [r for r in rows if r["kind"] == "compile"]
    train = [r for r in rows if r["kind"] == "train"]
    assert all(r["flops_per_s"] > 0 and 0 < r["mfu"] < 1 for r in train)  # MFU in every train record
    summary = (out / "summary.txt").read_text()
    assert "MFU" in summary.splitlines()[0] and "compile" not in summary


@pytest.mark.slow  # two compiles of a tiny model: ~30-60 s on one busy CPU core
def test_compiled_losses_match_eager_and_recompile_after_growth(tmp_path, corpus, capsys):
    torch._dynamo.utils.counters.clear()
    eager, comp = tmp_path / "eager", tmp_path / "compiled"
    plan = no_dropout(on_corpus(grow_all_plan(), corpus))  # dropout off: compiled dropout draws other masks
    assert run_plan(plan, eager, resume=False, device="cpu") == 0
    assert run_plan(dataclasses.replace(plan, train=dataclasses.replace(plan.train, compile="on")), comp,
                    resume=False, device="cpu") == 0
    err = capsys.readouterr().err
    assert "compile: on, the training step of every stage" in err and err.count("== compiled stage") == 2

    rows = read_metrics(comp / "metrics.jsonl")
    compiles = [r for r in rows if r["kind"] == "compile"]
    assert [(r["stage"], r["compiles"]) for r in compiles] == [("small", 1), ("big", 2)]  # once per build
    assert all(r["seconds"] > 0 for r in compiles)
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 2  # the grown model was traced anew

    def loss(out):
        return [(r["step"], r["loss"]) for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]
    a, b = loss(eager), loss(comp)
    assert [s for s, _ in a] == [s for s, _ in b]
    assert max(abs(x - y) / x for (_, x), (_, y) in zip(a, b)) < 1e-3  # fusion reorders fp32 sums: not bitwise
    # the compile step is in wall time, not in tokens/s
    summary = (comp / "summary.txt").read_text()
    assert "compile" in summary.splitlines()[0]
    first = next(r for r in rows if r["kind"] == "train")
    assert "tokens_per_s" not in first  # log_every=1: its window was the compiling step alone
    assert first["time"] >= compiles[0]["seconds"]


def test_the_compiled_head_calls_its_kernel_untraced(recwarn):
    """softmax_cross_entropy is outside the graph (torch.compiler.disable): dynamo does not trace
    into head_kernel()'s lru_cache'd build and self-check, and warns of nothing there."""
    from growlang.runtime.linear_ce import linear_cross_entropy

    torch._dynamo.reset()
    h, w, b = torch.randn(6, 8, requires_grad=True), torch.randn(20, 8, requires_grad=True), torch.zeros(20)
    t = torch.randint(0, 20, (6,))
    loss = torch.compile(linear_cross_entropy)(h, w, b, t)
    torch.testing.assert_close(loss, linear_cross_entropy(h, w, b, t))
    loss.backward()
    assert h.grad is not None and w.grad is not None
    assert not [str(x.message) for x in recwarn if "head_kernel" in str(x.message) or "lru_cache" in str(x.message)]


def test_the_pooling_compiles_into_one_graph():
    """runtime/embedding_pool.py's autograd step traces with fullgraph=True (no strided out=,
    which dynamo refuses) and gives the plain formula's gradient."""
    from growlang.runtime.embedding_pool import plain_pool_embeddings, pool_embeddings

    torch._dynamo.reset()
    e = torch.randn(4, 17, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    pos = torch.tensor([[1, 2, 3], [4, 5, 16], [7, 8, 9], [10, 2, 3]])
    compiled = torch.compile(lambda e, p: pool_embeddings(e, p, 4), fullgraph=True)
    g = torch.randn(4, 1 + 4 + 3, 8)
    (got,) = torch.autograd.grad(compiled(e, pos), e, g)
    (want,) = torch.autograd.grad(plain_pool_embeddings(e, pos, 4), e, g)
    torch.testing.assert_close(got, want)
