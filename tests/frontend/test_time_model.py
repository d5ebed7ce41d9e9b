"""The cost model recovers known coefficients from synthetic measurements; bad profiles are named."""

import pytest

from growlang.time_model import FEATURES, ProfileError, StepShape, check_profile, features, fit, predict


def _shapes():
    for depth in (1, 2, 4):
        for width in (64, 128, 256):
            for batch in (8, 32):
                T, f, V = 64, 4 * width, 4096
                flops = 6.0 * batch * depth * T * (4 * width * width + 2 * width * f)
                yield StepShape(depth, width, width // 64, f, T, 10, V, batch, flops, depth * 12 * width * width)


def test_fit_recovers_synthetic_coefficients():
    truth = {"step": 2e-3, "gflop": 0.02, "narrow": 0.01, "mparam": 1e-3, "melem": 5e-4}
    rows = [features(s) for s in _shapes()]
    coef = fit(rows, [predict(truth, r) for r in rows])
    for k in FEATURES:
        assert coef[k] == pytest.approx(truth[k], rel=1e-6)


def test_fit_keeps_coefficients_non_negative_on_noisy_data():
    rows = [features(s) for s in _shapes()]
    seconds = [0.01 + 0.03 * r["gflop"] * (1.1 if i % 2 else 0.9) for i, r in enumerate(rows)]
    coef = fit(rows, seconds)
    assert all(v >= 0 for v in coef.values())
    errors = [abs(predict(coef, r) - s) / s for r, s in zip(rows, seconds)]
    assert max(errors) < 0.25


@pytest.mark.parametrize("bad, field", [([], "JSON object"), ({"schema": 2}, "schema"),
                                        ({"schema": 1, "device": "cpu", "torch": "2.13", "precision": "fp32",
                                          "coefficients": {"step": 1}}, "coefficients"),
                                        ({"schema": 1, "device": "cpu", "torch": "2.13", "precision": "fp32",
                                          "coefficients": dict.fromkeys(FEATURES, -1.0)}, "coefficients.step")])
def test_malformed_profile_names_the_field(bad, field):
    with pytest.raises(ProfileError, match=field):
        check_profile(bad, "p.json")


def test_stage_seconds_on_the_quickstart_schedule():
    from pathlib import Path

    from growlang.compiler import compile_file
    from growlang.time_model import evals_in_stage, stage_seconds

    plan = compile_file(Path(__file__).resolve().parents[2] / "schedules" / "base.grow").plan
    # eval_every=50, stages of 400, 200, 200 steps: the end eval coincides with a periodic one
    assert [evals_in_stage(plan, s) for s in plan.stages] == [8, 4, 4]
    only_steps = dict.fromkeys(FEATURES, 0.0) | {"step": 0.01}
    assert [stage_seconds(plan, s, only_steps) for s in plan.stages] == pytest.approx(
        [400 * 0.01 + 8 * 8 * 0.01 / 3, 200 * 0.01 + 4 * 8 * 0.01 / 3, 200 * 0.01 + 4 * 8 * 0.01 / 3])


def test_check_profile_in_the_cli(tmp_path, capsys):
    import json
    from pathlib import Path

    from growlang.cli import main

    base = str(Path(__file__).resolve().parents[2] / "schedules" / "base.grow")
    good = tmp_path / "p.json"
    good.write_text(json.dumps({"schema": 1, "device": "cpu", "torch": "2.13.0", "precision": "bf16",
                                "coefficients": dict.fromkeys(FEATURES, 0.0) | {"step": 0.01}}))
    assert main(["check", base, "--profile", str(good), "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)["files"][0]["seconds"]
    assert out["stages"]["1"] == pytest.approx(4 + 64 * 0.01 / 3) and "precision bf16" in out["warnings"][0]
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["check", base, "--profile", str(bad)]) == 2
    assert "not JSON" in capsys.readouterr().err


def _profile(**coefficients):
    return {"schema": 1, "device": "cpu", "torch": "2.13.0", "precision": "fp32",
            "coefficients": {k: coefficients.get(k, 0.0) for k in FEATURES}}


def test_baseline_seconds_counts_the_from_scratch_steps_and_evals():
    from growlang.compiler import compile_text
    from growlang.time_model import plan_seconds

    plan = compile_text(open("schedules/base.grow").read(), "schedules/base.grow").plan
    est = plan_seconds(plan, _profile(step=1.0))
    # base.grow's path reads 3.28M tokens; from scratch the leaf (batch 32, len 128) takes 800 steps,
    # with an eval every 50 (16, the last at step 800) of eval_batches=8 forward passes (a third each)
    (path,) = est["paths"]
    assert path["baseline_seconds"] == pytest.approx(800 + 16 * 8 / 3)
    assert path["seconds"] == pytest.approx(sum(est["stages"].values()))
    assert path["time_saving"] == pytest.approx(1 - path["seconds"] / path["baseline_seconds"])


def test_profile_from_another_torch_or_cpu_warns():
    from growlang.time_model import mismatch_warnings

    p = {**_profile(), "device": "AMD EPYC", "device_type": "cpu", "torch": "2.11.0+cu128"}
    assert mismatch_warnings(p, {"torch": "2.11.0", "cpu": "AMD EPYC"}) == []
    found = mismatch_warnings(p, {"torch": "2.13.0", "cpu": "Intel Xeon"})
    assert len(found) == 2 and "torch 2.11.0" in found[0] and "Intel Xeon" in found[1]
