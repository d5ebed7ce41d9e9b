"""How a run stops: disk full during a checkpoint write, Ctrl-C (also mid-write), out of GPU memory,
and a resume over the debris of a killed run. The non-finite loss case is in test_run_e2e.py."""

from __future__ import annotations

import errno
import os
import signal

import pytest
import torch

from growlang.runtime import checkpoint as ck
from growlang.runtime import failures
from growlang.runtime.run import run_plan
from growlang.runtime.trainer import Trainer

try:
    from test_checkpoint import write
    from test_trainer_plans import grow_all_plan, on_corpus
except ImportError:  # tests collected as a package
    from tests.runtime.test_checkpoint import write
    from tests.runtime.test_trainer_plans import grow_all_plan, on_corpus


def temporaries(root):
    return [p.name for p in root.iterdir() if p.name.startswith(".")] if root.is_dir() else []


# ------------------------------------------------------------------------------- disk full
def full_on_call(monkeypatch, n: int):
    """Make the n-th safetensors write of the checkpoint module fail with ENOSPC."""
    real, calls = ck.save_file, []

    def save_file(tensors, path, *a, **kw):
        calls.append(path)
        if len(calls) == n:
            with open(path, "wb") as f:
                f.write(b"partial")  # what a full disk leaves behind
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(tensors, path, *a, **kw)

    monkeypatch.setattr(ck, "save_file", save_file)


def test_disk_full_in_save_removes_the_temporary(tmp_path, monkeypatch):
    write(tmp_path, "a-2", 0, 2)
    full_on_call(monkeypatch, 2)  # the optimizer file of the next checkpoint
    with pytest.raises(failures.CheckpointWriteError) as e:
        write(tmp_path, "a-4", 0, 4)
    assert f"checkpoint a-4 in {tmp_path}" in str(e.value) and "the disk is full" in str(e.value)
    assert " free, a checkpoint needs about " in str(e.value)
    assert [p.name for p in tmp_path.iterdir()] == ["a-2"]
    assert ck.latest(tmp_path).path.name == "a-2"


def test_disk_full_during_a_run_keeps_the_previous_checkpoint(tmp_path, corpus, monkeypatch, capsys):
    plan = on_corpus(grow_all_plan(checkpoint_every=3), corpus)
    out = tmp_path / "out"
    full_on_call(monkeypatch, 3)  # small-3 writes its two files, small-4's model file fails
    assert run_plan(plan, out, resume=False, device="cpu") == 1
    err = capsys.readouterr().err
    assert err.count("error: ") == 1 and "Traceback" not in err
    assert f"cannot write checkpoint small-4 in {out / 'checkpoints'}: the disk is full (" in err
    assert "free" in err and "previous checkpoints are intact" in err and "--resume" in err
    assert temporaries(out / "checkpoints") == []
    last = ck.latest(out / "checkpoints")
    assert last.path.name == "small-3" and last.state["kind"] == "periodic"


# ------------------------------------------------------------------------------- Ctrl-C
def test_ctrl_c_in_training_prints_the_resume_command(tmp_path, corpus, monkeypatch, capsys):
    plan = on_corpus(grow_all_plan(checkpoint_every=3), corpus)
    out = tmp_path / "out"
    real, calls = Trainer.step, []

    def step(self):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return real(self)

    monkeypatch.setattr(Trainer, "step", step)
    assert run_plan(plan, out, resume=False, device="cpu") == 130
    err = capsys.readouterr().err
    assert "interrupted (Ctrl-C); the newest checkpoint is small-4; continue with --resume:" in err
    assert f"growlang run /tmp/tiny.grow --out {failures._shown(out)} --resume" in err
    assert "Traceback" not in err


def test_ctrl_c_during_a_checkpoint_write_finishes_it(tmp_path, corpus, monkeypatch, capsys, terminal_signals):
    plan = on_corpus(grow_all_plan(checkpoint_every=3), corpus)
    out = tmp_path / "out"

    def pause(moment, detail=""):
        if moment == "checkpoint-write" and detail == "small-3":
            os.kill(os.getpid(), signal.SIGINT)  # half-way: the model file is written, the rest is not

    monkeypatch.setattr(ck, "pause", pause)
    assert run_plan(plan, out, resume=False, device="cpu") == 130
    err = capsys.readouterr().err
    assert "SIGINT: finishing this step" in err  # training's StopRequest: the write goes on, then the run stops
    assert "the newest checkpoint is small-3" in err and "--resume" in err and "Traceback" not in err
    assert ck.latest(out / "checkpoints").path.name == "small-3"  # complete, checksums verified
    assert temporaries(out / "checkpoints") == []


def test_second_ctrl_c_abandons_the_write(tmp_path, monkeypatch, terminal_signals):
    write(tmp_path, "a-2", 0, 2)

    def pause(moment, detail=""):
        if moment == "checkpoint-write":
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(ck, "pause", pause)
    with pytest.raises(KeyboardInterrupt):
        write(tmp_path, "a-4", 0, 4)
    assert [p.name for p in tmp_path.iterdir()] == ["a-2"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


# ------------------------------------------------------------------------------- out of memory
def test_out_of_memory_names_the_stage_and_what_to_lower(tmp_path, corpus, monkeypatch, capsys):
    plan = on_corpus(grow_all_plan(micro_batch=4), corpus)
    out = tmp_path / "out"

    def step(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Trainer, "step", step)
    assert run_plan(plan, out, resume=False, device="cpu") == 1
    err = capsys.readouterr().err
    small = plan.stages[0]
    from growlang.runtime.c_kernels import c_kernels

    # the run's head-kernel line (every CPU run), the stage's announcement, then the error
    assert err.startswith(f"{c_kernels().describe()}\n== stage small:")
    assert "\nerror: out of GPU memory in stage small (batch=4, micro_batch=4" in err
    assert f"the plan estimates {failures.human_bytes(small.cost.memory_bytes)}" in err
    assert "micro_batch=2" in err and "--resume" in err and "Traceback" not in err


# ------------------------------------------------------------------------------- debris of a kill
def test_resume_over_a_killed_first_checkpoint_starts_over_and_cleans(tmp_path, corpus, capsys):
    plan = on_corpus(grow_all_plan(checkpoint_every=3), corpus)
    out = tmp_path / "out"
    assert run_plan(plan, out, resume=False, device="cpu", stop_after_steps=2) == 130
    junk = out / "checkpoints" / ".tmp-small-3-99999"  # a SIGKILL during the first write
    junk.mkdir(parents=True)
    (junk / ck.MODEL).write_bytes(b"half a file")
    assert run_plan(plan, out, resume=True, device="cpu", stop_after_steps=3) == 130
    err = capsys.readouterr().err
    assert "starting from the beginning" in err and "warning" not in err
    assert temporaries(out / "checkpoints") == []
    assert ck.latest(out / "checkpoints").path.name == "small-3"


# ------------------------------------------------------------------------------- lost metrics
@pytest.mark.parametrize("damage", ["deleted", "emptied"])
def test_resume_reports_a_deleted_or_emptied_metrics_log(tmp_path, corpus, capsys, damage):
    plan = on_corpus(grow_all_plan(checkpoint_every=2), corpus)
    out = tmp_path / "out"
    assert run_plan(plan, out, resume=False, device="cpu", stop_after_steps=3) == 130
    log = out / "metrics.jsonl"
    log.unlink() if damage == "deleted" else log.write_bytes(b"")
    capsys.readouterr()
    assert run_plan(plan, out, resume=True, device="cpu", stop_after_steps=4) == 130
    err = capsys.readouterr().err
    assert "warning: " in err and "metrics.jsonl" in err and "gone from the log" in err
    assert b"\0" not in log.read_bytes()  # the log was not padded back to its recorded length


def test_resume_over_an_intact_metrics_log_says_nothing_about_it(tmp_path, corpus, capsys):
    plan = on_corpus(grow_all_plan(checkpoint_every=2), corpus)
    out = tmp_path / "out"
    assert run_plan(plan, out, resume=False, device="cpu", stop_after_steps=3) == 130
    capsys.readouterr()
    assert run_plan(plan, out, resume=True, device="cpu", stop_after_steps=4) == 130
    assert "metrics.jsonl" not in capsys.readouterr().err


# ------------------------------------------------------------------------------- one run per --out
def test_a_second_run_on_a_locked_out_is_refused_with_the_pid(tmp_path, corpus, capsys):
    from growlang.runtime.out_lock import OutLock

    plan = on_corpus(grow_all_plan(checkpoint_every=2), corpus)
    out = tmp_path / "out"
    assert run_plan(plan, out, resume=False, device="cpu", stop_after_steps=2) == 130
    before = sorted(p.name for p in (out / "checkpoints").iterdir())
    held = OutLock.acquire(out)  # stands in for a first run still training in this folder
    try:
        capsys.readouterr()
        assert run_plan(plan, out, resume=True, device="cpu") == 1
        err = capsys.readouterr().err
        assert f"is in use by another growlang run (PID {os.getpid()})" in err and str(out) in err
        assert sorted(p.name for p in (out / "checkpoints").iterdir()) == before  # untouched
    finally:
        held.release()
    assert run_plan(plan, out, resume=True, device="cpu", stop_after_steps=3) == 130  # free again


def test_a_refused_fresh_run_leaves_no_lock_file_behind(tmp_path, corpus):
    plan = on_corpus(grow_all_plan(), corpus)
    out = tmp_path / "out"
    assert run_plan(plan, out, resume=False, device="cuda" if not torch.cuda.is_available() else "tpu") == 1
    assert not out.exists()
