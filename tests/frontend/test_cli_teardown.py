"""A Ctrl-C after the command's work, while Python shuts down, changes nothing (issue 12 item 23):
the exit code is the command's and no KeyboardInterrupt traceback follows (it used to be one, or
death by SIGINT: exit -2). The SIGINT comes from the process itself at three moments of the
shutdown: just after main() returned, while the interpreter joins a thread, in an atexit handler."""

import os
import subprocess
import sys

import pytest

from conftest import ROOT

# Runs first at start-up (a `sitecustomize` first on PYTHONPATH), so its hooks run last at shutdown.
HOOKS = """
import atexit, os, signal, threading, time

# Python installs its Ctrl-C handler at start-up only where SIGINT is not inherited as ignored (a
# background job of a non-interactive shell): install it, or the test could not fail
signal.signal(signal.SIGINT, signal.default_int_handler)

def interrupt():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.2)  # a KeyboardInterrupt would be raised in here

if os.environ["TEARDOWN_HOOK"] == "atexit":
    atexit.register(interrupt)
elif os.environ["TEARDOWN_HOOK"] == "thread join":
    def joined():
        while threading.main_thread().is_alive():  # until the interpreter's shutdown joins this thread
            time.sleep(0.01)
        interrupt()
    threading.Thread(target=joined).start()
"""
# What the console script does (`sys.exit(main())`), with the SIGINT between the two.
AFTER_MAIN = ("import os, signal, sys; from growlang.cli import main; code = main(); "
              "os.kill(os.getpid(), signal.SIGINT); sys.exit(code)")
COMMANDS = {"ok": (["check", "schedules/base.grow"], 0),
            "problems": (["check", "tests/frontend/golden/invalid/cycle.grow"], 1),
            "version": (["--version"], 0)}  # argparse ends main() with SystemExit


@pytest.mark.parametrize("command", sorted(COMMANDS))
@pytest.mark.parametrize("hook", ["after main", "thread join", "atexit"])
def test_ctrl_c_during_teardown_keeps_the_exit_code(tmp_path, hook, command):
    (tmp_path / "sitecustomize.py").write_text(HOOKS)
    argv, code = COMMANDS[command]
    start = ["-c", AFTER_MAIN] if hook == "after main" else ["-m", "growlang"]
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "TEARDOWN_HOOK": hook}
    done = subprocess.run([sys.executable, *start, *argv], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr


def test_main_called_in_a_process_leaves_ctrl_c_alone():
    """A test or script calling main([...]) keeps its Ctrl-C: only the program ignores it."""
    code = ("import signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
            "from growlang.cli import main; assert main(['check', 'schedules/base.grow']) == 0; "
            "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler; print('kept')")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip().endswith("kept"), done.stderr
