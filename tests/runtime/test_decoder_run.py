"""A tiny decoder schedule end to end on the CPU, for both families: training, growth, bitwise
resume across the growth, the sample at the end, and the exported model in transformers."""

from __future__ import annotations

import pytest

from growlang.plan import ModelSpec, OpUse, Shape
from growlang.runtime import checkpoint as ck
from growlang.runtime.metrics import read_metrics
from growlang.runtime.run import run_plan

try:
    from test_trainer import comparable, same_files
    from test_trainer_plans import make_plan, on_corpus, train_spec
except ImportError:  # tests collected as a package
    from tests.runtime.test_trainer import comparable, same_files
    from tests.runtime.test_trainer_plans import make_plan, on_corpus, train_spec


def decoder_plan(family: str, corpus, **train_kw):
    """small (1 layer, d 32) -> big (2 layers, d 64, ffn x2, len x2): depth stack, width
    interpolate, ffn stack, len truncate; llama with GQA groups of 2 and an untied head."""
    llama = family == "llama"
    model = ModelSpec(family=family, vocab=300, head_dim=8, max_len=32, dropout=0.0, layer_norm_eps=1e-5,
                      tie=not llama, type_vocab=0)
    kv = (2, 4) if llama else (None, None)
    ops = (OpUse("depth", "stack", preservation="none"), OpUse("width", "interpolate", preservation="exact"),
           OpUse("ffn", "stack", preservation="exact"), OpUse("len", "truncate", preservation="exact"))
    plan = make_plan(
        [("small", None, Shape(depth=1, width=32, heads=4, ffn=64, len=16, kv_heads=kv[0]), 4),
         ("big", "small", Shape(depth=2, width=64, heads=8, ffn=128, len=32, kv_heads=kv[1]), 4)],
        {"big": ops}, model=model, train=train_spec(**train_kw), name=f"tiny-{family}")
    return on_corpus(plan, corpus)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_decoder_run_resumes_bitwise_across_the_growth(family, tmp_path, corpus, capsys):
    plan = decoder_plan(family, corpus, checkpoint_every=3, eval_every=2, on_grow="carry", lr_on_grow="continue")
    ref = tmp_path / "ref"
    assert run_plan(plan, ref, resume=False, device="cpu") == 0
    summary = (ref / "summary.txt").read_text()
    assert "sample (big, " in summary and " >> " in summary and "eval ppl" in summary.splitlines()[0]
    rows = read_metrics(ref / "metrics.jsonl")
    train = [r for r in rows if r["kind"] == "train"]
    small, big = plan.stages
    assert train[-1]["tokens"] == 4 * (small.batch * 16 + big.batch * 32)  # clm counts the T inputs
    growth = next(r for r in rows if r["kind"] == "growth")
    assert growth["eval_loss_before"] > 0 and growth["eval_loss_after"] > 0
    _final_matches_the_checkpoint(ref, family)
    out = tmp_path / "out"
    assert run_plan(plan, out, resume=False, device="cpu", stop_after_steps=5) == 130  # one step past the growth
    assert ck.latest(out / "checkpoints").path.name == "small-4"
    assert run_plan(plan, out, resume=True, device="cpu") == 0
    for name in ("small-4", "big-8"):
        same_files(ref / "checkpoints" / name, out / "checkpoints" / name)
    assert comparable(read_metrics(out / "metrics.jsonl")) == comparable(read_metrics(ref / "metrics.jsonl"))
    capsys.readouterr()


def test_exact_growth_keeps_the_decoder_eval_loss(tmp_path, corpus):
    """width interpolate + ffn stack + depth zero are exact for a pre-norm decoder: the eval loss
    just after the growth equals the one just before (same eval batches, eval mode)."""
    ops = (OpUse("depth", "zero", preservation="exact"), OpUse("width", "interpolate", preservation="exact"),
           OpUse("ffn", "stack", preservation="exact"))
    model = ModelSpec(family="llama", vocab=300, head_dim=8, max_len=32, dropout=0.0, layer_norm_eps=1e-5,
                      tie=False, type_vocab=0)
    plan = on_corpus(make_plan(
        [("small", None, Shape(depth=1, width=32, heads=4, ffn=64, len=32, kv_heads=2), 3),
         ("big", "small", Shape(depth=2, width=64, heads=8, ffn=128, len=32, kv_heads=4), 1)],
        {"big": ops}, model=model, train=train_spec(), name="tiny-exact"), corpus)
    assert run_plan(plan, tmp_path / "out", resume=False, device="cpu") == 0
    g = next(r for r in read_metrics(tmp_path / "out" / "metrics.jsonl") if r["kind"] == "growth")
    assert abs(g["delta"]) < 1e-5, g


def _final_matches_the_checkpoint(out, family):
    """final/ loads with AutoModelForCausalLM and AutoTokenizer, with the end-of-stage model's logits."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from growlang.runtime.architectures import build, config_from_dict

    c = ck.find_stage_end(out / "checkpoints", "big")
    ours = build(config_from_dict(c.state["config"])).eval()
    ours.load_state_dict(c.model_state())
    hf = AutoModelForCausalLM.from_pretrained(out / "final").eval()
    tok = AutoTokenizer.from_pretrained(out / "final")
    assert hf.config.model_type == family and len(tok) == ours.cfg.vocab
    ids = torch.tensor([tok("the cat sat on the mat")["input_ids"]])
    with torch.no_grad():
        assert (hf(ids).logits - ours(ids)).abs().max() < 1e-5
