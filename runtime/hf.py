"""Hugging Face format: export a runtime model, import a local HF folder of a supported family.

Encoders (masked LM, runtime/model.py):
- `bert` exports as transformers' BertForMaskedLM (same modules, post-LN).
- `bert-preln` exports as RobertaPreLayerNormForMaskedLM: pre-LN layers, final LayerNorm, same
  MLM head. pad_token_id is the tokenizer's pad id (the builtin WordPiece's [PAD], 0). RoBERTa
  numbers a sequence's tokens from padding_idx+1 and gives padding tokens position padding_idx
  (`create_position_ids_from_input_ids`), so the HF position table is ours after
  `position_offset` = pad_token_id + 1 zero rows (max_position_embeddings = max_len + offset):
  token t of an unpadded (packed, as growlang trains) or right- or left-padded row reads our row
  t. Row pad_token_id is what pad tokens get; the attention mask hides them. Without a pad token
  the export keeps pad_token_id = -1 (offset 0, the table unshifted), which growlang wrote before
  issue 12 item 17 and still reads; its padding_idx is the last row of both tables, frozen in
  fine-tuning, and transformers warns about it when it loads one (once per process).
Decoders (causal LM, runtime/decoder.py):
- `gpt2` exports as GPT2LMHeadModel. GPT-2's Conv1D stores a weight as (in, out), nn.Linear as
  (out, in): transposed both ways; `c_attn` packs the q, k, v projections (concatenated outputs).
- `llama` exports as LlamaForCausalLM, module for module (GQA: k/v have kv_heads heads).

One table per family (`LAYOUTS`) says where each runtime module lives in the transformers class;
`links` turns it into tensor links that export (`to_hf`) and import (`from_hf`) both read. The
configs (transformers' for export, config.json read back for import) are runtime/hf_configs.py.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch

from growlang.families import FAMILIES
from growlang.runtime.architectures import ModelConfig, build, param_roles
from growlang.runtime.decoder import DecoderConfig
from growlang.runtime.errors import UserError
from growlang.runtime.hf_configs import (NEEDS, TOKEN_IDS, hf_config, position_offset, read_config, read_json,
                                         token_ids)

__all__ = ["LAYOUTS", "NEEDS", "TOKEN_IDS", "export_hf", "from_hf", "hf_config", "hf_names", "import_hf", "links",
           "position_offset", "read_config", "read_json", "to_hf", "token_ids"]  # the config half lives in hf_configs


@dataclass(frozen=True)
class Layout:
    """Where a family's parameters live in its transformers class."""

    base: str  # the body's attribute: a checkpoint of the bare body (GPT2Model, BertModel) lacks it
    modules: dict[str, str]  # runtime module ("layers.{i}." for layer i) -> HF module
    conv1d: frozenset[str] = frozenset()  # HF modules that store weights (in, out): GPT-2's Conv1D
    roberta_positions: str | None = None  # the HF position table numbered from padding_idx+1 (RoBERTa)


def _layout(base: str, body: dict, layers: str, layer: dict, head: dict,
            conv1d: tuple[str, ...] = (), roberta_positions: str | None = None) -> Layout:
    modules = {k: f"{base}.{v}" for k, v in body.items()}
    modules.update({f"layers.{{i}}.{k}": f"{base}.{layers}.{{i}}.{v}" for k, v in layer.items()})
    modules.update(head)
    return Layout(base, modules, frozenset(f"{base}.{layers}.{{i}}.{layer[k]}" for k in conv1d),
                  modules[roberta_positions] if roberta_positions else None)


_BERT_EMB = {"emb.word": "embeddings.word_embeddings", "emb.pos": "embeddings.position_embeddings",
             "emb.types": "embeddings.token_type_embeddings", "emb.ln": "embeddings.LayerNorm"}
_BERT_LAYER = {"attn.q": "attention.self.query", "attn.k": "attention.self.key", "attn.v": "attention.self.value",
               "attn.o": "attention.output.dense", "ffn.up": "intermediate.dense", "ffn.down": "output.dense"}
LAYOUTS = {
    "bert": _layout("bert", _BERT_EMB, "encoder.layer",
                    {**_BERT_LAYER, "attn_ln": "attention.output.LayerNorm", "ffn_ln": "output.LayerNorm"},
                    {"head.dense": "cls.predictions.transform.dense",
                     "head.ln": "cls.predictions.transform.LayerNorm", "head": "cls.predictions"}),
    "bert-preln": _layout("roberta_prelayernorm", {**_BERT_EMB, "final_ln": "LayerNorm"},
                          "encoder.layer",
                          {**_BERT_LAYER, "attn_ln": "attention.LayerNorm", "ffn_ln": "intermediate.LayerNorm"},
                          {"head.dense": "lm_head.dense", "head.ln": "lm_head.layer_norm", "head": "lm_head"},
                          roberta_positions="emb.pos"),
    "gpt2": _layout("transformer", {"emb.word": "wte", "emb.pos": "wpe", "final_norm": "ln_f"}, "h",
                    {"attn_norm": "ln_1", "attn.q": "attn.c_attn", "attn.k": "attn.c_attn", "attn.v": "attn.c_attn",
                     "attn.o": "attn.c_proj", "mlp_norm": "ln_2", "mlp.up": "mlp.c_fc", "mlp.down": "mlp.c_proj"},
                    {"lm_head": "lm_head"}, conv1d=("attn.q", "attn.o", "mlp.up", "mlp.down")),
    "llama": _layout("model", {"emb.word": "embed_tokens", "final_norm": "norm"}, "layers",
                     {"attn_norm": "input_layernorm", "attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj",
                      "attn.v": "self_attn.v_proj", "attn.o": "self_attn.o_proj",
                      "mlp_norm": "post_attention_layernorm", "mlp.gate": "mlp.gate_proj",
                      "mlp.up": "mlp.up_proj", "mlp.down": "mlp.down_proj"},
                     {"lm_head": "lm_head"}),
}


class Link(NamedTuple):
    """One HF tensor and the runtime parameters it holds."""

    hf: str
    parts: tuple[str, ...]  # concatenated along their first (output) axis: GPT-2's c_attn holds q, k, v
    conv1d: bool  # stored transposed, (in, out)
    offset: int = 0  # HF rows before the runtime's first (RoBERTa's position table: position_offset)


def links(cfg: ModelConfig, offset: int = 0) -> list[Link]:
    """Every HF tensor of `cfg`'s transformers class that holds runtime parameters; `offset` is
    `position_offset` of the HF config (rows of the RoBERTa position table before position 0)."""
    layout = LAYOUTS[cfg.family]
    if offset and layout.roberta_positions is None:
        raise ValueError(f"{cfg.family}'s position table is numbered from 0; it has no offset")
    parts: dict[str, list[str]] = {}
    conv1d, shifted = set(), set()
    for name, role in param_roles(cfg).items():
        module, _, leaf = name.rpartition(".")
        key = module if role.layer is None else module.replace(f"layers.{role.layer}.", "layers.{i}.", 1)
        hf_module = layout.modules[key]
        hf = f"{hf_module.format(i=role.layer)}.{leaf}"
        parts.setdefault(hf, []).append(name)
        if hf_module in layout.conv1d and len(role.axes) == 2:
            conv1d.add(hf)
        if hf_module == layout.roberta_positions:
            shifted.add(hf)
    return [Link(hf, tuple(p), hf in conv1d, offset if hf in shifted else 0) for hf, p in parts.items()]


def hf_names(cfg: ModelConfig) -> dict[str, str]:
    """Runtime parameter name -> the HF tensor that holds it, for every parameter of build(cfg)."""
    return {p: link.hf for link in links(cfg) for p in link.parts}


def to_hf(state: dict[str, torch.Tensor], cfg: ModelConfig, offset: int = 0) -> dict[str, torch.Tensor]:
    """A runtime state dict as the HF class's tensors (fp32, on the CPU), the position table after
    `offset` zero rows (`links`). A tensor that needs no conversion is `state`'s own, not a copy:
    an export of a big model holds it once."""
    out = {}
    for link in links(cfg, offset):
        parts = [state[p].detach().to("cpu", torch.float32) for p in link.parts]
        t = parts[0] if len(parts) == 1 else torch.cat(parts)
        if link.offset:  # rows no real token reads; row pad_token_id is the (masked) pad tokens'
            t = torch.cat([t.new_zeros(link.offset, *t.shape[1:]), t])
        out[link.hf] = t.t().contiguous() if link.conv1d else t
    return out


def from_hf(weights: dict[str, torch.Tensor], cfg: ModelConfig, shapes: dict[str, torch.Size],
            offset: int = 0) -> tuple[dict[str, torch.Tensor], list[str]]:
    """(runtime state, HF names missing) from an HF checkpoint's tensors; `shapes` are the runtime
    parameters' (split sizes of packed tensors); the position table's first `offset` rows are
    dropped (`links`)."""
    base = LAYOUTS[cfg.family].base + "."
    state, missing = {}, []
    for link in links(cfg, offset):
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
        if t.shape[0] != link.offset + sum(sizes):
            raise UserError(f"{link.hf} has shape {tuple(t.shape)}, which does not match config.json")
        state.update(zip(link.parts, t[link.offset:].split(sizes)))
    return state, missing


@contextmanager
def parameters_on_meta():
    """Modules built inside get their parameters on the meta device (no memory, no random init:
    an export assigns every one) and their buffers as usual: rotary inv_freq and position ids are
    computed in `__init__`, never loaded, so they must be real. accelerate's
    `init_empty_weights(include_buffers=False)` does the same; a plain `torch.device("meta")`
    would leave those buffers empty."""
    register = torch.nn.Module.register_parameter

    def register_on_meta(module, name, param):
        if param is not None and not param.is_meta:  # an already meta one may be shared (tied): keep it
            param = torch.nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register(module, name, param)

    torch.nn.Module.register_parameter = register_on_meta
    try:
        yield
    finally:
        torch.nn.Module.register_parameter = register


@contextmanager
def quiet_transformers():
    """transformers' logging and progress bars off inside, as they were after: an export's output is
    growlang's ("Writing model shards" bars for a one-file model, the out-of-vocabulary pad id note
    of a bert-preln exported without a pad token are noise)."""
    from huggingface_hub import utils as hub_utils
    from transformers.utils import logging as hf_logging

    verbosity, bars, hub_bars = (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled(),
                                 not hub_utils.are_progress_bars_disabled())
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()  # transformers' and huggingface_hub's
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()
        if not hub_bars:
            hub_utils.disable_progress_bars()
        elif not bars:
            hub_utils.enable_progress_bars()


def export_hf(model, cfg: ModelConfig, folder: str | Path, tokenizer=None,
              copy_files: tuple[Path, ...] = (), ids: dict[str, int | None] | None = None) -> Path:
    """Write config.json + model.safetensors (+ the tokenizer, + `copy_files`, e.g. a source
    folder's tokenizer files) atomically: a temp folder next to `folder`, then one rename. A
    decoder's bos/eos/pad ids are `ids`, else the tokenizer's."""
    from transformers import AutoModelForCausalLM, AutoModelForMaskedLM

    folder = Path(folder)
    if folder.exists():
        raise UserError(f"{folder} already exists; refusing to overwrite it")
    auto = AutoModelForCausalLM if isinstance(cfg, DecoderConfig) else AutoModelForMaskedLM
    with quiet_transformers():
        hf_cfg = hf_config(cfg, ids if ids is not None else token_ids(tokenizer))
        with parameters_on_meta():
            hf = auto.from_config(hf_cfg)
        weights = to_hf(model.state_dict(), cfg, position_offset(cfg.family, hf_cfg.pad_token_id))
        _, unexpected = hf.load_state_dict(weights, strict=False, assign=True)
        hf.tie_weights()  # a tied output matrix (MLM decoder, GPT-2/Llama lm_head) is the token embedding itself
        empty = [name for name, t in (*hf.named_parameters(), *hf.named_buffers()) if t.is_meta]
        if empty or unexpected:
            raise RuntimeError(f"HF export mapping is incomplete: missing {empty}, unexpected {sorted(unexpected)}")
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            hf.save_pretrained(tmp, safe_serialization=True)
            if tokenizer is not None:
                save_tokenizer(tokenizer, tmp, cfg.max_len)
            for f in copy_files:
                shutil.copy2(f, tmp / Path(f).name)
            apply_umask(tmp)
            os.replace(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return folder


def save_tokenizer(tokenizer, folder: Path, max_len: int) -> None:
    """The tokenizer with `model_max_length` = the model's positions, so `truncation=True` and
    pipelines cut inputs to what the model reads (the builtin one is built unbounded)."""
    import copy

    tok = copy.copy(tokenizer)  # the run keeps its own object as it was
    tok.model_max_length = max_len
    tok.save_pretrained(folder)


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


def import_hf(folder: str | Path) -> tuple[torch.nn.Module, ModelConfig]:
    """Load a local HF folder (BERT masked LM, GPT-2 or Llama causal LM; any size) into the runtime model."""
    folder = Path(folder)
    cfg = read_config(folder)  # checked pad_token_id where position_offset reads it
    offset = position_offset(cfg.family, read_json(folder).get("pad_token_id"))
    weights = _load_weights(folder)
    # old TF-converted checkpoints name LayerNorm parameters gamma/beta
    weights = {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
               for k, v in weights.items()}
    model = build(cfg)
    state, missing = from_hf(weights, cfg, {n: t.shape for n, t in model.state_dict().items()}, offset)
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
