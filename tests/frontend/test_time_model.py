"""The cost model recovers known coefficients from synthetic measurements; bad profiles are named."""

import pytest

from conftest import GOLDEN, REGEN, ROOT
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
    with pytest.raises(ProfileError, match=field) as exc:
        check_profile(bad, "p.json")
    assert exc.value.diagnostic.code == ("E501" if field == "JSON object" else "E502")


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
    assert out["stages"]["1"] == pytest.approx(4 + 64 * 0.01 / 3)
    assert out["warnings"][0]["code"] == "W503" and "precision bf16" in out["warnings"][0]["message"]
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    assert main(["check", base, "--profile", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "error[E501]" in err and "not JSON" in err and "help: make one with `growlang calibrate" in err


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
    assert [w.code for w in found] == ["W501", "W502"]
    assert "torch 2.11.0" in found[0].message and "Intel Xeon" in found[1].message


def test_a_decoder_schedule_gets_seconds_per_stage_and_path():
    from growlang.compiler import compile_file
    from growlang.time_model import plan_seconds

    plan = compile_file(ROOT / "schedules" / "llama-1b.grow").plan
    est = plan_seconds(plan, {**_profile(step=1e-3, gflop=1e-2, narrow=1e-3, mparam=1e-3, melem=1e-4),
                              "precision": plan.train.precision})
    assert set(est["stages"]) == {s.name for s in plan.stages} and all(v > 0 for v in est["stages"].values())
    (path,) = est["paths"]
    assert 0 < path["seconds"] < path["baseline_seconds"]
    assert all(w.code in ("W501", "W502") for w in est["warnings"])  # this machine's torch/CPU may differ


def test_check_profile_on_llama_in_the_cli(tmp_path, cli):
    import json

    good = tmp_path / "p.json"
    good.write_text(json.dumps({**_profile(step=1e-3, gflop=1e-2), "precision": "bf16"}))
    done = cli("check", "schedules/llama-1b.grow", "--profile", str(good))
    assert done.returncode == 0, done.stderr
    assert "estimated training-loop time" in done.stdout and "time saving" in done.stdout


# Goldens: each profile under golden/profile/ with what check prints about it (errors, or the
# warnings against a fixed machine and a bf16 schedule); run folders built here, same rendering.
PROFILES = sorted((GOLDEN / "profile").glob("*.json"))
HERE = {"torch": "2.13.0", "cpu": "Intel Xeon Test"}


def _rendered(path) -> str:
    from growlang.diagnostics import summary_line
    from growlang.time_model import ProfileError, mismatch_warnings, precision_warning, read_profile, render

    try:
        profile, source = read_profile(str(path))
    except ProfileError as exc:
        found, text = [exc.diagnostic], exc.render()
    else:
        found = mismatch_warnings(profile, HERE, source) + precision_warning(profile, "bf16", "the schedule", source)
        text = "\n".join(render(w, source, str(path)) for w in found)
    return (text + summary_line(found) + "\n").replace(str(GOLDEN), "<golden>")


def _compare(expected, actual: str) -> None:
    if REGEN or not expected.exists():
        expected.write_text(actual)
    assert actual == expected.read_text()


@pytest.mark.parametrize("path", PROFILES, ids=[p.stem for p in PROFILES])
def test_profile_golden(path):
    _compare(path.with_suffix(".txt"), _rendered(path))


TINY = ("model bert { vocab=512 head_dim=32 max_len=64 }\ntrain { batch=4 eval_every=2 }\n"
        "stage a: depth=1 width=32 ffn=64 len=32 steps=4 ; grow depth by stack\nstage b: depth=2 steps=4\n")


def _run_folder(folder, metrics: str | None):
    import json

    from growlang.compiler import compile_text

    folder.mkdir()
    (folder / "plan.json").write_text(json.dumps(compile_text(TINY, "tiny.grow").plan.to_dict()))
    if metrics is not None:
        (folder / "metrics.jsonl").write_text(metrics)
    return folder


RUNS = {
    "missing": lambda d: d / "nowhere",
    "no_plan": lambda d: (d / "r").mkdir() or d / "r",
    "no_metrics": lambda d: _run_folder(d / "r", None),
    "empty_metrics": lambda d: _run_folder(d / "r", ""),
    "metrics_not_json": lambda d: _run_folder(d / "r", '{"kind": "train"\n'),
    "old_metrics": lambda d: _run_folder(d / "r", '{"kind": "train", "step": 2, "stage": "a", "loss": 5.0}\n'),
}


@pytest.mark.parametrize("case", sorted(RUNS))
def test_run_folder_golden(case, tmp_path):
    from growlang.diagnostics import summary_line
    from growlang.run_times import stage_times
    from growlang.time_model import ProfileError

    with pytest.raises(ProfileError) as exc:
        stage_times(str(RUNS[case](tmp_path)))
    text = exc.value.render() + summary_line([exc.value.diagnostic]) + "\n"
    assert "Traceback" not in text and exc.value.diagnostic.hint
    _compare(GOLDEN / "profile" / f"run_{case}.txt", text.replace(str(tmp_path), "<tmp>"))


def test_too_few_shapes_golden():
    from growlang.diagnostics import summary_line
    from growlang.time_model import ProfileError, check_enough_shapes

    rows = [{"features": dict.fromkeys(FEATURES, float(i))} for i in (1, 2, 3, 3)]
    with pytest.raises(ProfileError) as exc:
        check_enough_shapes(rows, "runs/base")
    _compare(GOLDEN / "profile" / "too_few_shapes.txt", exc.value.render() + summary_line([exc.value.diagnostic]) + "\n")


def test_every_profile_code_has_a_golden_a_hint_and_a_row_in_time_md():
    from growlang.diagnostics import PROFILE_CODES

    goldens = "".join(p.read_text() for p in (GOLDEN / "profile").glob("*.txt"))
    doc = (ROOT / "docs" / "time.md").read_text()
    for code in PROFILE_CODES:
        assert f"[{code}]" in goldens, code
        assert f"| `{code}`" in doc, code
    assert goldens.count("error[") + goldens.count("warning[") == goldens.count("= help:")
