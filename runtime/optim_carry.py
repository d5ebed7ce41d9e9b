"""AdamW state keyed by parameter name (never object identity), for `on_grow=carry`.

`adam_state_by_name` reads a torch AdamW's per-parameter state; `carry_optimizer_state`
(runtime/operators) maps it through a transition's index maps; `load_adam_state_by_name` puts the
result into a fresh AdamW built over the grown model.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from growlang.runtime.operators import carry_optimizer_state  # noqa: F401  (re-exported)

MOMENTS = ("step", "exp_avg", "exp_avg_sq")


def adam_state_by_name(optimizer: torch.optim.Optimizer, model: nn.Module) -> dict[str, dict]:
    out = {}
    for name, p in model.named_parameters():
        s = optimizer.state.get(p)
        if s:
            out[name] = {k: (v.detach().clone() if isinstance(v, torch.Tensor) else v)
                         for k, v in s.items() if k in MOMENTS}
    return out


def load_adam_state_by_name(optimizer: torch.optim.Optimizer, model: nn.Module, state: dict[str, dict]) -> None:
    for name, p in model.named_parameters():
        s = state.get(name)
        if s is None:
            continue
        optimizer.state[p] = {
            "step": s["step"].clone() if isinstance(s["step"], torch.Tensor) else torch.tensor(float(s["step"])),
            "exp_avg": s["exp_avg"].to(p.device, p.dtype).reshape(p.shape).clone(),
            "exp_avg_sq": s["exp_avg_sq"].to(p.device, p.dtype).reshape(p.shape).clone(),
        }
