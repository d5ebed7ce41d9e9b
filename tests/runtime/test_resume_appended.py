"""Appending a stage to a finished run and resuming keeps the former leaf's exported model
(issue 12 item 9): it moves to out/final-<stage>, final/ holds the new leaf."""

from __future__ import annotations

from safetensors.torch import load_file

from growlang.plan import OpUse, Shape
from growlang.runtime.run import run_plan

try:
    from test_trainer_plans import make_plan, on_corpus
except ImportError:  # tests collected as a package
    from tests.runtime.test_trainer_plans import make_plan, on_corpus

SMALL = ("small", None, Shape(depth=1, width=32, heads=2, ffn=64, len=16), 2)
BIG = ("big", "small", Shape(depth=2, width=32, heads=2, ffn=64, len=16), 2)


def test_appended_stage_keeps_the_former_leaf_export(tmp_path, corpus, capsys):
    out = tmp_path / "out"
    assert run_plan(on_corpus(make_plan([SMALL]), corpus), out, resume=False, device="cpu") == 0
    before = load_file(out / "final" / "model.safetensors")
    grown = on_corpus(make_plan([SMALL, BIG], {"big": (OpUse("depth", "stack", preservation="none"),)}), corpus)
    assert run_plan(grown, out, resume=True, device="cpu") == 0
    assert "stage small is no longer a leaf" in capsys.readouterr().err
    kept = load_file(out / "final-small" / "model.safetensors")
    assert kept.keys() == before.keys() and all((kept[k] == before[k]).all() for k in kept)
    assert len([k for k in load_file(out / "final" / "model.safetensors") if ".layer.1." in k]) > 0
