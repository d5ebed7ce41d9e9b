"""Time and peak memory of one growth, BERT-base (12x768x3072) -> BERT-large (24x1024x4096).

    .venv/bin/python benchmarks/grow_bench.py          # full shapes, one subprocess per combination
    .venv/bin/python benchmarks/grow_bench.py --tiny   # seconds, for a smoke test

Each combination runs in its own process so ru_maxrss (the process's peak resident memory; torch
allocates outside Python, so tracemalloc cannot see it) is that combination's alone. "grow peak"
is the peak minus the resident memory just before growing (old model loaded).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

COMBOS = [
    "width by interpolate, ffn by stack, depth by stack",
    "width by stack, ffn by interpolate, depth by interpolate",
    "width by interpolate, ffn by zero, depth by zero",
    "width by interpolate(noise=0.01), ffn by stack, depth by stack",
    "width by random, ffn by random, depth by random",
]
FULL = dict(old=(12, 768, 3072), new=(24, 1024, 4096), vocab=30522, max_len=512)
TINY = dict(old=(2, 32, 64), new=(4, 64, 256), vocab=500, max_len=64)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def one(combo: str, shapes: dict) -> dict:
    import torch

    from growlang.growth_request import parse_growth_request
    from growlang.runtime.model import EncoderConfig, Encoder
    from growlang.runtime.operators import grow

    torch.set_num_threads(2)
    (L, d, f), (L2, d2, f2) = shapes["old"], shapes["new"]
    old = EncoderConfig("bert", shapes["vocab"], d, L, d // 64 or 1, f, shapes["max_len"])
    new = EncoderConfig("bert", shapes["vocab"], d2, L2, d2 // (d // old.heads), f2, shapes["max_len"])
    state = Encoder(old).state_dict()
    _, ops = parse_growth_request("", combo)
    before = current_rss_mb()
    t0 = time.perf_counter()
    grown, _ = grow(state, old, new, ops, torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - t0
    params = sum(t.numel() for t in grown.values())
    return dict(combo=combo, seconds=seconds, peak_mb=rss_mb(), grow_mb=rss_mb() - before, params=params)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny shapes, finishes in seconds")
    p.add_argument("--one", help=argparse.SUPPRESS)
    a = p.parse_args()
    shapes = TINY if a.tiny else FULL
    if a.one:
        print(json.dumps(one(a.one, shapes)))
        return 0
    (L, d, f), (L2, d2, f2) = shapes["old"], shapes["new"]
    print(f"grow {L}x{d}x{f} -> {L2}x{d2}x{f2} (vocab {shapes['vocab']}), fp32, CPU, one process per row")
    print(f"{'operators':<64} {'time s':>8} {'peak MB':>9} {'grow MB':>9} {'params':>12}")
    for combo in COMBOS:
        cmd = [sys.executable, __file__, "--one", combo] + (["--tiny"] if a.tiny else [])
        r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.splitlines()[-1])
        print(f"{combo:<64} {r['seconds']:>8.2f} {r['peak_mb']:>9.0f} {r['grow_mb']:>9.0f} {r['params']:>12,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
