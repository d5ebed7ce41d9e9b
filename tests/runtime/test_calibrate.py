"""`growlang calibrate` times the runtime's own training steps and writes a profile `check` reads."""

import json
import subprocess
import sys

import pytest

from growlang.runtime import calibrate as cal
from growlang.time_model import FEATURES, check_profile


def test_calibrate_writes_a_profile_check_can_use(tmp_path, monkeypatch):
    monkeypatch.setattr(cal, "GRID", [(1, 64, 128, 32, 1, 4), (1, 64, 128, 32, 2, 4), (2, 64, 256, 32, 1, 8)])
    monkeypatch.setattr(cal, "TIMED_STEPS", 2)
    profile = cal.calibrate("cpu", "fp32", progress=lambda m: None)
    check_profile(profile, "profile")
    assert set(profile["coefficients"]) == set(FEATURES) and len(profile["measurements"]) == 3
    assert all(m["seconds"] > 0 for m in profile["measurements"])
    assert profile["measurements"][1]["features"]["gflop"] < profile["measurements"][2]["features"]["gflop"]
    out = tmp_path / "p.json"
    cal.write_profile(profile, out)
    done = subprocess.run([sys.executable, "-m", "growlang", "check", "schedules/base.grow", "--profile", str(out),
                           "--format", "json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    seconds = json.loads(done.stdout)["files"][0]["seconds"]
    assert set(seconds["stages"]) == {"1", "2", "3"} and seconds["paths"][0]["baseline_seconds"] > 0


@pytest.mark.parametrize("argv, message", [(["--precision", "fp16", "--device", "cpu"], "needs a CUDA GPU"),
                                           (["--out", "."], "is a folder")])
def test_calibrate_refuses_bad_requests_before_timing(argv, message):
    done = subprocess.run([sys.executable, "-m", "growlang", "calibrate", *argv], capture_output=True, text=True)
    assert done.returncode == 1 and message in done.stderr and "Traceback" not in done.stderr


SCHEDULE = ("model bert { vocab=512 head_dim=32 max_len=64 }\ntrain { batch=4 eval_every=3 log_every=2 }\n"
            "stage a: depth=1 width=32 ffn=64 len=32 steps=6 ; grow depth by stack\nstage b: depth=2 steps=4\n")


def fake_run(folder, step_seconds=(0.01, 0.03), eval_seconds=0.005, stop_at=None, text=SCHEDULE):
    """A run folder as `growlang run` writes it (plan.json, metrics.jsonl train records where the
    trainer writes them), with made-up seconds per step; `stop_at` global steps, then it stops."""
    from growlang.compiler import compile_text

    plan = compile_text(text, "fake.grow").plan
    folder.mkdir(parents=True)
    (folder / "plan.json").write_text(json.dumps(plan.to_dict()))
    rows, g, clock, t = [], 0, 0.0, plan.train
    for stage, per_step in zip(plan.stages, step_seconds):
        for k in range(1, stage.steps + 1):
            if stop_at is not None and g >= stop_at:
                break
            g += 1
            end, evaluated = k == stage.steps, k == stage.steps or g % t.eval_every == 0
            clock += per_step + (eval_seconds if evaluated else 0.0)
            if end or evaluated or g % t.log_every == 0:
                rows.append({"kind": "train", "step": g, "stage": stage.name, "stage_step": k, "loss": 5.0,
                             "time": clock, **({"eval_loss": 5.0} if evaluated else {})})
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return plan, folder


def test_stage_times_read_what_the_trainer_records(tmp_path):
    from growlang.run_times import stage_times
    from growlang.time_model import stage_seconds

    plan, run = fake_run(tmp_path / "r")
    _, times = stage_times(str(run))
    assert [(t.stage, t.steps, t.evals, t.finished) for t in times] == [("a", 6, 2, True), ("b", 4, 2, True)]
    assert [t.seconds for t in times] == pytest.approx([6 * 0.01 + 2 * 0.005, 4 * 0.03 + 2 * 0.005])
    coef = {"step": 1e-3, "gflop": 0.02, "narrow": 0.01, "mparam": 1e-3, "melem": 1e-3}
    for t, s in zip(times, plan.stages):  # a finished stage's estimate is check's, evals included
        assert t.estimate(coef) == pytest.approx(stage_seconds(plan, s, coef))
    _, partial = stage_times(str(fake_run(tmp_path / "p", stop_at=8)[1]))
    assert [(t.stage, t.steps, t.finished) for t in partial] == [("a", 6, True), ("b", 2, False)]


def _grid_profile(path, truth):
    """A profile whose grid measurements follow `truth` exactly (from synthetic shapes)."""
    from growlang.time_model import predict

    rows = []
    for i in range(8):
        feats = {"step": 1.0, "gflop": 0.1 * (i + 1), "narrow": 0.05 * (i % 3 + 1), "mparam": 0.2 * (i % 4 + 1),
                 "melem": 0.3 * (i % 2 + 1) + 0.01 * i}
        rows.append({"source": "grid", "features": feats, "seconds": predict(truth, feats)})
    profile = {"schema": 1, "device": "cpu", "device_type": "cpu", "torch": "2.13.0", "precision": "fp32",
               "threads": 1, "coefficients": dict.fromkeys(FEATURES, 0.0), "measurements": rows}
    path.write_text(json.dumps(profile))
    return path


def _growlang(*args):
    return subprocess.run([sys.executable, "-m", "growlang", *args], capture_output=True, text=True)


def test_calibrate_from_runs_refits_with_the_grid(tmp_path):
    truth = {"step": 1e-3, "gflop": 0.02, "narrow": 0.01, "mparam": 1e-3, "melem": 1e-3}
    base = _grid_profile(tmp_path / "grid.json", truth)
    _, run = fake_run(tmp_path / "run")
    out = tmp_path / "new.json"
    done = _growlang("calibrate", "--from", str(run), "--profile", str(base), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert "2 stage(s) of 1 run(s) and 8 grid measurement(s)" in done.stdout and "before s" in done.stdout
    profile = check_profile(json.loads(out.read_text()), "new")
    runs = [m for m in profile["measurements"] if m["source"] == "run"]
    assert [m["stage"] for m in runs] == ["a", "b"] and profile["runs"] == [str(run)]
    again = _growlang("calibrate", "--from", str(run), "--out", str(out))  # refits --out in place
    assert again.returncode == 0, again.stderr
    assert len(json.loads(out.read_text())["measurements"]) == 10  # the run's rows replaced, not added


@pytest.mark.parametrize("case, code", [("not a run", "E503"), ("runs alone", "E503"), ("bf16 run", "W503")])
def test_calibrate_from_explains_what_it_cannot_use(tmp_path, case, code):
    base = _grid_profile(tmp_path / "grid.json", dict.fromkeys(FEATURES, 1e-3))
    if case == "not a run":
        (tmp_path / "empty").mkdir()
        done = _growlang("calibrate", "--from", str(tmp_path / "empty"), "--profile", str(base),
                         "--out", str(tmp_path / "o.json"))
    elif case == "runs alone":  # two stage shapes cannot fix five coefficients
        done = _growlang("calibrate", "--from", str(fake_run(tmp_path / "r")[1]), "--out", str(tmp_path / "o.json"))
    else:
        _, run = fake_run(tmp_path / "r", text=SCHEDULE.replace("eval_every=3", "eval_every=3 precision=bf16"))
        done = _growlang("calibrate", "--from", str(run), "--profile", str(base), "--out", str(tmp_path / "o.json"))
    assert f"[{code}]" in done.stderr and "help:" in done.stderr and "Traceback" not in done.stderr
    assert done.returncode == (0 if code.startswith("W") else 1)
