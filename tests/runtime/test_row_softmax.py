"""runtime/row_softmax.py: the C row softmax (runtime/row_softmax.c) against torch's softmax, on the
row lengths the gemm attention meets (a partial last vector or none, rows shorter than a vector),
at the edges of the thread ranges, and on -inf, NaN and +inf scores."""

import pytest
import torch

from growlang.runtime.c_kernels import ROWS_PER_THREAD, c_kernels
from growlang.runtime.row_softmax import softmax_last_dim


def native():
    k = c_kernels()
    if k.lib is None:
        pytest.skip(f"no C kernels on this machine: {k.why}")
    return k


def scores(*shape, scale=3.0, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(*shape, generator=g) * scale).to(dtype)


def bf16_ulp(x: torch.Tensor) -> torch.Tensor:
    """The spacing of bf16 values at |x| (2^-133 at zero, bf16's smallest subnormal)."""
    e = torch.frexp(x.float().abs().clamp_min(2.0 ** -126))[1]
    return torch.ldexp(torch.ones_like(x, dtype=torch.float32), e - 8)


SHAPES = [(7, 1), (5, 15), (3, 16), (9, 17), (4, 2, 84, 84), (6, 128), (3, 200), (1, 5)]


@pytest.mark.parametrize("shape", SHAPES)
def test_fp32_matches_torch(shape):
    k = native()
    x = scores(*shape)
    y = softmax_last_dim(x, k)
    assert y.dtype == torch.float32 and y.shape == x.shape
    torch.testing.assert_close(y, torch.softmax(x, -1), rtol=2e-6, atol=1e-7)
    exact = torch.softmax(x.double(), -1)
    torch.testing.assert_close(y.double(), exact, rtol=2e-6, atol=1e-8)  # not worse than fp32 rounding
    if x.numel() > 1000:
        assert not torch.equal(y, torch.softmax(x, -1))  # the kernel ran (another exp), not torch again


@pytest.mark.parametrize("shape", SHAPES)
def test_bf16_within_one_step_of_torch(shape):
    k = native()
    x = scores(*shape, dtype=torch.bfloat16)
    y, ref = softmax_last_dim(x, k), torch.softmax(x, -1)
    assert y.dtype == torch.bfloat16
    diff = (y.float() - ref.float()).abs()
    assert (diff <= bf16_ulp(ref)).all()  # each element torch's, or its neighbour where fp32 rounds apart
    assert (diff > 0).float().mean() < 1e-3
    # and rounded once from fp32: within half a bf16 step of the float64 value, plus fp32's error
    exact = torch.softmax(x.double(), -1)
    assert ((y.double() - exact).abs() <= bf16_ulp(exact).double() / 2 + 1e-6 * exact).all()


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_threads_split_rows_and_agree_bit_for_bit(dtype):
    """Row ranges end inside a vector when the row length is not a multiple of the lanes: the last
    row of each range must copy its tail, not read or write the next range's rows."""
    k = native()
    x = scores(4 * ROWS_PER_THREAD + 3, 84, dtype=dtype)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = softmax_last_dim(x, k)
        torch.set_num_threads(4)
        four = softmax_last_dim(x, k)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, four)


def test_the_scores_after_the_last_row_are_not_read():
    """A view whose rows end before its storage does: the last row's tail vector must not read the
    scores after it (NaN here), so it copies its tail (and so writes none past the output)."""
    k = native()
    base = torch.full((10, 20), float("nan"))
    base[:9] = scores(9, 20)
    x = base[:9]
    y = softmax_last_dim(x, k)
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y, torch.softmax(x, -1), rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
def test_minus_inf_scores_get_zero_probability(dtype):
    """The causal mask's -inf: those keys get 0 and the rest still sum to 1."""
    k = native()
    x = scores(4, 2, 21, 21, dtype=dtype)
    x.masked_fill_(torch.ones(21, 21, dtype=torch.bool).triu_(1), float("-inf"))
    y = softmax_last_dim(x, k)
    assert (y.masked_select(torch.ones(21, 21, dtype=torch.bool).triu_(1).expand_as(y)) == 0).all()
    atol = 2e-2 if dtype == torch.bfloat16 else 1e-6  # 21 bf16 roundings, or fp32's
    torch.testing.assert_close(y.float().sum(-1), torch.ones(4, 2, 21), rtol=0, atol=atol)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), "all -inf"])
def test_non_finite_rows_give_nan_as_torch_does(bad, dtype):
    k = native()
    x = scores(5, 37, dtype=dtype)
    if bad == "all -inf":
        x[2] = float("-inf")
    else:
        x[2, 30] = bad
    y = softmax_last_dim(x, k)
    assert torch.isnan(y[2]).all() and torch.isnan(torch.softmax(x, -1)[2]).all()
    assert torch.isfinite(y[[0, 1, 3, 4]]).all()


def test_non_contiguous_input_gives_torch_s_layout_of_values():
    k = native()
    x = scores(6, 40).t()  # (40, 6), rows of 6 strided
    torch.testing.assert_close(softmax_last_dim(x, k), torch.softmax(x, -1), rtol=2e-6, atol=1e-7)


def test_other_inputs_take_torch(monkeypatch):
    """float64 (no entry point in row_softmax.c) and empty tensors: torch.softmax itself, and the
    kernels are not even asked for."""
    from growlang.runtime import row_softmax

    def refuse():
        raise AssertionError("c_kernels() asked for")

    monkeypatch.setattr(row_softmax, "c_kernels", refuse)
    x = scores(3, 9).double()
    assert torch.equal(softmax_last_dim(x), torch.softmax(x, -1))
    assert softmax_last_dim(torch.empty(0, 5)).shape == (0, 5)
