"""The attention kernel of a schedule that names none is resolved once, in the Plan, from the
precision (growlang/assemble.py default_attention), and `check` lists it with its reason."""

import pytest

from growlang.compiler import compile_text

STAGE = "model bert { vocab=512 head_dim=32 max_len=64 }\ntrain { batch=4 %s }\nstage a: depth=1 width=32 ffn=64 len=32 steps=2\n"


def plan(train: str):
    compiled = compile_text(STAGE % train, "t.grow")
    assert compiled.ok, [d.message for d in compiled.diagnostics]
    return compiled.plan


@pytest.mark.parametrize("precision, kernel", [("fp32", "fused"), ("bf16", "auto"), ("fp16", "auto"), ("auto", "auto")])
def test_unset_attention_follows_the_precision(precision, kernel):
    p = plan(f"precision={precision}")
    assert p.train.attention == kernel
    listed = [d for d in p.defaults_used if d.startswith("train.attention=")]
    assert len(listed) == 1 and listed[0].startswith(f"train.attention={kernel} (") and precision in listed[0]


def test_unset_precision_is_fp32_and_keeps_fused():
    p = plan("")
    assert p.train.precision == "fp32" and p.train.attention == "fused"


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("kernel", ["fused", "math", "fused-fp32", "gemm", "auto"])
def test_a_written_kernel_is_kept_and_not_listed_as_a_default(precision, kernel):
    p = plan(f"precision={precision} attention={kernel}")
    assert p.train.attention == kernel
    assert not any(d.startswith("train.attention=") for d in p.defaults_used)
