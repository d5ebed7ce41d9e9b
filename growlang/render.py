"""Human output of `growlang check` (a table per file) and `growlang graph` (mermaid / dot)."""

from __future__ import annotations

from growlang.plan import Plan


def si(n: float, unit: str = "") -> str:
    """1.5k, 2.5M, 3B (G with a unit), 4T; from 1e15 on, powers of ten (`1.2E` reads as an
    exponent, and no one counts tokens in peta)."""
    if abs(n) >= 1e15:
        return flops(n) + unit
    for scale, suffix in ((1e12, "T"), (1e9, "G" if unit else "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= scale:
            return f"{n / scale:.3g}{suffix}{unit}"
    return f"{n:.3g}{unit}"


def flops(n: float) -> str:
    mantissa, exponent = f"{n:.2e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def gib(n: int) -> str:
    """Memory in MiB, GiB, TiB or PiB; beyond that, bytes as a power of ten."""
    for power, unit in ((50, "PiB"), (40, "TiB"), (30, "GiB")):
        if n >= 2**power:
            return f"{n / 2**power:.1f} {unit}" if n < 2**60 else f"{flops(n)} bytes"
    return f"{n / 2**20:.0f} MiB"


def duration(seconds: float) -> str:
    """Seconds as a person reads them: 45s, 12.5 min, 3.2 h, 4.1 days."""
    for unit, size in (("days", 86400.0), ("h", 3600.0), ("min", 60.0)):
        if seconds >= 2 * size:
            value = seconds / size
            return f"{value:,.0f} {unit}" if value >= 100 else f"{value:.3g} {unit}"
    return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.2g}s"


def time_lines(estimate: dict, profile: str) -> str:
    """`check --profile`: each stage's and path's estimated training-loop time, and the path's
    time saving against its from-scratch baseline (growlang/time_model.py)."""
    lines = ["  estimated training-loop time (steps + evals, " + profile + "): "
             + ", ".join(f"{n} {duration(v)}" for n, v in estimate["stages"].items())]
    for p in estimate["paths"]:
        lines.append(f"  path {' -> '.join(p['stages'])}: {duration(p['seconds'])}; from scratch "
                     f"{duration(p['baseline_seconds'])}: time saving {p['time_saving']:.1%} ({p['time_speedup']:.2f}x)")
    return "\n".join(lines)


def _table(rows: list[list[str]], right: set[int]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def check_table(plan: Plan, display: str) -> str:
    total = sum(s.cost.flops for s in plan.stages)
    m, t = plan.model, plan.train
    lines = [f"{display}: {m.family}, vocab {m.vocab}, max_len {m.max_len}, {len(plan.stages)} stage(s), "
             f"{len(plan.paths)} path(s), precision {t.precision}, eval at len {plan.eval_len}", ""]
    # A kv_heads column only where grouped-query attention makes it differ from heads.
    gqa = any(s.shape.kv_heads != s.shape.heads for s in plan.stages)
    rows = [["stage", "from", "depth", "width", "heads"] + ["kv_heads"] * gqa + ["ffn", "len", "read/pool", "steps",
             "batch", "params", "tokens", "FLOPs", "share", "memory"]]
    for s in plan.stages:
        c = s.cost
        rows.append([s.name, s.parent or "-", str(s.shape.depth), str(s.shape.width), str(s.shape.heads)]
                    + [str(s.shape.kv_heads)] * gqa
                    + [str(s.shape.ffn), str(s.shape.len), f"{s.reading.read_len}/{s.reading.pool}" if s.reading.pool > 1 else "-",
                       si(s.steps), str(s.batch), si(c.params), si(c.tokens), flops(c.flops), f"{c.flops / total:.1%}",
                       gib(c.memory_bytes)])
    lines += _table(rows, set(range(2, len(rows[0]))) - {7 + gqa})
    if plan.transitions:
        lines += ["", "  transitions (preservation: exact / approximate / none)"]
        shapes = {s.name: s.shape for s in plan.stages}  # Plan.stage() is a scan: keep this linear
        for tr in plan.transitions:
            src, dst = shapes[tr.src], shapes[tr.dst]
            parts = [f"{o.dim} {getattr(src, o.dim)}->{getattr(dst, o.dim)} by {o.op}"
                     + (f"({', '.join(f'{k}={v:g}' if isinstance(v, float) else f'{k}={v}' for k, v in o.args)})" if o.args else "")
                     + f" [{o.preservation}]" + (" (default)" if o.defaulted else "") for o in tr.ops]
            lines.append(f"    {tr.src} -> {tr.dst}: " + ("; ".join(parts) if parts else "no change"))
    lines += ["", f"  total: {si(sum(s.cost.tokens for s in plan.stages))} tokens, {flops(total)} FLOPs"]
    for p in plan.paths:
        lines.append(f"  path {' -> '.join(p.stages)}: {flops(p.flops)} FLOPs on {si(p.tokens)} tokens; "
                     f"from scratch {flops(p.baseline_flops)} FLOPs: saving {p.saving:.1%} ({p.speedup:.2f}x)")
    if plan.defaults_used:
        lines += ["", "  defaults used: " + ", ".join(plan.defaults_used)]
    return "\n".join(lines) + "\n"


def _label(stage) -> str:
    s = stage.shape
    return f"{stage.name}: L{s.depth} d{s.width} f{s.ffn} T{s.len}"


def _edge(tr) -> str:
    return ", ".join(f"{o.dim} by {o.op}" + ("*" if o.defaulted else "") for o in tr.ops) or "no change"


def mermaid(plan: Plan) -> str:
    ids = {s.name: f"s{i}" for i, s in enumerate(plan.stages)}
    lines = ["graph LR"] + [f'  {ids[s.name]}["{_label(s)}"]' for s in plan.stages]
    lines += [f'  {ids[t.src]} -->|"{_edge(t)}"| {ids[t.dst]}' for t in plan.transitions]
    return "\n".join(lines) + "\n"


def dot(plan: Plan) -> str:
    lines = [f'digraph "{plan.name}" {{', "  rankdir=LR;", "  node [shape=box];"]
    lines += [f'  "{s.name}" [label="{_label(s)}"];' for s in plan.stages]
    lines += [f'  "{t.src}" -> "{t.dst}" [label="{_edge(t)}"];' for t in plan.transitions]
    return "\n".join(lines + ["}"]) + "\n"
