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
