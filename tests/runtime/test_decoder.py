"""The decoder families (runtime/decoder.py): causality, GQA, RoPE, and every preservation claim of
the growth operators on them, proved numerically in fp32 (docs/operators.md).

Models are randomly initialised and then perturbed (norm gains away from 1, non-zero biases) so
nothing is preserved by accident; eval mode, dropout off.
"""

import random

import pytest
import torch

from growlang.plan import ModelSpec, OpUse, Shape
from growlang.runtime.architectures import config_from_dict, config_from_plan, param_roles
from growlang.runtime.decoder import Decoder, DecoderConfig
from growlang.runtime.errors import UserError
from growlang.runtime.operators import carry_optimizer_state, grow

TOL = 1e-5
V, T = 61, 20


def dcfg(family, d, L, f, hd=4, kv=None, tie=True):
    heads = d // hd
    kv_heads = None if kv is None else heads // kv  # kv = the group size
    return DecoderConfig(family, V, d, L, heads, f, 32, kv_heads=kv_heads, tie=tie, dropout=0.0)


def trained_like(cfg, seed):
    torch.manual_seed(seed)
    m = Decoder(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * (0.2 if p.dim() == 1 else 0.02))
    return m.eval()


def grown(m, new, ops, seed=0):
    state, maps = grow(m.state_dict(), m.cfg, new, ops, torch.Generator().manual_seed(seed))
    g = Decoder(new).eval()
    g.load_state_dict(state)
    return g, maps


def moved(a, b, seed=0):
    ids = torch.randint(0, V, (3, T), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return (a(ids) - b(ids)).abs().max().item()


def uses(*ops):
    return tuple(OpUse(o[0], o[1], o[2] if len(o) > 2 else ()) for o in ops)


# ----------------------------------------------------------------------------- the model


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_causal_future_tokens_do_not_change_the_past(family):
    m = trained_like(dcfg(family, 16, 2, 24, kv=2 if family == "llama" else None), 0)
    ids = torch.randint(0, V, (2, T))
    changed = ids.clone()
    changed[:, 12:] = (changed[:, 12:] + 1) % V
    with torch.no_grad():
        a, b = m(ids), m(changed)
    assert torch.allclose(a[:, :12], b[:, :12], atol=1e-6)
    assert not torch.allclose(a[:, 12:], b[:, 12:])


def test_gqa_equals_multi_head_with_repeated_kv_heads():
    """kv_heads=k is multi-head attention whose K/V heads are the kv heads repeated group times."""
    gqa = trained_like(dcfg("llama", 16, 2, 24, kv=2), 0)  # 4 heads, 2 kv heads
    mha = Decoder(dcfg("llama", 16, 2, 24)).eval()
    state = gqa.state_dict()
    for i in range(2):
        for w in ("k", "v"):
            key = f"layers.{i}.attn.{w}.weight"
            state[key] = state[key].view(2, 4, 16).repeat_interleave(2, dim=0).reshape(16, 16)
    mha.load_state_dict(state)
    assert moved(gqa, mha) < TOL


def test_rope_scores_depend_on_relative_position_only():
    from growlang.runtime.decoder import apply_rotary, rotary

    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)
    cos, sin = rotary(12, 8, 10000.0, "cpu")

    def score(i, j):
        qi = apply_rotary(q, (cos[i:i + 1], sin[i:i + 1]))
        kj = apply_rotary(k, (cos[j:j + 1], sin[j:j + 1]))
        return float((qi * kj).sum())

    assert score(3, 1) == pytest.approx(score(9, 7), abs=1e-5)
    assert score(3, 1) != pytest.approx(score(3, 2), abs=1e-3)


@pytest.mark.parametrize("family,tie", [("gpt2", True), ("gpt2", False), ("llama", True), ("llama", False)])
def test_roles_cover_every_parameter(family, tie):
    cfg = dcfg(family, 16, 2, 24, kv=2 if family == "llama" else None, tie=tie)
    m = Decoder(cfg)
    roles = param_roles(cfg)
    assert set(roles) == {n for n, _ in m.named_parameters()}
    assert ("lm_head.weight" in roles) == (not tie)


def test_config_from_plan_and_checkpoint_dict():
    import dataclasses

    spec = ModelSpec("llama", V, 4, 32, dropout=0.0, layer_norm_eps=1e-6, tie=False, rope_theta=500000.0)
    cfg = config_from_plan(spec, Shape(2, 16, 4, 24, 16, kv_heads=2))
    assert (cfg.kv_heads, cfg.tie, cfg.rope_theta, cfg.layer_norm_eps) == (2, False, 500000.0, 1e-6)
    assert config_from_dict(dataclasses.asdict(cfg)) == cfg


def test_loss_is_next_token_cross_entropy():
    m = trained_like(dcfg("gpt2", 16, 1, 24), 0)
    ids = torch.randint(0, V, (2, T + 1))
    inputs, targets = ids[:, :-1], ids[:, 1:]
    positions = torch.arange(T).expand(2, T)
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(m(inputs).reshape(-1, V), targets.reshape(-1))
        assert float(m.loss(inputs, positions, targets, encoder_len=T)) == pytest.approx(float(want), rel=1e-6)
    with pytest.raises(ValueError, match="pool"):
        m.loss(inputs, positions, targets, pool=2)


# ----------------------------------------------------------------------------- exact operators

# (name, old d, new d, old L, new L, old f, new f, ops)
EXACT = [
    ("width interpolate x2", 16, 32, 2, 2, 24, 24, [("width", "interpolate")]),
    ("width stack x2", 16, 32, 2, 2, 24, 24, [("width", "stack")]),
    ("width stack x3", 8, 24, 2, 2, 24, 24, [("width", "stack")]),
    ("ffn stack", 16, 16, 2, 2, 24, 48, [("ffn", "stack")]),
    ("ffn stack uneven", 16, 16, 2, 2, 24, 40, [("ffn", "stack")]),
    ("ffn interpolate", 16, 16, 2, 2, 24, 37, [("ffn", "interpolate")]),
    ("ffn zero", 16, 16, 2, 2, 24, 64, [("ffn", "zero")]),
    ("depth zero even", 16, 16, 2, 5, 24, 24, [("depth", "zero")]),
    ("depth zero top", 16, 16, 3, 4, 24, 24, [("depth", "zero", (("where", "top"),))]),
    ("len truncate", 16, 16, 2, 2, 24, 24, [("len", "truncate")]),
    ("width+ffn+depth zero", 16, 32, 2, 3, 24, 40, [("depth", "zero"), ("ffn", "interpolate"), ("width", "stack")]),
]
# family, group size (None = MHA), tied head
VARIANTS = [("gpt2", None, True), ("gpt2", None, False), ("llama", None, True), ("llama", 2, False),
            ("llama", 4, True)]


EXACT_CASES = [pytest.param(c, v, id=f"{c[0]}-{v[0]}-g{v[1]}-{'tied' if v[2] else 'untied'}")
               for c in EXACT for v in VARIANTS if not v[1] or (c[1] // 4) % v[1] == 0]  # the group divides the heads


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case,variant", EXACT_CASES)
def test_exact_operators_keep_logits(case, variant, seed):
    _, d, d2, L, L2, f, f2, ops = case
    family, group, tie = variant
    m = trained_like(dcfg(family, d, L, f, kv=group, tie=tie), seed)
    g, _ = grown(m, dcfg(family, d2, L2, f2, kv=group, tie=tie), uses(*ops), seed)
    assert moved(m, g, seed) < TOL


@pytest.mark.parametrize("seed", range(6))
def test_exact_random_shapes(seed):
    """Random families, head sizes, GQA groups, whole width ratios, any FFN ratio, zero depth."""
    rng = random.Random(200 + seed)
    family = rng.choice(["gpt2", "llama"])
    hd = rng.choice([2, 4, 8])
    group = rng.choice([1, 2]) if family == "llama" else None
    heads = (group or 1) * rng.randint(1, 3)
    d = hd * heads
    d2 = d * rng.randint(1, 3)
    f, L = rng.randint(8, 40), rng.randint(1, 3)
    f2, L2 = f + rng.randint(0, 40), L + rng.randint(0, 3)
    tie = rng.choice([True, False])
    ops = uses(("width", rng.choice(["interpolate", "stack"])), ("ffn", rng.choice(["stack", "interpolate", "zero"])),
               ("depth", "zero", (("where", rng.choice(["even", "top"])),)))
    m = trained_like(dcfg(family, d, L, f, hd, group, tie), seed)
    g, _ = grown(m, dcfg(family, d2, L2, f2, hd, group, tie), ops, seed)
    assert moved(m, g, seed) < TOL, (family, d, d2, L, L2, f, f2, group, tie)


# Approximate: uneven width, noise. Bounds on the max change relative to the largest logit;
# the measured values print with pytest -s.
APPROX = [
    ("gpt2 width interpolate uneven 16->24", "gpt2", 16, 24, [("width", "interpolate")], None, 0.3),
    ("llama width stack uneven 16->40", "llama", 16, 40, [("width", "stack")], None, 0.2),
    ("llama width stack x2 noise=0.01", "llama", 16, 32, [("width", "stack", (("noise", 0.01),))], 2, 0.03),
]


@pytest.mark.parametrize("case", APPROX, ids=[c[0] for c in APPROX])
def test_approximate_operators_bounded(case):
    name, family, d, d2, ops, group, bound = case
    worst = 0.0
    for seed in range(3):
        m = trained_like(dcfg(family, d, 2, 24, kv=group), seed)
        g, _ = grown(m, dcfg(family, d2, 2, 24, kv=group), uses(*ops), seed)
        ids = torch.randint(0, V, (3, T), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            ref = m(ids)
            worst = max(worst, ((g(ids) - ref).abs().max() / ref.abs().max()).item())
    print(f"\n{name}: max relative logit change {worst:.3g} (bound {bound})")
    assert 0 < worst < bound


@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_non_preserving_operators_build_working_models(family):
    m = trained_like(dcfg(family, 16, 2, 24), 0)
    new = dcfg(family, 32, 4, 48)
    for ops in ([("width", "random"), ("ffn", "random"), ("depth", "random")],
                [("width", "interpolate"), ("depth", "stack")], [("depth", "interpolate")], [("depth", "middle")]):
        g, _ = grown(m, new, uses(*ops))
        assert torch.isfinite(g(torch.randint(0, V, (2, 10)))).all()


def test_depth_middle_repeats_the_centred_block():
    m = trained_like(dcfg("llama", 16, 6, 24), 0)
    g, _ = grown(m, dcfg("llama", 16, 8, 24), uses(("depth", "middle")))
    # k = 2 layers starting at (6-2)//2 = 2: old [0 1 2 3 4 5] -> [0 1 2 3 2 3 4 5]
    for i, src in enumerate([0, 1, 2, 3, 2, 3, 4, 5]):
        torch.testing.assert_close(g.layers[i].mlp.gate.weight, m.layers[src].mlp.gate.weight)


def test_swiglu_ffn_zero_zeroes_only_the_new_down_columns():
    m = trained_like(dcfg("llama", 16, 1, 24), 0)
    g, _ = grown(m, dcfg("llama", 16, 1, 40), uses(("ffn", "zero")))
    down = g.layers[0].mlp.down.weight
    assert torch.all(down[:, 24:] == 0) and torch.equal(down[:, :24], m.layers[0].mlp.down.weight)
    assert g.layers[0].mlp.gate.weight[24:].abs().sum() > 0


def test_bad_decoder_transitions_are_user_errors():
    m = trained_like(dcfg("llama", 16, 2, 24, kv=2), 0)
    with pytest.raises(UserError, match="shrinks"):
        grow(m.state_dict(), m.cfg, dcfg("llama", 16, 1, 24, kv=2), ())
    with pytest.raises(UserError, match="tie"):
        grow(m.state_dict(), m.cfg, dcfg("llama", 16, 2, 24, kv=2, tie=False), ())
    with pytest.raises(UserError, match="family"):
        grow(m.state_dict(), m.cfg, dcfg("gpt2", 16, 2, 24), ())


def test_carry_maps_adam_moments_for_llama():
    """on_grow=carry on SwiGLU and GQA: gate and up rows (inner-unit writers) carry copied moments,
    down's columns exp_avg / c and exp_avg_sq / c^2; k/v rows move whole kv heads; the final norm
    before an untied head is copied, the head's columns divided."""
    from growlang.runtime.optim_carry import adam_state_by_name

    m = trained_like(dcfg("llama", 16, 1, 24, kv=2, tie=False), 0).train()  # 4 heads, 2 kv heads, hd 4
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    ids = torch.randint(0, V, (2, T + 1))
    m.loss(ids[:, :-1], torch.arange(T).expand(2, T), ids[:, 1:]).backward()
    opt.step()
    old = adam_state_by_name(opt, m)
    _, maps = grow(m.state_dict(), m.cfg, dcfg("llama", 32, 1, 48, kv=2, tie=False),
                   uses(("width", "stack"), ("ffn", "stack")))
    new = carry_optimizer_state(old, maps)
    g_d, g_f = torch.arange(32) % 16, torch.arange(48) % 24  # width stack x2, ffn stack x2
    g_kv = (torch.arange(4)[:, None] % 2 * 4 + torch.arange(4)).reshape(-1)  # kv heads 2 -> 4, hd 4
    for w in ("gate", "up"):
        got = new[f"layers.0.mlp.{w}.weight"]
        torch.testing.assert_close(got["exp_avg"], old[f"layers.0.mlp.{w}.weight"]["exp_avg"][g_f][:, g_d] / 2)
    down = old["layers.0.mlp.down.weight"]
    torch.testing.assert_close(new["layers.0.mlp.down.weight"]["exp_avg_sq"], down["exp_avg_sq"][g_d][:, g_f] / 4)
    k = old["layers.0.attn.k.weight"]
    torch.testing.assert_close(new["layers.0.attn.k.weight"]["exp_avg"], k["exp_avg"][g_kv][:, g_d] / 2)
    torch.testing.assert_close(new["final_norm.weight"]["exp_avg"], old["final_norm.weight"]["exp_avg"][g_d])
    torch.testing.assert_close(new["lm_head.weight"]["exp_avg_sq"], old["lm_head.weight"]["exp_avg_sq"][:, g_d] / 4)
    assert all(float(st["step"]) == 1 for st in new.values())
