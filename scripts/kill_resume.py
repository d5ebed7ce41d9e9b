#!/usr/bin/env python
"""Crash consistency of `growlang run`: SIGKILL a run at random moments, resume it, compare bitwise.

    .venv/bin/python scripts/kill_resume.py --kills 20 --seed 0

Writes a tiny three-stage schedule (two growths, a checkpoint every 3 steps) and a synthetic
corpus into a temp folder, trains it once uninterrupted (the reference), then trains it again in a
subprocess that is killed with SIGKILL `--kills` times and restarted with `--resume` each time,
until it finishes. The kill moments are biased towards the dangerous ones: half-way through a
checkpoint write (its temp folder holds only model.safetensors), just after the rename (before
the older checkpoint is pruned), in the middle of a growth, during training steps, and at a
random time after launch (start-up, data loading, training). The run reports where it is through the debug hook in runtime/crash_points.py
($GROWLANG_DEBUG_EVENTS, which also makes it pause there briefly) and its progress lines.

After every kill it records the newest complete checkpoint (checksums verified), whether a temp
folder was left behind, and checks that every stage-end checkpoint already written equals the
reference's tensor for tensor; the next `--resume` must start from exactly that newest
checkpoint. At the end every tensor of final/model.safetensors and of the stage-end checkpoints
(weights and AdamW moments) must be bitwise equal to the reference, and so must metrics.jsonl
(wall-clock fields aside). Should the run finish before `--kills` kills, a fresh round starts.

All processes run with one CPU thread (OMP_NUM_THREADS=1): bitwise equality holds for a fixed
thread count, which a resume on the same machine keeps. Exit code 0 when every check passes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

WORDS = ("the a cat dog bird fish sat ran flew swam on under over near mat log tree pond red blue green small "
         "big quick slow happy sad one two three four five and then because while it they we saw ate found "
         "lost made took gave").split()

SCHEDULE = """\
# .venv/bin/python scripts/kill_resume.py   (writes this file, then: growlang run tiny.grow --out run0)
model bert {{ vocab=300 head_dim=16 max_len=64 }}
data {{ corpus="{corpus}" tokenizer=builtin mask=0.15 holdout=0.2 }}
train {{ batch=4 micro_batch=2 lr=1e-3 warmup=2 seed=0 eval_every=6 eval_batches=2 checkpoint_every=3 log_every=1 }}
stage 1: depth=1 width=32 ffn=64 len=16 steps={steps} ; grow depth by stack, width by interpolate, len by pool
stage 2: depth=2 width=64 ffn=128 len=32 steps={steps} ; grow depth by stack, ffn by stack
stage 3: depth=3 width=64 ffn=256 len=32 steps={steps}
"""
STAGES = 3
# moment -> weight; the event moments come from runtime/crash_points.py
MOMENTS = {"random": 1, "training": 3, "checkpoint-write": 3, "checkpoint-done": 2, "growth": 2}
PROGRESS_FIELDS = ("time", "tokens_per_s", "flops_per_s", "mfu")  # wall-clock fields of metrics.jsonl


def write_corpus(path: Path, docs: int = 160, seed: int = 0) -> None:
    rng = random.Random(seed)
    paras = []
    for _ in range(docs):
        sents = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12))) + "."
                 for _ in range(rng.randint(3, 8))]
        paras.append(" ".join(sents))
    path.write_text("\n\n".join(paras) + "\n")


@dataclass
class Row:
    kill: int
    round: int
    moment: str
    after_s: float
    temp_left: bool
    newest: str  # newest complete checkpoint after the kill, "-" for none
    resumed_from: str = "?"
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and self.resumed_from == self.newest


class Attempt:
    """One `growlang run` subprocess whose stderr and debug events are watched."""

    def __init__(self, cmd: list[str], env: dict, events: Path, log: Path):
        self.events, self.log_path = events, log
        events.write_text("")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(cmd, env={**env, "GROWLANG_DEBUG_EVENTS": str(events)},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        with open(self.log_path, "w") as log:
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
                log.write(line)
                log.flush()

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def event_lines(self, moment: str) -> list[str]:
        try:
            text = self.events.read_text()
        except OSError:
            return []
        return [ln for ln in text.splitlines() if ln.split(" ", 1)[0] == moment]

    def where(self, killed_at: float, pause: float) -> str:
        """Where the run was when killed: inside a debug pause (from the event times), else training
        or starting up (from its progress lines)."""
        try:
            events = [ln.rsplit(" ", 1) for ln in self.events.read_text().splitlines() if ln.strip()]
        except OSError:
            events = []
        if events and killed_at - float(events[-1][1]) < pause:
            return f"inside {events[-1][0]}"
        steps = self.step_lines()
        if steps:
            return f"training, after {steps[-1].split(' loss')[0]}" + (
                f" (last event: {events[-1][0]})" if events else "")
        return "starting up (no step yet)"

    def step_lines(self) -> list[str]:
        return [ln for ln in list(self.lines) if ln.startswith("[") and "] step " in ln]

    def finish(self) -> int:
        rc = self.proc.wait()
        self.reader.join(timeout=10)
        return rc

    def resumed_from(self) -> str:
        for ln in list(self.lines):
            if ln.startswith("resuming from "):
                return ln.split()[2]
            if "starting from the beginning" in ln:
                return "-"
        return "?"


def newest_complete(ckdir: Path) -> tuple[str, dict | None, list[str]]:
    from growlang.runtime import checkpoint as ck

    warnings: list[str] = []
    c = ck.latest(ckdir, warn=warnings.append)
    return (c.path.name if c else "-"), (c.state if c else None), warnings


def growths_left(state: dict | None) -> bool:
    return state is None or state["stage_index"] < STAGES - 1


def tensors_equal(a: Path, b: Path) -> list[str]:
    """Names of the tensors that differ between two safetensors files (or why they cannot match)."""
    from safetensors.torch import load_file
    import torch

    x, y = load_file(a), load_file(b)
    if x.keys() != y.keys():
        return [f"{a.name}: tensor names differ"]
    return [f"{a.parent.name}/{a.name}:{k}" for k in sorted(x)
            if x[k].dtype != y[k].dtype or x[k].shape != y[k].shape or not torch.equal(x[k], y[k])]


def stage_ends_match(ref: Path, out: Path) -> tuple[list[str], int]:
    """Compare every complete stage-end checkpoint in out with the reference's; (diffs, tensors)."""
    from safetensors import safe_open

    from growlang.runtime import checkpoint as ck

    diffs, n = [], 0
    for c in ck.complete(out / "checkpoints", warn=lambda m: None):
        if c.state["kind"] != "stage_end":
            continue
        for f in (ck.MODEL, ck.OPTIMIZER):
            diffs += tensors_equal(ref / "checkpoints" / c.path.name / f, c.path / f)
            with safe_open(c.path / f, "pt") as h:
                n += len(list(h.keys()))
    return diffs, n


def comparable_metrics(path: Path) -> list[dict]:
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return [{k: v for k, v in r.items() if k not in PROGRESS_FIELDS} for r in rows]


def choose_moment(rng: random.Random, state: dict | None) -> tuple[str, int]:
    names = [m for m in MOMENTS if m != "growth" or growths_left(state)]
    moment = rng.choices(names, weights=[MOMENTS[m] for m in names])[0]
    k = {"training": rng.randint(1, 6), "checkpoint-write": rng.randint(1, 2),
         "checkpoint-done": rng.randint(1, 2)}.get(moment, 1)
    return moment, k


def kill_at(a: Attempt, moment: str, k: int, rng: random.Random, pause: float) -> str | None:
    """Wait for the k-th `moment` of this attempt and SIGKILL it there; None when it finished first."""
    delay = rng.uniform(0.5, 8.0) if moment == "random" else None
    while a.proc.poll() is None:
        if moment == "random":
            hit = a.elapsed() >= delay
            detail = f"{a.elapsed():.1f}s after launch"
        elif moment == "training":
            steps = a.step_lines()
            hit = len(steps) >= k
            detail = steps[k - 1].split(" loss")[0] if hit else ""
        else:
            events = a.event_lines(moment)
            hit = len(events) >= k
            detail = events[k - 1].rsplit(" ", 1)[0] if hit else ""
            if hit:  # land somewhere inside the pause the run takes there
                time.sleep(rng.uniform(0.0, 0.8 * pause))
        if hit:
            if moment == "training":
                time.sleep(rng.uniform(0.0, 0.05))
            a.proc.send_signal(signal.SIGKILL)
            killed_at = time.time()
            a.finish()
            trigger = f"random, {detail}" if moment == "random" else (
                f"training, {detail}" if moment == "training" else detail)
            return f"{trigger} | {a.where(killed_at, pause)}"
        time.sleep(0.005)
    return None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kills", type=int, default=20, help="SIGKILLs to deliver in all (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments")
    p.add_argument("--steps", type=int, default=24, help="steps per stage (default 24)")
    p.add_argument("--pause", type=float, default=0.25, help="seconds the run pauses at each debug moment")
    p.add_argument("--workdir", type=Path, help="keep everything here (default: a temp folder, removed)")
    args = p.parse_args(argv)

    t_start = time.monotonic()
    rng = random.Random(args.seed)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="kill-resume-"))
    work.mkdir(parents=True, exist_ok=True)
    write_corpus(work / "corpus.txt")
    grow = work / "tiny.grow"
    grow.write_text(SCHEDULE.format(corpus=work / "corpus.txt", steps=args.steps))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "GROWLANG_CACHE": str(work / "cache"),
           "GROWLANG_DEBUG_PAUSE": str(args.pause)}
    env.pop("GROWLANG_DEBUG_EVENTS", None)
    base = [sys.executable, "-m", "growlang", "run", str(grow), "--device", "cpu"]

    ref = work / "ref"
    print(f"work folder {work}; reference run ...", flush=True)
    t0 = time.monotonic()
    done = subprocess.run(base + ["--out", str(ref)], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        print("error: the reference run failed", file=sys.stderr)
        return 1
    print(f"reference done in {time.monotonic() - t0:.1f}s", flush=True)

    rows: list[Row] = []
    rounds: list[dict] = []
    attempt_no = 0
    rnd = 0
    while len(rows) < args.kills or rnd == 0:
        out = work / f"run{rnd}"
        resume = False
        pending: list[Row] = []  # kills whose resume has not printed where it started yet
        state = None
        finished_early = False
        while True:
            attempt_no += 1
            a = Attempt(base + ["--out", str(out)] + (["--resume"] if resume else []), env,
                        work / f"events-{attempt_no}.log", work / f"stderr-{attempt_no}.log")
            if len(rows) < args.kills:
                moment, k = choose_moment(rng, state)
                what = kill_at(a, moment, k, rng, args.pause)
            else:
                what = None
            rc = a.finish() if what is None else None
            # an attempt killed before it printed where it resumed from wrote nothing, so the
            # next one that prints must start from the same checkpoint
            if a.resumed_from() != "?":
                for row in pending:
                    row.resumed_from = a.resumed_from()
                pending = []
            if what is None:
                if rc != 0:
                    print("\n".join(a.lines[-20:]), file=sys.stderr)
                    print(f"error: attempt {attempt_no} exited with {rc}", file=sys.stderr)
                    return 1
                finished_early = len(rows) < args.kills
                break
            newest, state, warnings = newest_complete(out / "checkpoints")
            temp_left = any(x.name.startswith(".tmp-") for x in (out / "checkpoints").glob(".tmp-*"))
            diffs, _ = stage_ends_match(ref, out)
            row = Row(len(rows) + 1, rnd, what, a.elapsed(), temp_left, newest,
                      problems=warnings + [f"stage end differs: {d}" for d in diffs])
            rows.append(row)
            pending.append(row)
            resume = True
            print(f"kill {row.kill:>2}: {what} -> newest {newest}", flush=True)
        final_diffs, n_final = tensors_equal(ref / "final" / "model.safetensors", out / "final" / "model.safetensors"), 0
        from safetensors import safe_open

        with safe_open(out / "final" / "model.safetensors", "pt") as h:
            n_final = len(list(h.keys()))
        end_diffs, n_ends = stage_ends_match(ref, out)
        metrics_same = comparable_metrics(ref / "metrics.jsonl") == comparable_metrics(out / "metrics.jsonl")
        rounds.append({"round": rnd, "final": (final_diffs, n_final), "ends": (end_diffs, n_ends),
                       "metrics": metrics_same, "early": finished_early})
        rnd += 1

    # ------------------------------------------------------------------------------- report
    print()
    head = f"{'kill':>4}  {'round':>5}  {'moment':<84} {'at':>6}  {'temp left':>9}  {'newest complete':<15} " \
           f"{'resumed from':<12}  ok"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r.kill:>4}  {r.round:>5}  {r.moment[:84]:<84} {r.after_s:>5.1f}s  {'yes' if r.temp_left else 'no':>9}  "
              f"{r.newest:<15} {r.resumed_from:<12}  {'yes' if r.ok else 'NO'}")
        for prob in r.problems:
            print(f"      ! {prob}")
    print()
    ok_kills = sum(r.ok for r in rows)
    equal_rounds = 0
    for rd in rounds:
        fd, nf = rd["final"]
        ed, ne = rd["ends"]
        same = not fd and not ed and rd["metrics"]
        equal_rounds += same
        print(f"round {rd['round']}: final/model.safetensors {nf - len(fd)}/{nf} tensors bitwise equal; "
              f"stage-end checkpoints (weights + AdamW) {ne - len(ed)}/{ne} tensors bitwise equal; "
              f"metrics.jsonl {'equal' if rd['metrics'] else 'DIFFERENT'}"
              + ("; finished before all kills, next round" if rd["early"] else ""))
        for d in (fd + ed)[:10]:
            print(f"      ! differs: {d}")
    print("(moment: what the kill waited for | where the run was when SIGKILL landed)")
    print(f"\nverdict: {ok_kills}/{len(rows)} kills recovered from the newest complete checkpoint, final weights "
          f"bitwise equal to the reference in {equal_rounds}/{len(rounds)} rounds; {attempt_no} processes, "
          f"{time.monotonic() - t_start:.0f}s")
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if ok_kills == len(rows) and equal_rounds == len(rounds) else 1


if __name__ == "__main__":
    sys.exit(main())
