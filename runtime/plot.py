"""`growlang plot RUN [RUN ...] [--out PNG] [--profile PROFILE.json]`: eval loss against cumulative
FLOPs and wall time; with a profile, each stage's measured seconds against the profile's estimate.

Reads each run's metrics.jsonl (runtime/metrics.py) and draws two panels, one line per run (and
per root-to-leaf path when a run is a tree), with a dotted vertical line at every growth. With
--profile: one pair of bars per stage (growlang/run_times.py measures, growlang/time_model.py
estimates the same steps and evaluations), the relative error above each pair.
"""

from __future__ import annotations

import sys
from pathlib import Path

from growlang.runtime.errors import UserError


def load_run(folder: Path) -> list[dict]:
    from growlang.runtime.metrics import read_metrics

    path = folder / "metrics.jsonl"
    if not folder.is_dir():
        raise UserError(f"{folder} is not a run folder (no such directory); pass the --out of a `growlang run`")
    if not path.is_file():
        raise UserError(f"{folder} has no metrics.jsonl; pass the --out folder of a `growlang run`")
    try:
        rows = read_metrics(path)
    except ValueError as e:
        raise UserError(f"{path} is not valid JSON Lines ({e})") from None
    if not any(r.get("eval_loss") is not None for r in rows):
        raise UserError(f"{path} has no evaluated steps yet; nothing to plot")
    return rows


def paths(rows: list[dict]) -> list[list[str]]:
    """Root-to-leaf stage paths, from the growth records (stage <- src)."""
    parent = {r["stage"]: r["src"] for r in rows if r.get("kind") == "growth"}
    stages = list(dict.fromkeys(r["stage"] for r in rows if r.get("kind", "train") == "train"))
    leaves = [s for s in stages if s not in parent.values()]
    out = []
    for leaf in leaves:
        chain = [leaf]
        while chain[-1] in parent:
            chain.append(parent[chain[-1]])
        out.append(chain[::-1])
    return out


def series(rows: list[dict], path: list[str]):
    """(flops, time, eval loss) along one path, and the FLOPs/time at each growth on it."""
    pts = [r for r in rows if r.get("kind", "train") == "train" and r["stage"] in path
           and r.get("eval_loss") is not None]
    bounds = [(r["flops"], r["time"]) for r in (
        max((x for x in rows if x.get("kind", "train") == "train" and x["stage"] == s), key=lambda x: x["step"],
            default=None) for s in path[:-1]) if r is not None]
    return [r["flops"] for r in pts], [r["time"] for r in pts], [r["eval_loss"] for r in pts], bounds


def main(args) -> int:
    """args.runs: run folders; args.out: the PNG (default <first run>/loss.png). Returns the exit code."""
    from growlang.runtime.errors import exit_code_of

    return exit_code_of(lambda: _time_main(args) if getattr(args, "profile", None) else _main(args))


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, out: Path, what: str) -> None:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(out, dpi=110)
    except OSError as e:
        raise UserError(f"cannot write {out}: {e.strerror or e}") from None
    finally:
        plt.close(fig)
    print(f"wrote {out}: {what}")


def _out(args, runs: list[Path], default: str) -> Path:
    out = Path(args.out) if getattr(args, "out", None) else runs[0] / default
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a .png file name")
    return out


def _time_main(args) -> int:
    """Estimated against measured seconds per stage, one group of bars per run."""
    from growlang.run_times import stage_times
    from growlang.time_model import precision_warning, read_profile, render

    profile, source = read_profile(args.profile)
    runs = [Path(r) for r in args.runs]
    measured = []
    for r in args.runs:
        plan, times = stage_times(r)
        for w in precision_warning(profile, plan.train.precision, f"the run {r}", source):
            print(render(w, source, args.profile), file=sys.stderr)
        measured += times
    out = _out(args, runs, "time.png")
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 1.1 * len(measured) + 2), 4.5))
    xs = range(len(measured))
    est = [t.estimate(profile["coefficients"]) for t in measured]
    ax.bar([x - 0.2 for x in xs], [t.seconds for t in measured], 0.4, label="measured")
    ax.bar([x + 0.2 for x in xs], est, 0.4, label=f"estimated ({Path(args.profile).name})")
    for x, t, e in zip(xs, measured, est):
        ax.annotate(f"{e / t.seconds - 1:+.0%}", (x, max(e, t.seconds)), ha="center", va="bottom", fontsize="small")
    several = len(runs) > 1
    ax.set_xticks(list(xs), [(f"{Path(t.run).name}\n" if several else "") + t.stage
                             + ("" if t.finished else f"\n({t.steps} steps)") for t in measured])
    ax.set_ylabel("training-loop seconds (steps + evals)")
    ax.set_title("estimated vs measured time per stage" + ("" if several else f": {runs[0].name}"))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize="small")
    fig.tight_layout()
    _save(plt, fig, out, f"estimated vs measured seconds of {len(measured)} stage(s)")
    return 0


def _main(args) -> int:
    runs = [Path(r) for r in args.runs]
    if not runs:
        raise UserError("give at least one run folder to plot")
    data = [(r, load_run(r)) for r in runs]
    out = _out(args, runs, "loss.png")
    plt = _pyplot()
    fig, (ax_f, ax_t) = plt.subplots(1, 2, figsize=(12, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    i = 0
    for run, rows in data:
        tree = paths(rows)
        for path in tree:
            flops, times, loss, bounds = series(rows, path)
            color = colors[i % len(colors)]
            i += 1
            label = run.name if len(tree) == 1 else f"{run.name}: {' > '.join(path)}"
            ax_f.plot(flops, loss, marker=".", color=color, label=label)
            ax_t.plot(times, loss, marker=".", color=color, label=label)
            for bf, bt in bounds:
                ax_f.axvline(bf, color=color, linestyle=":", alpha=0.6)
                ax_t.axvline(bt, color=color, linestyle=":", alpha=0.6)
    ax_f.set_xlabel("training FLOPs (cumulative)")
    ax_t.set_xlabel("wall time (s, cumulative)")
    for ax in (ax_f, ax_t):
        ax.set_ylabel("eval loss")
        ax.grid(alpha=0.3)
    ax_f.set_title("eval loss vs compute (dotted: growth)")
    ax_t.set_title("eval loss vs wall time (dotted: growth)")
    ax_t.legend(fontsize="small")
    fig.tight_layout()
    _save(plt, fig, out, "eval loss against FLOPs and wall time")
    return 0
