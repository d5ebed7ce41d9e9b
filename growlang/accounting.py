"""Parameters, tokens, training FLOPs and memory of one stage (each formula in its docstring).

Every formula here is cross-checked against the real runtime model by tests/runtime: the
parameter count against `sum(p.numel())`, the FLOPs against `torch.utils.flop_counter`.
"""

from __future__ import annotations

import math

from growlang.plan import Cost, ModelSpec, Reading, Shape


def predicted_positions(mask: float, read_len: int) -> int:
    """Masked positions per sequence: a fixed count, so every batch has the same shape.

    The first position is [CLS] and is never masked (BERT's create_pretraining_data rule).
    """
    return max(1, round(mask * (read_len - 1)))


def encoder_len(read_len: int, pool: int, predicted: int) -> int:
    """Positions the encoder runs on.

    Without pooling it is the sequence. With `len by pool` (CompoundGrow's mean embedding
    pooling) the stage reads `read_len` tokens: [CLS] stays, the other read_len-1 embeddings are
    mean-pooled in groups of k (the last group may be short), and the P masked tokens are appended
    unpooled with their own position embeddings: 1 + ceil((read_len-1)/k) + P.
    """
    if pool == 1:
        return read_len
    return 1 + math.ceil((read_len - 1) / pool) + predicted


def reading(length: int, read_len: int, pool: int, mask: float) -> Reading:
    """How a stage of `len=length` reads data (read_len = the child's len under `len by pool`)."""
    predicted = predicted_positions(mask, read_len)
    return Reading(length, read_len, pool, predicted, encoder_len(read_len, pool, predicted))


def steps_for_tokens(tokens: int, batch: int, read_len: int) -> int:
    """`tokens=` -> steps = ceil(tokens / (batch * read_len)), the inverse of `Cost.tokens`
    (language.md, budget keys)."""
    return max(1, math.ceil(tokens / (batch * read_len)))


def param_count(model: ModelSpec, shape: Shape) -> tuple[int, int]:
    """(all parameters, non-embedding parameters) of the runtime's masked-LM encoder.

    embeddings: word V*d + position max_len*d + type type_vocab*d + LayerNorm 2d
    per layer:  Q,K,V,out 4(d*d + d) + FFN 2*d*f + f + d + two LayerNorms 4d = 4d^2 + 2df + 9d + f
    MLM head:   transform d*d + d + LayerNorm 2d + decoder bias V (decoder weight tied to word)
    bert-preln: plus the final LayerNorm 2d after the last layer.
    """
    d, f, V = shape.width, shape.ffn, model.vocab
    embedding_tables = (V + model.max_len + model.type_vocab) * d
    layers = shape.depth * (4 * d * d + 2 * d * f + 9 * d + f)
    head = d * d + d + 2 * d + V
    final_ln = 2 * d if model.family == "bert-preln" else 0
    total = embedding_tables + 2 * d + layers + head + final_ln
    return total, total - embedding_tables


def forward_flops_per_sequence(model: ModelSpec, shape: Shape, enc_len: int, predicted: int) -> float:
    """Matmul FLOPs of one forward pass of one sequence (2 FLOPs per multiply-add).

    layers: L * [T*(4d^2 + 2df) + 2*T^2*d]  (QKV+out, FFN, scores + weighted sum) multiply-adds
    head:   P * (d^2 + d*V)                  (MLM transform + tied decoder, masked positions only)
    """
    d, f, T, V = shape.width, shape.ffn, enc_len, model.vocab
    macs = shape.depth * (T * (4 * d * d + 2 * d * f) + 2 * T * T * d) + predicted * (d * d + d * V)
    return 2.0 * macs


def training_flops(forward: float, sequences: int) -> float:
    """Forward + backward = 3 x forward (the backward pass costs two matmuls per forward one)."""
    return 3.0 * forward * sequences


def memory_bytes(params: int, shape: Shape, batch: int, enc_len: int, predicted: int,
                 vocab: int, precision: str) -> int:
    """Peak training memory estimate.

    State: fp32 weights + fp32 grads + two fp32 AdamW moments = 16 bytes per parameter (mixed
    precision keeps fp32 master weights, so this does not depend on `precision`).
    Activations per layer, after Korthikanti et al. 2022 ("Reducing Activation Recomputation",
    eq. 2): s*b*d*(34 + 5*h*s/d) bytes at 16-bit; we double it for fp32. The 5*h*s/d term is the
    stored attention matrix, which a fused SDPA kernel does not keep; we keep it (an upper bound).
    Head: logits and their gradient, b*P*V values each.
    """
    act_bytes = 1 if precision in ("bf16", "fp16") else 2
    d, h, T = shape.width, shape.heads, enc_len
    per_layer = T * batch * d * (34 + 5 * h * T / d) * act_bytes
    head = 2 * batch * predicted * vocab * 2 * act_bytes
    return int(16 * params + shape.depth * per_layer + head)


def stage_cost(model: ModelSpec, shape: Shape, read: Reading, *, batch: int, steps: int, precision: str) -> Cost:
    params, nonembedding = param_count(model, shape)
    fwd = forward_flops_per_sequence(model, shape, read.encoder_len, read.predicted)
    return Cost(
        params=params,
        nonembedding_params=nonembedding,
        tokens=batch * steps * read.read_len,
        flops=training_flops(fwd, batch * steps),
        flops_per_seq=3.0 * fwd,
        memory_bytes=memory_bytes(params, shape, batch, read.encoder_len, read.predicted, model.vocab, precision),
    )


def baseline_flops(model: ModelSpec, final: Shape, *, tokens: int, batch: int, mask: float) -> float:
    """The final model trained from scratch on the same tokens, at its own length and batch."""
    sequences = tokens / final.len
    predicted = predicted_positions(mask, final.len)
    fwd = forward_flops_per_sequence(model, final, final.len, predicted)
    return 3.0 * fwd * sequences
