"""runtime/linear_ce.py: the fused head + cross-entropy equals the unfused computation."""

import pytest
import torch
import torch.nn.functional as F

from growlang.runtime.linear_ce import linear_cross_entropy


def _inputs(n=37, d=16, v=50, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(n, d, generator=g, dtype=dtype, requires_grad=True)
    w = (torch.randn(v, d, generator=g, dtype=dtype) * 0.3).requires_grad_()
    b = (torch.randn(v, generator=g, dtype=dtype) * 0.1).requires_grad_()
    t = torch.randint(0, v, (n,), generator=g)
    return h, w, b, t


def _loss_and_grads(fused: bool, bias: bool, amp: bool, scale: float = 1.0):
    h, w, b, t = _inputs()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        bb = b if bias else None
        loss = linear_cross_entropy(h, w, bb, t) if fused else F.cross_entropy(F.linear(h, w, bb).float(), t)
    (loss * scale).backward()
    return [loss.detach(), h.grad, w.grad] + ([b.grad] if bias else [])


@pytest.mark.parametrize("bias", [True, False])
def test_fp32_matches_unfused(bias):
    # scale != 1: the incoming gradient (a GradScaler's factor, a loss weight) scales every grad
    fused, plain = _loss_and_grads(True, bias, False, 3.0), _loss_and_grads(False, bias, False, 3.0)
    torch.testing.assert_close(fused[0], plain[0], rtol=1e-6, atol=0)  # the same log_softmax of the same logits
    for a, b in zip(fused[1:], plain[1:]):
        assert a.dtype == b.dtype == torch.float32
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


def test_bf16_autocast_matches_unfused_within_bf16_rounding():
    fused, plain = _loss_and_grads(True, True, True), _loss_and_grads(False, True, True)
    assert fused[0].dtype == torch.float32
    torch.testing.assert_close(fused[0], plain[0], rtol=0, atol=1e-6)  # same bf16 logits, fp32 softmax
    for a, b in zip(fused[1:], plain[1:]):
        assert a.dtype == torch.float32  # fp32 master grads
        torch.testing.assert_close(a, b, rtol=2e-2, atol=2e-3)


def test_bf16_logit_gradient_is_the_fp32_one_rounded_once():
    """Under autocast the (N, V) gradient the backward GEMMs read is autograd's fp32
    softmax(z) - onehot(t), rounded once to bf16, p_t - 1 included (not p_t rounded, then 1
    subtracted: that loses the small gradients of confident predictions): so grad_h is exactly
    that tensor times W in bf16, over N."""
    h, w, b, t = _inputs(n=64, v=300)
    t[:8] = torch.arange(8) * 10
    w.data[:, :8] = 0
    h.data[:8] = 0
    for i in range(8):  # the first eight rows predict their target with p_t close to 1, the rest do not
        w.data[t[i], i], h.data[i, i] = 1.0, 12.0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        linear_cross_entropy(h, w, b, t).backward()
        z = F.linear(h, w, b)
    dz = (torch.softmax(z.float(), -1) - F.one_hot(t, 300)).to(torch.bfloat16)
    assert (dz[:8].float().gather(1, t[:8, None]).abs() < 0.01).all()  # p_t - 1 small there, kept in bf16
    expected = (dz @ w.detach().to(torch.bfloat16)).float() * (1 / 64)
    torch.testing.assert_close(h.grad, expected, rtol=0, atol=0)


def test_gradcheck_float64():
    h, w, b, t = _inputs(n=6, d=4, v=7, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda h, w, b: linear_cross_entropy(h, w, b, t), (h, w, b))


def test_deterministic():
    assert all(torch.equal(a, b) for a, b in zip(_loss_and_grads(True, True, False), _loss_and_grads(True, True, False)))


@pytest.mark.parametrize("family", ["bert", "bert-preln"])
def test_encoder_loss_is_cross_entropy_of_its_logits(family):
    from growlang.runtime.model import Encoder, EncoderConfig

    torch.manual_seed(0)
    enc = Encoder(EncoderConfig(family, 40, 16, 2, 2, 32, 12)).eval()
    ids = torch.randint(0, 40, (3, 12))
    pos = torch.tensor([[1, 4, 7], [2, 3, 9], [5, 6, 10]])
    tgt = torch.randint(0, 40, (3, 3))
    ref = F.cross_entropy(enc(ids, pos).reshape(-1, 40), tgt.reshape(-1))
    torch.testing.assert_close(enc.loss(ids, pos, tgt), ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family,tie", [("gpt2", True), ("llama", False)])
def test_decoder_loss_is_cross_entropy_of_its_logits(family, tie):
    from growlang.runtime.decoder import Decoder, DecoderConfig

    torch.manual_seed(0)
    dec = Decoder(DecoderConfig(family, 40, 16, 2, 2, 32, 12, tie=tie)).eval()
    ids = torch.randint(0, 40, (3, 12))
    tgt = torch.randint(0, 40, (3, 12))
    ref = F.cross_entropy(dec(ids).reshape(-1, 40), tgt.reshape(-1))
    got = dec.loss(ids, torch.arange(12).expand(3, 12), tgt)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
