"""The runtime encoder: shapes, masked-position forward, CompoundGrow pooling, dropout."""

import math

import pytest
import torch

from growlang.accounting import encoder_len
from growlang.plan import ModelSpec, Shape
from growlang.runtime.model import Encoder, EncoderConfig, param_roles


def make(family="bert", vocab=60, width=16, depth=2, heads=2, ffn=24, max_len=40, seed=0):
    torch.manual_seed(seed)
    return Encoder(EncoderConfig(family, vocab, width, depth, heads, ffn, max_len)).eval()


def test_from_plan():
    cfg = EncoderConfig.from_plan(ModelSpec("bert-preln", 100, 8, 64, dropout=0.0), Shape(3, 32, 4, 64, 32))
    assert (cfg.family, cfg.vocab, cfg.width, cfg.depth, cfg.heads, cfg.ffn, cfg.max_len, cfg.dropout) == \
        ("bert-preln", 100, 32, 3, 4, 64, 64, 0.0)


def test_bad_config():
    with pytest.raises(ValueError, match="family"):
        EncoderConfig("gpt", 10, 16, 1, 2, 16, 8)
    with pytest.raises(ValueError, match="divisible"):
        EncoderConfig("bert", 10, 16, 1, 3, 16, 8)


@pytest.mark.parametrize("family", ["bert", "bert-preln"])
def test_roles_cover_every_parameter(family):
    m = make(family)
    assert set(param_roles(m.cfg)) == {n for n, _ in m.named_parameters()} == set(m.state_dict())


def test_init_like_hf():
    m = make(width=64, ffn=128, vocab=500)
    assert abs(m.emb.word.weight.std().item() - 0.02) < 0.002
    assert torch.all(m.layers[0].attn_ln.weight == 1) and torch.all(m.layers[0].ffn.up.bias == 0)
    assert torch.all(m.head.bias == 0)


@pytest.mark.parametrize("family", ["bert", "bert-preln"])
def test_masked_forward_matches_full_forward(family):
    m = make(family)
    ids = torch.randint(0, 60, (3, 20))
    pos = torch.tensor([[1, 4, 9], [2, 3, 19], [5, 6, 7]])
    full = m(ids)  # (B, T, V)
    assert full.shape == (3, 20, 60)
    part = m(ids, pos)  # (B, P, V)
    assert part.shape == (3, 3, 60)
    torch.testing.assert_close(part, torch.gather(full, 1, pos[..., None].expand(-1, -1, 60)))


def reference_pool(e, pos, k):
    """Loop-by-loop statement of operators.md `len by pool`, for one sequence."""
    T = e.shape[0]
    masked = set(pos.tolist())
    rows = [e[0]]
    for start in range(1, T, k):
        grp = [e[t] for t in range(start, min(start + k, T)) if t not in masked]
        rows.append(torch.stack(grp).mean(0) if grp else torch.zeros_like(e[0]))
    rows += [e[t] for t in pos.tolist()]
    return torch.stack(rows)


@pytest.mark.parametrize("T,k,P", [(17, 4, 3), (16, 2, 5), (33, 8, 4), (10, 3, 1)])
def test_pool_matches_reference(T, k, P):
    from growlang.runtime.model import pool_embeddings

    torch.manual_seed(T + k)
    e = torch.randn(2, T, 8)
    pos = torch.stack([torch.randperm(T - 1)[:P] + 1 for _ in range(2)])
    got = pool_embeddings(e, pos, k)
    assert got.shape[1] == encoder_len(T, k, P) == 1 + math.ceil((T - 1) / k) + P
    for b in range(2):
        torch.testing.assert_close(got[b], reference_pool(e[b], pos[b], k))


def test_pool_all_masked_group_is_zero():
    from growlang.runtime.model import pool_embeddings

    e = torch.randn(1, 9, 4)
    got = pool_embeddings(e, torch.tensor([[1, 2, 3, 4]]), 4)  # group 1..4 fully masked
    assert torch.all(got[0, 1] == 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("T,k,P", [(128, 2, 19), (17, 4, 3), (16, 2, 5), (10, 3, 1), (4, 8, 2), (9, 4, 4)])
def test_pool_and_its_gradient_equal_autograd_of_the_plain_formula(T, k, P, dtype):
    from growlang.runtime.embedding_pool import plain_pool_embeddings
    from growlang.runtime.model import pool_embeddings

    torch.manual_seed(T * k + P)
    e = torch.randn(3, T, 16, dtype=dtype, requires_grad=True)
    pos = torch.stack([torch.randperm(T - 1)[:P] + 1 for _ in range(3)])
    pos[2, 0] = pos[2, -1]  # a repeated position (P > 1): both rows' gradients add up
    g = torch.randn(3, 1 + math.ceil((T - 1) / k) + P, 16, dtype=dtype)
    got = pool_embeddings(e, pos, k)
    (got_grad,) = torch.autograd.grad(got, e, g)
    want = plain_pool_embeddings(e, pos, k)
    (want_grad,) = torch.autograd.grad(want, e, g)
    assert torch.equal(got, want)  # bitwise (torch.equal counts -0 equal to 0)
    assert torch.equal(got_grad, want_grad)


def test_pool_gradient_is_every_group_member_a_share_and_every_masked_row_its_own():
    from growlang.runtime.model import pool_embeddings

    e = torch.zeros(1, 8, 2, requires_grad=True)  # groups of 3: positions 1-3, 4-6, 7
    out = pool_embeddings(e, torch.tensor([[2, 7]]), 3)  # rows: CLS, 3 groups, masked 2 and 7
    g = torch.arange(1.0, 13.0).view(1, 6, 2)
    (grad,) = torch.autograd.grad(out, e, g)
    want = torch.tensor([[1, 2], [1.5, 2], [9, 10], [1.5, 2], [5 / 3, 2], [5 / 3, 2], [5 / 3, 2], [11, 12]])
    torch.testing.assert_close(grad[0], want)  # 2 is masked: its group's mean is over 1 and 3


@pytest.mark.parametrize("family", ["bert", "bert-preln"])
def test_pooled_forward_shape_and_loss(family):
    m = make(family)
    ids = torch.randint(0, 60, (2, 33))
    pos = torch.tensor([[3, 8, 30], [1, 2, 32]])
    assert m(ids, pos, pool=4).shape == (2, 3, 60)
    with pytest.raises(ValueError):
        m(ids, None, pool=4)
    loss = m.loss(ids, pos, torch.randint(0, 60, (2, 3)), pool=4)
    assert loss.ndim == 0 and math.isfinite(loss.item())
    loss.backward()
    assert m.emb.pos.weight.grad[32].abs().sum() > 0  # every position embedding gets trained


def test_dropout_only_in_train_mode():
    m = make()
    ids = torch.randint(0, 60, (2, 12))
    torch.testing.assert_close(m(ids), m(ids))
    m.train()
    assert not torch.allclose(m(ids), m(ids))


def test_too_long():
    with pytest.raises(ValueError, match="max_len"):
        make(max_len=8)(torch.zeros(1, 9, dtype=torch.long))


def test_encoder_len_from_the_plan_is_asserted():
    m = make("bert")
    ids = torch.randint(0, 60, (2, 33))
    pos = torch.tensor([[3, 8, 30], [1, 2, 32]])
    assert m(ids, pos, pool=4, encoder_len=encoder_len(33, 4, 3)).shape == (2, 3, 60)
    with pytest.raises(AssertionError, match="the plan says 20"):
        m(ids, pos, pool=4, encoder_len=20)
