"""Tiny hand-built Plans for the trainer tests (no parser needed), and checks of the builder."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
from pathlib import Path

from growlang.accounting import reading, stage_cost
from growlang.families import family
from growlang.plan import DataSpec, ModelSpec, OpUse, PathCost, Plan, Shape, StagePlan, TrainSpec, TransitionPlan

WORDS = (
    "the a cat dog bird fish sat ran flew swam on under over near mat log tree pond red blue green "
    "small big quick slow happy sad one two three four five and then because while it they we saw "
    "ate found lost made took gave"
).split()


def write_corpus(folder: Path, docs: int = 120, seed: int = 0) -> Path:
    """A synthetic corpus: one document per line-separated paragraph, deterministic."""
    import random

    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "corpus.txt"
    paras = []
    for _ in range(docs):
        sents = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))) + "." for _ in range(rng.randint(3, 8))]
        paras.append(" ".join(sents))
    path.write_text("\n\n".join(paras) + "\n")
    return path


def train_spec(**kw) -> TrainSpec:
    base = dict(batch=4, micro_batch=2, lr=1e-3, warmup=2, decay="linear", min_lr=0.1, optimizer="adamw",
                weight_decay=0.01, beta1=0.9, beta2=0.98, eps=1e-6, grad_clip=1.0, precision="fp32", seed=0,
                on_grow="reset", lr_on_grow="restart", rewarm_steps=2, eval_every=0, eval_batches=2,
                checkpoint_every=0, log_every=1)
    base.update(kw)
    return TrainSpec(**base)


def make_plan(stages, transitions=(), *, train=None, model=None, data=None, eval_len=None, name="tiny") -> Plan:
    """stages: (name, parent, Shape, steps[, pool]) tuples in topological order.

    transitions: {child: (OpUse, ...)}; a stage with `pool` reads its child's length.
    """
    model = model or ModelSpec(family="bert", vocab=300, head_dim=16, max_len=64, dropout=0.1)
    data = data or DataSpec(corpus="builtin", tokenizer="builtin", mask=0.15, holdout=0.1)
    train = train or train_spec()
    transitions = dict(transitions)
    by_name = {s[0]: s for s in stages}
    out = []
    for st in stages:
        sname, parent, shape, steps = st[:4]
        pool = st[4] if len(st) > 4 else 1
        kids = [s for s in stages if s[1] == sname]
        read_len = kids[0][2].len if pool > 1 else shape.len
        read = reading(shape.len, read_len, pool, data.mask, family(model.family).objective)
        cost = stage_cost(model, shape, read, batch=train.batch, steps=steps, precision=train.precision)
        out.append(StagePlan(name=sname, parent=parent, shape=shape, steps=steps, batch=train.batch,
                             micro_batch=min(train.micro_batch, train.batch), lr=train.lr, reading=read, cost=cost))
    trans = tuple(TransitionPlan(by_name[c][1], c, tuple(ops)) for c, ops in transitions.items())
    leaves = [s for s in out if not any(t.src == s.name for t in trans)]
    paths = tuple(PathCost(stages=(leaf.name,), tokens=0, flops=0.0, baseline_flops=1.0, saving=0.0, speedup=1.0)
                  for leaf in leaves)
    eval_len = eval_len or max(s.shape.len for s in out)
    return Plan(name=name, source=f"/tmp/{name}.grow", model=model, data=data, train=train, stages=tuple(out),
                transitions=trans, paths=paths, eval_len=eval_len)


def grow_all_plan(**train_kw) -> Plan:
    """Two stages growing every dimension: depth stack, width interpolate, ffn stack, len pool."""
    ops = (OpUse("depth", "stack", preservation="none"), OpUse("width", "interpolate", preservation="exact"),
           OpUse("ffn", "stack", preservation="exact"), OpUse("len", "pool", preservation="none"))
    return make_plan(
        [("small", None, Shape(depth=1, width=32, heads=2, ffn=64, len=16), 4, 2),
         ("big", "small", Shape(depth=2, width=64, heads=4, ffn=128, len=32), 4)],
        {"big": ops}, train=train_spec(**train_kw))


def with_train(plan: Plan, **kw) -> Plan:
    return dataclasses.replace(plan, train=dataclasses.replace(plan.train, **kw))


def test_plan_builder_round_trips():
    plan = grow_all_plan()
    assert Plan.from_dict(json.loads(json.dumps(plan.to_dict()))) == plan
    small, big = plan.stages
    assert (small.reading.read_len, small.reading.pool, big.reading.read_len) == (32, 2, 32)
    assert plan.transition_into("big").op_for("len").op == "pool"


def on_corpus(plan: Plan, corpus: Path) -> Plan:
    return dataclasses.replace(plan, data=dataclasses.replace(plan.data, corpus=str(corpus)))


@contextlib.contextmanager
def tiny_env(tmp_path_factory):
    """A synthetic corpus for a test module, with the tokenizer/token cache in a temp folder
    ($GROWLANG_CACHE is restored afterwards, so other modules see their own setting)."""
    root = tmp_path_factory.mktemp("tinydata")
    old = os.environ.get("GROWLANG_CACHE")
    os.environ["GROWLANG_CACHE"] = str(root / "cache")
    try:
        yield write_corpus(root)
    finally:
        if old is None:
            os.environ.pop("GROWLANG_CACHE", None)
        else:
            os.environ["GROWLANG_CACHE"] = old
