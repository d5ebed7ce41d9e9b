"""The model families a schedule can name (`model llama { ... }`): one table of what each family is.
Torch-free; the one table the schema, the checks, the accounting and the runtime read
(docs/language.md "Families"). Adding a family is one row here plus its model (the runtime's model
and Hugging Face export); a check asks the table (`family(name).prenorm`), never the name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal


@dataclass(frozen=True)
class Family:
    name: str
    summary: str
    objective: Literal["mlm", "clm"]  # masked LM (encoder) or causal LM (decoder)
    prenorm: bool  # norm before each residual branch (and a final norm after the last layer)
    norm: Literal["layernorm", "rmsnorm"]
    positions: Literal["learned", "rope"]  # a learned position table of max_len rows, or rotary
    mlp: Literal["gelu", "swiglu"]  # two matrices (up, down) or three (gate, up, down)
    bias: bool  # biases on every linear layer and norm
    gqa: bool  # takes the stage key `kv_heads` (grouped-query attention)
    keys: frozenset[str]  # the family-specific model-block keys it accepts (COMMON_KEYS aside)
    defaults: dict = field(hash=False)  # model-block defaults that differ by family
    hf_class: str  # the transformers class the final model exports as


# Model-block keys every family takes (their defaults are the same for all, or in `defaults`).
COMMON_KEYS = ("vocab", "head_dim", "ffn", "max_len", "dropout", "norm_eps")

_BERT = dict(objective="mlm", norm="layernorm", positions="learned", mlp="gelu", bias=True, gqa=False,
             keys=frozenset({"type_vocab"}), defaults={"type_vocab": 2, "dropout": 0.1, "norm_eps": 1e-12})
# GPT-2 and Llama defaults are the Hugging Face configs' (GPT2Config; LlamaConfig with Llama-2's
# rms_norm_eps). `tie`: GPT-2 ties its head to the token embeddings; Llama-2/3 7B+ do not (the
# small Llama-3.2 models do: write `tie=true`).
FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("bert", "post-LN BERT encoder (masked LM)", prenorm=False, hf_class="BertForMaskedLM", **_BERT),
    Family("bert-preln", "pre-LN encoder with a final LayerNorm (masked LM)", prenorm=True,
           hf_class="RobertaPreLayerNormForMaskedLM", **_BERT),
    Family("gpt2", "GPT-2 decoder (causal LM): pre-LN, learned positions, GELU MLP, biases", objective="clm",
           prenorm=True, norm="layernorm", positions="learned", mlp="gelu", bias=True, gqa=False,
           keys=frozenset({"tie"}), defaults={"dropout": 0.1, "norm_eps": 1e-5, "tie": True},
           hf_class="GPT2LMHeadModel"),
    Family("llama", "Llama decoder (causal LM): RMSNorm, rotary positions, SwiGLU, no biases, GQA",
           objective="clm", prenorm=True, norm="rmsnorm", positions="rope", mlp="swiglu", bias=False, gqa=True,
           keys=frozenset({"tie", "rope_theta"}),
           defaults={"dropout": 0.0, "norm_eps": 1e-5, "tie": False, "rope_theta": 10000.0},
           hf_class="LlamaForCausalLM"),
)}


def family(name: str) -> Family:
    """The table row of a family name; KeyError for a name the schema would have refused."""
    return FAMILIES[name]

