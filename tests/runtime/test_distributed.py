"""Data-parallel training on CPU with gloo: 2 ranks match 1 rank, and resume across world sizes.

Tolerance: the tiny model has dropout=0, so 1 and 2 ranks compute the same function of the same
global batch and differ only in the order of floating-point reductions (two half-batch means
averaged by all-reduce instead of one mean). Losses agree within 1e-4 relative and the final
weights within 1e-5 absolute; in practice the differences are ~1e-7.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file

from growlang.plan import ModelSpec, OpUse, Shape
from growlang.runtime import checkpoint as ck
from growlang.runtime.distributed import Parallel, launch, setup
from growlang.runtime.errors import UserError
from growlang.runtime.metrics import read_metrics
from growlang.runtime.run import run_plan

try:
    from test_trainer_plans import make_plan, on_corpus, tiny_env, train_spec
except ImportError:  # tests collected as a package
    from tests.runtime.test_trainer_plans import make_plan, on_corpus, tiny_env, train_spec

LOSS_RTOL, WEIGHT_ATOL = 1e-4, 1e-5


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    with tiny_env(tmp_path_factory) as path:
        yield path


def grow_plan(corpus: Path, *, dropout: float = 0.0, **train_kw):
    """Two stages growing depth, width, ffn and len; batch 8 = 2 ranks x 2 micro batches of 2."""
    ops = (OpUse("depth", "stack", preservation="none"), OpUse("width", "interpolate", preservation="exact"),
           OpUse("ffn", "stack", preservation="exact"), OpUse("len", "pool", preservation="none"))
    model = ModelSpec(family="bert", vocab=300, head_dim=16, max_len=64, dropout=dropout)
    kw = dict(batch=8, micro_batch=2, checkpoint_every=3, eval_every=2)
    kw.update(train_kw)
    plan = make_plan([("small", None, Shape(depth=1, width=32, heads=2, ffn=64, len=16), 4, 2),
                      ("big", "small", Shape(depth=2, width=64, heads=4, ffn=128, len=32), 4)],
                     {"big": ops}, train=train_spec(**kw), model=model)
    return on_corpus(plan, corpus)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank, world, port, plan, out, resume, stop, expect):
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    rc = run_plan(plan, out, resume=resume, device="cpu", stop_after_steps=stop)
    assert rc == expect, f"rank {rank} exited {rc}, expected {expect}"
    # Leave without the interpreter's teardown: in the full suite a spawned rank reading a prepared
    # store sometimes aborted there ("terminate called without an active exception") after every
    # output was written; the outputs are what these tests check (the root cause is still open).
    sys.stdout.flush(), sys.stderr.flush()
    os._exit(0)


def run_ranks(plan, out: Path, world: int = 2, resume: bool = False, stop: int | None = None, expect: int = 0):
    """run_plan on `world` spawned processes, as torchrun would start them."""
    mp.start_processes(_rank, args=(world, _free_port(), plan, out, resume, stop, expect), nprocs=world,
                       start_method="spawn")


def losses(out: Path) -> dict:
    return {(r["kind"], r["step"]): (r.get("loss"), r.get("eval_loss"), r.get("eval_loss_before"),
                                     r.get("eval_loss_after"))
            for r in read_metrics(out / "metrics.jsonl")}


def max_rel_loss_diff(a: Path, b: Path) -> float:
    la, lb = losses(a), losses(b)
    assert la.keys() == lb.keys()
    worst = 0.0
    for k in la:
        for x, y in zip(la[k], lb[k]):
            assert (x is None) == (y is None), k
            if x is not None:
                worst = max(worst, abs(x - y) / abs(y))
    return worst


def max_weight_diff(a: Path, b: Path) -> float:
    x, y = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert x.keys() == y.keys()
    return max(float((x[k] - y[k]).abs().max()) for k in x)


@pytest.fixture(scope="module")
def reference(corpus, tmp_path_factory):
    """One process, the whole global batch."""
    plan = grow_plan(corpus)
    out = tmp_path_factory.mktemp("ref") / "out"
    torch.set_num_threads(1)
    assert run_plan(plan, out, resume=False, device="cpu") == 0
    return plan, out


def test_two_ranks_match_one_rank(reference, tmp_path):
    plan, ref = reference
    out = tmp_path / "out"
    run_ranks(plan, out)
    rows = read_metrics(out / "metrics.jsonl")
    assert len(rows) == len(read_metrics(ref / "metrics.jsonl"))  # rank 0 alone wrote them
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == sorted(
        p.name for p in (ref / "checkpoints").iterdir())
    assert max_rel_loss_diff(out, ref) < LOSS_RTOL
    assert max_weight_diff(out / "final", ref / "final") < WEIGHT_ATOL
    state = ck.latest(out / "checkpoints").state
    assert state["stream"] == ck.latest(ref / "checkpoints").state["stream"]  # global, not per rank
    assert len(state["rng_by_rank"]) == 2


def test_resume_two_rank_checkpoint_with_one_rank(reference, tmp_path, capsys):
    plan, ref = reference
    out = tmp_path / "out"
    # 2 ranks stop after step 7: the newest checkpoint is big-6, after the growth, mid-stage
    run_ranks(plan, out, stop=7, expect=130)
    assert ck.latest(out / "checkpoints").path.name == "big-6"
    assert run_plan(plan, out, resume=True, device="cpu") == 0
    assert "resuming from big-6" in capsys.readouterr().err
    assert max_rel_loss_diff(out, ref) < LOSS_RTOL
    assert max_weight_diff(out / "final", ref / "final") < WEIGHT_ATOL


def test_batch_must_split_over_the_ranks(corpus, monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(UserError, match="batch=8, which does not split over 3 processes"):
        setup(torch.device("cpu"), grow_plan(corpus))


def test_launcher_refuses_before_starting_ranks(corpus, capsys):
    assert launch(3, ["run", "never-started.grow"], plan=grow_plan(corpus)) == 1
    assert capsys.readouterr().err.count("does not split over 3 processes") == 1
    assert launch(0, ["run", "never-started.grow"]) == 2


def test_one_process_is_not_distributed(corpus, monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    par = setup(torch.device("cpu"), grow_plan(corpus))
    assert par == Parallel(device=torch.device("cpu"), sharding="none") and not par.active


@pytest.mark.slow
def test_one_rank_checkpoint_resumes_on_two_ranks(reference, tmp_path):
    plan, ref = reference
    out = tmp_path / "out"
    assert run_plan(plan, out, resume=False, device="cpu", stop_after_steps=5) == 130  # newest: small-4
    run_ranks(plan, out, resume=True)
    assert max_rel_loss_diff(out, ref) < LOSS_RTOL
    assert max_weight_diff(out / "final", ref / "final") < WEIGHT_ATOL


@pytest.mark.slow
def test_two_rank_resume_on_two_ranks_is_bitwise(corpus, tmp_path):
    """With dropout on, the per-rank RNG states in the checkpoint make a same-size resume exact."""
    plan = grow_plan(corpus, dropout=0.1)
    ref, out = tmp_path / "ref", tmp_path / "out"
    run_ranks(plan, ref)
    run_ranks(plan, out, stop=7, expect=130)
    run_ranks(plan, out, resume=True)
    for name in ("big-8",):
        for f in ("model.safetensors", "optimizer.safetensors"):
            x, y = load_file(ref / "checkpoints" / name / f), load_file(out / "checkpoints" / name / f)
            assert all(torch.equal(x[k], y[k]) for k in x), f"{name}/{f} differs"


@pytest.mark.slow
def test_fsdp_matches_one_rank(reference, tmp_path):
    """FSDP2 (fully_shard) with gloo on CPU: the same curve, full-state checkpoints."""
    plan, ref = reference
    out = tmp_path / "out"
    run_ranks(dataclasses.replace(plan, train=dataclasses.replace(plan.train, sharding="fsdp")), out)
    assert max_rel_loss_diff(out, ref) < LOSS_RTOL
    assert max_weight_diff(out / "final", ref / "final") < WEIGHT_ATOL
    # the checkpoint holds the full (unsharded) model
    full = load_file(ck.find_stage_end(out / "checkpoints", "big").path / "model.safetensors")
    assert full["emb.word.weight"].shape == (300, 64)


@pytest.mark.slow
def test_fsdp_resume_with_carry(corpus, tmp_path):
    plan = grow_plan(corpus, sharding="fsdp", on_grow="carry", lr_on_grow="rewarm")
    ref, out = tmp_path / "ref", tmp_path / "out"
    assert run_plan(plan, ref, resume=False, device="cpu") == 0  # one process: fsdp is a no-op
    run_ranks(plan, out, stop=7, expect=130)
    run_ranks(plan, out, resume=True)
    assert max_rel_loss_diff(out, ref) < LOSS_RTOL
    assert max_weight_diff(out / "final", ref / "final") < WEIGHT_ATOL


@pytest.mark.slow
def test_cli_nproc_two(corpus, tmp_path):
    """`growlang run FILE --nproc 2` end to end: the launcher, rank 0's output, the exit code."""
    grow = tmp_path / "tiny.grow"
    grow.write_text(
        "# growlang run tiny.grow --nproc 2\n"
        "model bert { vocab=300 head_dim=16 max_len=64 dropout=0 }\n"
        f"data  {{ corpus=\"{corpus}\" tokenizer=builtin mask=0.15 holdout=0.1 }}\n"
        "train { batch=8 micro_batch=2 lr=1e-3 warmup=2 seed=0 eval_batches=2 log_every=1 }\n"
        "stage a: depth=1 width=32 heads=2 ffn=64 len=16 steps=3 ; grow depth by stack\n"
        "stage b: depth=2 steps=3\n")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "growlang", "run", str(grow), "--out", str(out), "--device", "cpu", "--nproc", "2"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert p.returncode == 0, p.stderr
    assert (out / "final" / "model.safetensors").exists()
    assert p.stdout.count("eval loss") == 1  # one summary table: rank 0's
    assert len([r for r in read_metrics(out / "metrics.jsonl") if r["kind"] == "train"]) == 6


def test_two_ranks_on_a_prepared_store(reference, tmp_path):
    """`data { corpus=STORE }`: a store folder from `growlang prepare --out`, read by 2 gloo ranks."""
    from growlang.runtime.prepare import prepare

    plan, ref = reference
    store = tmp_path / "store"
    prepare(plan.data, plan.model.vocab, out=store, progress=False)
    out = tmp_path / "out"
    run_ranks(on_corpus(plan, store), out)
    assert max_rel_loss_diff(out, ref) < LOSS_RTOL
    assert max_weight_diff(out / "final", ref / "final") < WEIGHT_ATOL
