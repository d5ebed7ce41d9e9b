"""Parameter roles: the structure every model file declares and the growth operators dispatch on.

A model file (runtime/model.py for encoders, runtime/decoder.py for decoders) gives, for every
parameter, a `Role`: what each axis indexes, how it is initialised, which layer it belongs to and
whether it closes a residual branch. runtime/operators/ reads only these, never parameter names.

Axis tags:
  "d"       hidden units, written: copied along the unit map (embeddings, output rows, norms)
  "d_in"    hidden units, read: gathered by the unit map and divided by the copy count
  "d_tied"  hidden units written into a tied output embedding: copied and divided by the copy
            count (logits = h . E^T read E's copied columns, so h carries the division)
  "head"    query / attention-output units, moved whole heads at a time (Q rows; K, V rows in MHA)
  "kv"      key/value units under grouped-query attention, moved whole kv heads at a time
  "head_in" attention output units, read: gathered by heads, divided by the head copy count
  "f"       FFN inner units, written (FFN input rows; SwiGLU's gate and up rows)
  "f_in"    FFN inner units, read (FFN output columns): gathered, divided by the copy count
  None      untouched by growth (vocabulary, positions, token types)
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class Role(NamedTuple):
    axes: tuple[str | None, ...]
    init: str  # "normal" (std 0.02) | "ones" | "zeros"
    layer: int | None = None  # transformer layer index, None for embeddings / head
    branch_out: bool = False  # closes a residual branch (zeroed by `depth by zero`)


def init_tensor(role: Role, shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """HF BERT / GPT-2 / Llama initialisation: normal(0, 0.02) weights, norms ones (and zero
    biases), zero biases."""
    if role.init == "ones":
        return torch.ones(shape)
    if role.init == "zeros":
        return torch.zeros(shape)
    return torch.empty(shape).normal_(0.0, 0.02, generator=generator)


def init_parameters(module: torch.nn.Module, roles: dict[str, Role], generator: torch.Generator | None = None) -> None:
    """Every parameter of `module` initialised from its role (the model files' reset_parameters)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            p.copy_(init_tensor(roles[name], tuple(p.shape), generator))
