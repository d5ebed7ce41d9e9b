"""The growth benchmark's report, from the committed run summaries alone (benchmarks/growth/summaries/).

Writes results.json (machine-readable: unigram_entropy, budgets[{flops, runs[...]}], checks,
missing), results.md, results.png and, for the full suite, docs/choosing-a-schedule.md. Evaluates the
issue-16 protocol checks and prints them pass/fail, with the runs still missing.
"""

from __future__ import annotations

import json
import math
import os
import platform
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MARGIN = 0.5  # nats below the unigram entropy that scratch must reach at the top budget (issue 16)


# ----------------------------------------------------------------------------------- unigram entropy
def unigram_entropy(tokenizer_folder: Path) -> dict:
    """Entropy (nats) of the token distribution of the whole builtin corpus under the run's tokenizer:
    the loss of the best context-free predictor, the plateau an MLM must get below to use context.
    Special tokens ([CLS], [SEP]) are not counted: the MLM never predicts them."""
    from transformers import AutoTokenizer

    from growlang.runtime.corpus import builtin_documents

    tok = AutoTokenizer.from_pretrained(tokenizer_folder)
    counts: Counter = Counter()
    docs = builtin_documents()
    for i in range(0, len(docs), 2048):
        for ids in tok(docs[i:i + 2048], add_special_tokens=False)["input_ids"]:
            counts.update(ids)
    n = sum(counts.values())
    h = -sum(c / n * math.log(c / n) for c in counts.values())
    return {"nats": h, "tokens": n, "types": len(counts), "vocab": len(tok), "documents": len(docs)}


def ensure_entropy(summaries: Path, out: Path) -> dict | None:
    """summaries/unigram.json, computed once from the first finished run's tokenizer (the same for
    every run of a scale: `tokenizer=builtin` at one vocab size is deterministic)."""
    path = summaries / "unigram.json"
    if path.exists():
        return json.loads(path.read_text())
    finals = sorted(out.glob("*/final/tokenizer.json"))
    if not finals:
        return None
    rec = unigram_entropy(finals[0].parent)
    summaries.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(rec, indent=1) + "\n")
    return rec


# ----------------------------------------------------------------------------------- numbers
def spread(xs: list[float], spec: str = ".3f") -> str:
    if not xs:
        return "-"
    m = sum(xs) / len(xs)
    return f"{m:{spec}}" if len(xs) == 1 else f"{m:{spec}} ({min(xs):{spec}}..{max(xs):{spec}}, n={len(xs)})"


def mean(xs):
    return sum(xs) / len(xs) if xs else None


def crossing(points: list[tuple[float, float, float]], target: float) -> tuple[float | None, float | None]:
    """(FLOPs, seconds) at which a schedule's budget-final mean loss reaches `target`, interpolated
    linearly in log FLOPs (and log seconds) between consecutive budgets; points: (flops, s, loss)
    sorted by FLOPs. (None, None) when no budget reaches it."""
    for i, (f, s, loss) in enumerate(points):
        if loss <= target:
            if i == 0:
                return (f, s) if loss == target else (None, None)  # below at the smallest budget: < that
            f0, s0, l0 = points[i - 1]
            a = (l0 - target) / (l0 - loss)
            return (math.exp(math.log(f0) + a * (math.log(f) - math.log(f0))),
                    math.exp(math.log(s0) + a * (math.log(s) - math.log(s0))))
    return None, None


def collect(runs, texts: dict, summaries: Path, top_flops: float) -> tuple[list[dict], list[str]]:
    """results.json's budgets and the names of the protocol runs without a valid summary."""
    from run import finished

    budgets: dict[float, list] = {}
    missing = []
    for r in runs:
        path = summaries / f"{r.name}.json"
        if not finished(path, texts[r.name]):
            missing.append(r.name)
            continue
        s = json.loads(path.read_text())
        budgets.setdefault(r.budget, []).append(
            {"name": r.name, "schedule": s["schedule"], "seed": s["seed"], "final_eval": s["final_eval"],
             "downstream": s["downstream"]["dev_acc"], "downstream_detail": s["downstream"], "train_s": s["train_s"],
             "wall_s": s["wall_s"], "tokens": s["tokens"], "steps": s["steps"], "flops": s["flops"],
             "start": s["start"], "load_start": s["load_start"], "load_end": s["load_end"], "curve": s["curve"],
             "machine": s.get("machine"),
             # summaries from before the field trained when a bf16 schedule naming no kernel got `fused`
             "attention": s.get("attention") or ["fused"]})
    fracs = sorted({r.budget for r in runs})
    return [{"fraction": b, "flops": b * top_flops, "runs": budgets.get(b, [])} for b in fracs], missing


def by(budget: dict, schedule: str, key: str) -> list[float]:
    return [r[key] for r in budget["runs"] if r["schedule"] == schedule]


def checks(budgets: list[dict], entropy: dict | None, seeds: int) -> list[tuple[str, bool, str]]:
    top = budgets[-1]
    sc_top, so_top = by(top, "scratch", "final_eval"), by(top, "small-only", "final_eval")
    h = entropy["nats"] if entropy else None
    out = [
        (">= 3 budgets", len(budgets) >= 3, f"{len(budgets)} budgets"),
        (f">= {seeds} seeds of scratch and compound at every budget",
         all(len(by(b, k, "seed")) >= seeds for b in budgets for k in ("scratch", "compound")),
         "; ".join(f"{b['fraction']:g}: scratch {len(by(b, 'scratch', 'seed'))}, compound "
                   f"{len(by(b, 'compound', 'seed'))}" for b in budgets)),
        ("small-only at the top budget", bool(so_top), f"{len(so_top)} run(s)"),
        (f"scratch >= {MARGIN} nat below the unigram entropy at the top",
         bool(sc_top and h is not None and h - mean(sc_top) >= MARGIN),
         "-" if not sc_top or h is None else f"entropy {h:.3f} - scratch {mean(sc_top):.3f} = {h - mean(sc_top):.3f}"),
        ("scratch better than small-only at the top", bool(sc_top and so_top and mean(sc_top) < mean(so_top)),
         "-" if not (sc_top and so_top) else f"scratch {mean(sc_top):.3f} vs small-only {mean(so_top):.3f}"),
        ("downstream scores for scratch and compound at the top",
         bool(by(top, "scratch", "downstream") and by(top, "compound", "downstream")),
         f"scratch {len(by(top, 'scratch', 'downstream'))}, compound {len(by(top, 'compound', 'downstream'))}"),
    ]
    return out


def speedups(budgets: list[dict]) -> dict:
    """FLOPs and train-time speed-up of compound to scratch's top-budget mean loss."""
    top_sc = by(budgets[-1], "scratch", "final_eval")
    if not top_sc:
        return {}
    target = mean(top_sc)
    res = {"target": target}
    for k in ("scratch", "compound", "depth-stack"):
        pts = [(b["flops"], mean(by(b, k, "train_s")), mean(by(b, k, "final_eval"))) for b in budgets
               if by(b, k, "final_eval")]
        f, s = crossing(pts, target)
        res[k] = {"flops": f, "train_s": s}
        if f is None and pts and pts[0][2] < target:  # below already at the smallest budget it ran: no crossing
            res[k]["below_from"] = {"flops": pts[0][0], "loss": pts[0][2]}
    base_f, base_s = budgets[-1]["flops"], mean(by(budgets[-1], "scratch", "train_s"))
    for k in ("compound", "depth-stack"):
        f, s = res[k]["flops"], res[k]["train_s"]
        res[k]["flops_speedup"] = base_f / f if f else None
        res[k]["time_speedup"] = base_s / s if s else None
    return res


# ----------------------------------------------------------------------------------- writing
def table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "|".join(["---"] + ["---:"] * (len(head) - 1)) + "|",
                      *["| " + " | ".join(r) + " |" for r in rows]])


def write(sc: dict, runs, texts: dict, summaries: Path, docs: Path, out: Path, top_flops: float, full: bool,
          seeds: int) -> str:
    from run import KINDS

    entropy = ensure_entropy(summaries, out)
    budgets, missing = collect(runs, texts, summaries, top_flops)
    chk = checks(budgets, entropy, seeds)
    sp = speedups(budgets)
    docs.mkdir(parents=True, exist_ok=True)
    machine = trained_on(budgets)
    result = {"unigram_entropy": entropy["nats"] if entropy else None, "unigram": entropy,
              "regime": {k: v for k, v in sc.items()}, "machine": machine,
              "budgets": [{**b, "runs": [{k: v for k, v in r.items() if k != "curve"} for r in b["runs"]]}
                          for b in budgets],
              "speedup": sp, "checks": [{"check": c, "pass": ok, "detail": d} for c, ok, d in chk],
              "missing": missing}
    (docs / "results.json").write_text(json.dumps(result, indent=1) + "\n")
    plot(budgets, docs / "results.png")
    text = markdown(sc, budgets, entropy, chk, sp, missing, machine, KINDS, full)
    (docs / "results.md").write_text(text)
    if full:
        archived = docs / "results-round1.json"
        round1 = json.loads(archived.read_text()) if archived.exists() else None
        (docs / "choosing-a-schedule.md").write_text(choosing(sc, budgets, entropy, chk, sp, missing, round1))
    return text


def tally(budgets: list[dict], field: str, unrecorded: str) -> str:
    """The values of one run field over the summarized runs, with how many runs each."""
    seen: dict[str, int] = {}
    for b in budgets:
        for r in b["runs"]:
            v = r.get(field)
            m = "/".join(v) if isinstance(v, list) else (v or unrecorded)
            seen[m] = seen.get(m, 0) + 1
    return "; ".join(f"{m} ({n} runs)" for m, n in seen.items())


def trained_on(budgets: list[dict]) -> str:
    """The machines the summarized runs were trained on (each summary records its own; the suite
    may span sittings); this machine's model when no run says."""
    return tally(budgets, "machine", "unrecorded (runs from before summaries named their machine)") or cpu_model()


def write_probes(sc: dict, runs, texts: dict, summaries: Path, docs: Path, out: Path, top_flops: float) -> str:
    """docs/results-probes.md: each regime probe's held-out loss at its budget (one seed), how far
    below the unigram entropy, and how many epochs of the corpus it read."""
    entropy = ensure_entropy(summaries.parent, out)
    h = entropy["nats"] if entropy else None
    budgets, missing = collect(runs, texts, summaries, top_flops)
    rows = []
    # epochs of the whole corpus (the held-out 1% included): the store's token count is what unigram.json has
    for b in budgets:
        for r in sorted(b["runs"], key=lambda r: r["final_eval"]):
            epochs = f"{r['tokens'] / entropy['tokens']:.1f}" if entropy else "-"
            rows.append([f"{b['fraction']:g} ({b['flops']:.3g})", r["schedule"].removeprefix("size-"), str(r["steps"]),
                         f"{r['tokens'] / 1e6:.1f}M", epochs, f"{r['final_eval']:.4f}",
                         "-" if h is None else f"{h - r['final_eval']:.3f}", f"{r['downstream']:.3f}",
                         f"{r['train_s']:.0f}", " ".join(f"{x:.2f}" for x in r["curve"]["loss"])])
    L = ["# Regime probes (issue 16): which final model the budget can afford\n",
         "Generated by `benchmarks/growth/run.py --probes` from `benchmarks/growth/summaries/probes/*.json`; "
         "do not edit by hand. Each probe is one shape trained alone, seed 0, at a budget that is a multiple of "
         f"round 1's top budget ({sc['top_steps']} steps of its {sc['final']['depth']} x {sc['final']['width']} final "
         f"model, in training FLOPs), {sc.get('precision', 'fp32')}, eval on {sc['eval_batches']} x {sc['batch']} "
         "held-out sequences with fixed masks; warm-up, then linear decay to 0 exactly at the budget, except the "
         "curve probes (`decayconstant`), whose LR stays at its peak so that one run shows the whole curve. "
         "The protocol's check (b), scratch better than small-only at the top budget, needs a budget at which "
         "the final shape beats the compound schedule's first-stage shape here. One seed and one recipe (peak lr "
         f"{sc['lr']}, batch {sc['batch']}) for every shape: a ranking here is confounded with how well that recipe "
         "suits each shape. Every shape's eval loss sits on a plateau about 0.5 nat below the unigram entropy, then "
         "drops suddenly once the model has read some 15-35M tokens (earlier at a constant LR than under decay; "
         "not earlier with a higher peak LR or a smaller batch): at equal FLOPs a smaller model reads more tokens "
         "and drops first. Read the tables as where to look, not as a verdict.\n",
         f"- machine(s): {trained_on(budgets)}",
         f"- unigram entropy: {h:.3f} nats" if h is not None else "- unigram entropy: not computed yet",
         f"- missing: {', '.join(missing) or 'none'}\n",
         table(["budget (FLOPs)", "depth x width, ffn", "steps", "tokens", "epochs", "eval loss", "below unigram",
                "dev acc", "train s", "eval loss at each eval"], rows), ""]
    for b in budgets:  # curve probes: shapes side by side at equal FLOPs, where one overtakes another
        curves = sorted((r for r in b["runs"] if "decayconstant" in r["schedule"]), key=lambda r: r["schedule"])
        if len(curves) > 1:
            L += [f"## Equal FLOPs at budget {b['fraction']:g}: eval loss of the curve probes (constant LR after "
                  "the warm-up, so not fully decayed: where the curves cross, not the protocol's losses), "
                  "interpolated linearly in FLOPs between evaluations\n",
                  table(["FLOPs"] + [r["schedule"].removeprefix("size-") for r in curves] + ["lowest"],
                        equal_flops_rows(curves, b["flops"])), ""]
    text = "\n".join(L)
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "results-probes.md").write_text(text)
    return text


def equal_flops_rows(curves: list[dict], flops: float, points: int = 12) -> list[list[str]]:
    """Each curve's eval loss at `points` evenly spaced FLOPs up to `flops` ("-" before its first
    evaluation), and which curve is lowest there."""
    rows = []
    for k in range(1, points + 1):
        f = flops * k / points
        at = [interpolate(r["curve"]["flops"], r["curve"]["loss"], f) for r in curves]
        known = [(y, r["schedule"].removeprefix("size-")) for y, r in zip(at, curves) if y is not None]
        rows.append([f"{f:.3g}"] + ["-" if y is None else f"{y:.3f}" for y in at] + [min(known)[1] if known else "-"])
    return rows


def interpolate(xs: list[float], ys: list[float], x: float) -> float | None:
    """ys at x, linear between the neighbouring xs; the last y a little past the end (a run's final
    eval sits at its budget up to whole steps); None before the first x."""
    if not xs or x < xs[0]:
        return None
    for (x0, y0), (x1, y1) in zip(zip(xs, ys), zip(xs[1:], ys[1:])):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0) if x1 > x0 else y1
    return ys[-1] if x <= xs[-1] * 1.01 else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores, {platform.system()}"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"


def budget_rows(budgets, kinds) -> list[list[str]]:
    rows = []
    for b in budgets:
        for k in kinds:
            rs = [r for r in b["runs"] if r["schedule"] == k]
            if not rs:
                continue
            rows.append([f"{b['fraction']:g} ({b['flops']:.3g})", k, str(len(rs)),
                         spread([r["final_eval"] for r in rs]), spread([r["downstream"] for r in rs]),
                         f"{mean([r['tokens'] for r in rs]) / 1e6:.2f}M", spread([r["train_s"] for r in rs], ".0f")])
    return rows


def markdown(sc, budgets, entropy, chk, sp, missing, machine, kinds, full) -> str:
    fin, sm = sc["final"], sc["small"]
    h = entropy["nats"] if entropy else None
    L = ["# Growth vs scratch under a fair protocol: measured results\n",
         "Generated by `benchmarks/growth/run.py` from the committed run summaries "
         "(`benchmarks/growth/summaries/*.json`); do not edit by hand. Regenerate with\n",
         "```\npython benchmarks/growth/run.py --report-only\n```\n",
         "and continue the suite (finished runs are reused, each run's summary is written as it finishes; "
         "commit them) with `python benchmarks/growth/run.py --jobs 2`.\n",
         "## Protocol checks (issue 16)\n"]
    L.append(table(["check", "result", "detail"], [[c, "PASS" if ok else "FAIL", d] for c, ok, d in chk]) + "\n")
    L.append(f"Runs still missing ({len(missing)}): " + (", ".join(f"`{m}`" for m in missing) or "none") + ".\n")
    L.append("## Regime and protocol\n")
    L.append(f"- machine: {machine}; each `growlang run` with 1 torch thread, niced, on a machine shared with other "
             "jobs: **wall and train-loop seconds are inflated by contention and noisy** (the 1-minute load at "
             "each run's start and end is in the run table); FLOPs and losses are not affected")
    L.append(f"- final model: {sc['family']}, {fin['depth']} layers x {fin['width']}, "
             f"{fin['width'] // sc['head_dim']} heads, ffn {fin['ffn']}, len {fin['len']}, vocab {sc['vocab']} "
             f"(builtin WordPiece on the builtin State of the Union corpus); batch {sc['batch']}, AdamW peak lr "
             f"{sc['lr']}, linear warm-up over {sc['warmup_frac']:.0%} of each run's steps, then linear decay to 0 "
             "exactly at the run's budget")
    L.append(f"- precision {sc.get('precision', 'fp32')} (autocast, fp32 master weights); attention kernel: "
             f"{tally(budgets, 'attention', 'fused')}. A bf16 schedule that names no kernel got `fused` until "
             "2026-12-04 and gets `auto` since (docs/precision.md, \"Attention kernel\"): the same schedule text "
             "trained later runs the probe's kernel: other rounding, and train-loop seconds that do not compare with "
             "these")
    if entropy:
        L.append(f"- unigram entropy of the corpus under this tokenizer: **{h:.3f} nats** ({entropy['tokens']:,} "
                 f"tokens, {entropy['types']} types used of {entropy['vocab']}; specials excluded)")
    listed = ", ".join(f"{b['fraction']:g} ({b['flops']:.3g} FLOPs)" for b in budgets)
    L.append(f"- budgets: {listed} of the top "
             f"budget = {sc['top_steps']} steps of the final model; every run's own LR schedule ends at its budget")
    L.append(f"- compound: depth {sm['depth']}->{fin['depth']} by stack, ffn {sm['ffn']}->{fin['ffn']} by stack, "
             f"len {sm['len']}->{fin['len']} by pool at one growth, two stages of equal step count, on_grow=carry, "
             "lr_on_grow=continue (one warm-up, one decay over both stages). Fixed from the first growth benchmark's "
             "findings (before issue 16: carry and continue/rewarm beat reset/restart; stack = interpolate = zero; pool > truncate) "
             "before any top-budget run")
    L.append(f"- small-only: {sm['depth']} layers, ffn {sm['ffn']}, len {fin['len']}, trained alone on the top "
             "budget; depth-stack: depth only, same policy (the best single dimension of the first round)")
    L.append(f"- eval: MLM loss (nats) on {sc['eval_batches']} x {sc['batch']} held-out sequences of length "
             f"{fin['len']} from the fixed held-out paragraphs (1% of the corpus), at each run's end (after the "
             "LR reached 0)")
    L.append(epochs_line(budgets, entropy, kinds))
    L.append("- downstream: period of the address (4 classes: " + ", ".join(p[2] for p in _periods()) +
             "), paragraphs, train/dev split by address (every 5th address is dev); "
             "AutoModelForSequenceClassification from the run's final/, fixed recipe, best dev accuracy of the "
             "LR grid (benchmarks/growth/downstream.py); chance 0.25\n")

    L.append("## Final eval loss and downstream accuracy per budget (mean, range over seeds)\n")
    L.append(table(["budget (FLOPs)", "schedule", "runs", "final eval loss", "dev accuracy", "tokens",
                    "train-loop s"], budget_rows(budgets, list(kinds))) + "\n")
    if h is not None:
        L.append(f"Unigram entropy {h:.3f}: a loss below it means the model uses context.\n")
    L.append("### Compound minus scratch per budget\n")
    rows = []
    for b in budgets:
        c, s = by(b, "compound", "final_eval"), by(b, "scratch", "final_eval")
        if c and s:
            rows.append([f"{b['fraction']:g}", f"{mean(c) - mean(s):+.3f}",
                         f"{min(c) - max(s):+.3f} .. {max(c) - min(s):+.3f}",
                         f"{mean(by(b, 'compound', 'downstream')) - mean(by(b, 'scratch', 'downstream')):+.3f}"])
    L.append(table(["budget", "loss: compound - scratch (means)", "range (worst pairings)", "dev accuracy difference"],
                   rows) + "\n" if rows else "No budget has both yet.\n")
    L.append("### Speed-up to scratch's top-budget loss\n")
    if sp:
        L.append(f"Target: scratch's mean final eval loss at the top budget, {sp['target']:.3f}. The FLOPs (and "
                 "train-loop seconds) at which a schedule's budget-final mean loss reaches it, interpolated "
                 "linearly in log FLOPs between budgets; speed-up = scratch's top budget / that.\n")
        rows = []
        for k in ("compound", "depth-stack"):
            r = sp.get(k) or {}
            if r.get("flops"):
                rows.append([k, f"{r['flops']:.3g}", f"{r['flops_speedup']:.2f}x",
                             f"{r['time_speedup']:.2f}x" if r.get("time_speedup") else "-"])
            elif r.get("below_from"):
                low = r["below_from"]
                rows.append([k, f"below it already at the smallest budget run ({low['loss']:.3f} at "
                                f"{low['flops']:.3g}): no crossing to interpolate", "> 1x", "-"])
            else:
                rows.append([k, "not reached at any budget run", "-", "-"])
        L.append(table(["schedule", "FLOPs to target", "FLOPs speed-up", "train-time speed-up (noisy)"], rows) + "\n")
        L.append(verdict(budgets, sp) + "\n")
    else:
        L.append("Not computable yet: scratch has no finished top-budget run.\n")
    L.append("![eval loss vs FLOPs and vs train-loop time](results.png)\n")
    L.append("## Runs\n")
    rows = [[r["name"], f"{r['steps']}", f"{r['flops']:.3g}", f"{r['final_eval']:.3f}", f"{r['downstream']:.3f}",
             r["start"], f"{r['wall_s']:.0f}", " / ".join(map(str, r["load_start"])),
             " / ".join(map(str, r["load_end"]))] for b in budgets for r in b["runs"]]
    L.append(table(["run", "steps", "FLOPs", "final eval", "dev acc", "started", "process s", "load at start",
                    "load at end"], rows) + "\n")
    total = sum(r["wall_s"] + r["downstream_detail"].get("seconds", 0) for b in budgets for r in b["runs"])
    L.append(f"Total process time of the finished runs (training + fine-tuning, run side by side): {total / 3600:.2f} "
             "h.\n")
    return "\n".join(L)


def epochs_line(budgets, entropy, kinds) -> str:
    """How many passes over the corpus each schedule's top-budget runs read, and whether their eval
    loss rose from its minimum by the end (with the LR decaying to 0, a rise is overfitting)."""
    if not (budgets and entropy):
        return "- corpus epochs at the top budget: not known yet"
    parts = []
    for k in kinds:
        rs = [r for r in budgets[-1]["runs"] if r["schedule"] == k]
        if rs:
            rise = max(r["curve"]["loss"][-1] - min(r["curve"]["loss"]) for r in rs)
            parts.append(f"{k} {mean([r['tokens'] for r in rs]) / entropy['tokens']:.1f} (final eval "
                         f"{rise:+.3f} nats from its curve's lowest)")
    return ("- corpus epochs read at the top budget (the corpus is " f"{entropy['tokens'] / 1e6:.2f}M tokens): "
            + ("; ".join(parts) or "no run yet") + ". An eval loss that ends above its curve's lowest point "
            "while the LR decays would be overfitting; +0.000 means the last evaluation was the lowest")


def _periods():
    from downstream import PERIODS

    return PERIODS


def apart(a: list[float], b: list[float]) -> bool:
    """Two groups of seeds whose ranges do not overlap (one seed has no range: never apart)."""
    return min(len(a), len(b)) >= 2 and (max(a) < min(b) or min(a) > max(b))


def verdict(budgets, sp) -> str:
    """The plain statement the issue asks for, from the numbers: the MLM loss, then whether the
    downstream score says the same."""
    top = budgets[-1]
    c, s = by(top, "compound", "final_eval"), by(top, "scratch", "final_eval")
    if not (c and s):
        return "**Verdict: not yet decidable**: the top budget lacks compound or scratch runs."
    diff = mean(c) - mean(s)
    r = sp.get("compound") or {}
    if diff < 0 and apart(c, s):
        loss = (f"**Compound beats fully-decayed scratch at the top budget** by {-diff:.3f} nats (seed ranges do not "
                f"overlap); FLOPs speed-up to scratch's top loss: "
                + (f"{r['flops_speedup']:.2f}x." if r.get("flops_speedup") else "not interpolable from the budgets run."))
    elif diff > 0 and apart(c, s):
        loss = (f"**Growth does not beat fully-decayed scratch here**: at the top budget compound is {diff:.3f} nats "
                "worse than scratch (seed ranges do not overlap).")
    else:
        loss = (f"**No clear difference at the top budget**: compound - scratch = {diff:+.3f} nats with overlapping seed "
                "ranges; growth does not demonstrably beat fully-decayed scratch in this regime.")
    return loss + " " + downstream_verdict(by(top, "compound", "downstream"), by(top, "scratch", "downstream"), diff)


def downstream_verdict(c: list[float], s: list[float], loss_diff: float) -> str:
    """Whether the fine-tuned task agrees with the MLM loss at the top budget (higher accuracy is better)."""
    if not (c and s):
        return "Downstream: not yet scored for both."
    d = mean(c) - mean(s)
    figures = f"dev accuracy compound {mean(c):.3f} vs scratch {mean(s):.3f} ({d:+.3f}"
    if not apart(c, s):
        return f"Downstream: no clear difference, {figures}, seed ranges overlap or one seed)."
    if (d > 0) == (loss_diff < 0):
        return f"**Downstream agrees**: {figures}, seed ranges do not overlap)."
    return (f"**Downstream disagrees**: {figures}, seed ranges do not overlap): the pretraining-loss ordering "
            "did not carry over to the fine-tuned task at this budget.")


def plot(budgets: list[dict], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    colors = {"scratch": "C0", "compound": "C1", "small-only": "C2", "depth-stack": "C3"}
    for ax, axis, label in ((axes[0], "flops", "training FLOPs"), (axes[1], "train_s", "train-loop seconds (noisy)")):
        for k, col in colors.items():
            pts = []
            for b in budgets:
                rs = [r for r in b["runs"] if r["schedule"] == k]
                for r in rs:  # each run's eval curve, faint: only its end point is fully decayed
                    xs = r["curve"]["flops"] if axis == "flops" else r["curve"]["time"]
                    ax.plot(xs, r["curve"]["loss"], color=col, alpha=0.15, linewidth=0.8)
                    ax.plot(r["flops"] if axis == "flops" else r["train_s"], r["final_eval"], ".", color=col)
                if rs:
                    pts.append((mean([r["flops"] if axis == "flops" else r["train_s"] for r in rs]),
                                mean([r["final_eval"] for r in rs])))
            if pts:
                ax.plot(*zip(*pts), "-o", color=col, label=f"{k} (budget-final mean)")
        ax.set_xscale("log")
        ax.set_xlabel(label)
        ax.set_ylabel("eval MLM loss (nats)")
        ax.grid(alpha=0.3)
        finals = [r["final_eval"] for b in budgets for r in b["runs"]]
        if finals:
            ax.set_ylim(min(finals) - 0.2, max(finals) + 0.8)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=90)
    plt.close(fig)


def choosing(sc, budgets, entropy, chk, sp, missing, round1: dict | None = None) -> str:
    from run import COMPOUND_OPS, GROWTH_POLICY

    ok = all(p for _, p, _ in chk)
    L = ["# Choosing a schedule: what the measurements say\n",
         "Generated by `benchmarks/growth/run.py` from [results.md](results.md) / `results.json` (the fair "
         "protocol of issue 16: every budget has its own fully decayed scratch baseline). Do not edit by hand.\n",
         "## Status of the evidence\n"]
    if ok:
        L.append("All protocol checks pass (see results.md).\n")
    else:
        L.append("**The suite is incomplete; the protocol checks that fail are listed below, and nothing here is "
                 "final.** " + f"{len(missing)} runs are missing.\n")
        L += [f"- FAIL: {c} ({d})" for c, p, d in chk if not p]
        L.append("")
    L.append("## What the fair protocol shows so far\n")
    L.append("- " + verdict(budgets, sp) if sp else "- No top-budget scratch run yet: no verdict.")
    for b in budgets:
        c, s = by(b, "compound", "final_eval"), by(b, "scratch", "final_eval")
        if c and s:
            L.append(f"- budget {b['fraction']:g} ({b['flops']:.3g} FLOPs, {len(c)} compound / {len(s)} scratch seeds): "
                     f"compound {spread(c)} vs scratch {spread(s)}; "
                     f"dev accuracy compound {spread(by(b, 'compound', 'downstream'))} vs scratch "
                     f"{spread(by(b, 'scratch', 'downstream'))}")
    top = budgets[-1]
    so, s = by(top, "small-only", "final_eval"), by(top, "scratch", "final_eval")
    if so and s:
        L.append(f"- small-only at the top: {spread(so)} vs scratch {spread(s)}: "
                 + ("the final model is the right model at this budget (scratch wins)." if mean(s) < mean(so) else
                    "**the small model alone is better**: the final model is too big for this budget, and any "
                    "schedule that spends compute small wins for that reason alone, not because of growth."))
    one, c = by(top, "depth-stack", "final_eval"), by(top, "compound", "final_eval")
    if one and s and c:
        order = "between scratch and compound" if mean(c) < mean(one) < mean(s) else (
            "below compound" if mean(one) <= mean(c) else "no better than scratch")
        L.append(f"- one dimension (depth by stack, same policy) at the top: {spread(one)} ({len(one)} seed(s)), {order} "
                 f"(compound {spread(c)}, scratch {spread(s)}); dev accuracy {spread(by(top, 'depth-stack', 'downstream'))} "
                 f"against compound {spread(by(top, 'compound', 'downstream'))} and scratch "
                 f"{spread(by(top, 'scratch', 'downstream'))}.")
    if entropy and s:
        L.append(f"- scratch at the top is {entropy['nats'] - mean(s):.3f} nats below the unigram entropy "
                 f"({entropy['nats']:.3f}).")
    L.append("\n## Earlier, unfair evidence (first round, superseded)\n")
    L.append("The first round (0.45M tokens for a 5.4M-parameter model, one budget, one or two seeds, final losses "
             "near the unigram plateau) found compound 1.6-1.9x fewer FLOPs "
             "to scratch's loss, but a small model that never grew beat every schedule there: it measured the "
             "benefit of staying small in a compute-starved regime, not of growth. Its operator and policy findings "
             f"fix this protocol's compound schedule ({', '.join(f'{d} by {o}' for d, o in COMPOUND_OPS.items())}; "
             f"{', '.join(f'{k}={v}' for k, v in GROWTH_POLICY.items())}).\n")
    if round1:  # the protocol's own first regime, archived with its report
        fin, failed = round1["regime"]["final"], [c for c in round1["checks"] if not c["pass"]]
        speed = (round1.get("speedup") or {}).get("compound") or {}
        L.append(f"Round 1 of this protocol ([results-round1.md](results-round1.md), archived) used a "
                 f"{fin['depth']} x {fin['width']} (ffn {fin['ffn']}) final model at up to "
                 f"{round1['budgets'][-1]['flops']:.3g} FLOPs. Compound reached scratch's top-budget loss with "
                 + (f"{speed['flops_speedup']:.2f}x fewer FLOPs" if speed.get("flops_speedup") else "no FLOPs saving")
                 + ", but the round failed its own regime checks (" + "; ".join(f"{c['check']}: {c['detail']}"
                                                                       for c in failed)
                 + "): every model was still on the plateau before the loss's sudden drop, where reading more "
                 "tokens is all that helps, so it says nothing about growth. The regime probes "
                 "([results-probes.md](results-probes.md)) chose this round's smaller final model and larger budget.\n")
    L.append("## So, for a schedule\n")
    L.append("- Compare any growth schedule against a scratch run of the SAME budget whose LR decays to 0 at that "
             "budget, and against the small model alone; a midpoint of a longer scratch run is not a baseline.")
    L.append("- Grow several dimensions at once with carry + continue (one LR decay across stages) if you grow; "
             "whether it pays is what the table above says at each budget, no more.")
    cd, sd = by(top, "compound", "downstream"), by(top, "scratch", "downstream")
    if c and s and cd and sd and mean(c) < mean(s) and mean(cd) < mean(sd) and apart(cd, sd):
        read = (f" The grown models read {mean(by(top, 'compound', 'tokens')) / entropy['tokens']:.1f} epochs of the "
                f"corpus against scratch's {mean(by(top, 'scratch', 'tokens')) / entropy['tokens']:.1f}, with no rise "
                "in their eval loss (results.md), so held-out MLM loss does not show them overfitting." if entropy else "")
        L.append("- Do not take a lower pretraining loss for a better model: here growth won the loss and lost the "
                 f"fine-tuned task ({mean(cd):.3f} against {mean(sd):.3f} dev accuracy).{read} Telling a weaker model apart "
                 "from a recipe that suits it less needs a finer LR grid and more fine-tuning seeds than this suite "
                 "ran; until then, score a grown model on your own task before trusting the loss.")
    L.append("- What would have to change for growth to pay where it does not: a regime where the final model "
             "clearly beats the small one alone (more tokens per parameter) and growth that happens earlier "
             "(shorter first stage), measured at the same budgets.\n")
    return "\n".join(L)
