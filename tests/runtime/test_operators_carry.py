"""`on_grow=carry`: Adam's moments follow the weights' index maps (operators.md)."""

import torch

from growlang.plan import OpUse
from growlang.runtime.model import Encoder, EncoderConfig
from growlang.runtime.operators import carry_optimizer_state, grow
from growlang.runtime.optim_carry import adam_state_by_name, load_adam_state_by_name


def cfg(family, d, L, f):
    return EncoderConfig(family, 50, d, L, d // 8, f, 32, dropout=0.0)


def batch(seed, T=16):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, 50, (4, T), generator=g)
    pos = torch.stack([torch.randperm(T - 1, generator=g)[:3] + 1 for _ in range(4)])
    return ids, pos, torch.randint(0, 50, (4, 3), generator=g)


def adam_step(model, opt, seed):
    opt.zero_grad()
    model.loss(*batch(seed)).backward()
    opt.step()


def trained(c, steps=2):
    torch.manual_seed(0)
    m = Encoder(c)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    for s in range(steps):
        adam_step(m, opt, s)
    return m, opt


def test_copies_map_moments_as_specified():
    """ffn stack 24 -> 48 and width interpolate 16 -> 32: copied tensors carry copied moments;
    tensors divided by c carry exp_avg / c and exp_avg_sq / c^2; the step is kept."""
    m, opt = trained(cfg("bert", 16, 1, 24))
    old = adam_state_by_name(opt, m)
    _, maps = grow(m.state_dict(), m.cfg, cfg("bert", 32, 1, 48),
                   (OpUse("width", "interpolate"), OpUse("ffn", "stack")))
    new = carry_optimizer_state(old, maps)
    up, down = old["layers.0.ffn.up.weight"], old["layers.0.ffn.down.weight"]
    g_d = torch.arange(32) // 2  # width interpolate x2
    g_f = torch.arange(48) % 24  # ffn stack x2
    # ffn.up: rows copied by g_f (writer of ffn units), columns read hidden: gathered by g_d, / 2
    torch.testing.assert_close(new["layers.0.ffn.up.weight"]["exp_avg"], up["exp_avg"][g_f][:, g_d] / 2)
    torch.testing.assert_close(new["layers.0.ffn.up.weight"]["exp_avg_sq"], up["exp_avg_sq"][g_f][:, g_d] / 4)
    # ffn.down: rows write hidden (copied), columns read ffn units (/ 2)
    torch.testing.assert_close(new["layers.0.ffn.down.weight"]["exp_avg"], down["exp_avg"][g_d][:, g_f] / 2)
    torch.testing.assert_close(new["layers.0.ffn.down.weight"]["exp_avg_sq"], down["exp_avg_sq"][g_d][:, g_f] / 4)
    # word embeddings write hidden: copied, not divided; the tied head LayerNorm: copied and / c
    torch.testing.assert_close(new["emb.word.weight"]["exp_avg"], old["emb.word.weight"]["exp_avg"][:, g_d])
    torch.testing.assert_close(new["head.ln.weight"]["exp_avg_sq"], old["head.ln.weight"]["exp_avg_sq"][g_d] / 4)
    assert all(float(s["step"]) == 2 for s in new.values())


def test_fresh_units_start_at_zero():
    m, opt = trained(cfg("bert", 16, 2, 24))
    _, maps = grow(m.state_dict(), m.cfg, cfg("bert", 16, 4, 40), (OpUse("ffn", "zero"), OpUse("depth", "random")))
    new = carry_optimizer_state(adam_state_by_name(opt, m), maps)
    assert torch.all(new["layers.0.ffn.up.weight"]["exp_avg"][24:] == 0)
    assert torch.all(new["layers.0.ffn.down.weight"]["exp_avg_sq"][:, 24:] == 0)
    assert torch.all(new["layers.3.attn.q.weight"]["exp_avg"] == 0)  # even: [0, new, 1, new]
    assert float(new["layers.3.attn.q.weight"]["step"]) == 2


def _commutes(family, old_cfg, new_cfg, ops, old_slices):
    """Carry-then-step on the grown model == step-then-carry, wherever the gradient is unchanged by
    the growth (old units of a function-preserving growth with c = 1)."""
    m, opt = trained(old_cfg)
    state, maps = grow(m.state_dict(), m.cfg, new_cfg, ops, torch.Generator().manual_seed(0))
    g = Encoder(new_cfg)
    g.load_state_dict(state)
    gopt = torch.optim.AdamW(g.parameters(), lr=1e-3)
    load_adam_state_by_name(gopt, g, carry_optimizer_state(adam_state_by_name(opt, m), maps))
    adam_step(g, gopt, 7)  # carry, then step on the grown model
    adam_step(m, opt, 7)  # step on the old model, then carry
    want = carry_optimizer_state(adam_state_by_name(opt, m), maps)
    got = adam_state_by_name(gopt, g)
    for name, sl in old_slices.items():
        for k in ("exp_avg", "exp_avg_sq"):
            torch.testing.assert_close(got[name][k][sl], want[name][k][sl], atol=1e-9, rtol=1e-4)
        assert float(got[name]["step"]) == 3


def test_carry_commutes_with_a_step_ffn_zero():
    c, c2 = cfg("bert", 16, 2, 24), cfg("bert", 16, 2, 40)
    names = {n: slice(None) for n in ("emb.word.weight", "layers.1.attn.q.weight", "head.ln.weight", "head.bias")}
    names |= {"layers.0.ffn.up.weight": slice(0, 24), "layers.1.ffn.up.bias": slice(0, 24),
              "layers.0.ffn.down.weight": (slice(None), slice(0, 24))}
    _commutes("bert", c, c2, (OpUse("ffn", "zero"),), names)


def test_carry_commutes_with_a_step_preln_depth_zero():
    """Layers are renamed (old layer 1 becomes layer 2): state follows names, not identity."""
    c, c2 = cfg("bert-preln", 16, 2, 24), cfg("bert-preln", 16, 4, 24)
    names = {n: slice(None) for n in ("layers.0.attn.q.weight", "layers.2.ffn.up.weight", "layers.2.attn_ln.bias",
                                      "final_ln.weight", "emb.pos.weight")}
    _commutes("bert-preln", c, c2, (OpUse("depth", "zero"),), names)
