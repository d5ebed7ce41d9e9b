"""The training loop: one small class that owns its state (torchtune recipes, torchtitan's Trainer).

`Trainer.train(start)` runs the plan's stages in topological order. The root starts from a fresh
model seeded with `train.seed`; every other stage starts from its parent's end-of-stage
checkpoint (model, optimizer, stream position, RNG), grows it with the transition's operators,
measures the eval loss just before and after the growth, and rebuilds the optimizer (`on_grow`).
Each step reads one global batch from the single TokenStream that continues across stages, with
gradient accumulation over micro batches. Everything a step depends on is in the checkpoint, so
a resumed run reaches bitwise the same weights on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import sys
import time
from pathlib import Path

import torch

from growlang.plan import Plan, StagePlan
from growlang.runtime import checkpoint as ck
from growlang.runtime.crash_points import pause
from growlang.runtime.errors import UserError
from growlang.runtime.lr_schedule import offsets, stage_schedules
from growlang.runtime.metrics import (MetricsLog, Progress, StageSummary, announce_growth, announce_stage,
                                      summaries_from_json, summaries_to_json)
from growlang.runtime.architectures import ModelConfig, build, config_from_dict, config_from_plan, param_roles
from growlang.runtime import attention as attn
from growlang.runtime.operators import carry_optimizer_state, grow
from growlang.runtime.ceiling import ceiling, dtype_of
from growlang.runtime.distributed import ModelLoss, NullProgress, Parallel
from growlang.runtime.precision import Precision, resolve as resolve_precision, resolve_compile


class NonFiniteLoss(Exception):
    def __init__(self, stage: str, stage_step: int, global_step: int, loss: float):
        super().__init__(f"loss is {loss} at step {global_step} (stage {stage}, stage step {stage_step})")
        self.stage, self.stage_step, self.global_step, self.loss = stage, stage_step, global_step, loss


class Stopped(Exception):
    """Raised after `stop_after_steps` optimizer steps (tests simulate an interruption with it)."""


class Trainer:
    def __init__(self, plan: Plan, out: Path, stream, eval_set: list, device: torch.device,
                 log: MetricsLog, stop_after_steps: int | None = None, parallel: Parallel | None = None,
                 precision: Precision | None = None, stop=None):
        self.plan, self.out, self.stream, self.eval_set = plan, out, stream, eval_set
        self.device, self.log, self.stop_after_steps = device, log, stop_after_steps
        self.stop = stop  # a runtime/signals.py StopRequest, or None
        self.stop_agreed = False  # some rank got a stop signal by the last step's all-reduce
        self.par = parallel or Parallel(device=device)  # ranks: runtime/distributed.py
        self.ckdir = out / "checkpoints"
        self.schedules = stage_schedules(plan)
        self.offsets = offsets(plan)
        self.stream_start = stream.state_dict()  # where every root stage starts reading
        self.summaries: dict[str, StageSummary] = {}
        self.steps_this_process = 0
        self.last_checkpoint: Path | None = None
        self.precision = precision or resolve_precision(plan.train.precision, device)  # runtime/precision.py
        self.amp_dtype = self.precision.amp_dtype
        self.scaler = torch.amp.GradScaler("cuda") if self.precision.scales_loss else None
        self.compilation = resolve_compile(plan.train.compile, device, self.par.world_size)
        if self.par.is_main and plan.train.compile != "off":
            print(self.compilation.describe(), file=sys.stderr, flush=True)
        self.ceiling = ceiling(device, dtype_of(self.precision))  # FLOP/s, for MFU (runtime/ceiling.py)
        self.compiles = 0  # torch.compile'd training steps built so far (one per build with compile on)
        self.compile_pending = False  # the next step traces and compiles
        # per-stage state, set by start_stage
        self.stage: StagePlan | None = None
        self.cfg: ModelConfig | None = None
        self.model: torch.nn.Module | None = None  # Encoder or Decoder
        self.opt: torch.optim.Optimizer | None = None
        self.attention = attn.AttentionChoice("fused", "fused", "torch's dispatch")  # the stage's kernel
        self.stage_step = 0  # steps done in the current stage
        self.counters = {"tokens": 0, "flops": 0.0, "time": 0.0}  # cumulative along the path
        self.last_loss: float | None = None
        self.last_eval: float | None = None

    # ------------------------------------------------------------------------------- setup
    def build(self, cfg: ModelConfig, state: dict | None = None) -> None:
        self.cfg = cfg
        self.model = build(cfg)
        if state is not None:
            self.model.load_state_dict(state)
        self.model.to(self.device)
        self.replica = self.par.wrap(self.model)  # DDP/FSDP, re-wrapped after every growth
        self.opt = self.make_optimizer(self.model)
        self.loss_fn = self.replica.loss
        if self.compilation.on:  # a new model has new shapes: compile again (torchtitan rebuilds it too)
            torch._dynamo.reset()  # the old model's graphs, and dynamo's per-function recompile limit
            self.loss_fn = torch.compile(ModelLoss(self.model), dynamic=False)
            self.compiles += 1
            self.compile_pending = True  # compiled lazily, by the first step: train_stage times it

    def make_optimizer(self, model: torch.nn.Module) -> torch.optim.AdamW:
        """AdamW with weight decay on weight matrices and embeddings, not on biases or LayerNorm.

        Dispatch on the model's declared structure (`param_roles`: initialised as normal(0.02) =
        a weight), not on substrings of names.
        """
        t = self.plan.train
        roles = param_roles(model.cfg)
        named = list(model.named_parameters())
        decay = [p for n, p in named if roles[n].init == "normal"]
        no_decay = [p for n, p in named if roles[n].init != "normal"]
        # fused: one kernel for the whole update instead of a Python loop over the parameters, on the
        # CPU as on CUDA (stage 1 of schedules/base.grow: 0.44 ms against 1.83, benchmarks/step_profile.py);
        # deterministic, so resume stays bitwise. Not under FSDP: its sharded DTensors take torch's default.
        groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        return torch.optim.AdamW(groups, lr=self.stage.lr if self.stage else t.lr, betas=(t.beta1, t.beta2),
                                 eps=t.eps, fused=not self.par.fsdp or None)

    def start_root(self, index: int) -> None:
        self.stage_index, self.stage = index, self.plan.stages[index]
        torch.manual_seed(self.plan.train.seed)
        self.stream.load_state_dict(self.stream_start)
        self.build(config_from_plan(self.plan.model, self.stage.shape))
        self.choose_attention()
        self.log_attention()
        self.par.seed_dropout(self.plan.train.seed, self.offsets[self.stage.name])
        self.stage_step = 0
        self.counters = {"tokens": 0, "flops": 0.0, "time": 0.0}
        self.summaries[self.stage.name] = StageSummary(self.stage.name, ceiling=self.ceiling)

    def restore(self, c: ck.Checkpoint, index: int) -> None:
        """Continue stage `index` from a checkpoint taken inside it (or at its end)."""
        st = c.state
        self.stage_index, self.stage = index, self.plan.stages[index]
        self.build(config_from_dict(st["config"]), c.model_state())
        self.par.load_optimizer_state(self.opt, self.model, c.optimizer_state())
        self.attention = attn.AttentionChoice.from_json(st.get("attention"))  # the kernel the stage began with
        self.restore_common(st)
        self.stage_step = st["stage_step"]
        self.summaries.update({s.stage: s for s in summaries_from_json(st["summaries"])})

    def restore_common(self, st: dict) -> None:
        self.stream.load_state_dict(st["stream"])
        self.counters = dict(st["counters"])
        self.last_loss, self.last_eval = st.get("loss"), st.get("eval_loss")
        if self.scaler is not None and st.get("scaler"):
            self.scaler.load_state_dict(st["scaler"])
        self.par.set_rng_state(st, self.plan.train.seed)  # last: building models above consumed the global RNG

    def start_child(self, index: int, parent: ck.Checkpoint) -> None:
        """Grow the parent's end-of-stage model into stage `index` and log what the growth did."""
        self.stage_index, self.stage = index, self.plan.stages[index]
        trans = self.plan.transition_into(self.stage.name)
        old_cfg = config_from_dict(parent.state["config"])
        new_cfg = config_from_plan(self.plan.model, self.stage.shape)
        old_state = parent.model_state()
        old_model = build(old_cfg)
        old_model.load_state_dict(old_state)
        before = self.evaluate(old_model.to(self.device), attn.AttentionChoice.from_json(parent.state.get("attention")))
        gen = torch.Generator().manual_seed(self.plan.train.seed * 1_000_003 + index)
        new_state, maps = grow(old_state, old_cfg, new_cfg, trans.ops, gen)
        pause("growth", self.stage.name)  # scripts/kill_resume.py kills here; a no-op otherwise
        self.build(new_cfg, new_state)
        self.choose_attention()
        after = self.evaluate(self.model)
        if self.plan.train.on_grow == "carry":
            self.par.load_optimizer_state(self.opt, self.model, carry_optimizer_state(parent.optimizer_state(), maps))
        self.restore_common(parent.state)
        self.stage_step = 0
        self.summaries[self.stage.name] = StageSummary(self.stage.name, ceiling=self.ceiling)
        record = {
            "kind": "growth", "stage": self.stage.name, "src": trans.src, "step": self.offsets[self.stage.name],
            "eval_loss_before": before, "eval_loss_after": after, "delta": after - before,
            "ops": [{"dim": o.dim, "op": o.op, "args": dict(o.args), "preservation": o.preservation,
                     "defaulted": o.defaulted} for o in trans.ops],
            "on_grow": self.plan.train.on_grow,
        }
        self.log.write(record)
        if self.par.is_main:
            announce_growth(record, self.plan.stage(trans.src).shape, self.stage.shape)
        self.log_attention()  # after the growth record: readers take records in the order things happened

    def choose_attention(self) -> None:
        """The new stage's attention kernel (runtime/attention.py): rank 0 resolves it, every rank runs it."""
        s = self.stage
        shape = attn.stage_shape(self.plan, s, min(s.micro_batch, s.batch // self.par.world_size))
        self.attention = self.par.on_main(lambda: attn.resolve(self.plan.train.attention, shape, dtype_of(self.precision),
                                                               self.device, compiled=self.compilation.on))

    def log_attention(self) -> None:
        s = self.stage
        self.log.write({"kind": "attention", "stage": s.name, "step": self.offsets[s.name], **self.attention.to_json()})
        if self.par.is_main and self.plan.train.attention != "fused":
            print(f"== stage {s.name}: {self.attention.describe()}", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------------------- loop
    def autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    @torch.no_grad()
    def evaluate(self, model: torch.nn.Module, attention: attn.AttentionChoice | None = None) -> float:
        """Mean eval loss, with the kernel `model`'s stage trains with (default: the current stage's)."""
        was_training = model.training
        model.eval()
        total = 0.0
        for b in self.eval_set:
            with self.autocast(), (attention or self.attention).kernel():
                loss = model.loss(b.input_ids.to(self.device), b.positions.to(self.device),
                                  b.targets.to(self.device), pool=1)
            total += float(loss)
        model.train(was_training)
        return total / max(1, len(self.eval_set))

    def stop_flag(self) -> torch.Tensor:
        """1.0 when this rank got Ctrl-C / SIGTERM / SIGHUP (runtime/signals.py), else 0.0."""
        return torch.tensor(1.0 if self.stop is not None and self.stop.received else 0.0, device=self.device)

    def step(self) -> tuple[float, float]:
        """One optimizer step on one global batch; returns (loss, lr)."""
        s, t = self.stage, self.plan.train
        g = self.offsets[s.name] + self.stage_step  # 0-based global step, seeds the masking
        lr = self.schedules[s.name].lr(self.stage_step)
        for group in self.opt.param_groups:
            group["lr"] = lr
        batch = self.stream.batch(s.batch, s.reading.read_len, s.reading.predicted, g)
        self.model.train()
        self.opt.zero_grad(set_to_none=True)
        rows = batch.input_ids.shape[0]  # this rank's share of the global batch (all of it on one process)
        micro = min(s.micro_batch, rows)
        total = torch.zeros((), device=self.device)
        for i in range(0, rows, micro):
            ids, pos, tgt = (x[i:i + micro].to(self.device) for x in (batch.input_ids, batch.positions, batch.targets))
            with self.replica.sync(last=i + micro >= rows):  # reduce gradients once per step
                with self.autocast(), self.attention.kernel():
                    loss = self.loss_fn(ids, pos, tgt, s.reading.pool, s.reading.encoder_len) * (ids.shape[0] / rows)
                total += loss.detach()
                (self.scaler.scale(loss) if self.scaler else loss).backward()
        # one all-reduce: the loss mean (DDP averaged the gradients; log the same mean) and whether
        # any rank got Ctrl-C / SIGTERM (runtime/signals.py), so all ranks stop after the same step
        reduced = self.par.mean(torch.stack([total, self.stop_flag()]))
        value, self.stop_agreed = float(reduced[0]), float(reduced[1]) > 0
        if not math.isfinite(value):
            raise NonFiniteLoss(s.name, self.stage_step + 1, g + 1, value)
        if self.scaler is not None:
            self.scaler.unscale_(self.opt)
        if t.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), t.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            self.opt.step()
        return value, lr

    def train_stage(self) -> None:
        s, t = self.stage, self.plan.train
        summary = self.summaries[s.name]
        if self.par.is_main:
            announce_stage(s, self.stage_step)
        later = sum(st.cost.flops for st in self.plan.stages[self.stage_index + 1:])  # trained in plan order
        progress = (Progress(s.name, s.steps, self.stage_step, t.log_every, s.cost.flops_per_seq * s.batch, later)
                    if self.par.is_main else NullProgress())
        flops = s.cost.flops_per_seq * s.batch  # per step, as the plan counts them (accounting)
        window_t, window_tokens, window_steps = 0.0, 0, 0  # training steps since the last record, timed
        try:
            while self.stage_step < s.steps:
                t0 = time.perf_counter()
                compiling, self.compile_pending = self.compile_pending, False
                loss, lr = self.step()
                step_t = time.perf_counter() - t0
                self.stage_step += 1
                g = self.offsets[s.name] + self.stage_step  # steps done, global
                tokens = s.cost.tokens // s.steps  # per step, as the plan counts them (accounting)
                self.counters["tokens"] += tokens
                self.counters["flops"] += flops
                summary.steps, summary.tokens = self.stage_step, summary.tokens + tokens
                summary.flops += flops
                if compiling:  # the first compiled step traces and compiles: wall time, not speed
                    self.log_compile(step_t)
                else:
                    summary.step_time, summary.step_flops = summary.step_time + step_t, summary.step_flops + flops
                    window_t, window_tokens, window_steps = window_t + step_t, window_tokens + tokens, window_steps + 1
                summary.loss = self.last_loss = loss
                end = self.stage_step == s.steps
                eval_loss = None
                if end or (t.eval_every > 0 and g % t.eval_every == 0):
                    eval_loss = self.last_eval = self.evaluate(self.model)
                    if end:
                        summary.eval_loss = eval_loss
                dt = time.perf_counter() - t0
                self.counters["time"] += dt
                summary.time += dt
                speed = None
                logged = end or eval_loss is not None or g % max(1, t.log_every) == 0
                if logged and window_t > 0:
                    flops_per_s = window_steps * flops / window_t
                    speed = {"tokens_per_s": window_tokens / window_t, "flops_per_s": flops_per_s,
                             "mfu": flops_per_s / self.ceiling}
                if logged:
                    rec = {"kind": "train", "step": g, "stage": s.name, "stage_step": self.stage_step,
                           "loss": loss, "lr": lr, "tokens": self.counters["tokens"],
                           "flops": self.counters["flops"], **(speed or {}), "time": self.counters["time"]}
                    if eval_loss is not None:
                        rec["eval_loss"] = eval_loss
                    self.log.write(rec)
                    window_t, window_tokens, window_steps = 0.0, 0, 0
                progress.update(self.stage_step, loss, lr, eval_loss, speed)
                if end:
                    self.save("stage_end")
                elif t.checkpoint_every > 0 and g % t.checkpoint_every == 0:
                    self.save("periodic")
                self.steps_this_process += 1
                last_of_run = end and self.stage_index == len(self.plan.stages) - 1
                if end and self.par.active:  # a signal during the stage-end eval or checkpoint: agree on it now,
                    self.stop_agreed = float(self.par.mean(self.stop_flag())) > 0  # not after the next growth
                stop = self.stop_agreed if self.par.active else bool(self.stop and self.stop.received)
                if stop and not last_of_run:  # Ctrl-C / SIGTERM: this step is done, keep it
                    if not end and not (t.checkpoint_every > 0 and g % t.checkpoint_every == 0):
                        self.save("periodic")
                    raise Stopped(self.stop.received or "a signal on another rank")
                if self.stop_after_steps is not None and self.steps_this_process >= self.stop_after_steps:
                    raise Stopped(f"stopped after {self.steps_this_process} steps")
        finally:
            progress.close()

    def log_compile(self, seconds: float) -> None:
        """The first step after a compiled build: its wall time is the compile (forward and backward
        graphs; it includes that one step's own compute, a fraction of a percent of it)."""
        s, summary = self.stage, self.summaries[self.stage.name]
        summary.compile_time += seconds
        self.log.write({"kind": "compile", "stage": s.name, "step": self.offsets[s.name] + self.stage_step,
                        "seconds": seconds, "compiles": self.compiles})
        if self.par.is_main:
            print(f"== compiled stage {s.name}'s training step in {seconds:.1f}s ({self.compilation.why}); "
                  "not counted in tokens/s or MFU", file=sys.stderr, flush=True)

    # ------------------------------------------------------------------------------- save
    def save(self, kind: str) -> Path:
        s = self.stage
        g = self.offsets[s.name] + self.stage_step
        state = {
            "format": 1, "kind": kind, "plan": self.plan.name, "config": dataclasses.asdict(self.cfg),
            "stage": s.name, "stage_index": self.stage_index, "stage_step": self.stage_step, "global_step": g,
            "stream": self.stream.state_dict(), **self.par.rng_state(),
            "lr_position": {"stage_step": self.stage_step, "lr": self.schedules[s.name].lr(max(0, self.stage_step - 1))},
            "counters": self.counters, "loss": self.last_loss, "eval_loss": self.last_eval,
            "summaries": summaries_to_json(list(self.summaries.values())),
            "metrics_bytes": self.log.size(),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "attention": self.attention.to_json(),  # a resumed stage runs the same kernel (runtime/attention.py)
        }
        model_state = self.par.full_state(self.model)  # every rank: a collective under FSDP
        opt_state = self.par.optimizer_state(self.opt, self.model)

        def write() -> Path:  # rank 0 writes, the others wait for it
            path = ck.save(self.ckdir, f"{s.name}-{g}", model_state, opt_state, state)
            ck.prune(self.ckdir, keep=path)
            return path

        path = self.par.on_main(write)
        self.last_checkpoint = path
        return path

    # ------------------------------------------------------------------------------- driver
    def train(self, resume: ck.Checkpoint | None = None) -> None:
        """Run every stage not finished in `resume` (None: from the beginning)."""
        first = 0
        if resume is not None:
            index = resume.state["stage_index"]
            self.summaries.update({s.stage: s for s in summaries_from_json(resume.state["summaries"])})
            if resume.state["kind"] == "stage_end":
                first = index + 1
            else:
                self.restore(resume, index)
                self.train_stage()
                first = index + 1
        for index in range(first, len(self.plan.stages)):
            stage = self.plan.stages[index]
            if stage.parent is None:
                self.start_root(index)
            else:
                parent = ck.find_stage_end(self.ckdir, stage.parent)
                if parent is None:
                    raise UserError(f"the end-of-stage checkpoint of {stage.parent} (the parent of {stage.name}) "
                                    "is missing or corrupted; rerun into another --out")
                self.start_child(index, parent)
            self.train_stage()
