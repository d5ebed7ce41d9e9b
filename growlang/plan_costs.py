"""Steps, costs and paths of a checked schedule (accounting.md), and the defaults it used."""

from __future__ import annotations

from pathlib import Path



from growlang import accounting
from growlang.compiler import steps_for_tokens
from growlang.plan import PathCost, Plan, StagePlan, TrainSpec

# BERT's warm-up was 10k of 1M steps: 1% of the longest path's steps when none is written.
WARMUP_SHARE = 0.01


def _fmt(v) -> str:
    if isinstance(v, tuple):
        return v[0] if v[0] != "rewarm" else f"rewarm({v[1]})"
    return f"{v:g}" if isinstance(v, float) else str(v)


def defaults_used(schedule) -> list[str]:
    used = []
    for kind in ("model", "data", "train"):
        block = getattr(schedule, kind)
        for key in type(block).model_fields:
            if key not in block.model_fields_set and key not in ("micro_batch", "warmup"):
                used.append(f"{kind}.{key}={_fmt(getattr(block, key))}")
    return used


def assemble(path: Path, model, data, t, schedule, stage_blocks, order, parents, shapes, transitions,
             pooling, found):
    stages: dict[str, StagePlan] = {}
    for name in order:
        st, block = stage_blocks[name]
        batch = block.batch or t.batch
        read_len, pool = pooling[name]
        steps = block.steps or steps_for_tokens(block.tokens, batch, read_len)
        cost = accounting.stage_cost(model, shapes[name], batch=batch, steps=steps, read_len=read_len, pool=pool,
                                     mask=data.mask, precision=t.precision)
        stages[name] = StagePlan(name, parents[name], shapes[name], steps, batch, block.lr or t.lr, read_len, pool,
                                 cost.predicted, cost, st.name_span.line)
    has_child = {parents[n] for n in order}
    leaves = [n for n in order if n not in has_child]
    paths = []
    for leaf in leaves:
        chain = [leaf]
        while parents[chain[-1]] is not None:
            chain.append(parents[chain[-1]])
        chain.reverse()
        tokens = sum(stages[n].cost.tokens for n in chain)
        flops = sum(stages[n].cost.flops for n in chain)
        base = accounting.baseline_flops(model, shapes[leaf], tokens=tokens, batch=stages[leaf].batch, mask=data.mask)
        paths.append(PathCost(tuple(chain), tokens, flops, base, 1 - flops / base, base / flops))
    used = defaults_used(schedule)
    warmup = t.warmup
    if warmup is None:
        longest = max(sum(stages[n].steps for n in p.stages) for p in paths)
        warmup = max(1, round(WARMUP_SHARE * longest))
        used.append(f"train.warmup={warmup} (1% of the longest path's steps)")
    micro = t.micro_batch or t.batch
    if t.micro_batch is None:
        used.append(f"train.micro_batch={micro} (= batch)")
    policy, rewarm = t.lr_on_grow
    train = TrainSpec(t.batch, micro, t.lr, warmup, t.decay, t.min_lr, t.optimizer, t.weight_decay, t.beta1,
                      t.beta2, t.eps, t.grad_clip, t.precision, t.seed, t.on_grow, policy, rewarm, t.eval_every,
                      t.eval_batches, t.checkpoint_every, t.log_every, t.sharding)
    plan = Plan(
        name=path.stem,
        source=str(path.absolute()),
        model=model,
        data=data,
        train=train,
        stages=tuple(stages[n] for n in order),
        transitions=tuple(transitions[(parents[n], n)] for n in order if parents[n] is not None),
        paths=tuple(paths),
        eval_len=max(s.len for s in shapes.values()),
        defaults_used=tuple(used),
    )
    return plan, found
