"""runtime/head_kernel.py: the head's C kernel (runtime/head_ce.c) against torch's ops on the same
bf16 and fp32 logits (which kernels a process gets and why: test_c_kernels.py)."""

import pytest
import torch

from growlang.runtime import head_kernel as hk
from growlang.runtime.c_kernels import ROWS_PER_THREAD, CKernels, c_kernels


def native() -> CKernels:
    k = c_kernels()
    if k.lib is None:
        pytest.skip(f"no C kernels on this machine: {k.why}")
    return k


DTYPES = [torch.bfloat16, torch.float32]  # the kernel's two entry points (head_kernel.KERNEL_ENTRY)


def logits(n, v, scale=4.0, seed=0, dtype=torch.bfloat16):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(n, v, generator=g) * scale).to(dtype), torch.randint(0, v, (n,), generator=g)


def bf16_ulp(x: torch.Tensor) -> torch.Tensor:
    """The spacing of bf16 values at |x| (2^-133 at zero, bf16's smallest subnormal)."""
    e = torch.frexp(x.float().abs().clamp_min(2.0 ** -126))[1]
    return torch.ldexp(torch.ones_like(x, dtype=torch.float32), e - 8)


@pytest.mark.parametrize("n,v", [(64, 4096), (37, 300), (5, 7), (1, 16), (9, 30522)])
def test_matches_torch_fp32(n, v):
    """fp32 logits: loss, gradient and column sums within a few fp32 ulps of torch's (Cephes' exp
    against torch's, another summation order)."""
    k = native()
    z, t = logits(n, v, dtype=torch.float32)
    loss, grad, colsum = hk.softmax_cross_entropy(z, t, k)
    ref_loss, ref_grad, ref_colsum = hk.torch_softmax_cross_entropy(z, t)
    assert loss.dtype == colsum.dtype == grad.dtype == torch.float32
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-5)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-5, atol=1e-7)
    assert not torch.equal(grad, ref_grad) or v < 64  # the kernel ran, not torch's ops again
    torch.testing.assert_close(colsum, ref_colsum, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("n,v", [(64, 4096), (37, 300), (5, 7), (1, 16), (9, 30522)])
def test_matches_torch(n, v):
    k = native()
    z, t = logits(n, v)
    loss, grad, colsum = hk.softmax_cross_entropy(z, t, k)
    ref_loss, ref_grad, ref_colsum = hk.torch_softmax_cross_entropy(z, t)
    assert loss.dtype == colsum.dtype == torch.float32 and grad.dtype == torch.bfloat16
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=1e-5)  # fp32 log-sum-exp, another order
    # each gradient element is torch's, or its neighbour where the two fp32 softmaxes round apart
    diff = (grad.float() - ref_grad.float()).abs()
    assert (diff <= bf16_ulp(ref_grad)).all()
    assert (diff > 0).float().mean() < 1e-3
    # the bias gradient: the fp32 sum of the written bf16 gradient (torch's rounds the sum to bf16)
    torch.testing.assert_close(colsum, grad.float().sum(0), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(colsum, ref_colsum, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("dtype", DTYPES)
def test_confident_rows_keep_their_small_loss_and_target_gradient(dtype):
    """p_t near 1: the loss and p_t - 1 come from the sum of the other terms, not a difference of
    two numbers near 1, so they equal float64's to fp32 precision (then, for bf16, one rounding)."""
    k = native()
    z = torch.full((4, 64), -8.0).to(dtype)
    t = torch.tensor([0, 17, 40, 63])
    z[torch.arange(4), t] = torch.tensor([8.0, 7.0, 6.0, 9.0]).to(dtype)
    loss, grad, _ = hk.softmax_cross_entropy(z, t, k)
    exact = torch.softmax(z.double(), -1) - torch.nn.functional.one_hot(t, 64)
    if dtype == torch.bfloat16:
        assert torch.equal(grad, exact.bfloat16())
    else:
        torch.testing.assert_close(grad.double(), exact, rtol=1e-6, atol=0)
    at = grad.float()[torch.arange(4), t]
    assert ((at < 0) & (at > -1e-4)).all()  # small, negative, not rounded away
    torch.testing.assert_close(loss.double(), -torch.log_softmax(z.double(), -1)[torch.arange(4), t],
                               rtol=1e-5, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
def test_minus_inf_logits_get_zero_probability(dtype):
    k = native()
    z, t = logits(3, 50, dtype=dtype)
    z[:, 30:] = float("-inf")
    t.clamp_(max=29)
    loss, grad, _ = hk.softmax_cross_entropy(z, t, k)
    assert torch.isfinite(loss).all() and (grad[:, 30:] == 0).all()
    torch.testing.assert_close(loss, hk.torch_softmax_cross_entropy(z, t)[0], rtol=1e-6, atol=1e-5)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_logits_give_a_non_finite_loss(bad, dtype):
    """So the trainer's NonFiniteLoss check stops the run, as with torch's ops."""
    k = native()
    z, t = logits(4, 40, dtype=dtype)
    z[2, 5] = bad
    loss, _, _ = hk.softmax_cross_entropy(z, t, k)
    assert torch.isfinite(loss[[0, 1, 3]]).all() and torch.isnan(loss[2])


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_split_rows_and_agree(dtype):
    k = native()
    z, t = logits(4 * ROWS_PER_THREAD, 500, dtype=dtype)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = hk.softmax_cross_entropy(z, t, k)
        torch.set_num_threads(4)
        four = hk.softmax_cross_entropy(z, t, k)
        again = hk.softmax_cross_entropy(z, t, k)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one[0], four[0]) and torch.equal(one[1], four[1])  # rows are independent
    torch.testing.assert_close(one[2], four[2], rtol=1e-6, atol=1e-6)  # column sums: another order
    assert all(torch.equal(a, b) for a, b in zip(four, again))  # deterministic for a thread count


def test_target_out_of_range_is_an_index_error():
    k = native()
    z, t = logits(3, 20)
    t[1] = 20
    with pytest.raises(IndexError, match="out of range"):
        hk.softmax_cross_entropy(z, t, k)


def test_other_inputs_take_torch_ops():
    """float64 logits (no entry point in head_ce.c): torch's ops, unchanged."""
    k = native()
    z, t = logits(6, 33, dtype=torch.float64)
    out = hk.softmax_cross_entropy(z, t, k)
    assert all(torch.equal(a, b) for a, b in zip(out, hk.torch_softmax_cross_entropy(z, t)))


def test_float64_never_builds_the_kernel(monkeypatch):
    def refuse():
        raise AssertionError("c_kernels() asked for float64 logits")

    monkeypatch.setattr(hk, "c_kernels", refuse)
    z, t = logits(4, 20, dtype=torch.float64)
    hk.softmax_cross_entropy(z, t)
