"""The `--nproc N` launcher (`distributed.launch`) and signals: after a forwarded signal a rank that
fails still stops the others, SIGHUP stops the ranks like SIGTERM, and a rank dies with a launcher
that was SIGKILLed (PR_SET_PDEATHSIG). Fake ranks stand in for processes, except in the last test."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from growlang.runtime import distributed

HUNG = 99  # a fake rank that nobody stopped gives up with this code (the old launcher waited forever)


class FakeRank:
    """A rank as `launch` sees it (Popen's poll/send_signal/terminate/kill). `answer(rank)` returns
    its exit code, or None to keep running; the first poll of rank 0 sends `signum` to this
    process, as a user would to the launcher."""

    def __init__(self, answer, signum, argv, env, **popen_options):
        self.rank, self.answer, self.signum = int(env["RANK"]), answer, signum
        self.returncode, self.received, self.started = None, [], time.monotonic()

    def poll(self):
        if self.returncode is None:
            if self.rank == 0 and self.signum is not None:
                signum, self.signum = self.signum, None
                os.kill(os.getpid(), signum)  # launch's handler forwards it before kill returns
            self.returncode = self.answer(self)
            if self.returncode is None and time.monotonic() - self.started > 3:
                self.returncode = HUNG
        return self.returncode

    def send_signal(self, signum):
        self.received.append(signal.Signals(signum).name)

    def terminate(self):
        self.received.append("terminate")
        self.returncode = -signal.SIGTERM

    def kill(self):
        self.received.append("kill")
        self.returncode = -signal.SIGKILL


def fake_launch(monkeypatch, answer, signum, nproc=2):
    ranks = []

    def popen(*args, **kw):
        ranks.append(FakeRank(answer, signum, *args, **kw))
        return ranks[-1]

    monkeypatch.setattr(distributed.subprocess, "Popen", popen)
    t = time.monotonic()
    code = distributed.launch(nproc, ["run", "x.grow"])
    return code, ranks, time.monotonic() - t


def crash_rank_1(code):
    """Rank 1 answers the signal by failing with `code`; rank 0 waits for it (in a collective)."""
    return lambda r: code if r.rank == 1 and r.received else None


@pytest.mark.parametrize("crash, expected", [(1, 1), (-signal.SIGTERM, 130), (-signal.SIGKILL, 128 + signal.SIGKILL)])
def test_a_rank_failing_after_a_forwarded_signal_stops_the_others(monkeypatch, capsys, crash, expected):
    """Death by the very signal forwarded (a rank that had not installed its handler yet) also
    stops the others, who would wait for it in their last all-reduce; the run counts as interrupted."""
    code, ranks, seconds = fake_launch(monkeypatch, crash_rank_1(crash), signal.SIGTERM)
    assert code == expected and seconds < 2
    assert ranks[0].received == ["SIGTERM", "terminate"] and ranks[1].received == ["SIGTERM"]
    words = "exited with code 1" if crash == 1 else f"was killed by {signal.Signals(-crash).name}"
    assert f"growlang: rank 1 {words}; stopping the other ranks" in capsys.readouterr().err


def test_without_a_signal_the_first_failure_stops_the_others(monkeypatch, capsys):
    code, ranks, seconds = fake_launch(monkeypatch, lambda r: 1 if r.rank == 1 else None, None)
    assert code == 1 and seconds < 2 and ranks[0].received == ["terminate"]
    assert "growlang: rank 1 exited with code 1; stopping the other ranks" in capsys.readouterr().err


@pytest.mark.parametrize("answers, expected", [((130, 130), 130), ((0, 130), 130), ((0, 0), 0)])
def test_ranks_answering_a_forwarded_signal_are_not_failures(monkeypatch, capsys, answers, expected):
    """0 is a rank whose signal came in the last step of the run: it finished, nothing to resume."""
    code, ranks, _ = fake_launch(monkeypatch, lambda r: answers[r.rank] if r.received else None,
                                 signal.SIGINT)
    assert code == expected and all(r.received == ["SIGINT"] for r in ranks)
    assert "stopping the other ranks" not in capsys.readouterr().err


def test_sighup_stops_the_ranks_like_sigterm(monkeypatch):
    """A closed terminal or a dropped ssh session: the ranks (in their own session) get SIGTERM,
    which they answer with a checkpoint; the launcher's own SIGHUP handler is back afterwards."""
    unforwarded = []

    def mine(signum, frame):
        unforwarded.append(signum)

    old = signal.signal(signal.SIGHUP, mine)
    try:
        code, ranks, _ = fake_launch(monkeypatch, lambda r: 130 if r.received else None, signal.SIGHUP)
        assert signal.getsignal(signal.SIGHUP) is mine
    finally:
        signal.signal(signal.SIGHUP, old)
    assert unforwarded == [] and code == 130
    assert all(r.received == ["SIGTERM"] for r in ranks)


# A real launcher and a real rank: the launcher is `launch` itself, its rank a stand-in growlang
# package (first on the rank's PYTHONPATH) that reports the SIGTERM it gets.
LAUNCHER = """
import os, sys
from growlang.runtime.distributed import launch
os.environ["PYTHONPATH"] = sys.argv[1]  # the ranks run the stand-in, not growlang
sys.exit(launch(1, [sys.argv[2]]))
"""
RANK = """
import os, signal, sys, time
from pathlib import Path

report = Path(sys.argv[1])
def term(signum, frame):
    Path(str(report) + ".term").write_text(str(os.getppid()))
    sys.exit(0)
signal.signal(signal.SIGTERM, term)
report.write_text(str(os.getpid()))
time.sleep(20)  # never reached in a passing test
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_a_rank_gets_sigterm_when_the_launcher_is_killed(tmp_path):
    (tmp_path / "standin" / "growlang").mkdir(parents=True)
    (tmp_path / "standin" / "growlang" / "__main__.py").write_text(RANK)
    (tmp_path / "launcher.py").write_text(LAUNCHER)
    report = tmp_path / "rank"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    launcher = subprocess.Popen([sys.executable, str(tmp_path / "launcher.py"), str(tmp_path / "standin"),
                                 str(report)], cwd=tmp_path, env=env)  # cwd: not the checkout's growlang
    rank = None
    try:
        deadline = time.monotonic() + 60  # the launcher imports torch
        while not report.exists() or not report.read_text():
            assert launcher.poll() is None and time.monotonic() < deadline, "the rank never started"
            time.sleep(0.05)
        rank = int(report.read_text())
        launcher.kill()
        launcher.wait()
        term = Path(str(report) + ".term")
        deadline = time.monotonic() + 5
        while not term.exists() or not term.read_text():
            assert time.monotonic() < deadline, "the rank did not get SIGTERM when its launcher died"
            time.sleep(0.05)
        assert int(term.read_text()) != launcher.pid  # it was already an orphan when it got it
    finally:
        launcher.kill()
        if rank is not None:
            try:
                os.kill(rank, signal.SIGKILL)
            except ProcessLookupError:
                pass
