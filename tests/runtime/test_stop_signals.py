"""Ctrl-C and SIGTERM while training (issue 12 item 5): the step finishes, a checkpoint of it is
written, the run exits 130 with the resume command, and the resume reaches the same weights as
an uninterrupted run. Under `--nproc` the launcher forwards the signal to every rank (item 3)."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time

import pytest

from growlang.runtime import checkpoint as ck
from growlang.runtime.run import run_plan
from growlang.runtime.signals import silence_hung_up_terminal
from growlang.runtime.trainer import Trainer

try:
    from test_trainer import same_files
    from test_trainer_plans import grow_all_plan, on_corpus
except ImportError:  # tests collected as a package
    from tests.runtime.test_trainer import same_files
    from tests.runtime.test_trainer_plans import grow_all_plan, on_corpus


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
def test_signal_finishes_the_step_checkpoints_and_resumes_bitwise(signum, tmp_path, corpus, monkeypatch, capsys,
                                                                 terminal_signals):
    plan = on_corpus(grow_all_plan(eval_every=2), corpus)  # checkpoint_every=0: only stage ends
    ref = tmp_path / "ref"
    assert run_plan(plan, ref, resume=False, device="cpu") == 0
    real, calls = Trainer.step, []

    def step(self):
        calls.append(1)
        if len(calls) == 6:  # the signal lands inside step 6 (the second of stage big)
            os.kill(os.getpid(), signum)
        return real(self)

    monkeypatch.setattr(Trainer, "step", step)
    out = tmp_path / "out"
    assert run_plan(plan, out, resume=False, device="cpu") == 130
    err = capsys.readouterr().err
    name = signal.Signals(signum).name
    assert f"{name}: finishing this step" in err and f"interrupted ({name}); the newest checkpoint is big-6" in err
    assert ck.latest(out / "checkpoints").path.name == "big-6"  # the step it was in, not the stage start
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    monkeypatch.setattr(Trainer, "step", real)
    assert run_plan(plan, out, resume=True, device="cpu") == 0
    same_files(ref / "checkpoints" / "big-8", out / "checkpoints" / "big-8")


@pytest.mark.slow
def test_launcher_forwards_sigterm_to_every_rank(tmp_path, corpus):
    """`growlang run --nproc 2` and SIGTERM on the launcher: both ranks stop after the same step,
    one message, exit 130, no rank left running; --resume finishes."""
    grow = tmp_path / "t.grow"
    grow.write_text(f'model bert {{ vocab=300 head_dim=16 max_len=32 dropout=0 }}\n'
                    f'data {{ corpus="{corpus}" holdout=0.1 }}\n'
                    'train { batch=4 lr=1e-3 warmup=2 log_every=1 }\n'
                    'stage 1: depth=1 width=32 len=32 steps=400\n')
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "growlang", "run", str(grow), "--out", str(out), "--device", "cpu", "--nproc", "2"]
    p = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = []
    for line in p.stderr:  # wait until training runs
        lines.append(line)
        if "step " in line:
            break
    p.send_signal(signal.SIGTERM)
    _, rest = p.communicate(timeout=120)
    err = "".join(lines) + rest
    assert p.returncode == 130, err
    assert err.count("interrupted (SIGTERM)") == 1, err
    assert ck.latest(out / "checkpoints") is not None
    time.sleep(0.5)
    ps = subprocess.run(["pgrep", "-f", str(grow)], capture_output=True, text=True)
    assert ps.stdout.strip() == "", "a rank is still running"
    assert subprocess.run(cmd + ["--resume"], capture_output=True, timeout=600).returncode == 0


class FakeTerminal(io.StringIO):
    def isatty(self):
        return True


def test_sighup_sends_terminal_output_to_devnull_and_keeps_files(monkeypatch):
    """After SIGHUP a write to the terminal that went away fails (EIO) and would turn the clean stop
    into exit 1: terminal streams go to /dev/null, redirected ones (nohup, a log file) are kept."""
    log = io.StringIO()
    monkeypatch.setattr(sys, "stdout", log)
    monkeypatch.setattr(sys, "stderr", FakeTerminal())
    silence_hung_up_terminal(signal.SIGTERM)
    assert isinstance(sys.stderr, FakeTerminal)  # only SIGHUP means the terminal is gone
    silence_hung_up_terminal(signal.SIGHUP)
    assert sys.stdout is log and sys.stderr.name == os.devnull
    print("gone", file=sys.stderr)  # does not raise
    sys.stderr.close()
