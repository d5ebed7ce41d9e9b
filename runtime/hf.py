"""Hugging Face format: export the runtime encoder, import a local BERT masked-LM folder.

- `bert` exports as transformers' BertForMaskedLM (same modules, post-LN).
- `bert-preln` exports as RobertaPreLayerNormForMaskedLM: pre-LN layers, final LayerNorm, same
  MLM head. RoBERTa numbers positions from padding_idx+1 and gives padding tokens position
  padding_idx (`create_position_ids_from_input_ids`). Shifting the table would still misplace
  any real token equal to the pad id, so we export pad_token_id = -1: no token is padding, the
  position ids are cumsum(1) - 1 = 0..T-1, exactly ours, with the table unshifted (transformers
  logs a warning about the out-of-vocabulary pad id; it is harmless here).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from growlang.runtime.errors import UserError
from growlang.runtime.model import Encoder, EncoderConfig, param_roles

_LAYER = {
    "bert": {
        "attn.q": "attention.self.query", "attn.k": "attention.self.key", "attn.v": "attention.self.value",
        "attn.o": "attention.output.dense", "attn_ln": "attention.output.LayerNorm",
        "ffn.up": "intermediate.dense", "ffn.down": "output.dense", "ffn_ln": "output.LayerNorm",
    },
    "bert-preln": {
        "attn.q": "attention.self.query", "attn.k": "attention.self.key", "attn.v": "attention.self.value",
        "attn.o": "attention.output.dense", "attn_ln": "attention.LayerNorm",
        "ffn.up": "intermediate.dense", "ffn.down": "output.dense", "ffn_ln": "intermediate.LayerNorm",
    },
}
_BASE = {"bert": "bert", "bert-preln": "roberta_prelayernorm"}
_HEAD = {
    "bert": {"head.dense": "cls.predictions.transform.dense", "head.ln": "cls.predictions.transform.LayerNorm",
             "head.bias": "cls.predictions.bias"},
    "bert-preln": {"head.dense": "lm_head.dense", "head.ln": "lm_head.layer_norm", "head.bias": "lm_head.bias"},
}
_EMB = {"emb.word": "word_embeddings", "emb.pos": "position_embeddings", "emb.types": "token_type_embeddings",
        "emb.ln": "LayerNorm"}
_MODEL_TYPE = {"bert": "bert", "roberta-prelayernorm": "bert-preln"}


def hf_names(cfg: EncoderConfig) -> dict[str, str]:
    """Runtime parameter name -> HF parameter name, for every parameter of Encoder(cfg)."""
    fam, base = cfg.family, _BASE[cfg.family]
    out = {}
    for name, role in param_roles(cfg).items():
        module, _, leaf = name.rpartition(".")
        if name == "head.bias":
            out[name] = _HEAD[fam]["head.bias"]
        elif module in _EMB:
            out[name] = f"{base}.embeddings.{_EMB[module]}.{leaf}"
        elif module == "final_ln":
            out[name] = f"{base}.LayerNorm.{leaf}"
        elif module in _HEAD[fam]:
            out[name] = f"{_HEAD[fam][module]}.{leaf}"
        else:
            rest = module.split(".", 2)[2]  # "layers.{i}.attn.q" -> "attn.q"
            out[name] = f"{base}.encoder.layer.{role.layer}.{_LAYER[fam][rest]}.{leaf}"
    return out


def hf_config(cfg: EncoderConfig):
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


def export_hf(model: Encoder, cfg: EncoderConfig, folder: str | Path, tokenizer=None,
              copy_files: tuple[Path, ...] = ()) -> Path:
    """Write config.json + model.safetensors (+ the tokenizer, + `copy_files`, e.g. a source
    folder's tokenizer files) atomically: a temp folder next to `folder`, then one rename."""
    from transformers import AutoModelForMaskedLM

    folder = Path(folder)
    if folder.exists():
        raise UserError(f"{folder} already exists; refusing to overwrite it")
    hf_cfg = hf_config(cfg)
    hf = AutoModelForMaskedLM.from_config(hf_cfg)
    names = hf_names(cfg)
    state = model.state_dict()
    mapped = {names[n]: t.detach().to("cpu", torch.float32) for n, t in state.items()}
    missing, unexpected = hf.load_state_dict(mapped, strict=False)
    tied = {k for k in missing if k.endswith("decoder.weight") or k.endswith("decoder.bias")}
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"HF export mapping is incomplete: missing {sorted(set(missing) - tied)}, "
                           f"unexpected {sorted(unexpected)}")
    hf.tie_weights()
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


def read_config(folder: str | Path) -> EncoderConfig:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    path = folder / "config.json"
    if not path.is_file():
        raise UserError(f"{folder} is not a Hugging Face model folder (no config.json)")
    try:
        c = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON: {e}") from None
    family = _MODEL_TYPE.get(c.get("model_type"))
    if family is None:
        raise UserError(f"{folder} holds a {c.get('model_type')!r} model; growlang reads BERT masked-LM models "
                        f"(model_type 'bert', or 'roberta-prelayernorm' for bert-preln)")
    if c.get("hidden_act", "gelu") != "gelu":
        raise UserError(f"{folder}: hidden_act {c.get('hidden_act')!r} is not supported (only 'gelu')")
    if c.get("position_embedding_type", "absolute") != "absolute":
        raise UserError(f"{folder}: position_embedding_type {c['position_embedding_type']!r} is not supported")
    if c.get("tie_word_embeddings", True) is False:
        raise UserError(f"{folder}: an untied MLM decoder is not supported")
    if family == "bert-preln" and c.get("pad_token_id") != -1:
        raise UserError(f"{folder}: a RoBERTa-PreLN folder must use pad_token_id=-1 (positions 0..T-1) "
                        f"to load as bert-preln; it has {c.get('pad_token_id')}")
    try:
        return EncoderConfig(family=family, vocab=c["vocab_size"], width=c["hidden_size"],
                             depth=c["num_hidden_layers"], heads=c["num_attention_heads"],
                             ffn=c["intermediate_size"], max_len=c["max_position_embeddings"],
                             type_vocab=c.get("type_vocab_size", 2), dropout=c.get("hidden_dropout_prob", 0.1),
                             layer_norm_eps=c.get("layer_norm_eps", 1e-12))
    except KeyError as e:
        raise UserError(f"{path} lacks {e.args[0]!r}") from None
    except ValueError as e:
        raise UserError(f"{path}: {e}") from None


def import_hf(folder: str | Path) -> tuple[Encoder, EncoderConfig]:
    """Load a local HF BERT masked-LM folder (any size) into the runtime encoder."""
    folder = Path(folder)
    cfg = read_config(folder)
    weights = _load_weights(folder)
    # old TF-converted checkpoints name LayerNorm parameters gamma/beta
    weights = {k.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias"): v
               for k, v in weights.items()}
    state, missing = {}, []
    for name, hf_name in hf_names(cfg).items():
        t = weights.get(hf_name)
        if t is None and name == "head.bias":  # some checkpoints store only the decoder's bias
            t = weights.get(hf_name.replace(".bias", ".decoder.bias"))
        if t is None:
            missing.append(hf_name)
        else:
            state[name] = t.to(torch.float32)
    if missing:
        what = "an MLM head" if any(m.startswith(("cls.", "lm_head.")) for m in missing) else "these weights"
        raise UserError(f"{folder} lacks {what}: {', '.join(missing[:5])}{' ...' if len(missing) > 5 else ''} "
                        f"(growlang needs a *ForMaskedLM checkpoint)")
    model = Encoder(cfg)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise UserError(f"{folder}: weights do not match config.json: {e}") from None
    return model, cfg
