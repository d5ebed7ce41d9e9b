"""Causal (decoder-only) language models, in one file (nanoGPT style).

Two families, both pre-norm (growlang/families.py holds what each is made of):
- `gpt2`: LayerNorm, learned positions, GELU (tanh) MLP, biases; weight-compatible with
  transformers' GPT2LMHeadModel (runtime/hf.py maps the names; GPT-2's Conv1D stores weights
  transposed).
- `llama`: RMSNorm, rotary positions (RoPE, HF's rotate-half layout), SwiGLU MLP, no biases,
  grouped-query attention (`kv_heads` key/value heads, each shared by heads/kv_heads query heads);
  weight-compatible with LlamaForCausalLM.
The output head is tied to the token embedding (`tie`) or its own matrix.

As in runtime/model.py, `param_roles` declares every parameter's structure (runtime/roles.py) for
the growth operators.
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
from growlang.runtime.linear_ce import linear_cross_entropy
from growlang.runtime.roles import Role, init_parameters


@dataclass
class DecoderConfig:
    family: str  # "gpt2" | "llama"
    vocab: int
    width: int  # d
    depth: int  # L
    heads: int  # query heads h, head_dim = d / h
    ffn: int  # f
    max_len: int  # longest sequence (gpt2: rows of the position table)
    kv_heads: int | None = None  # key/value heads (GQA); None = heads (multi-head attention)
    tie: bool = True  # output head = token embedding
    dropout: float = 0.0
    layer_norm_eps: float = 1e-5  # the norms' epsilon (LayerNorm or RMSNorm)
    rope_theta: float = 10000.0

    WIDTH_FIELDS: ClassVar[tuple[str, ...]] = ("width", "heads", "kv_heads")  # what a width growth changes
    FIXED_AT_GROWTH: ClassVar[tuple[str, ...]] = ("family", "vocab", "max_len", "tie", "rope_theta")

    def __post_init__(self):
        if self.family not in FAMILIES or FAMILIES[self.family].objective != "clm":
            clm = [n for n, f in FAMILIES.items() if f.objective == "clm"]
            raise ValueError(f"{self.family!r} is not a decoder family (expected one of {', '.join(clm)})")
        if self.kv_heads is None:
            self.kv_heads = self.heads
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.heads % self.kv_heads:
            raise ValueError(f"heads {self.heads} is not a multiple of kv_heads {self.kv_heads}")

    @property
    def head_dim(self) -> int:
        return self.width // self.heads

    @property
    def arch(self):
        return FAMILIES[self.family]

    @classmethod
    def from_plan(cls, model: ModelSpec, shape: Shape) -> "DecoderConfig":
        return cls(family=model.family, vocab=model.vocab, width=shape.width, depth=shape.depth,
                   heads=shape.heads, ffn=shape.ffn, max_len=model.max_len, kv_heads=shape.kv_heads,
                   tie=model.tie, dropout=model.dropout, layer_norm_eps=model.layer_norm_eps,
                   rope_theta=model.rope_theta)


# ---------------------------------------------------------------------------------------------
# Structure declaration for the growth operators (runtime/roles.py defines the axis tags).


def _norm_roles(name: str, cfg: DecoderConfig, i: int | None, tag: str = "d") -> dict[str, Role]:
    roles = {name + ".weight": Role((tag,), "ones", i)}
    if cfg.arch.norm == "layernorm":
        roles[name + ".bias"] = Role((tag,), "zeros", i)
    return roles


def _linear_roles(name: str, cfg: DecoderConfig, out_tag: str, in_tag: str, i: int,
                  branch_out: bool = False) -> dict[str, Role]:
    roles = {name + ".weight": Role((out_tag, in_tag), "normal", i, branch_out)}
    if cfg.arch.bias:
        roles[name + ".bias"] = Role((out_tag,), "zeros", i, branch_out)
    return roles


def layer_roles(cfg: DecoderConfig, i: int) -> dict[str, Role]:
    p = f"layers.{i}."
    # in multi-head attention K and V rows are whole query heads; under GQA whole kv heads
    kv = "kv" if cfg.arch.gqa else "head"
    roles = {
        **_norm_roles(p + "attn_norm", cfg, i),
        **_linear_roles(p + "attn.q", cfg, "head", "d_in", i),
        **_linear_roles(p + "attn.k", cfg, kv, "d_in", i),
        **_linear_roles(p + "attn.v", cfg, kv, "d_in", i),
        **_linear_roles(p + "attn.o", cfg, "d", "head_in", i, branch_out=True),
        **_norm_roles(p + "mlp_norm", cfg, i),
    }
    if cfg.arch.mlp == "swiglu":  # gate and up both write the inner units: SiLU(gate) * up is per unit
        roles.update(_linear_roles(p + "mlp.gate", cfg, "f", "d_in", i))
    roles.update(_linear_roles(p + "mlp.up", cfg, "f", "d_in", i))
    roles.update(_linear_roles(p + "mlp.down", cfg, "d", "f_in", i, branch_out=True))
    return roles


def param_roles(cfg: DecoderConfig) -> dict[str, Role]:
    """Every parameter of `Decoder(cfg)` by name, with its structural role."""
    roles = {"emb.word.weight": Role((None, "d"), "normal")}
    if cfg.arch.positions == "learned":
        roles["emb.pos.weight"] = Role((None, "d"), "normal")
    for i in range(cfg.depth):
        roles.update(layer_roles(cfg, i))
    # tied: logits = norm(x) . E^T read E's copied columns, so the final norm carries the division
    roles.update(_norm_roles("final_norm", cfg, None, "d_tied" if cfg.tie else "d"))
    if not cfg.tie:
        roles["lm_head.weight"] = Role((None, "d_in"), "normal")
    return roles


# ---------------------------------------------------------------------------------------------
# The network, top-down.


class Decoder(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.emb = Embeddings(cfg)
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.depth))
        self.final_norm = norm(cfg)
        self.lm_head = None if cfg.tie else nn.Linear(cfg.width, cfg.vocab, bias=False)
        self.reset_parameters()

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        init_parameters(self, param_roles(self.cfg), generator)

    def forward(self, input_ids: torch.Tensor, targets: torch.Tensor | None = None) -> torch.Tensor:
        """Logits (B, T, V); with `targets` (B, T), their mean cross-entropy instead, the head and
        the loss fused (runtime/linear_ce.py; in forward, where FSDP gathers the parameters)."""
        h = self.hidden(input_ids)  # (B, T, d)
        if targets is None:
            return F.linear(h, self.head_weight())
        return linear_cross_entropy(h.reshape(-1, h.shape[-1]), self.head_weight(), None, targets.reshape(-1))

    def head_weight(self) -> torch.Tensor:  # (V, d): the word embeddings when tied
        return self.emb.word.weight if self.lm_head is None else self.lm_head.weight

    def hidden(self, input_ids: torch.Tensor) -> torch.Tensor:  # (B, T) -> final-norm states (B, T, d)
        T = input_ids.shape[1]
        if T > self.cfg.max_len:
            raise ValueError(f"sequence length {T} exceeds max_len {self.cfg.max_len}")
        x = self.emb(input_ids)  # (B, T, d)
        rope = rotary(T, self.cfg.head_dim, self.cfg.rope_theta, x.device) if self.cfg.arch.positions == "rope" else None
        for layer in self.layers:
            x = layer(x, rope)
        return self.final_norm(x)

    @torch.no_grad()
    def generate(self, input_ids: torch.Tensor, new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Sample `new_tokens` after `input_ids` (B, T0), top-k then temperature (nanoGPT's
        sampler); the context is cut to the last max_len tokens. Returns (B, T0 + new_tokens)."""
        ids = input_ids
        for _ in range(new_tokens):
            logits = self(ids[:, -self.cfg.max_len:])[:, -1].float() / max(temperature, 1e-6)  # (B, V)
            if top_k is not None:
                kth = torch.topk(logits, min(top_k, logits.shape[-1])).values[:, -1:]
                logits = logits.masked_fill(logits < kth, float("-inf"))
            probs = F.softmax(logits, dim=-1)
            nxt = torch.multinomial(probs.cpu(), 1, generator=generator).to(ids.device)
            ids = torch.cat([ids, nxt], dim=1)
        return ids

    def loss(self, input_ids: torch.Tensor, positions: torch.Tensor, targets: torch.Tensor,
             pool: int = 1, encoder_len: int | None = None) -> torch.Tensor:
        """Next-token cross entropy: `targets[:, t]` is the token after `input_ids[:, t]`; every
        position predicts (`positions` is 0..T-1, the plan's Reading.predicted = T). The signature
        is the encoder's, so the trainer and the data-parallel wrappers call both alike."""
        if pool != 1:
            raise ValueError("a causal LM does not pool its input (`len by pool` is MLM-only)")
        T = input_ids.shape[1]
        if positions.shape[1] != T or (encoder_len is not None and encoder_len != T):
            raise AssertionError(f"a causal LM predicts at all {T} positions; the batch has {positions.shape[1]} "
                                 f"and the plan says {encoder_len}")
        return self(input_ids, targets)


class Embeddings(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.word = nn.Embedding(cfg.vocab, cfg.width)
        self.pos = nn.Embedding(cfg.max_len, cfg.width) if cfg.arch.positions == "learned" else None
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.word(input_ids)  # (B, T, d)
        if self.pos is not None:
            x = x + self.pos(torch.arange(input_ids.shape[1], device=input_ids.device))
        return self.drop(x)


def norm(cfg: DecoderConfig) -> nn.Module:
    if cfg.arch.norm == "rmsnorm":
        return nn.RMSNorm(cfg.width, eps=cfg.layer_norm_eps)
    return nn.LayerNorm(cfg.width, eps=cfg.layer_norm_eps)


def rotary(T: int, head_dim: int, theta: float, device) -> tuple[torch.Tensor, torch.Tensor]:
    """RoPE (Su et al. 2021) in HF Llama's layout: frequency j on dims j and j + head_dim/2,
    cos and sin of shape (T, head_dim)."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=device) / head_dim)
    angles = torch.outer(torch.arange(T, dtype=torch.float32, device=device), inv_freq)  # (T, head_dim/2)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """x (B, h, T, head_dim) rotated: x*cos + rotate_half(x)*sin, rotate_half(a, b) = (-b, a)."""
    cos, sin = rope
    a, b = x.chunk(2, dim=-1)
    return x * cos.to(x.dtype) + torch.cat([-b, a], dim=-1) * sin.to(x.dtype)


class Block(nn.Module):
    """Pre-norm: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.attn_norm = norm(cfg)
        self.attn = Attention(cfg)
        self.mlp_norm = norm(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, rope) -> torch.Tensor:  # (B, T, d) -> (B, T, d)
        x = x + self.attn(self.attn_norm(x), rope)
        return x + self.mlp(self.mlp_norm(x))


class Attention(nn.Module):
    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = cfg.heads, cfg.kv_heads, cfg.head_dim
        bias = cfg.arch.bias
        self.q = nn.Linear(cfg.width, cfg.heads * cfg.head_dim, bias=bias)
        self.k = nn.Linear(cfg.width, cfg.kv_heads * cfg.head_dim, bias=bias)
        self.v = nn.Linear(cfg.width, cfg.kv_heads * cfg.head_dim, bias=bias)
        self.o = nn.Linear(cfg.heads * cfg.head_dim, cfg.width, bias=bias)
        self.p = cfg.dropout
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor, rope) -> torch.Tensor:
        B, T, _ = x.shape

        def split(t, n):  # (B, T, n*hd) -> (B, n, T, hd)
            return t.view(B, T, n, self.head_dim).transpose(1, 2)

        q, k, v = split(self.q(x), self.heads), split(self.k(x), self.kv_heads), split(self.v(x), self.kv_heads)
        if rope is not None:
            q, k = apply_rotary(q, rope), apply_rotary(k, rope)
        group = self.heads // self.kv_heads
        if group > 1:  # query head i reads kv head i // group (HF's repeat_kv)
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        y = scaled_dot_product_attention(q, k, v, is_causal=True,
                                           dropout_p=self.p if self.training else 0.0)  # (B, h, T, hd)
        return self.drop(self.o(y.transpose(1, 2).reshape(B, T, -1)))


class MLP(nn.Module):
    """GELU (GPT-2's tanh approximation, HF "gelu_new"): down(gelu(up x)).
    SwiGLU (Shazeer 2020; Llama): down(silu(gate x) * up x)."""

    def __init__(self, cfg: DecoderConfig):
        super().__init__()
        bias = cfg.arch.bias
        self.gate = nn.Linear(cfg.width, cfg.ffn, bias=bias) if cfg.arch.mlp == "swiglu" else None
        self.up = nn.Linear(cfg.width, cfg.ffn, bias=bias)
        self.down = nn.Linear(cfg.ffn, cfg.width, bias=bias)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate is not None:
            h = F.silu(self.gate(x)) * self.up(x)
        else:
            h = F.gelu(self.up(x), approximate="tanh")
        return self.drop(self.down(h))
