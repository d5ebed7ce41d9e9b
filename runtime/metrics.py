"""What a run reports: metrics.jsonl records, a progress bar per stage, and the summary table.

metrics.jsonl holds one JSON object per line, each with a `kind`:
    train   step (global), stage, stage_step, loss, lr, tokens and flops (cumulative along the
            stage's root-to-leaf path), time (wall seconds, cumulative along the path: steps,
            evaluations, compiles), eval_loss when the step was evaluated, and the speed of the
            steps since the last record (their training-step time only: no evaluation, no
            compile): tokens_per_s, flops_per_s (the plan's FLOPs per step, accounting) and mfu
            (flops_per_s over the device's measured matmul ceiling, runtime/ceiling.py)
    compile stage, step, seconds (the first compiled step after a build, runtime/trainer.py)
    growth  stage (the new one), src, step, eval loss before/after applying the operators, delta,
            and each operator with its preservation class
The file is flushed after every record; a checkpoint records its size so a resumed run cuts off
what was written after that checkpoint and the file reads as if the run had never stopped.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from growlang.render import duration


def history_gap(path: Path, recorded_bytes: int) -> str | None:
    """Why `path` no longer holds the history the resumed checkpoint recorded (`recorded_bytes` of
    it), or None: a resume must say so rather than continue a silently shortened log."""
    if recorded_bytes <= 0:
        return None
    if not path.exists():
        return (f"warning: {path} is missing; the checkpoint recorded {recorded_bytes} bytes of metrics. "
                "The steps before it are gone from the log (the run continues; restore the file from a "
                "backup before resuming to keep them)")
    size = path.stat().st_size
    if size < recorded_bytes:
        return (f"warning: {path} has {size} bytes but the checkpoint recorded {recorded_bytes}; "
                "the history before it was deleted or emptied and is gone from the log (the run "
                "continues; restore the file from a backup before resuming to keep it)")
    return None


class MetricsLog:
    def __init__(self, path: Path, truncate_to: int | None = None):
        self.path = path
        if truncate_to is not None and path.exists() and path.stat().st_size > truncate_to:
            with open(path, "r+b") as f:  # never extend: a shorter file would be padded with NULs
                f.truncate(truncate_to)
        self._f = open(path, "ab")

    def write(self, record: dict) -> None:
        clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in record.items()}
        self._f.write((json.dumps(clean) + "\n").encode())
        self._f.flush()

    def size(self) -> int:
        self._f.flush()
        return self._f.tell()

    def close(self) -> None:
        self._f.close()


def read_metrics(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            rows.append(json.loads(line))
    return rows


@dataclass
class StageSummary:
    stage: str
    steps: int = 0
    time: float = 0.0  # seconds spent in this stage (training, its evaluations and compiles)
    tokens: int = 0
    flops: float = 0.0
    loss: float | None = None
    eval_loss: float | None = None
    step_time: float = 0.0  # seconds in training steps, not evaluating, not compiling
    step_flops: float = 0.0  # the plan's FLOPs of those steps (a compiling step's are not in it)
    compile_time: float = 0.0  # seconds of torch.compile (train { compile=on })
    ceiling: float | None = None  # the device's matmul FLOP/s in the run's precision (runtime/ceiling.py)

    @property
    def flops_per_s(self) -> float | None:
        return self.step_flops / self.step_time if self.step_time > 0 else None

    @property
    def mfu(self) -> float | None:
        return None if self.flops_per_s is None or not self.ceiling else self.flops_per_s / self.ceiling


def summary_table(rows: list[StageSummary], perplexity: bool = False) -> str:
    """One row per stage. FLOP/s and MFU are over the training steps' time (evaluations and
    compiles excluded, `time` includes them); a `compile` column when a stage compiled;
    `perplexity` (causal LMs): exp(eval loss), the eval perplexity, in its own column."""
    compiled = any(r.compile_time for r in rows)
    head = ("stage", "steps", "time", *(("compile",) if compiled else ()), "tokens", "FLOPs", "FLOP/s", "MFU",
            "loss", "eval loss", *(("eval ppl",) if perplexity else ()))
    body = [(r.stage, str(r.steps), f"{r.time:.1f}s", *((f"{r.compile_time:.1f}s",) if compiled else ()),
             human(r.tokens), f"{r.flops:.3g}", "-" if r.flops_per_s is None else f"{r.flops_per_s:.3g}",
             "-" if r.mfu is None else f"{r.mfu:.1%}",
             "-" if r.loss is None else f"{r.loss:.4f}", "-" if r.eval_loss is None else f"{r.eval_loss:.4f}",
             *((("-" if r.eval_loss is None else f"{math.exp(r.eval_loss):.1f}"),) if perplexity else ()))
            for r in rows]
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]

    def line(cells):
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(head), line(tuple("-" * w for w in widths)), *map(line, body)])


def summaries_to_json(rows: list[StageSummary]) -> list[dict]:
    return [asdict(r) for r in rows]


def summaries_from_json(rows: list[dict]) -> list[StageSummary]:
    return [StageSummary(**r) for r in rows]


def human(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.3g}{unit}"
    return str(int(n))


class Progress:
    """A tqdm bar on stderr when it is a terminal; otherwise one compact line per log step."""

    def __init__(self, stage: str, total: int, start: int, log_every: int, flops_per_step: float = 0.0,
                 later_flops: float = 0.0):
        """`flops_per_step` (this stage's) and `later_flops` (the plan's FLOPs of the stages still to
        run after it) give the whole-run ETA: remaining FLOPs at the FLOP/s measured now."""
        self.stage, self.total, self.log_every = stage, total, max(1, log_every)
        self.flops_per_step, self.later_flops = flops_per_step, later_flops
        self.tty = sys.stderr.isatty()
        self.speed: dict | None = None
        self.started, self.start = time.perf_counter(), start
        self.bar = tqdm(total=total, initial=start, desc=stage, unit="step", file=sys.stderr,
                        dynamic_ncols=True, leave=True) if self.tty else None

    def update(self, stage_step: int, loss: float, lr: float, eval_loss: float | None = None,
               speed: dict | None = None) -> None:
        """stage_step: steps done in this stage (1-based after the step); speed: the metrics
        record's flops_per_s and mfu when this step wrote one (shown until the next one)."""
        self.speed = speed or self.speed
        if self.bar is not None:
            self.bar.update(1)
            post = {"loss": f"{loss:.3f}", "lr": f"{lr:.2e}"}
            if eval_loss is not None:
                post["eval"] = f"{eval_loss:.3f}"
            if self.speed:
                post["tok/s"] = human(self.speed["tokens_per_s"])
                post["MFU"] = f"{self.speed['mfu']:.1%}"
                post["run ETA"] = duration(self.run_eta(stage_step))
            self.bar.set_postfix(post, refresh=False)
        elif stage_step % self.log_every == 0 or stage_step == self.total or eval_loss is not None:
            extra = "" if eval_loss is None else f" eval {eval_loss:.4f}"
            if self.speed:
                extra += (f" | {human(self.speed['tokens_per_s'])} tok/s {self.speed['flops_per_s'] / 1e9:.3g} GFLOP/s "
                          f"MFU {self.speed['mfu']:.1%}")
            elapsed = time.perf_counter() - self.started
            done = stage_step - self.start
            extra += f" | {duration(elapsed)} elapsed"
            if 0 < done and stage_step < self.total:
                extra += f", stage ETA {duration(elapsed / done * (self.total - stage_step))}"
            if self.speed and (stage_step < self.total or self.later_flops):
                extra += f", run ETA {duration(self.run_eta(stage_step))}"
            print(f"[{self.stage}] step {stage_step}/{self.total} loss {loss:.4f} lr {lr:.2e}{extra}",
                  file=sys.stderr, flush=True)

    def run_eta(self, stage_step: int) -> float:
        """Seconds to the end of the run: the plan's remaining FLOPs at the measured FLOP/s (train
        steps only; evaluations, growths and exports add to it)."""
        remaining = (self.total - stage_step) * self.flops_per_step + self.later_flops
        return remaining / max(self.speed["flops_per_s"], 1e-9)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def announce_stage(stage, resumed_at: int = 0) -> None:
    """One line on stderr as a stage starts, so the console shows every stage's shape and budget."""
    sh = stage.shape
    read = f" (reads {stage.reading.read_len}, pooled by {stage.reading.pool})" if stage.reading.pool > 1 else ""
    origin = f" from {stage.parent}" if stage.parent else ""
    at = f", resuming at step {resumed_at}" if resumed_at else ""
    print(f"== stage {stage.name}{origin}: depth={sh.depth} width={sh.width} heads={sh.heads} ffn={sh.ffn} "
          f"len={sh.len}{read}; {stage.steps} steps x batch {stage.batch}{at}", file=sys.stderr, flush=True)


def announce_growth(record: dict, old_shape, new_shape) -> None:
    """One line on stderr per growth: the operators, what they preserve, and the measured loss change."""
    ops = ", ".join(f"{o['dim']} {getattr(old_shape, o['dim'])}->{getattr(new_shape, o['dim'])} by {o['op']} "
                    f"[{o['preservation']}]" for o in record["ops"])
    print(f"== grew {record['src']} -> {record['stage']}: {ops or 'no change'}; eval loss "
          f"{record['eval_loss_before']:.4f} -> {record['eval_loss_after']:.4f} ({record['delta']:+.4f}), "
          f"optimizer {record['on_grow']}", file=sys.stderr, flush=True)
