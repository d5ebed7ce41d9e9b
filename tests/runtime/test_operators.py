"""Growth operators: the registry, and every preservation claim proved numerically (operators.md).

Models are randomly initialised and then perturbed (LayerNorm gammas away from 1, non-zero biases)
so that nothing is preserved by accident; eval mode, dropout off, fp32.
"""

import random

import pytest
import torch

from growlang.operators import OPERATORS
from growlang.plan import OpUse
from growlang.runtime.errors import UserError
from growlang.runtime.model import Encoder, EncoderConfig
from growlang.runtime.operators import REGISTRY, grow
from growlang.runtime.operators.maps import copy_counts, interpolate_map, stack_map

TOL = 1e-5


def trained_like(cfg, seed):
    torch.manual_seed(seed)
    m = Encoder(cfg)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * (0.2 if p.dim() == 1 else 0.02))
    return m.eval()


def grown_model(m, new, ops, seed=0):
    state, maps = grow(m.state_dict(), m.cfg, new, ops, torch.Generator().manual_seed(seed))
    g = Encoder(new).eval()
    g.load_state_dict(state)
    return g, maps


def moved(a, b, seed=0):
    """Max abs change of the logits: full forward (B,T,V) and masked-position forward (B,P,V)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, a.cfg.vocab, (3, 24), generator=g)
    pos = torch.stack([torch.randperm(23, generator=g)[:4] + 1 for _ in range(3)])
    with torch.no_grad():
        full = (a(ids) - b(ids)).abs().max().item()
        part = (a(ids, pos) - b(ids, pos)).abs().max().item()
    return max(full, part)


def cfg(family, d, L, f, hd=8, V=70):
    return EncoderConfig(family, V, d, L, d // hd, f, 32, dropout=0.0)


@pytest.mark.parametrize("dim, name", sorted(OPERATORS))
def test_every_front_end_operator_builds_the_grown_model(dim, name):
    """The runtime's registry is built from the front end's table: each entry must really run."""
    m = trained_like(cfg("bert", 16, 2, 24), 0)
    new = {"depth": cfg("bert", 16, 4, 24), "width": cfg("bert", 32, 2, 24), "ffn": cfg("bert", 16, 2, 48),
           "len": m.cfg}[dim]
    out = REGISTRY[(dim, name)](m.state_dict(), m.cfg, new, {}, torch.Generator().manual_seed(0))
    want = Encoder(new).state_dict()
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: tuple(v.shape) for k, v in want.items()}


def test_index_maps():
    assert stack_map(3, 6).tolist() == [0, 1, 2, 0, 1, 2]
    assert interpolate_map(3, 6).tolist() == [0, 0, 1, 1, 2, 2]
    assert copy_counts(interpolate_map(2, 5), 2).tolist() == [3, 3, 3, 2, 2]


# (old d, new d, old L, new L, old f, new f, ops); each exact for the families listed
EXACT = [
    ("width interpolate x2", 16, 32, 2, 2, 24, 24, [("width", "interpolate")], "both"),
    ("width stack x3", 16, 48, 2, 2, 24, 24, [("width", "stack")], "both"),
    ("ffn stack", 16, 16, 2, 2, 24, 48, [("ffn", "stack")], "both"),
    ("ffn stack uneven", 16, 16, 2, 2, 24, 40, [("ffn", "stack")], "both"),
    ("ffn interpolate", 16, 16, 2, 2, 24, 37, [("ffn", "interpolate")], "both"),
    ("ffn zero", 16, 16, 2, 2, 24, 64, [("ffn", "zero")], "both"),
    ("len truncate", 16, 16, 2, 2, 24, 24, [("len", "truncate")], "both"),
    ("len pool", 16, 16, 2, 2, 24, 24, [("len", "pool")], "both"),
    ("depth zero even", 16, 16, 2, 5, 24, 24, [("depth", "zero")], "bert-preln"),
    ("depth zero top", 16, 16, 3, 4, 24, 24, [("depth", "zero", (("where", "top"),))], "bert-preln"),
    ("width+ffn", 16, 32, 2, 2, 24, 96, [("width", "interpolate"), ("ffn", "stack")], "both"),
    ("width+ffn+depth zero", 16, 32, 2, 3, 24, 40,
     [("depth", "zero"), ("ffn", "interpolate"), ("width", "stack")], "bert-preln"),
]


def uses(ops):
    return tuple(OpUse(o[0], o[1], o[2] if len(o) > 2 else ()) for o in ops)


EXACT_CASES = [pytest.param(c, fam, id=f"{c[0]}-{fam}") for c in EXACT for fam in ("bert", "bert-preln")
               if c[-1] in ("both", fam)]


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize("case,family", EXACT_CASES)
def test_exact_operators_keep_logits(case, family, seed):
    _, d, d2, L, L2, f, f2, ops, _ = case
    rng = random.Random(seed)
    hd = rng.choice([4, 8])
    m = trained_like(cfg(family, d, L, f, hd), seed)
    g, _ = grown_model(m, cfg(family, d2, L2, f2, hd), uses(ops), seed)
    assert moved(m, g, seed) < TOL


@pytest.mark.parametrize("seed", range(4))
def test_exact_random_shapes(seed):
    """Random even width ratios, any FFN ratio, pre-LN zero depth, all at once."""
    rng = random.Random(100 + seed)
    hd = rng.choice([4, 8])
    d = hd * rng.randint(1, 3)
    d2 = d * rng.randint(1, 3)
    f, L = rng.randint(8, 40), rng.randint(1, 3)
    f2, L2 = f + rng.randint(0, 40), L + rng.randint(0, 3)
    ops = uses([("width", rng.choice(["interpolate", "stack"])), ("ffn", rng.choice(["stack", "interpolate", "zero"])),
                ("depth", "zero", (("where", rng.choice(["even", "top"])),))])
    m = trained_like(cfg("bert-preln", d, L, f, hd), seed)
    g, _ = grown_model(m, cfg("bert-preln", d2, L2, f2, hd), ops, seed)
    assert moved(m, g, seed) < TOL, (d, d2, L, L2, f, f2, ops)


# Approximate operators: the measured change must stay under a stated bound (relative to the
# largest logit). Measured on these shapes: see the printed values (pytest -s).
APPROX = [
    ("width interpolate uneven 16->24", "bert", 16, 24, 2, 2, [("width", "interpolate")], 0.25),
    ("width stack uneven 16->40", "bert-preln", 16, 40, 2, 2, [("width", "stack")], 0.25),
    ("width interpolate x2 noise=0.01", "bert", 16, 32, 2, 2, [("width", "interpolate", (("noise", 0.01),))], 0.03),
    ("post-LN depth zero 2->4", "bert", 16, 16, 2, 4, [("depth", "zero")], 0.3),
]


@pytest.mark.parametrize("case", APPROX, ids=[c[0] for c in APPROX])
def test_approximate_operators_bounded(case):
    name, family, d, d2, L, L2, ops, bound = case
    worst = 0.0
    for seed in range(3):
        m = trained_like(cfg(family, d, L, 24), seed)
        g, _ = grown_model(m, cfg(family, d2, L2, 24), uses(ops), seed)
        ids = torch.randint(0, 70, (3, 24), generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            ref = m(ids)
            worst = max(worst, ((g(ids) - ref).abs().max() / ref.abs().max()).item())
    print(f"\n{name}: max relative logit change {worst:.3g} (bound {bound})")
    assert 0 < worst < bound


@pytest.mark.parametrize("family", ["bert", "bert-preln"])
def test_non_preserving_operators_build_right_shapes(family):
    m = trained_like(cfg(family, 16, 2, 24), 0)
    new = cfg(family, 32, 4, 48)
    for ops in ([("width", "random"), ("ffn", "random"), ("depth", "random")],
                [("width", "interpolate"), ("depth", "stack")], [("depth", "interpolate")]):
        g, _ = grown_model(m, new, uses(ops))
        assert torch.isfinite(g(torch.randint(0, 70, (2, 10)))).all()


def test_random_width_keeps_old_block():
    m = trained_like(cfg("bert", 16, 1, 24), 0)
    g, _ = grown_model(m, cfg("bert", 32, 1, 24), uses([("width", "random")]))
    torch.testing.assert_close(g.layers[0].attn.q.weight[:16, :16], m.layers[0].attn.q.weight)
    assert torch.all(g.layers[0].attn_ln.weight[16:] == 1)


def test_depth_maps_layers():
    m = trained_like(cfg("bert", 16, 3, 24), 0)
    g, _ = grown_model(m, cfg("bert", 16, 6, 24), uses([("depth", "interpolate")]))
    for i, src in enumerate([0, 0, 1, 1, 2, 2]):
        torch.testing.assert_close(g.layers[i].ffn.up.weight, m.layers[src].ffn.up.weight)
    g, _ = grown_model(m, cfg("bert", 16, 6, 24), uses([("depth", "stack")]))
    torch.testing.assert_close(g.layers[4].attn.o.bias, m.layers[1].attn.o.bias)


def test_depth_zero_zeroes_branch_outputs():
    m = trained_like(cfg("bert", 16, 2, 24), 0)
    g, _ = grown_model(m, cfg("bert", 16, 4, 24), uses([("depth", "zero")]))
    torch.testing.assert_close(g.layers[2].ffn.up.weight, m.layers[1].ffn.up.weight)  # even: [0, new, 1, new]
    for i in (1, 3):
        for t in (g.layers[i].attn.o.weight, g.layers[i].attn.o.bias, g.layers[i].ffn.down.weight):
            assert torch.all(t == 0)


def test_operator_is_pure():
    m = trained_like(cfg("bert", 16, 2, 24), 0)
    state = m.state_dict()
    before = {k: v.clone() for k, v in state.items()}
    out = REGISTRY[("width", "interpolate")](state, m.cfg, cfg("bert", 32, 2, 24), {}, torch.Generator())
    assert out["emb.word.weight"].shape == (70, 32)
    assert all(torch.equal(before[k], state[k]) for k in state)


def test_bad_transitions():
    m = trained_like(cfg("bert", 16, 2, 24), 0)
    with pytest.raises(UserError, match="shrinks"):
        grow(m.state_dict(), m.cfg, cfg("bert", 16, 1, 24), ())
    with pytest.raises(UserError, match="head_dim"):
        grow(m.state_dict(), m.cfg, EncoderConfig("bert", 70, 32, 2, 2, 24, 32), ())
    with pytest.raises(UserError, match="unknown operator"):
        grow(m.state_dict(), m.cfg, cfg("bert", 16, 3, 24), (OpUse("depth", "aki"),))
    with pytest.raises(UserError, match="heads"):
        grow(m.state_dict(), m.cfg, cfg("bert", 16, 3, 24), (OpUse("heads", "stack"),))


def test_defaults_apply_when_unnamed():
    m = trained_like(cfg("bert", 16, 2, 24), 0)
    _, maps = grow(m.state_dict(), m.cfg, cfg("bert", 32, 4, 48), ())
    assert [(s.dim, s.op) for s in maps.steps] == [("width", "interpolate"), ("ffn", "stack"), ("depth", "stack")]
