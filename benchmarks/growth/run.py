"""Progressive growth vs training the final model from scratch, measured with `growlang run`.

    .venv/bin/python benchmarks/growth/run.py                  # the full suite (see docs/results.md)
    .venv/bin/python benchmarks/growth/run.py --only scratch,compound
    .venv/bin/python benchmarks/growth/run.py --report-only    # tables + plot from what out/ holds
    .venv/bin/python benchmarks/growth/run.py --tiny --out /tmp/g   # smoke test, seconds per run

Every schedule has the SAME final model (bert-preln, 4 layers x 256, 4 heads, ffn 1024, len 128,
vocab 8192, builtin corpus and tokenizer) and, up to rounding to 10 steps, the SAME total training
FLOPs as the from-scratch run (`growlang.accounting`, the numbers `growlang check` prints). A
growth schedule has two stages of equal step count: a cheap stage, then the final model; because
its first stage is cheaper it takes more steps (and reads more tokens) for the same FLOPs.

The schedules are written from the templates below into benchmarks/growth/schedules/ (committed;
the full scale) and trained one `growlang run` subprocess each into --out (git-ignored). A run
whose folder already holds a finished run (bench.json) is reused; --fresh retrains it. Then the
script reads every metrics.jsonl and writes the report (docs/results.md and docs/results.png at the
full scale, <out>/results.md and <out>/results.png with --tiny or --out).
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
GROWLANG = [sys.executable, "-m", "growlang"]

# ----------------------------------------------------------------------------------- scales
# full: the final model of the issue; batch 8 and 1 thread per run because on this 2-core machine
# two 1-thread runs side by side train far faster than one 2-thread run (measured: 0.66 s/step at
# batch 8 with 1 thread vs 9.4 s/step at batch 32 with 2 threads, under the same neighbour load).
SCALES = {
    "full": dict(
        family="bert-preln", vocab=8192, head_dim=64, max_len=128,
        final=dict(depth=4, width=256, ffn=1024, len=128), small=dict(depth=2, ffn=256, len=64),
        batch=8, lr="1e-3", scratch_steps=440, warmup=22, eval_every=40, eval_batches=16, log_every=20,
    ),
    "tiny": dict(
        family="bert-preln", vocab=8192, head_dim=32, max_len=32,
        final=dict(depth=2, width=64, ffn=256, len=32), small=dict(depth=1, ffn=64, len=16),
        batch=4, lr="1e-3", scratch_steps=6, warmup=2, eval_every=4, eval_batches=2, log_every=2,
    ),
}


@dataclass
class Sched:
    """One schedule file: a single stage (scratch) or a cheap stage then one or more children."""

    name: str
    grow: dict = field(default_factory=dict)  # dim -> operator on the edge out of the cheap stage
    small: tuple = ()  # which dims the cheap stage shrinks: depth, ffn, len
    children: dict | None = None  # leaf name -> {dim: op} overrides (a tree), None: one child "final"
    seed: int = 0
    train: dict = field(default_factory=dict)  # extra train keys (on_grow, lr_on_grow)
    what: str = ""
    shape: dict | None = None  # no growth, this shape instead of the final one (a control)


SCHEDULES = [
    Sched("scratch", what="the final model from scratch"),
    Sched("compound", {"depth": "stack", "ffn": "stack", "len": "pool"}, ("depth", "ffn", "len"),
          what="depth 2->4 (stack), ffn 256->1024 (stack), len 64->128 (pool), all at one growth"),
    Sched("depth-stack", {"depth": "stack"}, ("depth",), what="depth 2->4 by stack"),
    Sched("len-pool", {"len": "pool"}, ("len",), what="len 64->128 by pool (reads 128 tokens, pooled by 2)"),
    Sched("ffn", {"ffn": "stack"}, ("ffn",), what="ffn 256->1024 by stack"),
    Sched("scratch-seed1", seed=1, what="scratch, seed 1"),
    Sched("compound-seed1", {"depth": "stack", "ffn": "stack", "len": "pool"}, ("depth", "ffn", "len"), seed=1,
          what="compound, seed 1"),
    Sched("depth-ops", {"depth": "interpolate"}, ("depth",),
          children={"depth-interpolate": {}, "depth-zero": {"depth": "zero"}},
          what="depth 2->4; a tree: the 2-layer stage of depth-stack (same seed, data and thread count, so "
               "the same weights on CPU), then two children, by interpolate and by zero"),
    Sched("len-truncate", {"len": "truncate"}, ("len",), what="len 64->128 by truncate (reads 64 tokens)"),
    Sched("compound-carry", {"depth": "stack", "ffn": "stack", "len": "pool"}, ("depth", "ffn", "len"),
          train={"on_grow": "carry"}, what="compound, on_grow=carry"),
    Sched("compound-continue", {"depth": "stack", "ffn": "stack", "len": "pool"}, ("depth", "ffn", "len"),
          train={"lr_on_grow": "continue"}, what="compound, lr_on_grow=continue"),
    Sched("small-only", shape=dict(depth=2, ffn=256),
          what="control: a 2-layer, ffn-256 model (len 128) trained alone on the same FLOPs, never grown"),
    Sched("compound-rewarm", {"depth": "stack", "ffn": "stack", "len": "pool"}, ("depth", "ffn", "len"),
          train={"lr_on_grow": "rewarm"}, what="compound, lr_on_grow=rewarm(warmup)"),
]
BY_NAME = {s.name: s for s in SCHEDULES}
TINY_DEFAULT = ["scratch", "compound"]


def header(sc: dict, sched: Sched) -> str:
    train = {"batch": sc["batch"], "lr": sc["lr"], "warmup": sc["warmup"], "decay": "linear", "seed": sched.seed,
             "eval_every": sc["eval_every"], "eval_batches": sc["eval_batches"], "log_every": sc["log_every"],
             "checkpoint_every": 0}
    for k, v in sched.train.items():
        train[k] = f"rewarm({sc['warmup']})" if v == "rewarm" else v
    return (f"model {sc['family']} {{ vocab={sc['vocab']} head_dim={sc['head_dim']} max_len={sc['max_len']} }}\n"
            "data  { corpus=builtin tokenizer=builtin mask=0.15 }\n"
            "train { " + " ".join(f"{k}={v}" for k, v in train.items()) + " }\n")


def shape_kv(d: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in d.items())


def schedule_text(sc: dict, sched: Sched, s1: int | str, s2: int | str) -> str:
    fin = sc["final"]
    out = [f"# benchmarks/growth: {sched.what}. Written by benchmarks/growth/run.py; do not edit by hand.",
           header(sc, sched)]
    if not sched.grow:
        out.append(f"stage final: {shape_kv({**fin, **(sched.shape or {})})} steps={s1}")
        return "\n".join(out) + "\n"
    small = {**fin, **{k: v for k, v in sc["small"].items() if k in sched.small}}
    ops = ", ".join(f"{dim} by {op}" for dim, op in sched.grow.items())
    grown = {k: fin[k] for k in sched.small}
    out.append(f"stage small: {shape_kv(small)} steps={s1} ; grow {ops}")
    for leaf, over in (sched.children or {"final": {}}).items():
        via = f" via {', '.join(f'{d} by {o}' for d, o in over.items())}" if over else ""
        src = " from small" if sched.children else ""
        out.append(f"stage {leaf}{src}{via}: {shape_kv(grown)} steps={s2}")
    return "\n".join(out) + "\n"


def compile_or_die(text: str, where: Path):
    from growlang.compiler import compile_text

    c = compile_text(text, where)
    if not c.ok:
        raise SystemExit(f"internal: schedule {where} does not compile:\n" + "\n".join(map(str, c.diagnostics)))
    return c.plan


def round10(x: float, tiny: bool) -> int:
    return max(1, round(x)) if tiny else max(10, int(round(x / 10.0)) * 10)


def write_schedule(sc: dict, sched: Sched, folder: Path, tiny: bool) -> Path:
    """Step counts: scratch N; a growth schedule s steps per stage with flops(small)*s + flops(final)*s =
    flops(final)*N (equal total training FLOPs, up to rounding)."""
    path = folder / f"{sched.name}.grow"
    N = sc["scratch_steps"]
    if sched.shape:
        f_final = compile_or_die(schedule_text(sc, Sched("probe"), 1, 1), path).stages[0].cost.flops_per_seq
        f_small = compile_or_die(schedule_text(sc, sched, 1, 1), path).stages[0].cost.flops_per_seq
        text = schedule_text(sc, sched, round10(N * f_final / f_small, tiny), 0)
    elif not sched.grow:
        text = schedule_text(sc, sched, N, N)
    else:
        probe = compile_or_die(schedule_text(sc, sched, 1, 1), path)
        f_small, f_final = probe.stages[0].cost.flops_per_seq, probe.stages[-1].cost.flops_per_seq
        s = round10(N * f_final / (f_small + f_final), tiny)
        text = schedule_text(sc, sched, s, s)
    compile_or_die(text, path)
    folder.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


# ----------------------------------------------------------------------------------- running
def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def train(schedule: Path, out: Path, threads: int, fresh: bool) -> dict:
    bench = out / "bench.json"
    if done(out) and not fresh:
        return json.loads(bench.read_text())
    lock = out.parent / f"{out.name}.lock"
    out.parent.mkdir(parents=True, exist_ok=True)
    try:  # another runner on the same --out may be training it: leave it to that one
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(lock.read_text() or 0), 0)
            print(f"skip {out.name}: locked by a live runner ({lock})", file=sys.stderr, flush=True)
            return {"rc": 0, "skipped": True}
        except (ProcessLookupError, ValueError):
            lock.unlink(missing_ok=True)  # stale: its runner died
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        return _train(schedule, out, threads)
    finally:
        lock.unlink(missing_ok=True)


def done(out: Path) -> bool:
    """A finished run: bench.json written after its `growlang run` exited 0, or adopted (below)."""
    try:
        return "wall_s" in json.loads((out / "bench.json").read_text())
    except (OSError, ValueError):
        return adopt(out)


def adopt(out: Path) -> bool:
    """A run that finished (summary.txt written) while the runner that started it was gone (killed
    to reorder the queue): record what its files tell, and say so. `wall_s` then runs from plan.json
    (written after start-up and data loading) to summary.txt, so it lacks the start-up."""
    summary, plan = out / "summary.txt", out / "plan.json"
    lock = out.parent / f"{out.name}.lock"
    if not summary.exists() or not plan.exists() or lock.exists():
        return False
    t0, t1 = plan.stat().st_mtime, summary.stat().st_mtime
    stamp = lambda t: datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    rec = {"schedule": str((HERE / "schedules" / f"{out.name}.grow").relative_to(ROOT)), "rc": 0,
           "start": stamp(t0), "end": stamp(t1), "wall_s": t1 - t0, "load_start": [], "load_end": [],
           "threads": 1, "adopted": "its runner was stopped; process time from plan.json to summary.txt "
                                    "(excludes start-up), no load record"}
    (out / "bench.json").write_text(json.dumps(rec, indent=1))
    return True


def _train(schedule: Path, out: Path, threads: int) -> dict:
    bench = out / "bench.json"
    if out.exists():
        shutil.rmtree(out)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    start, load0, t0 = utc(), loadavg(), time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    log = out.parent / f"{out.name}.log"
    with open(log, "w") as f:
        p = subprocess.run([*GROWLANG, "run", str(schedule), "--out", str(out), "--device", "cpu"],
                           stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    rec = {"schedule": str(schedule.relative_to(ROOT)) if schedule.is_relative_to(ROOT) else str(schedule),
           "rc": p.returncode, "start": start, "end": utc(), "wall_s": time.perf_counter() - t0,
           "load_start": load0, "load_end": loadavg(), "threads": threads}
    if p.returncode != 0:
        rec["log_tail"] = log.read_text()[-2000:]
        print(f"FAILED {schedule.name} (exit {p.returncode}); see {log}", file=sys.stderr, flush=True)
        (out.parent / f"{out.name}.failed.json").write_text(json.dumps(rec, indent=1))
        return rec
    bench.write_text(json.dumps(rec, indent=1))
    print(f"done {schedule.name}: {rec['wall_s']:.0f}s (load {rec['load_end']})", file=sys.stderr, flush=True)
    return rec


# ----------------------------------------------------------------------------------- analysis
@dataclass
class Curve:
    entry: str  # row name, e.g. depth-stack
    run: str
    leaf: str
    flops: list
    time: list
    loss: list
    growth: dict | None  # the growth record into the leaf
    steps: int
    tokens: int
    bench: dict

    @property
    def final(self) -> float:
        return self.loss[-1]


def load_curves(out: Path, names: list[str]) -> dict[str, Curve]:
    from growlang.runtime.metrics import read_metrics
    from growlang.runtime.plot import paths, series

    curves = {}
    for name in names:
        folder = out / name
        if not done(folder):
            continue
        rows = read_metrics(folder / "metrics.jsonl")
        bench = json.loads((folder / "bench.json").read_text())
        for path in paths(rows):
            leaf = path[-1]
            flops, times, loss, _ = series(rows, path)
            last = max((r for r in rows if r.get("kind", "train") == "train" and r["stage"] == leaf),
                       key=lambda r: r["step"])
            growth = next((r for r in rows if r.get("kind") == "growth" and r["stage"] == leaf), None)
            entry = name if len(paths(rows)) == 1 else leaf  # tree leaves have unique names
            curves[entry] = Curve(entry, name, leaf, flops, times, loss, growth, last["step"], last["tokens"], bench)
    return curves


def reach(c: Curve, target: float) -> tuple[float | None, float | None]:
    """(FLOPs, time) at which c's eval curve first reaches `target`, linearly interpolated between
    the evaluated points around the crossing; (None, None) if it never does."""
    for i, loss in enumerate(c.loss):
        if loss <= target:
            if i == 0:
                return c.flops[0], c.time[0]
            a = (c.loss[i - 1] - target) / (c.loss[i - 1] - loss)
            return (c.flops[i - 1] + a * (c.flops[i] - c.flops[i - 1]),
                    c.time[i - 1] + a * (c.time[i] - c.time[i - 1]))
    return None, None


def at(c: Curve, x: float, axis: str = "flops") -> float | None:
    """Eval loss interpolated at FLOPs (or time) x; None outside the curve."""
    xs = getattr(c, axis)
    if xs and xs[-1] < x <= xs[-1] * 1.03:  # budgets equal up to rounding: the run's last point
        return c.loss[-1]
    if not xs or x < xs[0] or x > xs[-1]:
        return None
    for i in range(1, len(xs)):
        if xs[i] >= x:
            a = (x - xs[i - 1]) / (xs[i] - xs[i - 1])
            return c.loss[i - 1] + a * (c.loss[i] - c.loss[i - 1])
    return c.loss[-1]


def stage_costs(folder: Path, leaf: str) -> list[dict]:
    """Per stage on the path to `leaf`: steps, FLOPs per step, train-loop seconds per step."""
    from growlang.runtime.metrics import read_metrics
    from growlang.runtime.plot import paths

    rows = read_metrics(folder / "metrics.jsonl")
    path = next(p for p in paths(rows) if p[-1] == leaf)
    out, prev = [], {"step": 0, "time": 0.0, "flops": 0.0}
    for stage in path:
        last = max((r for r in rows if r.get("kind", "train") == "train" and r["stage"] == stage),
                   key=lambda r: r["step"])
        n = last["step"] - prev["step"]
        out.append({"stage": stage, "steps": n, "flops_per_step": (last["flops"] - prev["flops"]) / n,
                    "s_per_step": (last["time"] - prev["time"]) / n})
        prev = last
    return out


def stage_full_step(curves: dict) -> float | None:
    c = curves.get("scratch")
    return c.flops[-1] / c.steps if c else None


def overlap(benches: list[dict]) -> int:
    """The most runs that were training at the same moment."""
    spans = sorted({(b["start"], b["end"], b.get("schedule")) for b in benches if b.get("start")})
    spans = [(a, b) for a, b, _ in spans]  # a tree's leaves share one run
    return max((sum(1 for a, b in spans if a <= t < b) for t, _ in spans), default=0)


def fmt(x, spec=".3f", none="-"):
    return none if x is None else format(x, spec)


def table(head: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---" if i == 0 else "---:" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(out)


def scratch_for(curves: dict, c: Curve) -> Curve | None:
    return curves.get("scratch-seed1" if c.run.endswith("seed1") else "scratch")


def compare_rows(curves: dict, entries: list[str]) -> list[list[str]]:
    rows = []
    for e in entries:
        c = curves.get(e)
        if c is None:
            rows.append([e, *["not run"] + ["-"] * 9])
            continue
        base = scratch_for(curves, c)
        f_reach, t_reach = reach(c, base.final) if base else (None, None)
        g = c.growth
        grow = "-" if g is None else f"{g['eval_loss_before']:.3f} -> {g['eval_loss_after']:.3f}"
        rows.append([
            e, str(c.steps), f"{c.tokens / 1e6:.2f}M", f"{c.flops[-1]:.3g}",
            f"{c.time[-1]:.0f}", f"{c.bench['wall_s']:.0f}" + ("*" if c.bench.get("adopted") else ""), f"{c.final:.3f}",
            "-" if base is None else f"{c.final - base.final:+.3f}", grow,
            "not reached" if f_reach is None else f"{f_reach:.3g} ({base.flops[-1] / f_reach:.2f}x)",
            "not reached" if t_reach is None else f"{t_reach:.0f} ({base.time[-1] / t_reach:.2f}x)",
        ])
    return rows


COMPARE_HEAD = ["schedule", "steps", "tokens", "FLOPs", "train s", "process s", "final eval", "vs scratch",
                "eval at growth (before -> after)", "FLOPs to scratch's final (speed-up)",
                "train s to scratch's final (speed-up)"]


def fix_rows(rows):  # "not run" rows have fewer cells
    return [r + ["-"] * (len(COMPARE_HEAD) - len(r)) for r in rows]


def report(out: Path, docs: Path, sc: dict, names: list[str], argv: list[str], tiny: bool) -> str:
    curves = load_curves(out, [s.name for s in SCHEDULES])
    benches = [c.bench for c in curves.values()]
    import torch

    cpu = next((l.split(":", 1)[1].strip() for l in Path("/proc/cpuinfo").read_text().splitlines()
                if l.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else "?"
    starts = sorted(b["start"] for b in benches)
    ends = sorted(b["end"] for b in benches)
    loads = [b["load_start"][0] for b in benches if b.get("load_start")] + \
            [b["load_end"][0] for b in benches if b.get("load_end")]
    fin = sc["final"]
    L = []
    L.append("# Growth vs scratch: measured results\n")
    L.append("Generated by `benchmarks/growth/run.py`; every number below comes from the runs it lists. "
             "Do not edit by hand: rerun the command.\n")
    L.append("```\n" + " ".join(["python", "benchmarks/growth/run.py", *argv]) + "\n```\n")
    L.append("The runs were trained by `python benchmarks/growth/run.py` (the whole suite; `--only` picks a subset, "
             "`--jobs` sets how many train side by side, several runners may share one --out since each run is "
             "claimed by a lock file, and a finished run is reused); this report was written by the command above. "
             "When each run started and ended is in the table at the end.\n")
    L.append(f"- machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
             f"torch {torch.__version__}, CPU fp32; each `growlang run` with 1 thread "
             f"(OMP_NUM_THREADS=1), up to {overlap(benches)} of this suite's runs side by side")
    if starts:
        L.append(f"- runs from {starts[0]} to {ends[-1]}; 1-minute load average at the start/end of each run "
                 f"between {min(loads):.1f} and {max(loads):.1f} on 2 cores (other users' jobs shared the "
                 "machine): **wall times are noisy**, FLOPs are exact counts")
    L.append(f"- final model: {sc['family']}, {fin['depth']} layers x {fin['width']}, "
             f"{fin['width'] // sc['head_dim']} heads, ffn {fin['ffn']}, len {fin['len']}, vocab {sc['vocab']}, "
             f"builtin corpus and tokenizer; batch {sc['batch']}, AdamW lr {sc['lr']}, warm-up {sc['warmup']} "
             "steps then linear decay to 0 per stage (unless noted), dropout 0.1")
    L.append(f"- budget: the scratch run trains {sc['scratch_steps']} steps; every growth schedule has the same "
             "total training FLOPs (within rounding to 10 steps), split into two stages of equal step count "
             "(cheap stage, then the final model)")
    L.append(f"- eval: MLM loss (nats) on the same {sc['eval_batches']} x {sc['batch']} held-out sequences at "
             f"full length {fin['len']} (the held-out documents are fixed; their masks are set by the seed), every {sc['eval_every']} "
             "steps and at every stage end")
    L.append("- `train s`: the runtime's cumulative training-loop time (includes its evaluations; excludes start-up, "
             "checkpointing and the growth itself); `process s`: the whole `growlang run` subprocess "
             "(for the depth-ops tree: all three stages)")
    L.append("- \"to scratch's final\": FLOPs and train-loop seconds at which the eval curve first reaches the "
             "same-seed scratch run's final eval loss, linearly interpolated between evaluations; speed-up = "
             "scratch's total / that. Scratch's final point comes after its LR decayed to 0, a growth run's "
             "crossing point usually mid-decay, which favours scratch. Train-time speed-ups compare runs that trained "
             "at different times under different load, except the pairs that trained side by side (scratch and "
             "compound for each seed: see the start times at the end); read the others from the FLOPs columns\n")

    L.append("## 1. Growth along one dimension and compound vs scratch (seed 0, equal total FLOPs)\n")
    main = ["scratch", "depth-stack", "len-pool", "ffn", "compound", "small-only"]
    L.append(table(COMPARE_HEAD, fix_rows(compare_rows(curves, main))) + "\n")
    L.append("Schedules: " + "; ".join(f"`{s.name}`: {s.what}" for s in SCHEDULES if s.name in
                                      ("depth-stack", "len-pool", "ffn", "compound", "small-only")) + ". Files: "
             "`benchmarks/growth/schedules/*.grow`.\n")

    L.append("### Seeds: compound vs scratch\n")
    rows, fs, ts, ds = [], [], [], []
    for seed, (sname, cname) in enumerate((("scratch", "compound"), ("scratch-seed1", "compound-seed1"))):
        s, c = curves.get(sname), curves.get(cname)
        if s is None or c is None:
            rows.append([str(seed), *(["not run"] * 5)])
            continue
        fr, tr = reach(c, s.final)
        ds.append(c.final - s.final)
        if fr:
            fs.append(s.flops[-1] / fr)
        if tr:
            ts.append(s.time[-1] / tr)
        rows.append([str(seed), f"{s.final:.3f}", f"{c.final:.3f}", f"{c.final - s.final:+.3f}",
                     "not reached" if fr is None else f"{s.flops[-1] / fr:.2f}x",
                     "not reached" if tr is None else f"{s.time[-1] / tr:.2f}x"])

    def spread(xs, spec):
        if not xs:
            return "-"
        m = sum(xs) / len(xs)
        return f"{m:{spec}} (range {min(xs):{spec}} .. {max(xs):{spec}}, n={len(xs)})"

    rows.append(["mean", "", "", spread(ds, "+.3f"), spread(fs, ".2f"), spread(ts, ".2f")])
    L.append(table(["seed", "scratch final eval", "compound final eval", "difference", "FLOPs speed-up",
                    "train-time speed-up"], rows) + "\n")
    L.append("A seed sets the initialisation, the training order and masks, and the masks of the (fixed) held-out "
             "documents, so each seed's pair shares its own eval masks; compare the differences more than the "
             "absolute losses across seeds.\n")

    L.append("## 2. Controlled comparisons (same runner, same budget rule)\n")
    groups = [
        ("Length: pool vs truncate", ["len-pool", "len-truncate"],
         "pool reads 128-token sequences and mean-pools the unmasked embeddings by 2 (the encoder runs on "
         "1 + 64 + 19 positions); truncate reads 64-token sequences. Equal FLOPs, so truncate takes more steps."),
        ("Depth: stack vs interpolate vs zero", ["depth-stack", "depth-interpolate", "depth-zero"],
         "All three grow the same 2-layer model (depth-stack's first stage and depth-ops' root are the same "
         "schedule, seed and thread count: bitwise the same on CPU; interpolate and zero are one tree) and read "
         "the same data; `zero` inserts zero-output layers evenly (exact for bert-preln: see the eval loss just "
         "before/after the growth)."),
        ("Optimizer state at growth: reset vs carry", ["compound", "compound-carry"], "Compound schedule."),
        ("LR at growth: restart vs continue vs rewarm", ["compound", "compound-continue", "compound-rewarm"],
         f"Compound schedule; restart: each stage warms up {sc['warmup']} steps and decays to 0; continue: one "
         f"warm-up and one linear decay over both stages; rewarm({sc['warmup']}): the continue schedule, ramped "
         "back up from 0 after the growth."),
        ("Compound vs each single dimension at equal total FLOPs", ["compound", "depth-stack", "ffn", "len-pool",
                                                                    "len-truncate"], ""),
    ]
    for title, entries, note in groups:
        L.append(f"### {title}\n")
        if note:
            L.append(note + "\n")
        L.append(table(COMPARE_HEAD, fix_rows(compare_rows(curves, entries))) + "\n")

    base = curves.get("scratch")
    if base:
        L.append("### Eval loss at fractions of the FLOPs budget (seed 0)\n")
        fr = (0.25, 0.5, 0.75, 1.0)
        rows = []
        for e in ["scratch", "depth-stack", "depth-interpolate", "depth-zero", "len-pool", "len-truncate", "ffn",
                  "compound", "compound-carry", "compound-continue", "compound-rewarm", "small-only"]:
            c = curves.get(e)
            if c is None:
                continue
            rows.append([e, *[fmt(at(c, f * base.flops[-1])) for f in fr]])
        L.append(table(["schedule", *[f"{int(f * 100)}% ({f * base.flops[-1]:.3g})" for f in fr]], rows) + "\n")
        L.append("(A run whose budget ends up to 3% short of scratch's, through rounding to 10 steps, shows its last "
                 "point in the 100% column.)\n")

    L.append("### Stage cost on this CPU: FLOPs vs seconds per step\n")
    rows = []
    for e, c in curves.items():
        for st in stage_costs(out / c.run, c.leaf):
            rows.append([e, st["stage"], str(st["steps"]), f"{st['flops_per_step'] / full_step:.2f}" if (
                full_step := stage_full_step(curves)) else "-", f"{st['s_per_step']:.2f}"])
    L.append(table(["schedule", "stage", "steps", "FLOPs/step vs the final model", "train-loop s/step"], rows) + "\n")
    L.append("Runs trained side by side under changing load, so compare s/step within a run (its two stages ran "
             "under similar conditions) more than across runs. Where the cheap stage's s/step, as a fraction of the "
             "final stage's, is above its FLOPs fraction, costs that do not shrink with the model (the embedding "
             "table's AdamW update, the vocabulary-sized head, data and masking, evaluations) eat part of the "
             "FLOPs saving.\n")

    L.append("## Training stream\n")
    L.append("`growlang run` reads the training documents (paragraphs of the 249 addresses) in an order shuffled "
             "by `train.seed`; the held-out documents are a fixed sample of all years, the same for every seed, so "
             "the two seeds below differ in initialisation, data order and masks, not in the eval set.\n")

    speed = out / "trainer_speed.txt"
    if speed.exists():
        L.append("## Trainer throughput (benchmarks/trainer_speed.py)\n")
        L.append("```\n" + speed.read_text().rstrip() + "\n```\n")

    missing = [s.name for s in SCHEDULES if not done(out / s.name)]
    failed = [p.name for p in out.glob("*.failed.json")]
    L.append("## Runs\n")
    rows = [[c.entry, c.bench["schedule"], c.bench["start"], f"{c.bench['wall_s']:.0f}" + ("*" if c.bench.get("adopted") else ""),
             f"{c.time[-1] / c.steps:.2f}",
             " / ".join(map(str, c.bench.get("load_start", []))) or "-",
             " / ".join(map(str, c.bench.get("load_end", []))) or "-"]
            for c in curves.values()]
    L.append(table(["entry", "schedule", "started", "process s", "train-loop s/step (mean, all stages)",
                    "load 1/5/15 min at start", "at end"], rows) + "\n")
    if any(c.bench.get("adopted") for c in curves.values()):
        L.append("\\* the runner that started this run was stopped while it trained (to reorder the queue); the run "
                 "itself finished untouched, and its process time is taken from its files (plan.json to summary.txt), "
                 "so it lacks the ~10-40 s start-up, and no load average was recorded.\n")
    if missing:
        L.append(f"Not run (time ran out or not selected): {', '.join(missing)}.\n")
    if failed:
        L.append(f"Failed: {', '.join(failed)} (see the .log next to them in the out folder).\n")
    L.append("![eval loss vs FLOPs and time](results.png)\n")
    text = "\n".join(L)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "results.md").write_text(text)
    plot(curves, docs / "results.png")
    return text


def plot(curves: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("single dimensions and compound vs scratch", ["scratch", "depth-stack", "len-pool", "ffn", "compound",
                                                       "small-only"]),
        ("operators", ["scratch", "depth-stack", "depth-interpolate", "depth-zero", "len-pool", "len-truncate"]),
        ("optimizer / LR policy at growth; seeds", ["scratch", "compound", "compound-carry", "compound-continue",
                                                    "compound-rewarm", "scratch-seed1", "compound-seed1"]),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(17, 9))
    for col, (title, entries) in enumerate(panels):
        for row, axis in enumerate(("flops", "time")):
            ax = axes[row][col]
            for e in entries:
                c = curves.get(e)
                if c is None:
                    continue
                style = "--" if e.startswith("scratch") else "-"
                ax.plot(getattr(c, axis), c.loss, style, marker=".", label=e)
            base = curves.get("scratch")
            if base:
                ax.axhline(base.final, color="gray", linewidth=0.8, linestyle=":")
            ax.set_xlabel("training FLOPs" if axis == "flops" else "train-loop seconds (noisy)")
            ax.set_ylabel("eval MLM loss (nats)")
            ax.set_title(title, fontsize=10)
            ax.grid(alpha=0.3)
            finals = [curves[e].final for e in entries if e in curves]
            if finals:
                ax.set_ylim(min(finals) - 0.15, max(finals) + 1.2)
            ax.legend(fontsize=7)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)


# ----------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny model and budgets (a smoke test, seconds per run); "
                   f"runs only {','.join(TINY_DEFAULT)} unless --only says otherwise")
    p.add_argument("--only", help="comma-separated schedule names: " + ",".join(BY_NAME))
    p.add_argument("--out", type=Path, help="run folders (default benchmarks/growth/out[/tiny])")
    p.add_argument("--jobs", type=int, default=2, help="runs side by side (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--fresh", action="store_true", help="retrain runs whose folder already holds a result")
    p.add_argument("--report-only", action="store_true", help="train nothing; report what --out holds")
    a = p.parse_args(argv)
    argv = sys.argv[1:] if argv is None else argv

    sc = dict(SCALES["tiny" if a.tiny else "full"], jobs=a.jobs)
    names = a.only.split(",") if a.only else (TINY_DEFAULT if a.tiny else [s.name for s in SCHEDULES])
    bad = [n for n in names if n not in BY_NAME]
    if bad:
        p.error(f"unknown schedule(s) {', '.join(bad)}; choose from {', '.join(BY_NAME)}")
    out = a.out or (HERE / "out" / ("tiny" if a.tiny else ""))
    out = out.resolve()
    default_out = a.out is None and not a.tiny
    docs = ROOT / "docs" if default_out else out
    sched_dir = HERE / "schedules" if not a.tiny else out / "schedules"
    paths = {n: write_schedule(sc, BY_NAME[n], sched_dir, a.tiny) for n in names}
    if not a.report_only:
        print(f"{utc()}: training {len(names)} schedule(s) into {out}, {a.jobs} at a time", file=sys.stderr,
              flush=True)
        with cf.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
            futures = [pool.submit(train, paths[n], out / n, a.threads, a.fresh) for n in names]
            results = [f.result() for f in futures]
        if any(r.get("rc") != 0 for r in results):
            print("some runs failed; the report lists them", file=sys.stderr)
    text = report(out, docs, sc, names, argv, a.tiny)
    print(text)
    print(f"wrote {docs / 'results.md'} and {docs / 'results.png'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
