"""BERT-style masked-LM encoder, in one file (nanoGPT style).

Two families:
- `bert`: post-LN, weight-compatible with transformers' BertForMaskedLM (runtime/hf.py maps names).
- `bert-preln`: pre-LN layers plus a final LayerNorm, weight-compatible with
  RobertaPreLayerNormForMaskedLM.

Besides the modules, this file declares the *structure* the growth operators dispatch on
(`param_roles`): for every parameter, what each axis indexes (hidden units it writes or reads,
heads, FFN units, vocabulary), how it is initialised, which layer it belongs to, and whether it
closes a residual branch. Operators never look at substrings of parameter names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn as nn
import torch.nn.functional as F

from growlang.families import FAMILIES
from growlang.plan import ModelSpec, Shape
from growlang.runtime.attention import scaled_dot_product_attention  # the stage's kernel
from growlang.runtime.embedding_pool import pool_embeddings
from growlang.runtime.linear_ce import linear_cross_entropy
from growlang.runtime.roles import Role, init_parameters


@dataclass
class EncoderConfig:
    family: str  # "bert" (post-LN) | "bert-preln" (pre-LN + final LayerNorm)
    vocab: int
    width: int  # d
    depth: int  # L
    heads: int  # h, head_dim = d / h
    ffn: int  # f
    max_len: int  # rows of the position table
    type_vocab: int = 2
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12

    def __post_init__(self):
        if self.family not in FAMILIES:
            raise ValueError(f"unknown model family {self.family!r} (expected one of {', '.join(FAMILIES)})")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")

    # what a growth cannot change (runtime/operators check_transition)
    WIDTH_FIELDS: ClassVar[tuple[str, ...]] = ("width", "heads")  # what a width growth changes
    FIXED_AT_GROWTH: ClassVar[tuple[str, ...]] = ("family", "vocab", "max_len", "type_vocab")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def kv_heads(self) -> int:
        return self.heads  # the encoder's attention is multi-head: keys and values have every head

    @classmethod
    def from_plan(cls, model: ModelSpec, shape: Shape) -> "EncoderConfig":
        return cls(family=model.family, vocab=model.vocab, width=shape.width, depth=shape.depth,
                   heads=shape.heads, ffn=shape.ffn, max_len=model.max_len, type_vocab=model.type_vocab,
                   dropout=model.dropout, layer_norm_eps=model.layer_norm_eps)


# ---------------------------------------------------------------------------------------------
# Structure declaration for the growth operators (runtime/roles.py defines the axis tags).


def layer_roles(cfg: "EncoderConfig", i: int) -> dict[str, Role]:
    p = f"layers.{i}."
    return {
        p + "attn.q.weight": Role(("head", "d_in"), "normal", i),
        p + "attn.q.bias": Role(("head",), "zeros", i),
        p + "attn.k.weight": Role(("head", "d_in"), "normal", i),
        p + "attn.k.bias": Role(("head",), "zeros", i),
        p + "attn.v.weight": Role(("head", "d_in"), "normal", i),
        p + "attn.v.bias": Role(("head",), "zeros", i),
        p + "attn.o.weight": Role(("d", "head_in"), "normal", i, branch_out=True),
        p + "attn.o.bias": Role(("d",), "zeros", i, branch_out=True),
        p + "attn_ln.weight": Role(("d",), "ones", i),
        p + "attn_ln.bias": Role(("d",), "zeros", i),
        p + "ffn.up.weight": Role(("f", "d_in"), "normal", i),
        p + "ffn.up.bias": Role(("f",), "zeros", i),
        p + "ffn.down.weight": Role(("d", "f_in"), "normal", i, branch_out=True),
        p + "ffn.down.bias": Role(("d",), "zeros", i, branch_out=True),
        p + "ffn_ln.weight": Role(("d",), "ones", i),
        p + "ffn_ln.bias": Role(("d",), "zeros", i),
    }


def param_roles(cfg: EncoderConfig) -> dict[str, Role]:
    """Every parameter of `Encoder(cfg)` by name, with its structural role."""
    roles = {
        "emb.word.weight": Role((None, "d"), "normal"),
        "emb.pos.weight": Role((None, "d"), "normal"),
        "emb.types.weight": Role((None, "d"), "normal"),
        "emb.ln.weight": Role(("d",), "ones"),
        "emb.ln.bias": Role(("d",), "zeros"),
    }
    for i in range(cfg.depth):
        roles.update(layer_roles(cfg, i))
    if FAMILIES[cfg.family].prenorm:  # the final LayerNorm after the last layer
        roles["final_ln.weight"] = Role(("d",), "ones")
        roles["final_ln.bias"] = Role(("d",), "zeros")
    roles.update({
        "head.dense.weight": Role(("d", "d_in"), "normal"),
        "head.dense.bias": Role(("d",), "zeros"),
        # the head LayerNorm feeds the tied decoder (logits = h . E^T), E copied not divided
        "head.ln.weight": Role(("d_tied",), "ones"),
        "head.ln.bias": Role(("d_tied",), "zeros"),
        "head.bias": Role((None,), "zeros"),
    })
    return roles


# ---------------------------------------------------------------------------------------------
# The network, top-down.


class Encoder(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.emb = Embeddings(cfg)
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.depth))
        self.final_ln = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps) if FAMILIES[cfg.family].prenorm else None
        self.head = MLMHead(cfg)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        init_parameters(self, param_roles(self.cfg), generator)

    def forward(self, input_ids: torch.Tensor, masked_positions: torch.Tensor | None = None,
                pool: int = 1, encoder_len: int | None = None, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, P, V) at the masked positions, or (B, T, V) at every position without them;
        with `targets` (B, P), their mean cross-entropy instead, the head's decoder and the loss
        fused (runtime/linear_ce.py). The loss is computed here, not beside forward, because FSDP
        gathers the sharded parameters in the module's forward hooks."""
        h = self.hidden(input_ids, masked_positions, pool, encoder_len)
        if targets is None:
            return self.head(h, self.emb.word.weight)
        h = self.head.transform(h)  # (B, P, d)
        return linear_cross_entropy(h.reshape(-1, h.shape[-1]), self.emb.word.weight, self.head.bias,
                                    targets.reshape(-1))

    def hidden(self, input_ids: torch.Tensor, masked_positions: torch.Tensor | None = None,
               pool: int = 1, encoder_len: int | None = None) -> torch.Tensor:
        """The last layer's states (B, P, d) at the masked positions (every position without them),
        before the head. `encoder_len`, the plan's `Reading.encoder_len`, is asserted against the
        positions the encoder really runs on (the plan's costs were computed for that length)."""
        if pool > 1 and masked_positions is None:
            raise ValueError("pool > 1 needs masked_positions (the pooled stage predicts masked tokens only)")
        x = self.emb(input_ids, masked_positions, pool)  # (B, T_enc, d)
        if encoder_len is not None and x.shape[1] != encoder_len:
            raise AssertionError(f"the encoder runs on {x.shape[1]} positions but the plan says {encoder_len}")
        for layer in self.layers:
            x = layer(x)  # (B, T_enc, d)
        if self.final_ln is not None:
            x = self.final_ln(x)
        if masked_positions is None:
            return x  # (B, T, d)
        P = masked_positions.shape[1]
        if pool > 1:
            return x[:, -P:]  # the masked tokens were appended unpooled at the end  (B, P, d)
        return torch.gather(x, 1, masked_positions.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # (B, P, d)

    def loss(self, input_ids: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor,
             pool: int = 1, encoder_len: int | None = None) -> torch.Tensor:
        """Mean cross-entropy at the masked positions, the same value as
        `F.cross_entropy(self(...).float(), targets)`."""
        return self(input_ids, positions, pool, encoder_len, targets=targets)


class Embeddings(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.word = nn.Embedding(cfg.vocab, cfg.width)
        self.pos = nn.Embedding(cfg.max_len, cfg.width)
        self.types = nn.Embedding(cfg.type_vocab, cfg.width)
        self.ln = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, input_ids: torch.Tensor, masked_positions: torch.Tensor | None, pool: int) -> torch.Tensor:
        B, T = input_ids.shape
        if T > self.pos.num_embeddings:
            raise ValueError(f"sequence length {T} exceeds max_len {self.pos.num_embeddings}")
        pos = torch.arange(T, device=input_ids.device)
        # token type ids are all 0: sequences are packed, no segment pairs
        e = self.word(input_ids) + self.pos(pos) + self.types.weight[0]  # (B, T, d)
        if pool > 1:
            e = pool_embeddings(e, masked_positions, pool)  # (B, 1 + ceil((T-1)/k) + P, d)
        return self.drop(self.ln(e))


class Layer(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.preln = FAMILIES[cfg.family].prenorm
        self.attn = Attention(cfg)
        self.attn_ln = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.ffn = FFN(cfg)
        self.ffn_ln = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        if self.preln:
            x = x + self.attn(self.attn_ln(x))
            return x + self.ffn(self.ffn_ln(x))
        x = self.attn_ln(x + self.attn(x))
        return self.ffn_ln(x + self.ffn(x))


class Attention(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.heads = cfg.heads
        self.q = nn.Linear(cfg.width, cfg.width)
        self.k = nn.Linear(cfg.width, cfg.width)
        self.v = nn.Linear(cfg.width, cfg.width)
        self.o = nn.Linear(cfg.width, cfg.width)
        self.p = cfg.dropout
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, d = x.shape
        h = self.heads

        def split(t):  # (B, T, d) -> (B, h, T, d/h)
            return t.view(B, T, h, d // h).transpose(1, 2)

        # no mask: packed sequences have no padding
        y = scaled_dot_product_attention(split(self.q(x)), split(self.k(x)), split(self.v(x)),
                                           dropout_p=self.p if self.training else 0.0)  # (B, h, T, d/h)
        y = y.transpose(1, 2).reshape(B, T, d)  # (B, T, d)
        return self.drop(self.o(y))


class FFN(nn.Module):
    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.up = nn.Linear(cfg.width, cfg.ffn)
        self.down = nn.Linear(cfg.ffn, cfg.width)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        return self.drop(self.down(F.gelu(self.up(x))))  # exact erf GELU, HF's "gelu"


class MLMHead(nn.Module):
    """dense d->d, GELU, LayerNorm, then the decoder tied to the word embeddings, plus a bias."""

    def __init__(self, cfg: EncoderConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.width, cfg.width)
        self.ln = nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(cfg.vocab))

    def transform(self, h: torch.Tensor) -> torch.Tensor:  # (B, P, d) -> (B, P, d)
        return self.ln(F.gelu(self.dense(h)))

    def forward(self, h: torch.Tensor, word: torch.Tensor) -> torch.Tensor:  # (B, P, d) -> (B, P, V)
        return F.linear(self.transform(h), word, self.bias)
