"""Training throughput of `growlang run` against a plain transformers training loop, same job.

    .venv/bin/python benchmarks/trainer_speed.py                  # 4 x 256 and 12 x 768 (BERT-base), CPU
    .venv/bin/python benchmarks/trainer_speed.py --shapes 4x256   # the small shape only (minutes)
    .venv/bin/python benchmarks/trainer_speed.py --device cuda    # GPU mode: batch 128, more steps
    .venv/bin/python benchmarks/trainer_speed.py --tiny           # seconds, for a smoke test
    .venv/bin/python benchmarks/trainer_speed.py --profile        # also torch.profiler tables of one step each

Shapes (SHAPES): 4 x 256 (ffn 1024) and the BERT-base-shaped 12 x 768 (ffn 3072, 12 heads), both at
len 128 and vocab 8192 (the builtin tokenizer), post-LN BERT, dropout 0.1. The big one runs few
steps on a CPU (about 10 s each there).

growlang: a one-stage schedule (post-LN `bert`, the family that loads into BertForMaskedLM) run as
a `growlang run` subprocess; tokens/s read from its metrics.jsonl over the steps after the first
--skip (the cumulative `time` and `tokens` between the record at step --skip and the last record
before the end-of-stage evaluation).

transformers: `BertForMaskedLM` (attn_implementation="sdpa"), same shape, dropout, batch and
length, AdamW with the same hyper-parameters and weight-decay groups, the same gradient clipping,
and the same batches (the runtime's TokenStream and masking, labels -100 off the masked
positions; its head runs on every position, the runtime's only on the masked ones). Batch
creation is inside the timed step for both, as it is in the runtime's trainer.

growlang runs six ways, attention as a schedule that names none gets it (growlang/assemble.py
default_attention: fused in fp32, auto otherwise): fp32, fp32 and bf16 with torch's ops in place of
the runtime's C kernels (the head's softmax cross-entropy, the gemm attention's row softmax:
GROWLANG_C_KERNELS=torch; CPU only, where runtime/c_kernels.py built them for the other rows:
their baseline), bf16, bf16 with attention=fused (CPU
only: on CUDA auto keeps the fused kernel, so it is the bf16 row again) and bf16 with compile=on (its compile time falls in
the untimed first steps; omit the side with --no-compile: on a CPU it compiles for a minute or
more). The compound schedule's table has the torch-ops rows of its own as well. The bf16
sides, HF's included, run where the device has fast bf16 (runtime/precision.py fast_bf16, the test
precision=auto makes): a CPU without AMX or AVX512-BF16 multiplies bf16 matrices some 90x slower than
fp32 (docs/precision.md), so there the benchmark times fp32 only and says why (--bf16 on forces them).

Both run one after the other with the same thread count (default 1: on a loaded 2-core machine
a 2-thread process loses most of its time to oversubscription). The machine's load average is
printed with each row: on a shared machine the ratio from one run is noisy; --repeat N alternates
the two N times and prints the median.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {
    "4x256": dict(depth=4, width=256, ffn=1024, len=128, vocab=8192, head_dim=64, batch=16, steps=40, skip=10),
    "12x768": dict(depth=12, width=768, ffn=3072, len=128, vocab=8192, head_dim=64, batch=16, steps=10, skip=3),
}
TINY = dict(depth=2, width=64, ffn=256, len=32, vocab=8192, head_dim=32, batch=4, steps=6, skip=2)
CUDA_RUN = dict(batch=128, steps=60, skip=20)  # a GPU step is milliseconds: a batch that fills it, more steps
HF_ANCHOR_H200 = 0.37e6  # tokens/s, HF BertForMaskedLM sdpa, BERT-base, one H200 (issue 11's anchor)
LR, WD, B1, B2, EPS, CLIP, SEED = 1e-4, 0.01, 0.9, 0.999, 1e-6, 1.0, 0
TORCH_OPS = {"GROWLANG_C_KERNELS": "torch"}  # runtime/c_kernels.py: torch's ops, not the C kernels
TORCH_OPS_LABEL = "kernels=torch ops"


def add_bf16_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bf16", choices=("auto", "on", "off"), default="auto",
                   help="the bf16 sides: auto runs them where the device has fast bf16 (runtime/precision.py "
                   "fast_bf16, what precision=auto reads), on everywhere, off nowhere")


def bf16_sides(choice: str, device) -> tuple[bool, str]:
    """Whether --bf16 `choice` runs the bf16 sides on `device`, and the line that says why not ('' if it does)."""
    from growlang.runtime.precision import fast_bf16

    if choice == "off":
        return False, "bf16 sides left out (--bf16 off)"
    fast, why = fast_bf16(device)
    if choice == "on" or fast:
        return True, ""
    return False, f"bf16 sides left out: {why}, so precision=auto trains in fp32 here (--bf16 on runs them anyway)"


def matmul_ceilings(device) -> dict[str, float]:
    """GFLOP/s of runtime/ceiling.py's probe in fp32 and bf16 on `device`, measured afresh. Without
    bf16 instructions one 1024^3 bf16 probe takes seconds (1 GFLOP/s on an AVX2 EPYC,
    docs/precision.md): there one timed rep says as much as the probe's eight."""
    import torch

    from growlang.runtime.ceiling import REPS, measure
    from growlang.runtime.precision import fast_bf16

    return {"fp32": measure(device, torch.float32) / 1e9,
            "bf16": measure(device, torch.bfloat16, reps=REPS if fast_bf16(device)[0] else 1) / 1e9}


def schedule(c: dict, precision: str = "fp32", attention: str | None = None, compile: str = "off") -> str:
    """The one-stage schedule of shape `c`; `attention` None: the default for `precision`."""
    kernel = f" attention={attention}" if attention else ""
    return (f"model bert {{ vocab={c['vocab']} head_dim={c['head_dim']} max_len={c['len']} }}\n"
            "data  { corpus=builtin tokenizer=builtin mask=0.15 }\n"
            f"train {{ batch={c['batch']} lr={LR} warmup=0 decay=constant seed={SEED} eval_every=0 eval_batches=1 "
            f"log_every=1 checkpoint_every=0 precision={precision}{kernel} compile={compile} }}\n"
            f"stage speed: depth={c['depth']} width={c['width']} ffn={c['ffn']} len={c['len']} steps={c['steps']}\n")


def growlang_speed(c: dict, threads: int, workdir: Path, device: str, precision: str, attention: str | None = None,
                   compile: str = "off", env: dict | None = None) -> tuple[float, int, float]:
    """(tokens/s after the first `skip` steps, steps timed, FLOP/s) from a `growlang run` subprocess."""
    path = workdir / "speed.grow"
    path.write_text(schedule(c, precision, attention, compile))
    rows = [r for r in run_growlang(path, threads, workdir, device, env) if r.get("kind") == "train"]
    a = next(r for r in rows if r["step"] == c["skip"])
    b = [r for r in rows if "eval_loss" not in r][-1]  # the last step's window includes the final eval
    seconds = b["time"] - a["time"]
    return (b["tokens"] - a["tokens"]) / seconds, b["step"] - a["step"], (b["flops"] - a["flops"]) / seconds


def run_growlang(path: Path, threads: int, workdir: Path, device: str = "cpu", env: dict | None = None) -> list[dict]:
    """The metrics.jsonl records of a `growlang run` of `path` on `device` with `threads` CPU threads
    (and `env` added to its environment)."""
    out = workdir / f"run-{time.monotonic_ns()}"
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), **(env or {})}
    p = subprocess.run([sys.executable, "-m", "growlang", "run", str(path), "--out", str(out), "--device", device],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    if p.returncode != 0:
        raise SystemExit(f"growlang run failed (exit {p.returncode}):\n{p.stderr[-3000:]}")
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines() if l.strip()]
    return rows


def hf_speed(c: dict, threads: int, device: str, precision: str) -> tuple[float, int, None]:
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from growlang.accounting import predicted_positions
    from growlang.compiler import compile_text
    from growlang.runtime.data import TokenStream, load_data

    torch.set_num_threads(threads)
    plan = compile_text(schedule(c), ROOT / "speed.grow").plan
    data = load_data(plan.data, plan.model.vocab, SEED)
    stream = TokenStream(data.train_ids, SEED, data.specials)
    torch.manual_seed(SEED)
    cfg = BertConfig(vocab_size=c["vocab"], hidden_size=c["width"], num_hidden_layers=c["depth"],
                     num_attention_heads=c["width"] // c["head_dim"], intermediate_size=c["ffn"],
                     max_position_embeddings=c["len"], layer_norm_eps=1e-12, attn_implementation="sdpa")
    model = BertForMaskedLM(cfg).to(device).train()
    assert model.config._attn_implementation == "sdpa"
    named = list(model.named_parameters())
    no_decay = [p for n, p in named if n.endswith("bias") or "LayerNorm" in n]
    decay = [p for n, p in named if not (n.endswith("bias") or "LayerNorm" in n)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WD}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(B1, B2), eps=EPS)

    amp = torch.autocast(device, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def step(g: int) -> None:
        b = stream.batch(c["batch"], c["len"], predicted_positions(plan.data.mask, c["len"]), g)
        labels = torch.full_like(b.input_ids, -100).scatter_(1, b.positions, b.targets)
        ids, labels = b.input_ids.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        with amp:  # bf16: autocast of the forward, fp32 weights, as a user would write it
            loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        float(loss.detach())  # the runtime reads the loss every step too
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        opt.step()

    for g in range(c["skip"]):
        step(g)
    sync()
    t0 = time.perf_counter()
    n = c["steps"] - 1 - c["skip"]  # the same steps growlang's metrics time: skip+1 .. steps-1
    for g in range(c["skip"], c["steps"] - 1):
        step(g)
    sync()
    return c["batch"] * c["len"] * n / (time.perf_counter() - t0), n, None


def cpu_op_setup(threads: int, bf16: str, rows: str = "rows") -> tuple[bool, str, str]:
    """What the CPU op benchmarks (head_speed.py, attention_speed.py) do first: `threads` torch
    threads and freed memory kept as `growlang run` keeps it on a CPU; then whether the bf16 rows
    run (--bf16 `bf16`), the header (the CPU model and its matmul ceilings, measured now) and the
    line that says why the bf16 `rows` are left out ('' where they run)."""
    import torch

    from growlang.runtime.allocator import keep_freed_memory

    torch.set_num_threads(threads)
    keep_freed_memory()  # no first-touch page faults in the figures
    cpu = torch.device("cpu")
    with_bf16, note = bf16_sides(bf16, cpu)
    c = matmul_ceilings(cpu)
    header = (f"{device_model('cpu')}; matmul ceiling ({threads} thread(s)): fp32 {c['fp32']:.0f} GFLOP/s, "
              f"bf16 {c['bf16']:.0f} GFLOP/s")
    return with_bf16, header, note.replace("sides", rows)


def device_model(device: str) -> str:
    """The GPU's name, or lscpu's CPU model name (runtime/ceiling.py) with the bf16 instructions it has."""
    import torch

    from growlang.runtime.ceiling import cpu_generation, device_name
    from growlang.runtime.precision import FAST_BF16_CPU_FLAGS, cpu_flags

    if device == "cuda":
        return f"GPU {device_name(torch.device(device))}; CPU {device_name(torch.device('cpu'))}"

    flags = [f for f in FAST_BF16_CPU_FLAGS if f in cpu_flags()]
    generation = f"{cpu_generation()}, " if cpu_generation() else ""
    return f"CPU {device_name(torch.device('cpu'))} ({generation}bf16 instructions: {', '.join(flags) or 'none'})"


def compound_stages(path: Path, threads: int, workdir: Path, device: str, precision: str, attention: str,
                    steps: int, skip: int, env: dict | None = None) -> tuple:
    """(plan, [(stage, FLOPs per step, seconds per FLOP, attention kernel)]) for each stage of the
    compound schedule `path` (an encoder family: stage_gemms) with
    `train { precision=... attention=... }` as given, run
    as `growlang run` with `steps` steps per stage, no evaluation but the stages' ends: seconds
    per FLOP is the training-step time over the plan's FLOPs of the records after the first `skip`
    steps of each stage (metrics.jsonl's flops_per_s, whose windows exclude evaluation)."""
    import re

    text = re.sub(r"steps=\d+", f"steps={steps}", path.read_text())
    for key, value in (("eval_every", 0), ("checkpoint_every", 0), ("log_every", 1), ("precision", precision),
                       ("attention", attention)):
        text, found = re.subn(rf"\b{key}=\S+", f"{key}={value}", text)
        if not found:
            text = re.sub(r"train\s*\{", f"train {{ {key}={value}", text, count=1)
    grow = workdir / f"compound-{precision}-{attention}.grow"
    grow.write_text(text)
    from growlang.compiler import compile_text
    from growlang.families import FAMILIES

    plan = compile_text(text, grow).plan
    if FAMILIES[plan.model.family].objective != "mlm":
        raise SystemExit(f"{path}: --compound takes an encoder schedule (bert, bert-preln), not {plan.model.family}")
    records = run_growlang(grow, threads, workdir, device, env)
    rows = [r for r in records if r.get("kind") == "train"]
    kernels = {r["stage"]: r["name"] for r in records if r.get("kind") == "attention"}
    out = []
    for stage in dict.fromkeys(r["stage"] for r in rows):
        timed = [r for r in rows if r["stage"] == stage and r["stage_step"] > skip and "eval_loss" not in r]
        per_step = (timed[-1]["flops"] - timed[0]["flops"]) / (timed[-1]["stage_step"] - timed[0]["stage_step"])
        out.append((stage, per_step, statistics.median(1 / r["flops_per_s"] for r in timed), kernels[stage]))
    return plan, out


def stage_gemms(stage, vocab: int) -> list[tuple[int, int, int, int, int]]:
    """(count, batch, m, k, n) of the matrix products of one training step of a plan stage of an
    encoder, forward and backward (Y = XW: dX = dY W^T is (m, n, k), dW = X^T dY is (k, m, n)), per
    micro batch times the micro batches of a step: per layer q, k, v, o and the FFN's two, and the
    MLM head's dense and decoder on the masked positions only, as the runtime computes them; plus a
    model of attention as two batched products per (sequence, head), scores and context, and their
    gradients (CPU SDPA is a fused kernel whose backward also recomputes the scores: one product
    more than listed)."""
    sh, r = stage.shape, stage.reading
    micro, per_step = stage.micro_batch, stage.batch // stage.micro_batch
    m, w, f, heads = micro * r.encoder_len, sh.width, sh.ffn, sh.heads
    t, d, masked = r.encoder_len, sh.width // sh.heads, micro * r.predicted
    forward = [(4 * sh.depth, 1, m, w, w), (sh.depth, 1, m, w, f), (sh.depth, 1, m, f, w),
               (sh.depth, micro * heads, t, d, t), (sh.depth, micro * heads, t, t, d),
               (1, 1, masked, w, w), (1, 1, masked, w, vocab)]
    return [(n * per_step, *g) for n, b, mm, k, nn in forward
            for g in ((b, mm, k, nn), (b, mm, nn, k), (b, k, mm, nn))]


def gemm_seconds_per_flop(gemms, dtype, device: str = "cpu", reps: int = 5) -> float:
    """Seconds per FLOP of `gemms` alone (each product timed in isolation, best of `reps` after a
    warm-up, with fresh operands each time so no repetition finds them in cache, as a training
    step would not): what a trainer's step would cost per FLOP if the matmuls were all it did."""
    import torch

    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    seconds = flops = 0.0
    for count, b, m, k, n in gemms:
        operands = [(torch.randn(b, m, k, device=device, dtype=dtype), torch.randn(b, k, n, device=device, dtype=dtype))
                    for _ in range(reps + 1)]
        torch.bmm(*operands[0])
        best = float("inf")
        for x, y in operands[1:]:
            sync()
            t0 = time.perf_counter()
            torch.bmm(x, y)
            sync()
            best = min(best, time.perf_counter() - t0)
        seconds += count * best
        flops += count * 2.0 * b * m * k * n
    return seconds / flops


def profile(c: dict, threads: int) -> None:
    """torch.profiler of one training step of each (after two warm-up steps), top ops by self CPU time."""
    import torch
    from torch.profiler import ProfilerActivity, profile as tprofile
    from transformers import BertConfig, BertForMaskedLM

    from growlang.accounting import predicted_positions
    from growlang.runtime.model import Encoder, EncoderConfig

    torch.set_num_threads(threads)
    B, T, V = c["batch"], c["len"], c["vocab"]
    P = predicted_positions(0.15, T)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(5, V, (B, T), generator=g)
    pos = torch.stack([torch.randperm(T - 1, generator=g)[:P] + 1 for _ in range(B)]).sort(dim=1).values
    tgt = torch.randint(5, V, (B, P), generator=g)
    labels = torch.full((B, T), -100).scatter_(1, pos, tgt)
    ours = Encoder(EncoderConfig("bert", V, c["width"], c["depth"], c["width"] // c["head_dim"], c["ffn"], T)).train()
    hf = BertForMaskedLM(BertConfig(vocab_size=V, hidden_size=c["width"], num_hidden_layers=c["depth"],
                                    num_attention_heads=c["width"] // c["head_dim"], intermediate_size=c["ffn"],
                                    max_position_embeddings=T, attn_implementation="sdpa")).train()
    for name, model, fn in (("growlang runtime Encoder", ours, lambda: ours.loss(ids, pos, tgt)),
                            ("transformers BertForMaskedLM", hf, lambda: hf(input_ids=ids, labels=labels).loss)):
        opt = torch.optim.AdamW(model.parameters(), lr=LR)

        def step():
            opt.zero_grad(set_to_none=True)
            fn().backward()
            opt.step()
        step(), step()
        with tprofile(activities=[ProfilerActivity.CPU]) as prof:
            step()
        print(f"\n== {name}: one training step, top 12 ops by self CPU time")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny shape and step count (seconds)")
    p.add_argument("--shapes", nargs="+", choices=tuple(SHAPES), default=list(SHAPES), help="which shapes (SHAPES)")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    p.add_argument("--no-compile", action="store_true", help="leave out the compile=on side")
    add_bf16_option(p)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batch", type=int, help="sequences per step, every shape")
    p.add_argument("--steps", type=int, help="steps per side, every shape, the first --skip untimed")
    p.add_argument("--skip", type=int)
    p.add_argument("--repeat", type=int, default=1, help="alternate growlang/transformers N times")
    p.add_argument("--profile", action="store_true", help="print torch.profiler tables of one step of each")
    p.add_argument("--compound", type=Path, default=ROOT / "schedules" / "base.grow",
                   help="the compound schedule whose stages' seconds per FLOP are compared")
    p.add_argument("--compound-steps", type=int, help="steps per stage of it (default 30, --tiny 5; 0: skip)")
    p.add_argument("--save", type=Path, help="also write the tables to this file (benchmarks/out/ keeps "
                   "the runs the docs quote)")
    a = p.parse_args(argv)
    if a.profile and a.device != "cpu":
        p.error("--profile profiles on the CPU only")
    shapes = {"tiny": dict(TINY)} if a.tiny else {name: dict(SHAPES[name]) for name in a.shapes}
    for c in shapes.values():
        if a.device == "cuda" and not a.tiny:
            c.update(CUDA_RUN)
        for k in ("batch", "steps", "skip"):
            if getattr(a, k) is not None:
                c[k] = getattr(a, k)
        if not 0 < c["skip"] < c["steps"] - 1:
            p.error(f"need 0 < --skip < --steps - 1 (shape {c['depth']}x{c['width']}: skip {c['skip']}, steps {c['steps']})")
    if a.compound_steps is None:
        a.compound_steps = 5 if a.tiny else 30
    compound_skip = min(c["skip"] for c in shapes.values())
    if a.compound_steps and not 0 < compound_skip < a.compound_steps - 1:
        p.error(f"need 0 < skip ({compound_skip}) < --compound-steps - 1")
    import torch

    if a.device == "cuda" and not torch.cuda.is_available():
        p.error("--device cuda: torch sees no CUDA device here (torch.cuda.is_available() is False)")
    lines = []

    def say(line: str = "") -> None:
        lines.append(line)
        print(line, flush=True)

    from growlang.assemble import default_attention
    from growlang.runtime.ceiling import PROBE_N
    from growlang.runtime.c_kernels import c_kernels

    torch.set_num_threads(a.threads)
    dev = torch.device(a.device)  # the runtime's own probe (runtime/ceiling.py), measured afresh here
    with_bf16, bf16_note = bf16_sides(a.bf16, dev)
    ceilings = matmul_ceilings(dev)
    say(f"training throughput, post-LN BERT, dropout 0.1, AdamW (fp32 master weights), grad clip {CLIP}, "
        f"device {a.device}, {a.threads} CPU thread(s), torch {torch.__version__}, {os.cpu_count()} cores")
    say(f"{device_model(a.device)}; matmul ceiling ({PROBE_N[a.device]}^3"
        f"{f', {a.threads} thread(s)' if a.device == 'cpu' else ''}): fp32 {ceilings['fp32']:.0f} GFLOP/s, "
        f"bf16 {ceilings['bf16']:.0f} GFLOP/s; {c_kernels().describe() if a.device == 'cpu' else 'kernels: torch ops'}")
    sides = {"g32": ("growlang run fp32 (masked-only MLM head)", "fp32", None, "off"),
             "g32t": (f"growlang run fp32 {TORCH_OPS_LABEL}", "fp32", None, "off"),
             "g16": ("growlang run precision=bf16", "bf16", None, "off"),
             "g16t": (f"growlang run precision=bf16 {TORCH_OPS_LABEL}", "bf16", None, "off"),
             "gfused": ("growlang run precision=bf16 attention=fused", "bf16", "fused", "off"),
             "gcomp": ("growlang run precision=bf16 compile=on", "bf16", None, "on"),
             "h32": ("transformers BertForMaskedLM sdpa fp32", "fp32", None, None),
             "h16": ("transformers ... + autocast bf16", "bf16", None, None)}
    if a.device == "cuda":
        del sides["gfused"]  # auto keeps the fused kernel on CUDA (runtime/attention.py): the bf16 row again
    if a.device == "cuda" or c_kernels().lib is None:
        del sides["g16t"], sides["g32t"]  # the C kernels are CPU-only (runtime/c_kernels.py): the rows again
    if a.no_compile:
        del sides["gcomp"]
    if not with_bf16:
        sides = {key: side for key, side in sides.items() if side[1] != "bf16"}
        say(bf16_note)
    for shape, c in shapes.items():
        rows = {key: [] for key in sides}
        with tempfile.TemporaryDirectory(prefix="trainer-speed-") as tmp:
            for _ in range(a.repeat):  # alternated, so a change of machine load hits every side alike
                for key, (name, precision, attention, compile) in sides.items():
                    load = os.getloadavg()[0]
                    env = TORCH_OPS if key in ("g32t", "g16t") else None
                    got = (growlang_speed(c, a.threads, Path(tmp), a.device, precision, attention, compile, env)
                           if key.startswith("g") else hf_speed(c, a.threads, a.device, precision))
                    rows[key].append((*got, precision, load))
        say(f"\nshape {shape}: {c['depth']} layers x {c['width']} (ffn {c['ffn']}, {c['width'] // c['head_dim']} "
            f"heads), len {c['len']}, vocab {c['vocab']}, batch {c['batch']}; {c['steps']} steps each, first "
            f"{c['skip']} not timed; command: python benchmarks/trainer_speed.py "
            f"{' '.join(sys.argv[1:] if argv is None else argv)}; finished {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
        say(f"{'trainer':<46} {'tokens/s':>9} {'GFLOP/s':>8} {'of ceiling':>10} {'timed steps':>11} {'load':>5}")
        for key, (name, *_) in sides.items():
            for tps, n, flops, precision, load in rows[key]:
                gf = f"{flops / 1e9:8.1f} {flops / 1e9 / ceilings[precision]:>10.0%}" if flops else f"{'-':>8} {'-':>10}"
                say(f"{name:<46} {tps:>9.0f} {gf} {n:>11} {load:>5.2f}")
        med = {key: statistics.median(r[0] for r in rs) for key, rs in rows.items()}
        ratios = [("growlang fp32 / HF fp32", "g32", "h32"), (f"growlang fp32 / growlang fp32 {TORCH_OPS_LABEL}", "g32", "g32t"),
                  ("growlang bf16 / HF fp32", "g16", "h32"),
                  ("growlang bf16 / HF bf16", "g16", "h16"), ("growlang bf16 / growlang fp32", "g16", "g32"),
                  ("growlang bf16 / growlang bf16 attention=fused", "g16", "gfused"),
                  (f"growlang bf16 / growlang bf16 {TORCH_OPS_LABEL}", "g16", "g16t"),
                  ("growlang bf16 compile=on / growlang bf16", "gcomp", "g16")]
        say(f"ratios (medians of {a.repeat}): " + "; ".join(f"{label} {med[x] / med[y]:.2f}x"
                                                          for label, x, y in ratios if x in med and y in med))
        if a.device == "cuda" and (c["depth"], c["width"]) == (12, 768):
            best = max(med[k] for k in med if k.startswith("g"))
            say(f"against issue 11's anchor, HF sdpa BERT-base on one H200 {HF_ANCHOR_H200 / 1e6:.2f} M tokens/s: "
                f"growlang's best {best / 1e6:.3f} M ({best / HF_ANCHOR_H200:.2f}x); this run's HF bf16 "
                f"{med['h16'] / 1e6:.3f} M")
    say("goals (issue 11): with fast bf16, >= 2.5x HF fp32 and >= 1.3x HF bf16; without, fp32 >= 1.3x HF fp32. "
        "GFLOP/s counts the runtime's own FLOPs (growlang/accounting.py); HF does more (its head runs on "
        "every position), so only tokens/s compare across trainers")
    if a.compound_steps:
        say(f"\ncompound schedule {a.compound.relative_to(ROOT) if a.compound.is_relative_to(ROOT) else a.compound}, "
            f"{a.compound_steps} steps per stage (first {compound_skip} not timed), its shapes and batch, growlang run; "
            f"medians of {a.repeat} run(s), in brackets the range of the per-run ratio")
        say(f"{'precision':<16} {'attention':<14} {'stage':<6} {'FLOPs/step':>10} {'s/step':>7} {'GFLOP/s':>8} "
            f"{'of ceiling':>10} {'s/FLOP vs last (range)':<21} {'GEMMs alone: GFLOP/s':>20} {'vs last stage':>13}")
        # (precision, attention, head): torch's attention dispatch and the per-stage probe
        # (runtime/attention.py); on a CPU with the C kernels also each precision's torch-ops rows
        configs = [(p, k, None) for p in ("fp32", "bf16") if p == "fp32" or with_bf16 for k in ("fused", "auto")]
        if "g32t" in sides:  # the default kernel of each precision (growlang/assemble.py default_attention)
            configs += [(p, default_attention(p)[0], "torch") for p in ("fp32", "bf16") if p == "fp32" or with_bf16]
        runs = {}  # config -> [(plan, stages)] of each repeat
        with tempfile.TemporaryDirectory(prefix="trainer-speed-") as tmp:
            for _ in range(a.repeat):  # alternated like the shapes' sides: a change of load hits all alike
                for precision, attention, head in configs:
                    runs.setdefault((precision, attention, head), []).append(
                        compound_stages(a.compound, a.threads, Path(tmp), a.device, precision, attention,
                                        a.compound_steps, compound_skip, TORCH_OPS if head else None))
        gemm = {}  # the stages' GEMMs depend on the precision, not the attention kernel: timed once each
        for (precision, attention, head), reps in runs.items():
            plan, first = reps[0]
            if precision not in gemm:
                dtype = torch.bfloat16 if precision == "bf16" else torch.float32
                gemm[precision] = {s[0]: gemm_seconds_per_flop(stage_gemms(plan.stage(s[0]), plan.model.vocab), dtype,
                                                               a.device) for s in first}
            g = gemm[precision]
            spf = {s[0]: statistics.median(r[1][i][2] for r in reps) for i, s in enumerate(first)}
            ratios = {s[0]: [r[1][i][2] / r[1][-1][2] for r in reps] for i, s in enumerate(first)}
            last, last_gemm = spf[first[-1][0]], g[first[-1][0]]
            for i, (stage, per_step, _, _) in enumerate(first):
                kernels = sorted({r[1][i][3] for r in reps})  # auto's probe may choose differently per repeat
                used = attention if kernels == [attention] else f"{attention}: {'/'.join(kernels)}"
                used += "*" if default_attention(precision)[0] == attention else ""
                spread = f" ({min(ratios[stage]):.2f}-{max(ratios[stage]):.2f})" if a.repeat > 1 else ""
                label = f"{precision},torch-ops" if head else precision  # one word: the table splits on spaces
                say(f"{label:<16} {used:<14} {stage:<6} {per_step:>10.3g} {per_step * spf[stage]:>7.3f} "
                    f"{1 / spf[stage] / 1e9:>8.1f} {1 / spf[stage] / 1e9 / ceilings[precision]:>10.0%} "
                    f"{spf[stage] / last:>8.2f}x{spread:<12} {1 / g[stage] / 1e9:>20.1f} {g[stage] / last_gemm:>12.2f}x")
        say("goal (issue 11): a small stage's seconds per FLOP within 1.15x of the big stage's. 'attention' is "
            "train.attention and, after 'auto:', the kernel each stage's probe chose; * marks the kernel a "
            "schedule that names none gets at that precision (growlang/assemble.py default_attention). 'GEMMs alone' "
            "times the stage's own matrix products (forward and backward, the masked-only head) one by one in "
            "the same precision: their ratio is what the matmuls alone would cost per FLOP, small stage vs big; the "
            "rest of the trainer's ratio is work around them (optimizer, head softmax, norms, pooling)")
    if a.save:
        a.save.parent.mkdir(parents=True, exist_ok=True)
        a.save.write_text("\n".join(lines) + "\n")
    if a.profile:
        profile(next(iter(shapes.values())), a.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
