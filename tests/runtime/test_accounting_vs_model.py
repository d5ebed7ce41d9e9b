"""growlang.accounting's formulas against the real runtime model (accounting.md)."""

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from growlang.accounting import encoder_len, forward_flops_per_sequence, param_count, predicted_positions, \
    training_flops
from growlang.plan import ModelSpec, Shape
from growlang.runtime.model import Encoder, EncoderConfig

SHAPES = [  # (depth, width, heads, ffn, vocab, max_len)
    (1, 8, 1, 16, 30, 16),
    (2, 16, 2, 64, 50, 32),
    (3, 24, 3, 40, 101, 64),
    (2, 32, 4, 128, 77, 48),
    (4, 48, 6, 96, 64, 128),
    (1, 64, 8, 256, 200, 20),
    (6, 40, 5, 40, 33, 40),
]


@pytest.mark.parametrize("family", ["bert", "bert-preln"])
@pytest.mark.parametrize("L,d,h,f,V,max_len", SHAPES)
def test_param_count(family, L, d, h, f, V, max_len):
    spec = ModelSpec(family, V, d // h, max_len)
    shape = Shape(L, d, h, f, max_len)
    model = Encoder(EncoderConfig.from_plan(spec, shape))
    total, nonemb = param_count(spec, shape)
    assert total == sum(p.numel() for p in model.parameters())
    emb = sum(model.emb.get_submodule(n).weight.numel() for n in ("word", "pos", "types"))
    assert nonemb == total - emb


FLOP_CASES = [  # (family, shape index, batch, read_len, pool, mask); pool > 1 is a pooled stage
    ("bert", 0, 2, 16, 1, 0.15),
    ("bert", 1, 3, 32, 1, 0.15),
    ("bert-preln", 2, 2, 48, 1, 0.2),
    ("bert", 3, 2, 48, 4, 0.15),
    ("bert-preln", 4, 1, 128, 4, 0.15),
    ("bert", 5, 4, 20, 2, 0.3),
    ("bert-preln", 6, 2, 40, 8, 0.15),
]


@pytest.mark.parametrize("family,i,B,T,pool,mask", FLOP_CASES)
def test_training_flops(family, i, B, T, pool, mask):
    L, d, h, f, V, max_len = SHAPES[i]
    spec = ModelSpec(family, V, d // h, max_len)
    shape = Shape(L, d, h, f, T)
    model = Encoder(EncoderConfig.from_plan(spec, shape))
    P = predicted_positions(mask, T)
    g = torch.Generator().manual_seed(i)
    ids = torch.randint(0, V, (B, T), generator=g)
    pos = torch.stack([torch.randperm(T - 1, generator=g)[:P] + 1 for _ in range(B)])
    # on CPU the flash SDPA kernel is not counted; the math kernel decomposes into counted bmm's
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.loss(ids, pos, torch.randint(0, V, (B, P), generator=g), pool=pool).backward()
    expected = training_flops(forward_flops_per_sequence(spec, shape, encoder_len(T, pool, P), P), B)
    measured = counter.get_total_flops()
    assert abs(measured - expected) / expected < 0.01, (measured, expected)
