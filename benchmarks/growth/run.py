"""Growth vs scratch under a fair protocol (issue 16), trained with `growlang run`.

    .venv/bin/python benchmarks/growth/run.py                       # the whole suite, resumable
    .venv/bin/python benchmarks/growth/run.py --only b1-scratch-s0,b1-small-only-s0   # some runs
    .venv/bin/python benchmarks/growth/run.py --report-only         # docs/ from the committed summaries
    .venv/bin/python benchmarks/growth/run.py --tiny --out /tmp/g   # smoke test (the default test suite)

The protocol (No Train No Gain, Kaddour et al. 2023: every budget gets its own fully decayed
baseline):
- BUDGETS fractions of the top budget, in training FLOPs (`growlang.accounting`, the numbers
  `growlang check` prints). At every budget each run is its own schedule whose LR warms up and
  decays linearly to 0 exactly at the budget's end (growth runs: `lr_on_grow=continue`, one decay
  over both stages), so no run is read at another run's midpoint.
- Runs: `scratch` (the final model alone) and `compound` (depth + FFN + length at one growth, the
  operators and policy fixed from the first growth benchmark's findings (before issue 16) and kept:
  depth by stack, ffn by stack, len by pool, on_grow=carry, lr_on_grow=continue), SEEDS seeds each at
  every budget; at the top budget also `small-only` (the cheap stage's model alone on the whole
  budget) and `depth-stack` (the best single dimension in the first round).
- A growth schedule has two stages of equal step count with flops(small)*s + flops(final)*s equal
  to the budget; small-only trains budget/flops(small) steps.

Each run trains in its own `growlang run` subprocess into --out (git-ignored: checkpoints, final/),
then its final/ model is fine-tuned on the downstream task (downstream.py) and a small summary is
written to benchmarks/growth/summaries/<run>.json (COMMIT these: the report is regenerated from
them alone, on any machine). A run whose summary matches its schedule text is reused; --fresh
retrains. report.py writes docs/results.json, docs/results.md, docs/results.png and
docs/choosing-a-schedule.md, with the protocol checks and the runs still missing.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))  # report.py, downstream.py: siblings, not a package
import report  # noqa: E402

# ----------------------------------------------------------------------------------- regime
# full (round 2): chosen from the regime probes (docs/results-probes.md). Every model sits on a
# plateau about 0.5 nat below the unigram entropy until it has read ~15-35M tokens, then its loss
# drops by 2-3 nats; round 1's final model (4 x 128, ffn 512) never got there and the small model,
# reading 2-3x the tokens per FLOP, did. So the final model is the smallest that a compound
# schedule can still shrink in depth, FFN and length (2 x 128, ffn 256, from 1 x 128, ffn 128,
# len 32). The top budget is 10x round 1's (83000 steps, 85M tokens): the 8x curve probes
# (constant LR) show the 2-layer model overtaking the 1-layer one at equal FLOPs near 7x and
# gaining from there, so 10x leaves a margin for check (b); the fully decayed runs here are the
# test of it. bf16 and 64 eval batches with fixed masks as in the probes. tiny: a smoke test.
# round1: the first regime (archived: docs/results-round1.md, summaries/round1/); the probes'
# budgets are multiples of its top budget, so their committed summaries stay valid.
SCALES = {
    "full": dict(
        family="bert-preln", vocab=1024, head_dim=32, max_len=64,
        final=dict(depth=2, width=128, ffn=256, len=64), small=dict(depth=1, ffn=128, len=32),
        batch=16, lr="2e-3", top_steps=83000, warmup_frac=0.05, evals=12, eval_batches=64, precision="bf16",
    ),
    "round1": dict(
        family="bert-preln", vocab=1024, head_dim=32, max_len=64,
        final=dict(depth=4, width=128, ffn=512, len=64), small=dict(depth=2, ffn=128, len=32),
        batch=16, lr="2e-3", top_steps=3000, warmup_frac=0.05, evals=8, eval_batches=16,
    ),
    "tiny": dict(
        family="bert-preln", vocab=1024, head_dim=32, max_len=32,
        final=dict(depth=2, width=64, ffn=256, len=32), small=dict(depth=1, ffn=64, len=16),
        batch=4, lr="1e-3", top_steps=8, warmup_frac=0.25, evals=2, eval_batches=2,
    ),
}
BUDGETS = (0.25, 0.5, 1.0)  # fractions of the top budget
SEEDS = (0, 1, 2)
TINY_BUDGETS, TINY_SEEDS = (0.5, 1.0), (0,)
# Regime probes (issue 16: "find [the crossover] with a few single-seed probes first, then fix the
# budgets"): one shape trained alone, fully decayed, at a multiple of round 1's top budget. Written
# (depth, width, ffn) at the final len; `--probes` runs them, report.py tabulates them.
# The probes score on 64 eval batches with fixed masks (runtime/data.py EVAL_SEED; 16 batches left
# a 0.1-nat spread from the masks alone, docs/data.md) and train in bf16 (1.21x the tokens/s of fp32
# for the 4x128 final shape on the Xeon with AMX, 14.7k vs 12.1k, a 300-step `growlang run` each);
# the round-1 protocol runs above keep the settings their committed summaries used.
PROBE_SETTINGS = {"eval_batches": 64, "precision": "bf16"}
# (depth, width, ffn[, train settings]): the lr probes ask whether a higher lr brings the eval
# loss's late sudden drop (seen after ~30M tokens, ~30k steps, at lr 2e-3) inside a smaller budget
# (it did not); the batch probe whether it comes after a number of steps (then batch 8 would halve
# its cost) or of tokens (the batch-8 probe's 41.9k steps, 21M tokens, saw none).
# The curve probes at 8x (decay constant after the warm-up, 24 evaluations) ask where, past the
# drop, a 2-layer model overtakes a 1-layer one at equal FLOPs: the smallest final/small pair for
# which check (b) can hold (report.py tabulates their losses on a common FLOPs grid).
CURVE = {"decay": "constant", "evals": 24}
PROBES = {4.0: ((4, 128, 512), (2, 128, 128), (4, 128, 256), (2, 128, 256), (1, 128, 128)),
          1.0: ((2, 128, 128), (2, 128, 128, {"lr": "4e-3"}), (2, 128, 128, {"lr": "8e-3"})),
          2.0: ((2, 128, 128, {"batch": 8}),),
          8.0: ((1, 128, 128, CURVE), (2, 128, 256, CURVE))}
TINY_PROBES = {1.0: ((1, 64, 64),)}


@dataclass(frozen=True)
class Kind:
    """What a schedule trains: growth along `small` dims by `grow` ops, or one shape (`shape`)."""

    name: str
    what: str
    grow: dict = field(default_factory=dict)
    small: tuple = ()
    alone_small: bool = False  # no growth: the compound first stage's depth and ffn alone (final len)
    train: dict = field(default_factory=dict)
    top_only: bool = False  # only at the top budget, one seed
    shape: dict | None = None  # a probe: this one shape alone (depth, width, ffn at the final len)


COMPOUND_OPS = {"depth": "stack", "ffn": "stack", "len": "pool"}
GROWTH_POLICY = {"on_grow": "carry", "lr_on_grow": "continue"}
KINDS = {k.name: k for k in (
    Kind("scratch", "the final model from scratch"),
    Kind("compound", "depth, ffn and len at one growth (stack, stack, pool), on_grow=carry, lr_on_grow=continue",
         COMPOUND_OPS, ("depth", "ffn", "len"), train=GROWTH_POLICY),
    Kind("small-only", "control: the compound schedule's first-stage model (len of the final) alone, never grown",
         alone_small=True, top_only=True),
    Kind("depth-stack", "best single dimension of the first round: depth by stack, same policy as compound",
         {"depth": "stack"}, ("depth",), train=GROWTH_POLICY, top_only=True),
)}


@dataclass(frozen=True)
class Run:
    kind: Kind
    budget: float
    seed: int

    @property
    def name(self) -> str:
        return f"b{self.budget:g}-{self.kind.name}-s{self.seed}"


def protocol(tiny: bool) -> list[Run]:
    """Every run of the protocol, cheapest budget first, the top budget's controls last."""
    budgets, seeds = (TINY_BUDGETS, TINY_SEEDS) if tiny else (BUDGETS, SEEDS)
    runs = [Run(KINDS[k], b, s) for b in budgets for s in seeds for k in ("scratch", "compound")]
    return runs + [Run(k, budgets[-1], seeds[0]) for k in KINDS.values() if k.top_only]


def probes(sc: dict, tiny: bool) -> list[Run]:
    """The regime probes: each PROBES shape alone at its budget, seed 0."""
    out = []
    for budget, shapes in (TINY_PROBES if tiny else PROBES).items():
        for d, w, f, *settings in shapes:
            train = settings[0] if settings else {}
            what = "".join(f", {'peak lr' if k == 'lr' else k} {v}" for k, v in train.items())
            kind = Kind(f"size-{d}x{w}f{f}" + "".join(f"-{k}{v}" for k, v in train.items()),
                        f"probe: {d} layers x {w}, ffn {f} alone{what}",
                        shape=dict(depth=d, width=w, ffn=f, len=sc["final"]["len"]), train=train)
            out.append(Run(kind, budget, 0))
    return out


def header(sc: dict, run: Run, steps: int) -> str:
    warm = max(1, round(sc["warmup_frac"] * steps))
    settings = dict(run.kind.train)
    every = max(1, steps // settings.pop("evals", sc["evals"]))  # `evals`: how many, not a train key
    train = {"batch": sc["batch"], "lr": sc["lr"], "warmup": warm, "decay": "linear", "seed": run.seed,
             "eval_every": every, "eval_batches": sc["eval_batches"], "log_every": every, "checkpoint_every": 0,
             **({"precision": sc["precision"]} if "precision" in sc else {}), **settings}
    return (f"model {sc['family']} {{ vocab={sc['vocab']} head_dim={sc['head_dim']} max_len={sc['max_len']} }}\n"
            "data  { corpus=builtin tokenizer=builtin mask=0.15 }\n"
            "train { " + " ".join(f"{k}={v}" for k, v in train.items()) + " }\n")


def kv(d: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in d.items())


def small_shape(sc: dict, dims) -> dict:
    return {**sc["final"], **{k: v for k, v in sc["small"].items() if k in dims}}


def schedule_text(sc: dict, run: Run, s1: int, s2: int) -> str:
    """The .grow text: one stage of s1 steps, or a cheap stage of s1 then the final model for s2."""
    k = run.kind
    out = [f"# benchmarks/growth {run.name}: {k.what}; budget {run.budget:g} of the top. Written by "
           "benchmarks/growth/run.py; do not edit by hand.", header(sc, run, s1 + s2)]
    if not k.grow:
        shape = k.shape or (small_shape(sc, ("depth", "ffn")) if k.alone_small else sc["final"])
        out.append(f"stage final: {kv(shape)} steps={s1}")
    else:
        ops = ", ".join(f"{d} by {o}" for d, o in k.grow.items())
        out.append(f"stage small: {kv(small_shape(sc, k.small))} steps={s1} ; grow {ops}")
        out.append(f"stage final: {kv({d: sc['final'][d] for d in k.small})} steps={s2}")
    return "\n".join(out) + "\n"


def plan_of(text: str, where: Path):
    from growlang.compiler import compile_text

    c = compile_text(text, where)
    if not c.ok:
        raise SystemExit(f"internal: schedule {where} does not compile:\n" + "\n".join(map(str, c.diagnostics)))
    return c.plan


def steps_for(sc: dict, run: Run, where: Path) -> tuple[int, int]:
    """(s1, s2) so that the run's training FLOPs equal its budget (up to rounding to whole steps)."""
    top = sc["top_steps"]
    f_final = plan_of(schedule_text(sc, Run(KINDS["scratch"], 1, 0), 1, 0), where).stages[0].cost.flops_per_seq
    n = run.budget * top  # steps of the final model the budget buys
    if not run.kind.grow and not run.kind.alone_small and not run.kind.shape:
        return max(1, round(n)), 0
    probe = plan_of(schedule_text(sc, run, 1, 1 if run.kind.grow else 0), where)
    f_small = probe.stages[0].cost.flops_per_seq
    if not run.kind.grow:  # one shape alone: the steps that spend the budget (a probe may set its batch)
        batch = int(run.kind.train.get("batch", sc["batch"]))
        return max(1, round(n * f_final * sc["batch"] / (f_small * batch))), 0
    s = max(1, round(n * f_final / (f_small + f_final)))
    return s, s


def write_schedule(sc: dict, run: Run, folder: Path) -> tuple[Path, str]:
    path = folder / f"{run.name}.grow"
    text = schedule_text(sc, run, *steps_for(sc, run, path))
    plan_of(text, path)
    folder.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path, text


def budget_flops(sc: dict, where: Path) -> float:
    """The top budget in training FLOPs: top_steps of the final model from scratch."""
    return plan_of(schedule_text(sc, Run(KINDS["scratch"], 1, 0), sc["top_steps"], 0), where).paths[0].flops


# ----------------------------------------------------------------------------------- running
def loadavg() -> list[float]:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return []


def utc() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def text_hash(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def finished(summary: Path, text: str) -> bool:
    """A run is finished when its committed summary was made from this very schedule text."""
    try:
        return json.loads(summary.read_text()).get("schedule_hash") == text_hash(text)
    except (OSError, ValueError):
        return False


def execute(run: Run, schedule: Path, text: str, out: Path, summaries: Path, threads: int, tiny: bool,
            fresh: bool) -> dict:
    summary = summaries / f"{run.name}.json"
    if finished(summary, text) and not fresh:
        return {"name": run.name, "reused": True}
    folder = out / run.name
    lock = out / f"{run.name}.lock"
    out.mkdir(parents=True, exist_ok=True)
    try:  # another runner on the same --out may be training it: leave it to that one
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(lock.read_text() or 0), 0)
            print(f"skip {run.name}: locked by a live runner ({lock})", file=sys.stderr, flush=True)
            return {"name": run.name, "skipped": True}
        except (ProcessLookupError, ValueError):
            lock.unlink(missing_ok=True)  # stale: its runner died
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    os.write(fd, str(os.getpid()).encode())
    os.close(fd)
    try:
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        bench = folder / "bench.json"
        if fresh or not _trained(bench):
            if folder.exists():
                shutil.rmtree(folder)
            rec = _train(schedule, folder, env)
            if rec["rc"] != 0:
                return {"name": run.name, "failed": True}
        rec = json.loads(bench.read_text())
        down = folder / "downstream.json"
        if fresh or not down.exists():
            t0 = time.perf_counter()
            with open(out / f"{run.name}.downstream.log", "w") as f:
                p = subprocess.run([sys.executable, str(HERE / "downstream.py"), str(folder / "final"), "--json",
                                    str(down), *(["--tiny"] if tiny else [])], stdout=f, stderr=subprocess.STDOUT,
                                   env=env, cwd=ROOT)
            if p.returncode != 0:
                print(f"FAILED downstream of {run.name}; see {out / (run.name + '.downstream.log')}", file=sys.stderr)
                return {"name": run.name, "failed": True}
            rec["downstream_wall_s"] = time.perf_counter() - t0
        summaries.mkdir(parents=True, exist_ok=True)
        s = summarize(run, folder, rec, json.loads(down.read_text()), text)
        tmp = summary.with_suffix(".tmp")
        tmp.write_text(json.dumps(s, indent=1) + "\n")
        tmp.replace(summary)
        print(f"{utc()} done {run.name}: eval {s['final_eval']:.3f}, dev acc {s['downstream']['dev_acc']:.3f}, "
              f"{s['wall_s']:.0f}s (load {s['load_end']})", file=sys.stderr, flush=True)
        return {"name": run.name, "done": True}
    finally:
        lock.unlink(missing_ok=True)


def _trained(bench: Path) -> bool:
    try:
        return json.loads(bench.read_text()).get("rc") == 0
    except (OSError, ValueError):
        return False


def _train(schedule: Path, folder: Path, env: dict) -> dict:
    start, load0, t0 = utc(), loadavg(), time.perf_counter()
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = folder.parent / f"{folder.name}.log"
    with open(log, "w") as f:
        p = subprocess.run([sys.executable, "-m", "growlang", "run", str(schedule), "--out", str(folder),
                            "--device", "cpu"], stdout=f, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    rec = {"rc": p.returncode, "start": start, "end": utc(), "wall_s": time.perf_counter() - t0,
           "load_start": load0, "load_end": loadavg(), "threads": int(env["OMP_NUM_THREADS"]),
           "machine": report.cpu_model()}  # the suite may span sittings on different machines
    if p.returncode != 0:
        print(f"FAILED {schedule.name} (exit {p.returncode}); see {log}", file=sys.stderr, flush=True)
        (folder.parent / f"{folder.name}.failed.json").write_text(json.dumps({**rec, "log_tail": log.read_text()[-2000:]}))
        return rec
    (folder / "bench.json").write_text(json.dumps(rec, indent=1))
    return rec


def summarize(run: Run, folder: Path, rec: dict, down: dict, text: str) -> dict:
    """The committed record of one finished run: its eval curve, final loss, tokens, times, score."""
    from growlang.runtime.metrics import read_metrics
    from growlang.runtime.plot import paths, series

    rows = read_metrics(folder / "metrics.jsonl")
    (path,) = paths(rows)
    flops, times, loss, growths = series(rows, path)
    last = max((r for r in rows if r.get("kind", "train") == "train" and r["stage"] == path[-1]),
               key=lambda r: r["step"])
    return {"name": run.name, "schedule": run.kind.name, "seed": run.seed, "budget": run.budget,
            "schedule_hash": text_hash(text), "flops": flops[-1], "final_eval": loss[-1], "tokens": last["tokens"],
            "steps": sum(int(x) for x in re.findall(r"steps=(\d+)", text)),
            "train_s": times[-1], "wall_s": rec["wall_s"], "start": rec["start"], "end": rec["end"],
            "load_start": rec["load_start"], "load_end": rec["load_end"], "threads": rec["threads"],
            "machine": rec.get("machine"),
            "attention": sorted({r["name"] for r in rows if r.get("kind") == "attention"}),  # kernels the stages ran
            "curve": {"flops": flops, "time": times, "loss": loss}, "growth_at": [g[0] for g in growths],
            "downstream": down}


# ----------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny model, 2 budgets, 1 seed (a smoke test)")
    p.add_argument("--only", help="comma-separated run names (see --list)")
    p.add_argument("--list", action="store_true", help="print the protocol's run names and exit")
    p.add_argument("--out", type=Path, help="run folders (default benchmarks/growth/out[/tiny])")
    p.add_argument("--jobs", type=int, default=2, help="runs side by side (default 2)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    p.add_argument("--fresh", action="store_true", help="retrain runs that already have a summary")
    p.add_argument("--report-only", action="store_true", help="train nothing; report from the summaries")
    p.add_argument("--probes", action="store_true", help="the regime probes (PROBES: single shapes at chosen "
                   "budgets) instead of the protocol; summaries in summaries/probes, table in docs/results-probes.md")
    a = p.parse_args(argv)

    sc = SCALES["tiny" if a.tiny else "round1" if a.probes else "full"]
    if a.probes:
        sc = {**sc, **PROBE_SETTINGS}
    runs = probes(sc, a.tiny) if a.probes else protocol(a.tiny)
    by_name = {r.name: r for r in runs}
    if a.list:
        print("\n".join(by_name))
        return 0
    names = a.only.split(",") if a.only else list(by_name)
    bad = [n for n in names if n not in by_name]
    if bad:
        p.error(f"unknown run(s) {', '.join(bad)}; `--list` prints the {len(by_name)} run names")
    out = (a.out or (HERE / "out" / ("tiny" if a.tiny else ""))).resolve()
    full = a.out is None and not a.tiny  # only the full suite in its default folder writes docs/
    docs = ROOT / "docs" if full else out
    sub = "probes" if a.probes else ""
    sched_dir = (HERE / "schedules" if full else out / "schedules") / sub
    summaries = (HERE / "summaries" if full else out / "summaries") / sub
    written = {r.name: write_schedule(sc, r, sched_dir) for r in runs}
    if not a.report_only:
        print(f"{utc()}: {len(names)} run(s) into {out}, {a.jobs} at a time", file=sys.stderr, flush=True)
        with cf.ThreadPoolExecutor(max_workers=max(1, a.jobs)) as pool:
            futures = [pool.submit(execute, by_name[n], *written[n], out, summaries, a.threads, a.tiny, a.fresh)
                       for n in names]
            results = [f.result() for f in futures]
        if any(r.get("failed") for r in results):
            print("some runs failed; the report lists them as missing", file=sys.stderr)

    if a.probes:
        text = report.write_probes(sc, runs, {n: t for n, (_, t) in written.items()}, summaries, docs, out,
                                   budget_flops(sc, sched_dir / "top.grow"))
        print(text)
        return 0
    text = report.write(sc, runs, {n: t for n, (_, t) in written.items()}, summaries, docs, out,
                        budget_flops(sc, sched_dir / "top.grow"), full=full,
                        seeds=len(TINY_SEEDS if a.tiny else SEEDS))
    print(text)
    print(f"wrote {docs / 'results.json'}, results.md, results.png"
          + (", choosing-a-schedule.md" if full else ""), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
