"""A `CheckedSchedule` -> the frozen `Plan`: each stage's reading, steps and costs
(accounting.py), one `PathCost` per root-to-leaf path, and the defaults it used."""

from __future__ import annotations

from growlang import accounting
from growlang.checks import CheckedSchedule
from growlang.families import family
from growlang.family_checks import data_defaults_hidden, model_defaults_used
from growlang.plan import PathCost, Plan, StagePlan, TrainSpec
from growlang.stage_checks import stage_reading, stage_steps

# BERT's warm-up was 10k of 1M steps: 1% of the longest path's steps when none is written.
WARMUP_SHARE = 0.01


def default_attention(precision: str) -> tuple[str, str]:
    """The attention kernel of a schedule that names none, and why (docs/precision.md, "Attention
    kernel"). In fp32 `fused`: every fp32 run trains bitwise as before the option, and in fp32
    auto's pick did not make the quickstart's steps faster on this project's AMD EPYC (the Xeon was
    not timed). Otherwise (bf16, fp16, auto) `auto`: on a CPU the flash kernel's bf16 backward ran
    far below the bf16 matmul rate (the largest op of the quickstart's bf16 steps), so the probe
    picks per stage; on CUDA or with compile on, `auto` keeps `fused` (runtime/attention.py: resolve)."""
    if precision == "fp32":
        return "fused", "fp32"
    return "auto", f"precision={precision}: timed per stage on a CPU, fused on CUDA"


def _fmt(v) -> str:
    if isinstance(v, tuple):
        return v[0] if v[0] != "rewarm" else f"rewarm({v[1]})"
    return f"{v:g}" if isinstance(v, float) else str(v)


def defaults_used(schedule, model) -> list[str]:
    """The defaults `check` lists: the model block's are the family's, as resolved in `model`
    (family_checks); keys the family ignores (a causal LM's `mask`) are not listed."""
    used = model_defaults_used(schedule.model, model)
    hidden = ("micro_batch", "warmup", "attention") + data_defaults_hidden(family(schedule.model.family))
    for kind in ("data", "train"):
        block = getattr(schedule, kind)
        for key in type(block).model_fields:
            if key not in block.model_fields_set and key not in hidden:
                used.append(f"{kind}.{key}={_fmt(getattr(block, key))}")
    return used


def assemble(checked: CheckedSchedule) -> Plan:
    c, t = checked, checked.schedule.train
    micro = t.micro_batch or t.batch
    stages: dict[str, StagePlan] = {}
    for name in c.order:
        block, shape = c.blocks[name], c.shapes[name]
        batch = block.batch or t.batch
        read = stage_reading(shape, c.reads[name], c.model, c.data.mask)
        steps = stage_steps(block, read, c.model, batch)
        cost = accounting.stage_cost(c.model, shape, read, batch=batch, steps=steps, precision=t.precision)
        stages[name] = StagePlan(name, c.parents[name], shape, steps, batch, min(micro, batch), block.lr or t.lr,
                                 read, cost, c.lines[name])
    paths = [path_cost(c, stages, leaf) for leaf in leaves(c)]
    used = defaults_used(c.schedule, c.model)
    if all(c.blocks[n].heads is not None for n in c.order):  # every stage names its heads: head_dim unused
        used = [u for u in used if not u.startswith("model.head_dim=")]
    warmup = t.warmup
    if warmup is None:
        longest = max(sum(stages[n].steps for n in p.stages) for p in paths)
        warmup = max(1, round(WARMUP_SHARE * longest))
        used.append(f"train.warmup={warmup} (1% of the longest path's steps)")
    attention = t.attention
    if attention is None:
        attention, why = default_attention(t.precision)
        used.append(f"train.attention={attention} ({why})")
    if t.micro_batch is None:
        used.append(f"train.micro_batch={micro} (= batch)")
    policy, rewarm = t.lr_on_grow
    train = TrainSpec(t.batch, micro, t.lr, warmup, t.decay, t.min_lr, t.optimizer, t.weight_decay, t.beta1,
                      t.beta2, t.eps, t.grad_clip, t.precision, t.seed, t.on_grow, policy, rewarm, t.eval_every,
                      t.eval_batches, t.checkpoint_every, t.log_every, t.sharding, t.compile, attention)
    return Plan(
        name=c.path.stem,
        source=str(c.path.absolute()),
        model=c.model,
        data=c.data,
        train=train,
        stages=tuple(stages[n] for n in c.order),
        transitions=tuple(c.transitions[(c.parents[n], n)] for n in c.order if c.parents[n] is not None),
        paths=tuple(paths),
        eval_len=max(s.len for s in c.shapes.values()),
        defaults_used=tuple(used),
    )


def leaves(c: CheckedSchedule) -> list[str]:
    has_child = {c.parents[n] for n in c.order}
    return [n for n in c.order if n not in has_child]


def path_cost(c: CheckedSchedule, stages: dict[str, StagePlan], leaf: str) -> PathCost:
    """The root-to-`leaf` path against the leaf model trained from scratch on the same tokens."""
    chain = [leaf]
    while c.parents[chain[-1]] is not None:
        chain.append(c.parents[chain[-1]])
    chain.reverse()
    tokens = sum(stages[n].cost.tokens for n in chain)
    flops = sum(stages[n].cost.flops for n in chain)
    base = accounting.baseline_flops(c.model, c.shapes[leaf], tokens=tokens, batch=stages[leaf].batch, mask=c.data.mask)
    return PathCost(tuple(chain), tokens, flops, base, 1 - flops / base, base / flops)
