"""Hugging Face configs: a runtime ModelConfig as a transformers config (export), and config.json
read back as a ModelConfig (import), refusing the settings under which growlang's model would
compute another function (`NEEDS`).

Reading needs no transformers: `import_hf` loads a folder with safetensors and torch alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from growlang.runtime.architectures import ModelConfig
from growlang.runtime.decoder import DecoderConfig
from growlang.runtime.errors import UserError
from growlang.runtime.model import EncoderConfig

MODEL_TYPES = {"bert": "bert", "bert-preln": "roberta-prelayernorm", "gpt2": "gpt2", "llama": "llama"}  # config.json
_FAMILY_OF = {model_type: family for family, model_type in MODEL_TYPES.items()}

TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def token_ids(tokenizer) -> dict[str, int | None]:
    """A decoder's special token ids, from its tokenizer (`<|endoftext|>` is bos, eos and pad of
    the byte-level BPE); None without one, so no id points at an arbitrary token."""
    return {key: getattr(tokenizer, key, None) if tokenizer is not None else None for key in TOKEN_IDS}


def position_offset(family: str, pad_token_id: int | None) -> int:
    """Rows of the HF position table before growlang's position 0, for export and import alike.
    RoBERTa numbers a sequence's tokens from padding_idx + 1 and gives padding tokens position
    padding_idx (transformers' `create_position_ids_from_input_ids`: cumsum(ids != pad) + pad), so
    a bert-preln table has pad_token_id + 1 rows no real token reads: 2 for RoBERTa's own pad id 1
    (514 positions, max_len 512), 0 for pad_token_id -1 (growlang's exports before issue 12 item 17,
    and still the export without a pad token). BERT numbers from 0."""
    return pad_token_id + 1 if family == "bert-preln" else 0


def hf_config(cfg: ModelConfig, ids: dict[str, int | None] | None = None):
    """The transformers config of `cfg`; `ids` (bos/eos/pad) are written for decoders, and the pad
    id for bert-preln."""
    if isinstance(cfg, DecoderConfig):
        return _decoder_config(cfg, ids or token_ids(None))
    common = dict(vocab_size=cfg.vocab, hidden_size=cfg.width, num_hidden_layers=cfg.depth,
                  num_attention_heads=cfg.heads, intermediate_size=cfg.ffn, hidden_act="gelu",
                  hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
                  type_vocab_size=cfg.type_vocab, layer_norm_eps=cfg.layer_norm_eps, tie_word_embeddings=True)
    if cfg.family == "bert":
        from transformers import BertConfig
        return BertConfig(**common, max_position_embeddings=cfg.max_len, architectures=["BertForMaskedLM"])
    from transformers import RobertaPreLayerNormConfig
    # The tokenizer's pad id: HF pads with it, and fine-tuning freezes (nn.Embedding's padding_idx)
    # only [PAD]'s word row and the pad position's row. Without a pad token (or a tokenizer) -1: no
    # token is padding, the table unshifted, but padding_idx -1 is the last row of both tables.
    pad = (ids or {}).get("pad_token_id")
    pad = -1 if pad is None else pad
    return RobertaPreLayerNormConfig(**common, max_position_embeddings=cfg.max_len + position_offset(cfg.family, pad),
                                     pad_token_id=pad, bos_token_id=None, eos_token_id=None,
                                     architectures=["RobertaPreLayerNormForMaskedLM"])


def _decoder_config(cfg: DecoderConfig, ids: dict[str, int | None]):
    common = dict(vocab_size=cfg.vocab, tie_word_embeddings=cfg.tie, architectures=[cfg.arch.hf_class], **ids)
    if cfg.family == "gpt2":
        from transformers import GPT2Config
        return GPT2Config(n_embd=cfg.width, n_layer=cfg.depth, n_head=cfg.heads, n_inner=cfg.ffn,
                          n_positions=cfg.max_len, activation_function="gelu_new",
                          layer_norm_epsilon=cfg.layer_norm_eps, resid_pdrop=cfg.dropout, embd_pdrop=cfg.dropout,
                          attn_pdrop=cfg.dropout, **common)
    from transformers import LlamaConfig
    return LlamaConfig(hidden_size=cfg.width, intermediate_size=cfg.ffn, num_hidden_layers=cfg.depth,
                       num_attention_heads=cfg.heads, num_key_value_heads=cfg.kv_heads, head_dim=cfg.head_dim,
                       rms_norm_eps=cfg.layer_norm_eps, max_position_embeddings=cfg.max_len,
                       rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
                       attention_bias=False, mlp_bias=False, hidden_act="silu", attention_dropout=cfg.dropout,
                       **common)


def read_json(folder: str | Path) -> dict:
    """config.json of an HF model folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    path = folder / "config.json"
    if not path.is_file():
        raise UserError(f"{folder} is not a Hugging Face model folder (no config.json)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None


class Need(NamedTuple):
    """A config.json field growlang reads only at certain values (others compute another function)."""

    key: str  # "a.b" for a nested field
    default: object  # transformers' value when config.json omits it
    allowed: tuple
    why: str  # what growlang computes, and what to do


_ENCODER_NEEDS = (
    Need("hidden_act", "gelu", ("gelu",), "growlang's encoder uses exact GELU ('gelu')"),
    Need("position_embedding_type", "absolute", ("absolute",), "growlang's encoder has a learned absolute "
         "position table"),
    Need("tie_word_embeddings", True, (True,), "growlang's MLM decoder is the token embedding; an untied MLM "
         "decoder is not supported"),
)
NEEDS = {
    "bert": _ENCODER_NEEDS,
    "bert-preln": _ENCODER_NEEDS,  # any pad_token_id: it only shifts the position table (_max_len)
    "gpt2": (
        Need("activation_function", "gelu_new", ("gelu_new", "gelu_pytorch_tanh"), "growlang's GPT-2 MLP uses "
             "GELU's tanh approximation ('gelu_new' or 'gelu_pytorch_tanh')"),
        Need("scale_attn_weights", True, (True,), "growlang scales attention scores by 1/sqrt(head_dim)"),
        Need("scale_attn_by_inverse_layer_idx", False, (False,), "growlang does not scale attention by "
             "1/(layer+1); set it to false only if the model was trained without it"),
        Need("add_cross_attention", False, (False,), "growlang's GPT-2 is decoder-only (no cross-attention)"),
    ),
    "llama": (
        Need("hidden_act", "silu", ("silu",), "growlang's Llama MLP is SwiGLU, gated by SiLU ('silu')"),
        Need("attention_bias", False, (False,), "growlang's Llama has no biases (biased q/k/v/o projections, "
             "as in Qwen2, are not supported)"),
        Need("mlp_bias", False, (False,), "growlang's Llama has no biases"),
        Need("rope_scaling", None, (None,), "growlang's Llama has plain RoPE; a model trained with scaled RoPE "
             "(Llama 3.1's 'llama3', 'linear', 'dynamic', 'yarn') computes other logits: use one trained without it"),
        Need("rope_parameters.rope_type", "default", ("default",), "growlang's Llama has plain RoPE; a model "
             "trained with scaled RoPE (Llama 3.1's 'llama3', 'linear', 'dynamic', 'yarn') computes other logits: "
             "use one trained without it"),
    ),
}


def _field(c: dict, key: str, default):
    *outer, leaf = key.split(".")
    for k in outer:
        c = c.get(k) or {}
    return c.get(leaf, default)


def _max_len(c: dict, family: str) -> int:
    """growlang's positions: the HF table less its RoBERTa-numbered leading rows (position_offset)."""
    rows = c["max_position_embeddings"]
    if family != "bert-preln":
        return rows
    if "pad_token_id" not in c:  # transformers would default to RoBERTa's 1: say it rather than guess
        raise ValueError("no `pad_token_id`; a RoBERTa-PreLN model needs it, as its position ids count from it "
                         "(-1 if it has no padding token)")
    pad = c["pad_token_id"]
    if type(pad) is not int or not -1 <= pad < c["vocab_size"]:  # bool is an int subclass: not a pad id
        raise ValueError(f"`pad_token_id` is {json.dumps(pad)}; a RoBERTa-PreLN model needs an integer from -1 "
                         f"(no padding token) to vocab_size - 1, as its position ids count from it")
    offset = position_offset(family, pad)
    if rows <= offset:
        raise ValueError(f"`max_position_embeddings` is {rows}, which leaves no position after the "
                         f"{offset} rows RoBERTa reserves for pad_token_id {pad} (it needs more than {offset})")
    return rows - offset


def _encoder(c: dict, family: str) -> EncoderConfig:
    return EncoderConfig(family=family, vocab=c["vocab_size"], width=c["hidden_size"],
                         depth=c["num_hidden_layers"], heads=c["num_attention_heads"],
                         ffn=c["intermediate_size"], max_len=_max_len(c, family),
                         type_vocab=c.get("type_vocab_size", 2), dropout=c.get("hidden_dropout_prob", 0.1),
                         layer_norm_eps=c.get("layer_norm_eps", 1e-12))


def _gpt2(c: dict, family: str) -> DecoderConfig:
    return DecoderConfig(family, vocab=c["vocab_size"], width=c["n_embd"], depth=c["n_layer"], heads=c["n_head"],
                         ffn=c.get("n_inner") or 4 * c["n_embd"], max_len=c["n_positions"],
                         tie=c.get("tie_word_embeddings", True), dropout=c.get("resid_pdrop", 0.1),
                         layer_norm_eps=c.get("layer_norm_epsilon", 1e-5))


def _llama(c: dict, family: str) -> DecoderConfig:
    width, heads = c["hidden_size"], c["num_attention_heads"]
    head_dim = c.get("head_dim") or width // heads
    if head_dim * heads != width:
        raise ValueError(f"`head_dim` is {head_dim}, not hidden_size/num_attention_heads = {width / heads:g}; "
                         "growlang's head size is width/heads (a wider or narrower head is not supported)")
    rope = c.get("rope_parameters") or {}  # transformers 5; 4.x wrote `rope_theta` at the top level
    return DecoderConfig(family, vocab=c["vocab_size"], width=width, depth=c["num_hidden_layers"], heads=heads,
                         ffn=c["intermediate_size"], max_len=c["max_position_embeddings"],
                         kv_heads=c.get("num_key_value_heads") or heads, tie=c.get("tie_word_embeddings", False),
                         dropout=c.get("attention_dropout", 0.0), layer_norm_eps=c.get("rms_norm_eps", 1e-6),
                         rope_theta=rope.get("rope_theta", c.get("rope_theta", 10000.0)))


_READERS = {"bert": _encoder, "bert-preln": _encoder, "gpt2": _gpt2, "llama": _llama}


def read_config(folder: str | Path) -> ModelConfig:
    """The runtime config of an HF folder's config.json; a UserError naming the field when growlang
    cannot read it or would compute another function."""
    c = read_json(folder)
    path = Path(folder) / "config.json"
    family = _FAMILY_OF.get(c.get("model_type"))
    if family is None:
        raise UserError(f"{folder} holds a {c.get('model_type')!r} model (config.json `model_type`); growlang "
                        f"reads BERT masked-LM models ('bert', or 'roberta-prelayernorm' for bert-preln) and "
                        f"GPT-2 ('gpt2') or Llama ('llama') causal LMs")
    for need in NEEDS[family]:
        value = _field(c, need.key, need.default)
        if value not in need.allowed:
            raise UserError(f"{path}: `{need.key}` is {json.dumps(value)}; {need.why}")
    try:
        return _READERS[family](c, family)
    except KeyError as e:
        raise UserError(f"{path} lacks {e.args[0]!r}") from None
    except ValueError as e:
        raise UserError(f"{path}: {e}") from None
