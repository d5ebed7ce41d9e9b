"""How fast is `growlang check`? Times it in-process (warm) and as a subprocess against
`python -c "import torch"`, the floor of any command that loads the runtime.

    .venv/bin/python benchmarks/check_latency.py [--runs 5] [FILE]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).parents[1]


def timed(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", default=str(ROOT / "schedules" / "bert-base.grow"))
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from growlang.cli import main as growlang_main

    def in_process():
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            assert growlang_main(["check", args.file]) == 0

    in_process()  # warm: grammar compiled, modules imported
    rows = {
        "check, in-process (warm)": timed(in_process, args.runs),
        "check, subprocess": timed(lambda: subprocess.run([sys.executable, "-m", "growlang", "check", args.file],
                                                          check=True, capture_output=True), args.runs),
        'python -c "import torch"': timed(lambda: subprocess.run([sys.executable, "-c", "import torch"], check=True,
                                                                 capture_output=True), args.runs),
    }
    torch_median = statistics.median(rows['python -c "import torch"'])
    print(f"{'what':32} {'median ms':>10} {'min ms':>8} {'vs import torch':>16}")
    for name, times in rows.items():
        med = statistics.median(times)
        print(f"{name:32} {med * 1e3:10.1f} {min(times) * 1e3:8.1f} {med / torch_median:15.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
