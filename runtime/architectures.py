"""From a family to its model file: the one dispatch the trainer, the operators, export and `grow`
use. The family's objective (growlang/families.py) picks the file: masked-LM encoders in
runtime/model.py, causal decoders in runtime/decoder.py."""

from __future__ import annotations

from typing import Union

import torch.nn as nn

from growlang.families import FAMILIES
from growlang.plan import ModelSpec, Shape
from growlang.runtime import decoder, model
from growlang.runtime.roles import Role

ModelConfig = Union[model.EncoderConfig, decoder.DecoderConfig]

_MODULES = {"mlm": model, "clm": decoder}


def _module(family: str):
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r} (expected one of {', '.join(FAMILIES)})")
    return _MODULES[FAMILIES[family].objective]


def _config_class(family: str):
    return model.EncoderConfig if _module(family) is model else decoder.DecoderConfig


def config_from_plan(spec: ModelSpec, shape: Shape) -> ModelConfig:
    return _config_class(spec.family).from_plan(spec, shape)


def config_from_dict(d: dict) -> ModelConfig:
    """A config as `dataclasses.asdict` wrote it into a checkpoint's state.json."""
    return _config_class(d["family"])(**d)


def build(cfg: ModelConfig) -> nn.Module:
    return model.Encoder(cfg) if isinstance(cfg, model.EncoderConfig) else decoder.Decoder(cfg)


def param_roles(cfg: ModelConfig) -> dict[str, Role]:
    return _module(cfg.family).param_roles(cfg)


def layer_roles(cfg: ModelConfig, i: int) -> dict[str, Role]:
    return _module(cfg.family).layer_roles(cfg, i)
