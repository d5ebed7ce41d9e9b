#!/usr/bin/env python
"""Long fuzz run of the growlang front end (issue 6; docs/reliability.md "Front-end fuzzing").

    .venv/bin/python scripts/fuzz_frontend.py --count 100000 --seed 0      # ~10 minutes on 2 cores
    .venv/bin/python scripts/fuzz_frontend.py --count 200                  # the smoke test's size

Each input is generated from (seed, index) alone, so any failure is reproducible with
`--only INDEX`. Kinds: grammar-driven schedules (random blocks, keys, values, stage trees, growth
clauses), character and token mutations of the shipped schedules, duplicated lines, byte garbage,
random unicode (RTL marks, emoji, NUL, line separators, invalid UTF-8 such as encoded
surrogates), huge numbers (1e400, thousands of digits), deep nesting and very long lines, and a
few 1 MB files.

Every input goes through `growlang.cli.check_source`, the function `growlang check` runs on a
file's bytes; this script catches nothing inside it. It checks: the exit code is 0 or 1 (2 only
for bytes that are not UTF-8, with a message naming the line), no exception escapes, every span
lies inside the file (line 1..n, column 1..len(line)+1, end not before start), a plan exists
exactly when there is no error, and the text and JSON renderings (and the cost table) work. A
sample also runs the real CLI in a subprocess: exit 0/1/2 as above, no 'Traceback' on stderr.
Failing inputs are saved with their traceback under --save-dir. Exit status 1 if anything failed.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCHEDULES = sorted((ROOT / "schedules").glob("*.grow"))
PER_INPUT_TIMEOUT_S = 300  # a 1 MB file of 60k stages is linear but takes 15-60 s on a busy 2-core box

# Kind -> weight (per 10,000 inputs). `big-file` (1 MB) is rare: each takes a few seconds.
KINDS = {
    "grammar": 3300, "mutate-char": 1900, "mutate-token": 1900, "duplicate-lines": 700, "bytes": 600,
    "unicode": 700, "huge-number": 500, "deep": 200, "long-line": 199, "big-file": 1,
}

WORDS = ["stage", "from", "via", "grow", "by", "model", "data", "train", "bert", "bert-preln", "builtin", "linear",
         "cosine", "constant", "adamw", "bf16", "fp16", "fp32", "reset", "carry", "restart", "continue", "rewarm",
         "none", "fsdp", "even", "top", "depth", "width", "ffn", "heads", "len", "stack", "interpolate", "zero",
         "random", "truncate", "pool", "noise", "where", "lenght", "stak", "zap", "x", "_", "a-b", "__init__",
         "model_config", "self", "True", "None", "nan", "inf"]
PUNCT = ["=", ";", ":", "{", "}", "(", ")", ",", "#", '"', "-", "+", ".", "\n", " ", "\t", "\r\n"]
NUMBERS = ["0", "1", "2", "-1", "-0", "3", "8", "64", "100k", "2.5M", "1B", "1e-4", "1e400", "-1e400", "4x", "0.5x",
           "0x", "1m", "1b", "1K", "1e", "1e+", "1.", "1..2", "9" * 30, "1" * 400, "99999999999999999999B", "1e-400",
           "128", "256", "512", "768", "1024", "3072", "4096", "0.15", "1.5", "1_000", "007"]
UNICODE = ["\u202e", "\u202d", "\u200f", "\u061c", "\u2028", "\u2029", "\x00", "\x0b", "\x0c", "\x1c", "\x85",
           "\ufeff", "\u00e9", "e\u0301", "\U0001f600", "\U0001f9ea", "\u4e2d", "\u0410", "\uff1d", "\u00a0",
           "\t", "\r", "\u0663", "\ufffd", "\U00010000", "\u05d0\u05d1"]
INVALID_UTF8 = [b"\xed\xa0\x80", b"\xed\xbf\xbf", b"\xff", b"\xfe", b"\xc0\xaf", b"\x80", b"\xe2\x82", b"\xf4\x90\x80\x80",
                b"\xf8\x88\x80\x80\x80"]


# ------------------------------------------------------------------ generators (pure: rng -> bytes)


def _number(rng: random.Random) -> str:
    if rng.random() < 0.7:
        return rng.choice(NUMBERS)
    return str(rng.choice([rng.randint(-5, 5000), rng.randint(1, 10**6)])) + rng.choice(["", "", "k", "M", "B", "x", "e3", "m"])


def _value(rng: random.Random, depth: int = 0) -> str:
    r = rng.random()
    if r < 0.55:
        return _number(rng)
    if r < 0.8:
        return rng.choice(WORDS)
    if r < 0.9:
        return '"' + rng.choice(["builtin", "data/*.txt", "", "no/such", "../x", "~/y", "a b", "/"]) + '"'
    if depth > 3:
        return _number(rng)
    args = [(rng.choice(WORDS) + "=" if rng.random() < 0.4 else "") + _value(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    return rng.choice(["rewarm", "interpolate", "f"]) + "(" + ", ".join(args) + ")"


def _settings(rng: random.Random, keys: list[str], n: int) -> str:
    return " ".join(f"{rng.choice(keys)}={_value(rng)}" for _ in range(n))


def _growth(rng: random.Random, sane: bool = False) -> str:
    from growlang.operators import OPERATORS

    if sane:  # one valid operator per dimension, plausible arguments
        dims = rng.sample(["depth", "width", "ffn", "len"], rng.randint(1, 3))
        ops = [rng.choice([op for (d, op) in OPERATORS if d == dim]) for dim in dims]
        extra = {"zero": "(where=top)", "interpolate": "(noise=0.01)"}
        return ", ".join(f"{d} by {o}{extra.get(o, '') if rng.random() < 0.3 and d != 'ffn' else ''}"
                         for d, o in zip(dims, ops))
    items = []
    for _ in range(rng.randint(1, 4)):
        if rng.random() < 0.85:
            dim, op = rng.choice(list(OPERATORS))
        else:
            dim, op = rng.choice(WORDS), rng.choice(WORDS)
        args = ""
        if rng.random() < 0.25:
            args = "(" + ", ".join(f"{rng.choice(['noise', 'where', 'x'])}={_value(rng)}" for _ in range(rng.randint(0, 2))) + ")"
        items.append(f"{dim} by {op}{args}")
    return ", ".join(items)


def gen_grammar(rng: random.Random) -> str:
    """A schedule the grammar accepts (mostly), with random keys, values, trees and clauses."""
    from growlang.schema import DataBlock, ModelBlock, StageBlock, TrainBlock

    sane = rng.random() < 0.5  # half of them use plausible keys and sizes, so deeper checks run
    out = []
    for kind, cls in (("model", ModelBlock), ("data", DataBlock), ("train", TrainBlock)):
        if rng.random() < (0.2 if sane else 0.5):
            keys = [k for k in cls.model_fields if k != "family"] + (["lenght", "x"] if not sane else [])
            head = f"model {rng.choice(['bert', 'bert-preln', 'gpt'] if not sane else ['bert', 'bert-preln'])}" if kind == "model" else kind
            out.append(f"{head} {{ {_settings(rng, keys, rng.randint(0, 5))} }}")
    names: list[str] = []
    for i in range(rng.randint(0 if not sane else 1, 7)):
        name = f"s{i}" if sane else rng.choice([str(i + 1), f"s{i}", rng.choice(WORDS[:3]), f"{i}b"])
        header = f"stage {name}"
        if names and rng.random() < 0.3 and not sane:
            header += f" from {rng.choice(names + ['nowhere'])}"
        if sane:  # growing shapes by construction, so most of these compile into a plan
            if names and rng.random() < 0.3:
                header = f"stage {name} from {rng.choice(names)}"
            level = len(names)
            settings = []
            if i == 0 or rng.random() < 0.6:
                settings.append(f"depth={2 + level * rng.choice([0, 1, 2])}")
            if i == 0 or rng.random() < 0.3:
                settings.append(f"width={64 * (1 + level // 2)}")
            if i == 0:
                settings.append(f"len={rng.choice([16, 32, 64])}")
            if rng.random() < 0.2:
                settings.append(f"ffn={rng.choice(['4x', '2x', str(4096 + 64 * level)])}")
            settings.append(rng.choice(["steps=10", "tokens=10k", "steps=1k", "steps=0"] if rng.random() < 0.1 else ["steps=10"]))
            text = " ".join(settings)
        else:
            text = _settings(rng, list(StageBlock.model_fields) + ["lenght", "x"], rng.randint(0, 6))
        if rng.random() < 0.15:
            header += f" via {_growth(rng, sane)}"
        clause = f" ; grow {_growth(rng, sane)}" if rng.random() < 0.4 else ""
        out.append(f"{header}: {text}{clause}")
        names.append(name)
    rng.shuffle(out) if rng.random() < 0.1 else None
    sep = rng.choice(["\n", "\n", " ", "\n\n# comment\n", "\r\n"])
    return sep.join(out) + rng.choice(["", "\n"])


def _seed(rng: random.Random) -> str:
    return rng.choice(SEED_TEXTS)


def gen_mutate_char(rng: random.Random) -> str:
    text = _seed(rng)
    for _ in range(rng.randint(1, 8)):
        pos = rng.randint(0, len(text))
        op = rng.randrange(3)
        if op == 0:
            text = text[:pos] + text[pos + rng.randint(1, 5):]
        elif op == 1:
            text = text[:pos] + rng.choice(PUNCT + list("abcxyz0123456789km") + UNICODE[:6]) + text[pos:]
        else:
            text = text[:pos] + rng.choice(PUNCT + list("az09")) + text[pos + 1:]
    return text


def _tokens(text: str) -> list[str]:
    import re

    return re.findall(r"\s+|#[^\n]*|\"[^\"\n]*\"|[A-Za-z0-9_.\-+]+|.", text)


def gen_mutate_token(rng: random.Random) -> str:
    toks = _tokens(_seed(rng))
    for _ in range(rng.randint(1, 6)):
        i = rng.randrange(len(toks))
        op = rng.randrange(4)
        new = rng.choice(WORDS + PUNCT + [_number(rng)])
        if op == 0:
            del toks[i]
        elif op == 1:
            toks.insert(i, " " + new + " ")
        elif op == 2:
            toks[i] = new
        else:
            j = rng.randrange(len(toks))
            toks[i], toks[j] = toks[j], toks[i]
    return "".join(toks)


def gen_duplicate_lines(rng: random.Random) -> str:
    lines = _seed(rng).split("\n")
    for _ in range(rng.randint(1, 5)):
        i = rng.randrange(len(lines))
        op = rng.randrange(3)
        if op == 0:
            lines.insert(i, lines[i])
        elif op == 1:
            lines[i:i + 1] = [lines[i]] * rng.randint(2, 40)
        else:
            del lines[i]
    return "\n".join(lines)


def gen_bytes(rng: random.Random) -> bytes:
    if rng.random() < 0.5:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 400)))
    data = bytearray(_seed(rng).encode())
    for _ in range(rng.randint(1, 6)):
        pos = rng.randint(0, len(data))
        data[pos:pos] = rng.choice(INVALID_UTF8 + [bytes([rng.getrandbits(8)])])
    return bytes(data)


def gen_unicode(rng: random.Random) -> str:
    text = _seed(rng) if rng.random() < 0.7 else ""
    for _ in range(rng.randint(1, 10)):
        pos = rng.randint(0, len(text))
        piece = rng.choice(UNICODE) if rng.random() < 0.7 else chr(rng.choice([rng.randint(1, 0xD7FF), rng.randint(0xE000, 0x10FFFF)]))
        text = text[:pos] + piece * rng.randint(1, 3) + text[pos:]
    return text


def gen_huge_number(rng: random.Random) -> str:
    big = rng.choice(["1e400", "-1e400", "1e-400", "9" * rng.randint(19, 400), "1" * rng.randint(4000, 10001),
                      "1" * rng.randint(300, 1000) + ".5", "1e" + "9" * rng.randint(3, 30), "0." + "0" * 400 + "1",
                      "1" * 5000 + "x", "1" * 5000 + "k", "2" * 3000 + "m", "1e308", "1.8e308", "17976931348623157e292"])
    key = rng.choice(["depth", "width", "len", "steps", "tokens", "lr", "batch", "ffn", "heads"])
    if rng.random() < 0.3:
        return f"model bert {{ {rng.choice(['vocab', 'max_len', 'dropout', 'head_dim'])}={big} }}\nstage 1: depth=2 width=128 len=64 steps=10\n"
    if rng.random() < 0.2:
        return f"stage 1: depth=2 width=128 len=64 steps=10 ; grow width by interpolate(noise={big})\nstage 2: width=256 steps=1\n"
    return f"stage 1: depth=2 width=128 len=64 steps=10 {key}={big}\nstage 2: depth=4 steps=10\n"


def gen_deep(rng: random.Random) -> str:
    n = rng.choice([10, 30, 100, 300, 1000, 3000, 20000])
    form = rng.randrange(5)
    if form == 0:
        return "train { lr_on_grow=" + "rewarm(" * n + "1" + ")" * n + " }\nstage 1: depth=1 width=64 len=8 steps=1\n"
    if form == 1:
        return "stage 1: depth=1 width=64 len=8 steps=1 ; grow depth by zero(where=" + "f(" * n + ")" * n + ")\n"
    if form == 2:  # a chain of stages, each growing the last
        return "stage 0: depth=1 width=64 len=8 steps=1\n" + "".join(f"stage s{i}: depth={i + 2} steps=1\n" for i in range(min(n, 1000)))
    if form == 3:  # repeated blocks
        return "".join(rng.choice(["model bert { vocab=10 }\n", "data { mask=0.2 }\n", "train { batch=8 }\n"]) for _ in range(min(n, 2000))) + "stage 1: depth=1 width=64 len=8 steps=1\n"
    return "(" * n + "{" * n + "stage"  # unbalanced brackets


def gen_long_line(rng: random.Random) -> str:
    n = rng.choice([1000, 10_000, 100_000])
    piece = rng.choice(["depth=2 ", "x", "a" * 10 + "=1 ", " ", "#", "1", "\u202e", "é"])
    body = piece * (n // len(piece))
    where = rng.randrange(4)
    if where == 0:
        return f"stage 1: depth=2 width=128 len=64 steps=10 {body}\n"
    if where == 1:
        return f"stage {'s' * n}: depth=2 width=128 len=64 steps=10\nstage 2 from {'s' * (n - 1)}t: depth=3 steps=1\n"
    if where == 2:
        return f"stage 1: depth=2 width=128 len=64 steps=10 {'k' * n}=1\n"
    return body


def gen_big_file(rng: random.Random) -> str:
    size = 1 << 20
    unit = rng.choice(["stage s{i}: steps=1\n", "# comment line padding padding\n", "train {{ batch=8 }}\n",
                       "stage s{i}: depth=1 width=64 len=8 steps=1 lenght=2\n"])
    out, i, total = ["stage s: depth=1 width=64 len=8 steps=1\n"], 0, 0
    while total < size:
        line = unit.format(i=i)
        out.append(line)
        total += len(line)
        i += 1
    return "".join(out)


GENERATORS = {"grammar": gen_grammar, "mutate-char": gen_mutate_char, "mutate-token": gen_mutate_token,
              "duplicate-lines": gen_duplicate_lines, "bytes": gen_bytes, "unicode": gen_unicode,
              "huge-number": gen_huge_number, "deep": gen_deep, "long-line": gen_long_line, "big-file": gen_big_file}
SEED_TEXTS = [p.read_text(encoding="utf-8") for p in SCHEDULES]


def make_input(seed: int, index: int) -> tuple[str, bytes]:
    rng = random.Random(f"{seed}:{index}")
    kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
    made = GENERATORS[kind](rng)
    return kind, made if isinstance(made, bytes) else made.encode("utf-8")


# ------------------------------------------------------------------ the oracle


def check_input(data: bytes) -> tuple[int, list[str]]:
    """(exit code, problems). Runs the front end exactly as `growlang check` does."""
    from growlang.cli import EXIT_OK, EXIT_PROBLEMS, EXIT_USAGE, check_source
    from growlang.diagnostics import render_text, source_lines, summary_line, to_json_dict

    problems: list[str] = []
    code, compiled, text, message = check_source(data, "fuzz.grow")
    try:
        data.decode("utf-8")
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    if not utf8:
        if code != EXIT_USAGE or not message or " at line " not in message or "not UTF-8" not in message:
            problems.append(f"not UTF-8 but exit {code}, message {message!r}")
        return code, problems
    if code not in (EXIT_OK, EXIT_PROBLEMS):
        problems.append(f"exit code {code}")
    lines = source_lines(text)
    for d in compiled.diagnostics:
        s = d.span
        inside = (1 <= s.line <= len(lines) and 1 <= s.col <= len(lines[s.line - 1]) + 1
                  and 1 <= s.end_line <= len(lines) and 1 <= s.end_col <= len(lines[s.end_line - 1]) + 1
                  and (s.end_line, s.end_col) >= (s.line, s.col))
        if not inside:
            problems.append(f"span {s} outside the file ({len(lines)} lines): {d.code} {d.message[:80]}")
        for leak in ("Token(", "$END", "EQUAL", "[type=", "https://errors.pydantic"):
            if leak in d.message or leak in d.hint:
                problems.append(f"internal name {leak!r} in {d.code}: {d.message[:80]}")
        if len(d.message) > 2000 or len(d.hint) > 2000:
            problems.append(f"{d.code} message of {len(d.message)} / hint of {len(d.hint)} characters")
    if compiled.ok != (compiled.plan is not None) or compiled.ok != (code == EXIT_OK):
        problems.append(f"ok={compiled.ok} but plan={compiled.plan is not None}, exit {code}")
    render_text(list(compiled.diagnostics), text, "fuzz.grow")
    summary_line(list(compiled.diagnostics))
    json.dumps([to_json_dict(d, "fuzz.grow") for d in compiled.diagnostics])
    if compiled.plan is not None:
        from growlang.plan import Plan
        from growlang.render import check_table, dot, mermaid

        check_table(compiled.plan, "fuzz.grow")
        mermaid(compiled.plan), dot(compiled.plan)
        again = Plan.from_dict(json.loads(json.dumps(compiled.plan.to_dict())))
        if again != compiled.plan:
            problems.append("plan does not round-trip through JSON")
    return code, problems


class _Timeout(Exception):
    pass


def _alarm(signum, frame):
    raise _Timeout(f"input took more than {PER_INPUT_TIMEOUT_S} s")


def run_one(job: tuple[int, int, str]) -> tuple[int, str, int | None, str | None, float]:
    seed, index, save_dir = job
    kind, data = make_input(seed, index)
    start = time.perf_counter()
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(PER_INPUT_TIMEOUT_S)
    try:
        code, problems = check_input(data)
        failure = "\n".join(problems) or None
    except BaseException as exc:  # noqa: BLE001 - an escaping exception IS the finding
        code, failure = None, "".join(traceback.format_exception(exc))
    finally:
        signal.alarm(0)
    elapsed = time.perf_counter() - start
    if failure:
        folder = Path(save_dir)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{index:07d}-{kind}.grow").write_bytes(data)
        (folder / f"{index:07d}-{kind}.txt").write_text(f"seed {seed} index {index} kind {kind}\n{failure}\n")
    return index, kind, code, failure, elapsed


def cli_sample(seed: int, indices: list[int], save_dir: str) -> list[str]:
    """The real command on a sample: exit 0/1 (2 only for non-UTF-8 bytes), no traceback."""
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        for index in indices:
            kind, data = make_input(seed, index)
            path = Path(tmp) / f"{index}.grow"
            path.write_bytes(data)
            r = subprocess.run([sys.executable, "-m", "growlang", "check", str(path)], capture_output=True, timeout=120,
                               cwd=ROOT)
            try:
                data.decode("utf-8")
                allowed = (0, 1)
            except UnicodeDecodeError:
                allowed = (2,)
            stderr = r.stderr.decode("utf-8", "replace")
            if r.returncode not in allowed or "Traceback" in stderr or "internal error" in stderr:
                failures.append(f"CLI index {index} ({kind}): exit {r.returncode}\n{stderr[-2000:]}")
                Path(save_dir).mkdir(parents=True, exist_ok=True)
                (Path(save_dir) / f"cli-{index:07d}-{kind}.grow").write_bytes(data)
    return failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000, help="inputs to generate and check")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="processes (default 2)")
    parser.add_argument("--cli-sample", type=int, default=40, metavar="N", help="inputs also run through the CLI")
    parser.add_argument("--save-dir", default="fuzz-failures", help="where failing inputs are written")
    parser.add_argument("--only", type=int, metavar="INDEX", help="check one input (reproduce a failure)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    indices = [args.only] if args.only is not None else range(args.count)
    jobs = [(args.seed, i, args.save_dir) for i in indices]
    results = []
    if args.workers > 1 and len(jobs) > 1:
        ctx = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
        with ctx.Pool(args.workers) as pool:
            results = list(pool.imap_unordered(run_one, jobs, chunksize=16))
    else:
        results = [run_one(job) for job in jobs]
    in_process_s = time.perf_counter() - start

    by_kind: dict[str, Counter] = {}
    slowest = max(results, key=lambda r: r[4])
    failures = [r for r in results if r[3]]
    for _, kind, code, failure, _ in results:
        c = by_kind.setdefault(kind, Counter())
        c["inputs"] += 1
        c["failures"] += bool(failure)
        c[f"exit {code}"] += 1
    for _, kind, _, _, elapsed in results:
        by_kind[kind]["seconds"] += elapsed
    sample = [r[0] for r in sorted(results)][:: max(1, len(results) // max(1, args.cli_sample))][: args.cli_sample]
    sample = [i for i in sample if make_input(args.seed, i)[0] != "big-file"]
    cli_failures = cli_sample(args.seed, sample, args.save_dir) if args.cli_sample else []

    print(f"front-end fuzz: seed {args.seed}, {len(results)} inputs, {args.workers} worker(s), "
          f"{in_process_s:.1f} s in-process, {time.perf_counter() - start:.1f} s total")
    cols = ["inputs", "exit 0", "exit 1", "exit 2", "exit None", "failures", "seconds"]
    print(f"  {'kind':16}" + "".join(f"{c:>10}" for c in cols))
    total = Counter()
    for kind in KINDS:
        if kind in by_kind:
            total.update(by_kind[kind])
            print(f"  {kind:16}" + "".join(f"{by_kind[kind][c]:>10.0f}" for c in cols))
    print(f"  {'total':16}" + "".join(f"{total[c]:>10.0f}" for c in cols))
    print(f"  slowest input: #{slowest[0]} ({slowest[1]}) {slowest[4]:.2f} s")
    print(f"  CLI subprocess sample: {len(sample)} inputs, {len(cli_failures)} failures")
    for _, kind, _, failure, _ in sorted(failures)[:10]:
        print(f"\nFAIL ({kind}): {failure.strip().splitlines()[-1][:300]}")
    for failure in cli_failures[:5]:
        print(f"\n{failure}")
    if failures or cli_failures:
        print(f"\n{len(failures) + len(cli_failures)} failing input(s) saved under {os.path.abspath(args.save_dir)}")
        return 1
    print("  no failures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
