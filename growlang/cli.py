"""`growlang`: check, graph, prepare, run, grow, plot. Results on stdout, diagnostics and errors on stderr.

`check` and `graph` never import torch; `prepare`, `run`, `grow` and `plot` import the runtime lazily.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path

EXIT_OK = 0  # valid (warnings allowed)
EXIT_PROBLEMS = 1  # errors found in a schedule
EXIT_USAGE = 2  # usage error, unreadable file, or internal error

EPILOG = f"""exit codes:
  {EXIT_OK}  ok (warnings allowed)
  {EXIT_PROBLEMS}  problems found in a schedule
  {EXIT_USAGE}  usage error, unreadable file, or internal error"""
RUN_EPILOG = EPILOG + """
  130  interrupted (Ctrl-C, SIGTERM or SIGHUP): continue with --resume"""


def version() -> str:
    from importlib.metadata import PackageNotFoundError, version as installed

    try:
        return installed("growlang")
    except PackageNotFoundError:  # a source checkout that was never installed
        return "unknown (not installed)"


def decode_source(data: bytes, path: str) -> tuple[str | None, str | None]:
    """(text, None), or (None, an exit-2 message naming the first byte that is not UTF-8)."""
    try:
        return data.decode("utf-8").removeprefix("\ufeff"), None  # a BOM (Windows editors) is not text
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        col = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        return None, (f"growlang: cannot read {path}: byte 0x{data[exc.start]:02x} at line {line}, column {col} "
                      f"is not UTF-8 ({exc.reason}); a .grow file is UTF-8 text")


def check_source(data: bytes, path: str):
    """What `check` does with one file's bytes: (exit code, Compiled or None, text or None, exit-2
    message or None). scripts/fuzz_frontend.py calls exactly this."""
    from growlang.compiler import compile_text

    text, problem = decode_source(data, path)
    if problem:
        return EXIT_USAGE, None, None, problem
    compiled = compile_text(text, Path(path))
    return (EXIT_OK if compiled.ok else EXIT_PROBLEMS), compiled, text, None


def _compile(path: str):
    """(Compiled, source text) or an exit-2 message for an unreadable file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        return None, f"growlang: cannot read {path}: {exc.strerror or exc}"
    _, compiled, text, problem = check_source(data, path)
    if problem:
        return None, problem
    return (compiled, text), None


def cmd_check(args) -> int:
    from growlang.diagnostics import render_text, summary_line, to_json_dict

    worst, everything, results, unreadable = EXIT_OK, [], [], 0
    profile = source = None
    if args.profile:
        from growlang.time_model import ProfileError, read_profile

        try:
            profile, source = read_profile(args.profile)
        except ProfileError as exc:
            print(exc.render() + summary_line([exc.diagnostic]), file=sys.stderr)
            return EXIT_USAGE
    for path in args.files:
        compiled, problem = _compile(path)
        if problem:
            print(problem, file=sys.stderr)
            worst = EXIT_USAGE
            unreadable += 1  # counted as an error: a file that cannot be read is not a passing one
            results.append({"file": path, "readable": False, "error": problem.removeprefix("growlang: "),
                            "diagnostics": [], "plan": None})
            continue
        compiled, text = compiled
        everything += compiled.diagnostics
        if args.format == "json":
            results.append({"file": path, "readable": True,
                            "diagnostics": [to_json_dict(d, path) for d in compiled.diagnostics],
                            "plan": compiled.plan.to_dict() if compiled.plan else None})
            if profile is not None and compiled.plan is not None:
                from growlang.time_model import plan_seconds

                est = plan_seconds(compiled.plan, profile, source)
                results[-1]["seconds"] = {**est, "warnings": [to_json_dict(w, args.profile) for w in est["warnings"]]}
        else:
            if compiled.diagnostics:
                print(render_text(list(compiled.diagnostics), text, path), file=sys.stderr)
            if compiled.plan is not None:
                from growlang.render import check_table, time_lines

                print(check_table(compiled.plan, path))
                if profile is not None:
                    from growlang.time_model import plan_seconds

                    from growlang.time_model import render as render_profile

                    est = plan_seconds(compiled.plan, profile, source)
                    for w in est["warnings"]:
                        print(render_profile(w, source, args.profile), file=sys.stderr)
                    print(time_lines(est, args.profile))
        if not compiled.ok:
            worst = max(worst, EXIT_PROBLEMS)
    if args.format == "json":
        errors = sum(d.is_error for d in everything)
        print(json.dumps({"files": results, "errors": errors + unreadable, "warnings": len(everything) - errors},
                         indent=2))
    elif everything:
        print(summary_line(everything), file=sys.stderr)
    return worst


def _plan_or_report(path: str):
    """(plan, None) for a valid schedule, else (None, exit code); diagnostics go to stderr either way."""
    from growlang.diagnostics import render_text, summary_line

    compiled, problem = _compile(path)
    if problem:
        print(problem, file=sys.stderr)
        return None, EXIT_USAGE
    compiled, text = compiled
    if compiled.diagnostics:
        print(render_text(list(compiled.diagnostics), text, path), file=sys.stderr)
        print(summary_line(list(compiled.diagnostics)), file=sys.stderr)
    return compiled.plan, (EXIT_PROBLEMS if compiled.plan is None else None)


def cmd_graph(args) -> int:
    from growlang.render import dot, mermaid

    plan, code = _plan_or_report(args.file)
    if plan is None:
        return code
    print(mermaid(plan) if args.format == "mermaid" else dot(plan), end="")
    return EXIT_OK


def _rank_plan():
    """Under `--nproc N`, the Plan the launcher compiled (runtime.distributed.PLAN_ENV), or None."""
    if "WORLD_SIZE" not in os.environ:
        return None
    from growlang.plan import Plan
    from growlang.runtime.distributed import PLAN_ENV  # lazy: torch (a rank trains anyway)

    shared = os.environ.get(PLAN_ENV)
    return Plan.from_dict(json.loads(shared)) if shared is not None else None


def cmd_run(args) -> int:
    plan = _rank_plan()  # a rank of `--nproc N` does not compile the schedule again
    if plan is None:
        plan, code = _plan_or_report(args.file)
        if plan is None:
            return code
    from growlang.runtime.run import run_plan  # lazy: torch

    out = Path(args.out) if args.out else Path("runs") / Path(args.file).stem
    if args.nproc != 1 and "WORLD_SIZE" not in os.environ:  # under torchrun: already a rank
        from growlang.runtime.distributed import launch  # N ranks of this command (docs/distributed.md)

        return launch(args.nproc, ["run", args.file, "--out", str(out), "--device", args.device]
                      + (["--resume"] if args.resume else []), plan=plan)
    return run_plan(plan, out=out, resume=args.resume, device=args.device)


def cmd_prepare(args) -> int:
    plan, code = _plan_or_report(args.file)
    if plan is None:
        return code
    from growlang.runtime.prepare import main as prepare_main  # lazy: tokenizers, datasets

    return prepare_main(plan, Path(args.out) if args.out else None)


def cmd_grow(args) -> int:
    from growlang.runtime.grow_cli import main as grow_main  # lazy: torch

    return grow_main(args)


def cmd_calibrate(args) -> int:
    if args.profile and not args.from_runs:
        print("growlang calibrate: --profile names the profile to refit; give the runs with --from RUN_DIR",
              file=sys.stderr)
        return EXIT_USAGE
    if args.from_runs and args.quick:
        print("growlang calibrate: --quick times a smaller grid; --from refits from runs without timing",
              file=sys.stderr)
        return EXIT_USAGE
    from growlang.runtime.calibrate import main as calibrate_main  # lazy: torch

    return calibrate_main(args)


def cmd_plot(args) -> int:
    from growlang.runtime.plot import main as plot_main  # lazy: matplotlib

    return plot_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="growlang", description="Progressive Transformer pretraining from a .grow schedule.",
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"growlang {version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    kw = dict(epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p = sub.add_parser("check", help="validate schedules and print their cost table (no torch)", **kw)
    p.add_argument("files", nargs="+", metavar="FILE")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("--profile", metavar="PROFILE.json", help="estimate each stage's seconds from a calibration profile")
    p.set_defaults(handler=cmd_check)
    p = sub.add_parser("graph", help="print the stage graph with operators on its edges", **kw)
    p.add_argument("file", metavar="FILE")
    p.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")
    p.set_defaults(handler=cmd_graph)
    p = sub.add_parser("run", help="train a schedule (imports the torch runtime)",
                       **{**kw, "epilog": RUN_EPILOG})
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/<schedule stem>)")
    p.add_argument("--resume", action="store_true", help="continue from the last checkpoint in --out")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--nproc", type=int, default=1, metavar="N", help="processes (GPUs) to train on")
    p.set_defaults(handler=cmd_run)
    p = sub.add_parser("prepare", help="tokenize a schedule's corpus once into a token store", **kw)
    p.add_argument("file", metavar="FILE")
    p.add_argument("--out", metavar="DIR", help="store folder (default: the cache, where `run` finds it); "
                   "name it in `data { corpus=DIR }` to use it")
    p.set_defaults(handler=cmd_prepare)
    p = sub.add_parser("grow", help="grow a saved checkpoint into a bigger model", **kw)
    p.add_argument("src", metavar="SRC")
    p.add_argument("--to", required=True, help="new shape, e.g. 'depth=12 width=768 ffn=3072'")
    p.add_argument("--by", default="", help="operators, e.g. 'depth by stack, width by interpolate'")
    p.add_argument("--out", required=True, metavar="DST")
    p.set_defaults(handler=cmd_grow)
    p = sub.add_parser("calibrate", help="time training steps on this device; write a profile for check --profile",
                       **kw)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16", "auto"])
    p.add_argument("--out", default="profile.json", metavar="PROFILE.json", help="where to write it (profile.json)")
    p.add_argument("--quick", action="store_true", help="half the shape grid (seconds on a CPU)")
    p.add_argument("--from", dest="from_runs", nargs="+", metavar="RUN_DIR",
                   help="refit with the measured stages of these `growlang run` folders instead of timing the grid")
    p.add_argument("--profile", metavar="PROFILE.json",
                   help="with --from: the profile whose measurements to refit with (default: --out, if it exists)")
    p.set_defaults(handler=cmd_calibrate)
    p = sub.add_parser("plot", help="plot loss curves of run directories, or their estimated vs measured time", **kw)
    p.add_argument("runs", nargs="+", metavar="RUN_DIR")
    p.add_argument("--out", metavar="PNG", help="the figure (default: <first run>/loss.png, or time.png with --profile)")
    p.add_argument("--profile", metavar="PROFILE.json",
                   help="draw each stage's measured seconds against this profile's estimate instead")
    p.set_defaults(handler=cmd_plot)
    return parser


def ignore_interrupts() -> None:
    """Ctrl-C from now on does nothing. For a process whose work is done: a SIGINT during Python's
    teardown (thread joins, atexit handlers such as the process group's) would print a
    KeyboardInterrupt traceback or end the process by SIGINT (exit -2) instead of with its code.
    SIGTERM and SIGQUIT (Ctrl-\\) still end a teardown that hangs."""
    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread sets handlers (and only its program's main() ends the process)
    while True:
        try:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            return
        except KeyboardInterrupt:  # one that landed just before: the work is still done
            continue


def main(argv: list[str] | None = None) -> int:
    """The `growlang` command; `argv` None means this process's own command line (the console
    script, `python -m growlang`), and then Ctrl-C is ignored once the command is over, so the
    exit code is the command's (130 for a Ctrl-C during it) and no traceback follows."""
    try:
        return _main(argv)
    finally:
        if argv is None:  # the program, not a test or script calling main([...]) in its process
            ignore_interrupts()


def _main(argv: list[str] | None) -> int:
    try:
        args = build_parser().parse_args(argv)  # exits 2 on usage errors
        return args.handler(args)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # an internal error: a message, never a traceback for the user
        import traceback

        if os.environ.get("GROWLANG_DEBUG"):
            traceback.print_exc()
        print(f"growlang: internal error: {type(exc).__name__}: {exc} (set GROWLANG_DEBUG=1 for the traceback)",
              file=sys.stderr)
        return EXIT_USAGE
