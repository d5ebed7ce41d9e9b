"""The decoder families in the front end: the family table, GQA shapes, the clm reading and the
decoder formulas (docs/language.md "Families"; growlang/accounting.py)."""

import dataclasses
import math

from pathlib import Path

import pytest

from growlang.accounting import decoder_forward_flops, param_count, reading, stage_cost, steps_for_tokens
from growlang.compiler import compile_text
from growlang.families import FAMILIES, family
from growlang.operators import OPERATORS, middle_block
from growlang.plan import ModelSpec, Shape


def plan(text: str):
    compiled = compile_text(text)
    assert compiled.ok, [d.message for d in compiled.diagnostics]
    return compiled.plan


def test_the_family_table():
    rows = {n: (f.objective, f.prenorm, f.norm, f.positions, f.mlp, f.bias, f.gqa, f.hf_class) for n, f in FAMILIES.items()}
    assert rows == {
        "bert": ("mlm", False, "layernorm", "learned", "gelu", True, False, "BertForMaskedLM"),
        "bert-preln": ("mlm", True, "layernorm", "learned", "gelu", True, False, "RobertaPreLayerNormForMaskedLM"),
        "gpt2": ("clm", True, "layernorm", "learned", "gelu", True, False, "GPT2LMHeadModel"),
        "llama": ("clm", True, "rmsnorm", "rope", "swiglu", False, True, "LlamaForCausalLM"),
    }
    assert family("llama").keys == {"tie", "rope_theta"} and family("bert").keys == {"type_vocab"}


def test_shape_kv_heads_defaults_to_heads_and_round_trips():
    s = Shape(2, 64, 4, 128, 32)
    assert s.kv_heads == 4 and Shape(**dataclasses.asdict(s)) == s
    g = Shape(2, 64, 4, 128, 32, 2)
    assert g.kv_heads == 2 and Shape(**dataclasses.asdict(g)) == g
    assert ModelSpec("bert", 100, 16, 64, 2, 0.1, 1e-12).tie is True


@pytest.mark.parametrize("name,expected", [
    ("gpt2", dict(max_len=32, dropout=0.1, layer_norm_eps=1e-5, tie=True, type_vocab=0)),
    ("llama", dict(max_len=32, dropout=0.0, layer_norm_eps=1e-5, tie=False, rope_theta=10000.0, type_vocab=0)),
    ("bert", dict(max_len=32, dropout=0.1, layer_norm_eps=1e-12, tie=True, type_vocab=2)),
])
def test_family_defaults(name, expected):  # max_len: the longest stage len (32)
    p = plan(f"model {name} {{ vocab=300 }}\nstage 1: depth=1 width=64 len=32 steps=1")
    assert {k: getattr(p.model, k) for k in expected} == expected
    assert any(d.startswith("data.mask") for d in p.defaults_used) == (family(name).objective == "mlm")


def test_written_keys_and_the_older_eps_spelling():
    p = plan("model llama { vocab=300 tie=true rope_theta=5e5 layer_norm_eps=1e-6 }\nstage 1: depth=1 width=64 len=32 steps=1")
    assert (p.model.tie, p.model.rope_theta, p.model.layer_norm_eps) == (True, 5e5, 1e-6)
    assert not any("eps=" in d and d.startswith("model.") for d in p.defaults_used)


def test_gqa_group_is_inherited_through_width_growth():
    p = plan("model llama { vocab=300 head_dim=16 }\n"
             "stage 1: depth=1 width=64 kv_heads=1 len=32 steps=1\n"  # 4 heads, group 4
             "stage 2: width=128 steps=1\n"  # 8 heads -> 2 kv heads
             "stage 3: kv_heads=2 depth=2 steps=1")  # written, keeps the group
    assert [(s.shape.heads, s.shape.kv_heads) for s in p.stages] == [(4, 1), (8, 2), (8, 2)]


def test_clm_reading_tokens_and_budget_inverse():
    assert reading(128, 128, 1, 0.15, "clm") == reading(128, 999, 1, 0.5, "clm")
    r = reading(128, 128, 1, 0.15, "clm")
    assert (r.len, r.read_len, r.pool, r.predicted, r.encoder_len) == (128, 129, 1, 128, 128)
    p = plan("model gpt2 { vocab=300 }\nstage 1: depth=1 width=64 len=128 tokens=1M batch=16")
    s = p.stages[0]
    assert s.reading == r and s.steps == math.ceil(1e6 / (16 * 128)) == steps_for_tokens(10**6, 16, 128)
    assert s.cost.tokens == 16 * s.steps * 128


# sum(p.numel()) of transformers' GPT2LMHeadModel / LlamaForCausalLM at these sizes (measured once,
# transformers 4.x; tests/runtime compare against the runtime's own models).
@pytest.mark.parametrize("spec,shape,total", [
    (ModelSpec("gpt2", 301, 16, 40, 0, 0.0, 1e-5, True), Shape(3, 48, 3, 100, 40), 74508),
    (ModelSpec("gpt2", 301, 16, 40, 0, 0.0, 1e-5, False), Shape(3, 48, 3, 100, 40), 88956),
    (ModelSpec("llama", 301, 16, 64, 0, 0.0, 1e-5, True), Shape(3, 64, 4, 96, 64, 2), 111872),
    (ModelSpec("llama", 301, 16, 64, 0, 0.0, 1e-5, False), Shape(3, 64, 4, 96, 64, 2), 131136),
])
def test_decoder_params_match_transformers(spec, shape, total):
    counted, nonembedding = param_count(spec, shape)
    embedding = spec.vocab * shape.width * (1 if spec.tie else 2) + (spec.max_len * shape.width if spec.family == "gpt2" else 0)
    assert (counted, nonembedding) == (total, total - embedding)


def test_decoder_flops_match_transformers():
    # FlopCounterMode on transformers' models, one sequence of T=20: GPT-2 (math attention, the full
    # T x T square counted) and Llama (its SDPA kernel not counted: projections, MLP and head only).
    T = 20
    gpt2 = decoder_forward_flops(ModelSpec("gpt2", 301, 16, 40), Shape(3, 48, 3, 100, T), T)
    assert gpt2 + 3 * 2 * 48 * T * (T - 1) == 3066240  # causal lower triangle -> full square
    llama = decoder_forward_flops(ModelSpec("llama", 301, 16, 64), Shape(3, 64, 4, 96, T, 2), T)
    assert llama - 3 * 2 * 64 * T * (T + 1) == 4456960


def test_decoder_cost_counts_the_head_at_every_position():
    spec, shape = ModelSpec("gpt2", 1000, 16, 64), Shape(1, 32, 2, 64, 64)
    clm, mlm = reading(64, 64, 1, 0.15, "clm"), reading(64, 64, 1, 0.15)
    assert stage_cost(spec, shape, clm, batch=2, steps=3, precision="fp32").flops_per_seq == 3 * decoder_forward_flops(spec, shape, 64)
    assert clm.predicted == 64 > mlm.predicted


@pytest.mark.parametrize("old,new,block", [(4, 6, (1, 2)), (5, 8, (1, 3)), (2, 4, (0, 2)), (16, 17, (7, 1))])
def test_middle_block(old, new, block):
    assert middle_block(old, new) == block
    assert OPERATORS[("depth", "middle")].precondition(old, new) is None


def test_middle_refuses_more_than_doubling_and_zero_is_exact_for_prenorm_families():
    assert "two stages" in OPERATORS[("depth", "middle")].precondition(2, 5)
    zero = OPERATORS[("depth", "zero")].preservation
    assert [zero(2, 4, n, {}) for n in FAMILIES] == ["approximate", "exact", "exact", "exact"]


def test_language_md_lists_every_family_and_code():
    from growlang.diagnostics import CODES

    ROOT = Path(__file__).resolve().parents[2]

    doc = (ROOT / "docs" / "language.md").read_text()
    rows = {line.split("|")[1].strip(" `"): line for line in doc.splitlines() if line.startswith("| `")}
    for name, f in FAMILIES.items():
        row = rows[name]
        assert f.hf_class in row and all(f"`{k}`" in row for k in f.keys), name
        assert ("masked LM" if f.objective == "mlm" else "causal LM") in row, name
    assert set(CODES) <= set(rows), sorted(set(CODES) - set(rows))
