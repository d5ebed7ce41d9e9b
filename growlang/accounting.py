"""Parameters, tokens, training FLOPs and memory of one stage (each formula in its docstring).

Every formula here is cross-checked against the real runtime model by tests/runtime: the
parameter count against `sum(p.numel())`, the FLOPs against `torch.utils.flop_counter`.
Masked-LM families (bert, bert-preln) use the encoder formulas, causal-LM families (gpt2, llama)
the decoder ones; what a family is comes from growlang.families.
"""

from __future__ import annotations

import math

from growlang.families import family
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


def reading(length: int, read_len: int, pool: int, mask: float, objective: str = "mlm") -> Reading:
    """How a stage of `len=length` reads data (read_len = the child's len under `len by pool`).

    clm (next-token prediction): a sequence is T+1 consecutive tokens, the inputs are the first T
    and the targets the next T, so every input position has a loss and nothing is pooled (`len by
    pool` is refused for clm families): Reading(T, T+1, 1, T, T).
    """
    if objective == "clm":
        return Reading(length, length + 1, 1, length, length)
    predicted = predicted_positions(mask, read_len)
    return Reading(length, read_len, pool, predicted, encoder_len(read_len, pool, predicted))


def tokens_per_sequence(model: ModelSpec, read: Reading) -> int:
    """Tokens one sequence adds to `Cost.tokens`: mlm the tokens read (read_len); clm the T tokens
    trained on (the extra token read is only the last target)."""
    return read.len if family(model.family).objective == "clm" else read.read_len


def steps_for_tokens(tokens: int, batch: int, per_sequence: int) -> int:
    """`tokens=` -> steps = ceil(tokens / (batch * per_sequence)), the inverse of `Cost.tokens`
    (per_sequence = tokens_per_sequence; language.md, budget keys)."""
    return max(1, math.ceil(tokens / (batch * per_sequence)))


def param_count(model: ModelSpec, shape: Shape) -> tuple[int, int]:
    """(all parameters, non-embedding parameters) of the runtime's model of `model.family`."""
    if family(model.family).objective == "clm":
        return decoder_param_count(model, shape)
    return encoder_param_count(model, shape)


def encoder_param_count(model: ModelSpec, shape: Shape) -> tuple[int, int]:
    """(all parameters, non-embedding parameters) of the runtime's masked-LM encoder.

    embeddings: word V*d + position max_len*d + type type_vocab*d + LayerNorm 2d
    per layer:  Q,K,V,out 4(d*d + d) + FFN 2*d*f + f + d + two LayerNorms 4d = 4d^2 + 2df + 9d + f
    MLM head:   transform d*d + d + LayerNorm 2d + decoder bias V (decoder weight tied to word)
    pre-LN (bert-preln): plus the final LayerNorm 2d after the last layer.
    Non-embedding: all but the three embedding tables.
    """
    d, f, V = shape.width, shape.ffn, model.vocab
    embedding_tables = (V + model.max_len + model.type_vocab) * d
    layers = shape.depth * (4 * d * d + 2 * d * f + 9 * d + f)
    head = d * d + d + 2 * d + V
    final_ln = 2 * d if family(model.family).prenorm else 0
    total = embedding_tables + 2 * d + layers + head + final_ln
    return total, total - embedding_tables


def decoder_param_count(model: ModelSpec, shape: Shape) -> tuple[int, int]:
    """(all parameters, non-embedding parameters) of the runtime's causal-LM decoder; kvd = kv_heads * hd
    (hd = d / heads), a norm is 2d (LayerNorm, weight and bias) or d (RMSNorm, weight only).

    gpt2:  token V*d + position max_len*d; per layer ln_1 2d, q/k/v/o 4(d*d + d), ln_2 2d,
           MLP up d*f + f, down f*d + d; final LayerNorm 2d
    llama: token V*d (no position table); per layer two RMSNorms 2d, q d*d, k and v d*kvd each,
           o d*d, gate/up d*f each, down f*d (no biases); final RMSNorm d
    untied (tie=false): plus the head V*d (no bias); tied, the head is the token table.
    Non-embedding (Kaplan et al. 2020): all but the token and position tables and the untied head,
    so it does not depend on `tie`.
    """
    fam = family(model.family)
    d, f, V, L = shape.width, shape.ffn, model.vocab, shape.depth
    kvd = shape.kv_heads * (d // shape.heads)
    norm = 2 * d if fam.norm == "layernorm" else d
    n_mlp = 3 if fam.mlp == "swiglu" else 2
    attention = 2 * d * d + 2 * d * kvd + ((2 * d + 2 * kvd) if fam.bias else 0)
    mlp = n_mlp * d * f + (((n_mlp - 1) * f + d) if fam.bias else 0)
    vocab_tables = V * d + (model.max_len * d if fam.positions == "learned" else 0) + (0 if model.tie else V * d)
    total = vocab_tables + L * (2 * norm + attention + mlp) + norm
    return total, total - vocab_tables


def forward_flops_per_sequence(model: ModelSpec, shape: Shape, enc_len: int, predicted: int) -> float:
    """Matmul FLOPs of one forward pass of one sequence of the runtime's model of `model.family`."""
    if family(model.family).objective == "clm":
        return decoder_forward_flops(model, shape, enc_len)
    return encoder_forward_flops(model, shape, enc_len, predicted)


def encoder_forward_flops(model: ModelSpec, shape: Shape, enc_len: int, predicted: int) -> float:
    """Matmul FLOPs of one forward pass of one sequence (2 FLOPs per multiply-add).

    layers: L * [T*(4d^2 + 2df) + 2*T^2*d]  (QKV+out, FFN, scores + weighted sum) multiply-adds
    head:   P * (d^2 + d*V)                  (MLM transform + tied decoder, masked positions only)
    """
    d, f, T, V = shape.width, shape.ffn, enc_len, model.vocab
    macs = shape.depth * (T * (4 * d * d + 2 * d * f) + 2 * T * T * d) + predicted * (d * d + d * V)
    return 2.0 * macs


def decoder_forward_flops(model: ModelSpec, shape: Shape, length: int) -> float:
    """Matmul FLOPs of one causal-LM forward pass of one sequence of T = `length` inputs (2 FLOPs
    per multiply-add); kvd = kv_heads * hd, n_mlp = 2 (GELU: up, down) or 3 (SwiGLU: gate, up, down).

    layers: L * [T*(2d^2 + 2*d*kvd + n_mlp*d*f) + d*T*(T+1)]  (q and o, k and v, MLP, attention)
    head:   T * d * V                                         (logits at every position)
    Causal attention: query i scores i+1 keys and sums i+1 values, per head hd multiply-adds each,
    so scores + weighted sum = 2*d*T(T+1)/2 = d*T(T+1), the lower triangle only. torch's
    FlopCounterMode counts SDPA's full T x T square (2*d*T^2), so tests/runtime rescale its
    attention count by (T+1)/(2T). Rotary embeddings and norms are elementwise: not counted.
    """
    fam = family(model.family)
    d, f, T, V = shape.width, shape.ffn, length, model.vocab
    kvd = shape.kv_heads * (d // shape.heads)
    n_mlp = 3 if fam.mlp == "swiglu" else 2
    macs = shape.depth * (T * (2 * d * d + 2 * d * kvd + n_mlp * d * f) + d * T * (T + 1)) + T * d * V
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
    Head: logits and their gradient, b*P*V values each (clm: P = T, logits at every position).
    Decoders use the same formula with their own numbers (T = the stage's len).
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
        tokens=batch * steps * tokens_per_sequence(model, read),
        flops=training_flops(fwd, batch * steps),
        flops_per_seq=3.0 * fwd,
        memory_bytes=memory_bytes(params, shape, batch, read.encoder_len, read.predicted, model.vocab, precision),
    )


def baseline_flops(model: ModelSpec, final: Shape, *, tokens: int, batch: int, mask: float) -> float:
    """The final model trained from scratch on the same tokens, at its own length and batch, reading
    as any stage of its family reads (tokens / tokens_per_sequence sequences)."""
    read = reading(final.len, final.len, 1, mask, family(model.family).objective)
    sequences = tokens / tokens_per_sequence(model, read)
    fwd = forward_flops_per_sequence(model, final, read.encoder_len, read.predicted)
    return 3.0 * fwd * sequences
