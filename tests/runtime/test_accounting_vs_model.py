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


# Decoders: (family, depth, width, heads, kv_heads, ffn, vocab, max_len, tie)
DECODER_SHAPES = [
    ("gpt2", 1, 8, 1, 1, 16, 30, 16, True),
    ("gpt2", 2, 32, 4, 4, 128, 77, 48, False),
    ("gpt2", 3, 24, 3, 3, 40, 101, 64, True),
    ("llama", 2, 16, 2, 2, 64, 50, 32, True),
    ("llama", 2, 32, 4, 2, 88, 77, 48, False),
    ("llama", 4, 48, 6, 3, 96, 64, 128, False),
    ("llama", 1, 64, 8, 1, 172, 200, 20, True),
]


def _decoder(case):
    from growlang.runtime.architectures import build, config_from_plan

    family, L, d, h, kv, f, V, max_len, tie = case
    spec = ModelSpec(family, V, d // h, max_len, dropout=0.0, tie=tie)
    shape = Shape(L, d, h, f, max_len, kv_heads=kv)
    return spec, shape, build(config_from_plan(spec, shape))


@pytest.mark.parametrize("case", DECODER_SHAPES, ids=lambda c: f"{c[0]}-L{c[1]}-d{c[2]}-kv{c[4]}-tie{c[8]}")
def test_decoder_param_count(case):
    spec, shape, model = _decoder(case)
    total, nonemb = param_count(spec, shape)
    assert total == sum(p.numel() for p in model.parameters())
    tables = model.emb.word.weight.numel() + (model.emb.pos.weight.numel() if model.emb.pos is not None else 0)
    head = model.lm_head.weight.numel() if model.lm_head is not None else 0
    assert nonemb == total - tables - head


@pytest.mark.parametrize("T,B", [(16, 2), (7, 3)])
@pytest.mark.parametrize("case", DECODER_SHAPES, ids=lambda c: f"{c[0]}-L{c[1]}-d{c[2]}-kv{c[4]}")
def test_decoder_training_flops(case, T, B):
    """FlopCounterMode counts causal SDPA's full T x T square (the math kernel multiplies it all and
    masks); the accounting counts the lower triangle, 2*d*T(T+1)/2 multiply-adds per layer, so the
    measured attention part is rescaled by (T+1)/(2T) before comparing."""
    from growlang.accounting import reading

    spec, shape, model = _decoder(case)
    T = min(T, spec.max_len)
    r = reading(T, T, 1, 0.15, "clm")
    g = torch.Generator().manual_seed(T)
    ids = torch.randint(0, spec.vocab, (B, r.read_len), generator=g)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        model.loss(ids[:, :-1], torch.arange(T).expand(B, T), ids[:, 1:]).backward()
    full_square = 3 * 2 * (2 * shape.width * T * T) * shape.depth * B  # training FLOPs of the full square
    measured = counter.get_total_flops() - full_square + full_square * (T + 1) / (2 * T)
    expected = training_flops(forward_flops_per_sequence(spec, shape, r.encoder_len, r.predicted), B)
    assert abs(measured - expected) / expected < 0.01, (measured, expected)
