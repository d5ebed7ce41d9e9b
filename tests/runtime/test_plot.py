"""`growlang plot`: a PNG from metrics.jsonl, several runs and tree runs, clear errors."""

from __future__ import annotations

import json
from argparse import Namespace

from growlang.runtime.plot import main, paths


def write_run(folder, stages=(("a", None), ("b", "a")), steps=4):
    folder.mkdir(parents=True)
    rows, step = [], 0
    offset = {}
    for name, src in stages:
        step = offset.get(src, 0)
        if src:
            rows.append({"kind": "growth", "stage": name, "src": src, "step": step, "eval_loss_before": 5.0,
                         "eval_loss_after": 5.0, "delta": 0.0, "ops": []})
        for k in range(1, steps + 1):
            step += 1
            rows.append({"kind": "train", "step": step, "stage": name, "stage_step": k, "loss": 6 - step * 0.1,
                         "lr": 1e-3, "tokens": step * 100, "flops": step * 1e9, "tokens_per_s": 1000.0,
                         "time": step * 0.5, "eval_loss": 6 - step * 0.1})
        offset[name] = step
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return folder


def is_png(path):
    return path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_default_output_is_in_the_first_run(tmp_path, capsys):
    run = write_run(tmp_path / "r1")
    assert main(Namespace(runs=[str(run)], out=None)) == 0
    assert is_png(run / "loss.png")
    assert str(run / "loss.png") in capsys.readouterr().out


def test_several_runs_and_a_tree_on_one_figure(tmp_path):
    r1 = write_run(tmp_path / "r1")
    r2 = write_run(tmp_path / "r2", stages=(("root", None), ("x", "root"), ("y", "root")))
    assert paths([json.loads(line) for line in (r2 / "metrics.jsonl").read_text().splitlines()]) == [
        ["root", "x"], ["root", "y"]]
    out = tmp_path / "figs" / "cmp.png"
    assert main(Namespace(runs=[str(r1), str(r2)], out=str(out))) == 0
    assert is_png(out)


def test_folder_without_metrics_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(Namespace(runs=[str(tmp_path / "empty")], out=None)) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "metrics.jsonl" in err
    assert main(Namespace(runs=[str(tmp_path / "missing")], out=None)) == 1
    assert "not a run folder" in capsys.readouterr().err


def test_metrics_without_evaluations_is_an_error(tmp_path, capsys):
    run = tmp_path / "r"
    run.mkdir()
    (run / "metrics.jsonl").write_text(json.dumps({"kind": "train", "step": 1, "stage": "a", "loss": 1.0}) + "\n")
    assert main(Namespace(runs=[str(run)], out=None)) == 1
    assert "no evaluated steps" in capsys.readouterr().err


def test_profile_draws_estimated_against_measured_time(tmp_path, capsys):
    from test_calibrate import fake_run

    from growlang.time_model import FEATURES

    _, run = fake_run(tmp_path / "r")
    _, partial = fake_run(tmp_path / "p", stop_at=8)
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"schema": 1, "device": "cpu", "torch": "2.13.0", "precision": "fp32",
                                   "coefficients": dict.fromkeys(FEATURES, 1e-3)}))
    assert main(Namespace(runs=[str(run), str(partial)], out=None, profile=str(profile))) == 0
    assert is_png(run / "time.png")
    assert f"wrote {run / 'time.png'}: estimated vs measured seconds of 4 stage(s)" in capsys.readouterr().out
    profile.write_text("[]")
    assert main(Namespace(runs=[str(run)], out=None, profile=str(profile))) == 1
    assert "error[E501]" in capsys.readouterr().err
