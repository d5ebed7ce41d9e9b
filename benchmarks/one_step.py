"""One training step of the runtime's own model on a plan's stage, outside the trainer: what
benchmarks/compile_speed.py and benchmarks/step_profile.py time and profile.

The step is the trainer's (runtime/trainer.py): zero_grad, the loss under the precision's
autocast, backward, grad clip 1.0, AdamW built by the trainer's own `make_optimizer`. Batches are
random token ids of the stage's read length with `predicted` sorted masked positions; the data
pipeline is not part of it (it is timed by benchmarks/data_scale.py).
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def base_stages(path: Path = ROOT / "schedules" / "base.grow"):
    """(plan, [StagePlan]) of a compound schedule (default: the quickstart's three stages)."""
    from growlang.compiler import compile_file

    compiled = compile_file(path)
    assert compiled.ok, [d.message for d in compiled.diagnostics]
    return compiled.plan, list(compiled.plan.stages)


def random_batch(plan, stage, seed: int = 0):
    """(ids, positions, targets) shaped as the trainer's TokenStream gives them for `stage`."""
    r, B, V = stage.reading, stage.batch, plan.model.vocab
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, V, (B, r.read_len), generator=g)
    pos = torch.stack([torch.randperm(r.read_len - 1, generator=g)[:r.predicted] + 1 for _ in range(B)])
    return ids, pos.sort(dim=1).values, torch.randint(5, V, (B, r.predicted), generator=g)


def make_step(plan, stage, precision: str = "fp32", compile: bool = False):
    """(model, optimizer, step): `step()` runs one optimizer step on a fixed random batch and returns the loss."""
    from growlang.runtime.architectures import build, config_from_plan
    from growlang.runtime.distributed import Parallel
    from growlang.runtime.trainer import Trainer

    torch.manual_seed(0)
    model = build(config_from_plan(plan.model, stage.shape)).train()
    trainer = Trainer.__new__(Trainer)  # only for its optimizer recipe: no stream, no log
    trainer.plan, trainer.stage, trainer.par = plan, stage, Parallel()
    opt = trainer.make_optimizer(model)
    loss_fn = model.loss
    if compile:
        from growlang.runtime.distributed import ModelLoss

        loss_fn = torch.compile(ModelLoss(model), dynamic=False)
    ids, pos, tgt = random_batch(plan, stage)
    amp = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    r = stage.reading

    def step() -> float:
        opt.zero_grad(set_to_none=True)
        with amp:
            loss = loss_fn(ids, pos, tgt, r.pool, r.encoder_len)
        loss.backward()
        value = float(loss.detach())
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return value

    return model, opt, step
