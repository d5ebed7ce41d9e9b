"""Hugging Face format: export a runtime model, import a local HF folder of a supported family.

Encoders (masked LM, runtime/model.py):
- `bert` exports as transformers' BertForMaskedLM (same modules, post-LN).
- `bert-preln` exports as RobertaPreLayerNormForMaskedLM: pre-LN layers, final LayerNorm, same
  MLM head. RoBERTa numbers positions from padding_idx+1 and gives padding tokens position
  padding_idx (`create_position_ids_from_input_ids`). Shifting the table would still misplace
  any real token equal to the pad id, so we export pad_token_id = -1: no token is padding, the
  position ids are cumsum(1) - 1 = 0..T-1, exactly ours, with the table unshifted (transformers
  logs a warning about the out-of-vocabulary pad id; it is harmless here).
Decoders (causal LM, runtime/decoder.py):
- `gpt2` exports as GPT2LMHeadModel. GPT-2's Conv1D stores a weight as (in, out), nn.Linear as
  (out, in): transposed both ways; `c_attn` packs the q, k, v projections (concatenated outputs).
- `llama` exports as LlamaForCausalLM, module for module (GQA: k/v have kv_heads heads).

One table per family (`LAYOUTS`) says where each runtime module lives in the transformers class;
`links` turns it into tensor links that export (`to_hf`) and import (`from_hf`) both read.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from growlang.families import FAMILIES
from growlang.runtime.architectures import ModelConfig, build, param_roles
from growlang.runtime.decoder import DecoderConfig
from growlang.runtime.errors import UserError
from growlang.runtime.model import EncoderConfig


@dataclass(frozen=True)
class Layout:
    """Where a family's parameters live in its transformers class."""

    model_type: str  # config.json's `model_type`
    base: str  # the body's attribute: a checkpoint of the bare body (GPT2Model, BertModel) lacks it
    modules: dict[str, str]  # runtime module ("layers.{i}." for layer i) -> HF module
    conv1d: frozenset[str] = frozenset()  # HF modules that store weights (in, out): GPT-2's Conv1D


def _layout(model_type: str, base: str, body: dict, layers: str, layer: dict, head: dict,
            conv1d: tuple[str, ...] = ()) -> Layout:
    modules = {k: f"{base}.{v}" for k, v in body.items()}
    modules.update({f"layers.{{i}}.{k}": f"{base}.{layers}.{{i}}.{v}" for k, v in layer.items()})
    modules.update(head)
    return Layout(model_type, base, modules, frozenset(f"{base}.{layers}.{{i}}.{layer[k]}" for k in conv1d))


_BERT_EMB = {"emb.word": "embeddings.word_embeddings", "emb.pos": "embeddings.position_embeddings",
             "emb.types": "embeddings.token_type_embeddings", "emb.ln": "embeddings.LayerNorm"}
_BERT_LAYER = {"attn.q": "attention.self.query", "attn.k": "attention.self.key", "attn.v": "attention.self.value",
               "attn.o": "attention.output.dense", "ffn.up": "intermediate.dense", "ffn.down": "output.dense"}
LAYOUTS = {
    "bert": _layout("bert", "bert", _BERT_EMB, "encoder.layer",
                    {**_BERT_LAYER, "attn_ln": "attention.output.LayerNorm", "ffn_ln": "output.LayerNorm"},
                    {"head.dense": "cls.predictions.transform.dense",
                     "head.ln": "cls.predictions.transform.LayerNorm", "head": "cls.predictions"}),
    "bert-preln": _layout("roberta-prelayernorm", "roberta_prelayernorm", {**_BERT_EMB, "final_ln": "LayerNorm"},
                          "encoder.layer",
                          {**_BERT_LAYER, "attn_ln": "attention.LayerNorm", "ffn_ln": "intermediate.LayerNorm"},
                          {"head.dense": "lm_head.dense", "head.ln": "lm_head.layer_norm", "head": "lm_head"}),
    "gpt2": _layout("gpt2", "transformer", {"emb.word": "wte", "emb.pos": "wpe", "final_norm": "ln_f"}, "h",
                    {"attn_norm": "ln_1", "attn.q": "attn.c_attn", "attn.k": "attn.c_attn", "attn.v": "attn.c_attn",
                     "attn.o": "attn.c_proj", "mlp_norm": "ln_2", "mlp.up": "mlp.c_fc", "mlp.down": "mlp.c_proj"},
                    {"lm_head": "lm_head"}, conv1d=("attn.q", "attn.o", "mlp.up", "mlp.down")),
    "llama": _layout("llama", "model", {"emb.word": "embed_tokens", "final_norm": "norm"}, "layers",
                     {"attn_norm": "input_layernorm", "attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj",
                      "attn.v": "self_attn.v_proj", "attn.o": "self_attn.o_proj",
                      "mlp_norm": "post_attention_layernorm", "mlp.gate": "mlp.gate_proj",
                      "mlp.up": "mlp.up_proj", "mlp.down": "mlp.down_proj"},
                     {"lm_head": "lm_head"}),
}
_FAMILY_OF = {layout.model_type: family for family, layout in LAYOUTS.items()}


class Link(NamedTuple):
    """One HF tensor and the runtime parameters it holds."""

    hf: str
    parts: tuple[str, ...]  # concatenated along their first (output) axis: GPT-2's c_attn holds q, k, v
    conv1d: bool  # stored transposed, (in, out)


def links(cfg: ModelConfig) -> list[Link]:
    """Every HF tensor of `cfg`'s transformers class that holds runtime parameters."""
    layout = LAYOUTS[cfg.family]
    parts: dict[str, list[str]] = {}
    conv1d = set()
    for name, role in param_roles(cfg).items():
        module, _, leaf = name.rpartition(".")
        key = module if role.layer is None else module.replace(f"layers.{role.layer}.", "layers.{i}.", 1)
        hf_module = layout.modules[key]
        hf = f"{hf_module.format(i=role.layer)}.{leaf}"
        parts.setdefault(hf, []).append(name)
        if hf_module in layout.conv1d and len(role.axes) == 2:
            conv1d.add(hf)
    return [Link(hf, tuple(p), hf in conv1d) for hf, p in parts.items()]


def hf_names(cfg: ModelConfig) -> dict[str, str]:
    """Runtime parameter name -> the HF tensor that holds it, for every parameter of build(cfg)."""
    return {p: link.hf for link in links(cfg) for p in link.parts}


def to_hf(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """A runtime state dict as the HF class's tensors (fp32, on the CPU)."""
    out = {}
    for link in links(cfg):
        t = torch.cat([state[p].detach().to("cpu", torch.float32) for p in link.parts])
        out[link.hf] = t.t().contiguous() if link.conv1d else t
    return out


def from_hf(weights: dict[str, torch.Tensor], cfg: ModelConfig,
            shapes: dict[str, torch.Size]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(runtime state, HF names missing) from an HF checkpoint's tensors; `shapes` are the runtime
    parameters' (split sizes of packed tensors)."""
    base = LAYOUTS[cfg.family].base + "."
    state, missing = {}, []
    for link in links(cfg):
        t = weights.get(link.hf)
        if t is None and link.hf.startswith(base):  # saved from the bare body class
            t = weights.get(link.hf[len(base):])
        if t is None and link.parts == ("head.bias",):  # some checkpoints store only the decoder's bias
            t = weights.get(link.hf.replace(".bias", ".decoder.bias"))
        if t is None:
            missing.append(link.hf)
            continue
        t = t.to(torch.float32)
        t = t.t() if link.conv1d else t
        sizes = [shapes[p][0] for p in link.parts]
        if t.shape[0] != sum(sizes):
            raise UserError(f"{link.hf} has shape {tuple(t.shape)}, which does not match config.json")
        state.update(zip(link.parts, t.split(sizes)))
    return state, missing


TOKEN_IDS = ("bos_token_id", "eos_token_id", "pad_token_id")


def token_ids(tokenizer) -> dict[str, int | None]:
    """A decoder's special token ids, from its tokenizer (`<|endoftext|>` is bos, eos and pad of
    the byte-level BPE); None without one, so no id points at an arbitrary token."""
    return {key: getattr(tokenizer, key, None) if tokenizer is not None else None for key in TOKEN_IDS}


def hf_config(cfg: ModelConfig, ids: dict[str, int | None] | None = None):
    """The transformers config of `cfg`; `ids` (bos/eos/pad) are written for decoders."""
    if isinstance(cfg, DecoderConfig):
        return _decoder_config(cfg, ids or token_ids(None))
    common = dict(vocab_size=cfg.vocab, hidden_size=cfg.width, num_hidden_layers=cfg.depth,
                  num_attention_heads=cfg.heads, intermediate_size=cfg.ffn, hidden_act="gelu",
                  hidden_dropout_prob=cfg.dropout, attention_probs_dropout_prob=cfg.dropout,
                  max_position_embeddings=cfg.max_len, type_vocab_size=cfg.type_vocab,
                  layer_norm_eps=cfg.layer_norm_eps, tie_word_embeddings=True)
    if cfg.family == "bert":
        from transformers import BertConfig
        return BertConfig(**common, architectures=["BertForMaskedLM"])
    from transformers import RobertaPreLayerNormConfig
    # pad_token_id=-1: no token is padding, so RoBERTa's position ids are 0..T-1 like ours
    return RobertaPreLayerNormConfig(**common, pad_token_id=-1, bos_token_id=None, eos_token_id=None,
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


def export_hf(model, cfg: ModelConfig, folder: str | Path, tokenizer=None,
              copy_files: tuple[Path, ...] = (), ids: dict[str, int | None] | None = None) -> Path:
    """Write config.json + model.safetensors (+ the tokenizer, + `copy_files`, e.g. a source
    folder's tokenizer files) atomically: a temp folder next to `folder`, then one rename. A
    decoder's bos/eos/pad ids are `ids`, else the tokenizer's."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    folder = Path(folder)
    if folder.exists():
        raise UserError(f"{folder} already exists; refusing to overwrite it")
    hf_cfg = hf_config(cfg, ids if ids is not None else token_ids(tokenizer))
    auto = AutoModelForCausalLM if isinstance(cfg, DecoderConfig) else AutoModelForMaskedLM
    hf = auto.from_config(hf_cfg)
    mapped = to_hf(model.state_dict(), cfg)
    missing, unexpected = hf.load_state_dict(mapped, strict=False)
    hf.tie_weights()
    # a tied output matrix (MLM decoder, GPT-2/Llama lm_head) is the token embedding itself
    hf_state = hf.state_dict()
    loaded = {t.data_ptr() for name, t in hf_state.items() if name in mapped}
    untied = sorted(k for k in missing if hf_state[k].data_ptr() not in loaded)
    if untied or unexpected:
        raise RuntimeError(f"HF export mapping is incomplete: missing {untied}, unexpected {sorted(unexpected)}")
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Writing model shards" bars for a one-file model are noise
    try:
        hf.save_pretrained(tmp, safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        for f in copy_files:
            shutil.copy2(f, tmp / Path(f).name)
        apply_umask(tmp)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def current_umask() -> int:
    mask = os.umask(0)  # the only portable way to read it is to set it; restored at once
    os.umask(mask)
    return mask


def apply_umask(folder: Path) -> None:
    """Give `folder` and everything in it the modes a plain mkdir/open would have (0755/0644 under
    umask 022): mkdtemp makes 0700 folders, so an export would be unreadable to colleagues and
    containers."""
    mask = current_umask()
    for path in [folder, *folder.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~mask)


def _load_weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    if (folder / "model.safetensors").is_file():
        return load_file(folder / "model.safetensors")
    for index_name, loader in (("model.safetensors.index.json", load_file),
                               ("pytorch_model.bin.index.json",
                                lambda p: torch.load(p, map_location="cpu", weights_only=True))):
        index = folder / index_name
        if index.is_file():
            files = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            out = {}
            for f in files:
                out.update(loader(folder / f))
            return out
    if (folder / "pytorch_model.bin").is_file():
        return torch.load(folder / "pytorch_model.bin", map_location="cpu", weights_only=True)
    raise UserError(f"{folder} has no weights (model.safetensors or pytorch_model.bin)")


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
    "bert-preln": (*_ENCODER_NEEDS,
                   Need("pad_token_id", None, (-1,), "a RoBERTa-PreLN folder must use pad_token_id=-1 (positions "
                        "0..T-1) to load as bert-preln")),
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


def _encoder(c: dict, family: str) -> EncoderConfig:
    return EncoderConfig(family=family, vocab=c["vocab_size"], width=c["hidden_size"],
                         depth=c["num_hidden_layers"], heads=c["num_attention_heads"],
                         ffn=c["intermediate_size"], max_len=c["max_position_embeddings"],
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


def import_hf(folder: str | Path) -> tuple[torch.nn.Module, ModelConfig]:
    """Load a local HF folder (BERT masked LM, GPT-2 or Llama causal LM; any size) into the runtime model."""
    folder = Path(folder)
    cfg = read_config(folder)
    weights = _load_weights(folder)
    # old TF-converted checkpoints name LayerNorm parameters gamma/beta
    weights = {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
               for k, v in weights.items()}
    model = build(cfg)
    state, missing = from_hf(weights, cfg, {n: t.shape for n, t in model.state_dict().items()})
    if missing:
        base = LAYOUTS[cfg.family].base + "."
        head = {"mlm": "an MLM head", "clm": "an LM head"}[FAMILIES[cfg.family].objective]
        what = head if any(not m.startswith(base) for m in missing) else "these weights"
        raise UserError(f"{folder} lacks {what}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} "
                        f"(growlang needs a {FAMILIES[cfg.family].hf_class} checkpoint)")
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{folder}: weights do not match config.json: {e}") from None
    return model, cfg
