"""Checks of each stage's budget against the train block: micro batches that do not divide a
stage's batch (E208, as for the train block), warm-ups longer than the stage they warm (W214), and
position-table rows no stage ever trains (W213). Run after the shapes and readings are known."""

from __future__ import annotations

from growlang import accounting
from growlang.diagnostics import Diagnostic, error, warning
from growlang.families import family
from growlang.plan import ModelSpec, Shape
from growlang.schema import StageBlock, TrainBlock
from growlang.shapes import value_spans


def _setting_span(block_syntax, key):
    return next((s.value.span for s in block_syntax.settings if s.key == key), block_syntax.span)


def stage_reading(shape: Shape, read_len_pool: tuple[int, int], spec: ModelSpec, mask: float):
    """How a stage reads its sequences (accounting.Reading), from the checks' (read_len, pool)."""
    return accounting.reading(shape.len, *read_len_pool, mask, family(spec.family).objective)


def stage_steps(block: StageBlock, read, spec: ModelSpec, batch: int) -> int:
    """A stage's step count: `steps=`, or `tokens=` through accounting. The one rule; assemble and
    the budget checks both read it."""
    if block.steps is not None:
        return block.steps
    return accounting.steps_for_tokens(block.tokens, batch, accounting.tokens_per_sequence(spec, read))


def budget_checks(order, parents, stage_blocks, shapes, reads, spec: ModelSpec, train: TrainBlock | None,
                  blocks: dict, mask: float) -> list[Diagnostic]:
    """`stage_blocks`: name -> (StageSyntax, StageBlock); `blocks`: kind -> the block's syntax."""
    found: list[Diagnostic] = []
    if train is None:
        return found
    policy, rewarm = train.lr_on_grow
    steps: dict[str, int] = {}
    for name in order:
        st, block = stage_blocks[name]
        if block is None or name not in shapes or name not in reads:
            continue
        batch = block.batch or train.batch
        if block.batch is not None and train.micro_batch is not None and batch > train.micro_batch \
                and batch % train.micro_batch:
            found.append(error("E208", f"stage `{name}` has `batch` {batch}, not a multiple of `micro_batch` "
                                       f"{train.micro_batch}", value_spans(st)["batch"],
                               f"use a multiple of {train.micro_batch}, or change `train {{ micro_batch }}`"))
        steps[name] = stage_steps(block, stage_reading(shapes[name], reads[name], spec, mask), spec, batch)
        if policy == "restart" and train.warmup is not None and train.warmup > steps[name]:
            # restart warms every stage over min(warmup, steps) (runtime/lr_schedule.py)
            found.append(warning("W214", f"`warmup` ({train.warmup} steps) is longer than stage `{name}` "
                                         f"({steps[name]} steps): its LR peaks at its last step",
                                 _setting_span(blocks["train"], "warmup"),
                                 "shorten `warmup`, or train the stage longer"))
        if parents[name] is not None and policy == "rewarm" and rewarm > steps[name]:
            found.append(warning("W214", f"`rewarm({rewarm})` is longer than stage `{name}` ({steps[name]} steps): "
                                         "its LR never gets back to the schedule",
                                 _setting_span(blocks["train"], "lr_on_grow"),
                                 "use a shorter re-warm-up, or train the stage longer"))
    if policy != "restart" and train.warmup is not None:
        # continue / rewarm: one warm-up over each root-to-leaf path
        leaves = [n for n in order if n in steps and not any(parents[c] == n for c in order)]
        for leaf in leaves:
            chain = [leaf]
            while parents[chain[-1]] is not None:
                chain.append(parents[chain[-1]])
            if all(n in steps for n in chain) and train.warmup > sum(steps[n] for n in chain):
                found.append(warning("W214", f"`warmup` ({train.warmup} steps) is longer than the path "
                                             f"{' -> '.join(reversed(chain))} ({sum(steps[n] for n in chain)} steps): "
                                             "its LR peaks at its last step",
                                     _setting_span(blocks["train"], "warmup"),
                                     "shorten `warmup`, or train longer"))
    longest = max((shapes[n].len for n in shapes), default=0)
    # an unwritten max_len is the longest len (family_checks.model_spec): only a written one can be too big
    if shapes and family(spec.family).positions == "learned" and spec.max_len > longest:
        found.append(warning("W213", f"`max_len` is {spec.max_len} but no stage is longer than {longest}: "
                                     f"position rows {longest}..{spec.max_len - 1} are never trained",
                             _setting_span(blocks["model"], "max_len") if "model" in blocks
                             else stage_blocks[order[0]][0].name_span,
                             f"set `model {{ max_len={longest} }}` (the exported model then reads at most "
                             f"{longest} tokens), or train a stage at the full length"))
    return found
