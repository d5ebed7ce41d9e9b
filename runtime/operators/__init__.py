"""Growth operators registered by name, under the same (dim, name) keys as growlang/operators.py.

Every operator is a pure function `(state, old_cfg, new_cfg, args, generator) -> state` on a state
dict keyed by parameter name. `grow` applies the operators of one transition in the order
docs/operators.md prescribes (width, then ffn, then depth) and returns the index maps it used, which
`carry_optimizer_state` replays on Adam's moments for `on_grow=carry`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import torch

from growlang.diagnostics import Span
from growlang.growth import transition_ops
from growlang.operators import DEFAULT_OPERATOR, OPERATORS
from growlang.plan import OpUse, Shape
from growlang.runtime.errors import UserError
from growlang.runtime.architectures import ModelConfig
from growlang.runtime.operators.growth import add_noise, depth_maps, ffn_maps, identity_maps, width_maps
from growlang.runtime.operators.maps import ParamMap, apply_map, apply_maps

State = dict[str, torch.Tensor]
MapBuilder = Callable[[State, ModelConfig, ModelConfig, dict], dict[str, ParamMap]]


@dataclass(frozen=True)
class GrowthOp:
    dim: str
    name: str
    build: MapBuilder  # (state, old cfg, new cfg, args) -> maps of the grown model's parameters

    def __call__(self, state: State, old: ModelConfig, new: ModelConfig, args: dict,
                 generator: torch.Generator | None = None) -> State:
        maps = self.build(state, old, new, args)
        out = apply_maps(maps, state, generator)
        return add_noise(out, maps, float(args.get("noise") or 0.0), generator)


# One weight-map builder per dimension; the operator names come from the front end's table.
_BUILDERS: dict[str, Callable[[str], MapBuilder]] = {
    "depth": lambda op: lambda s, old, new, a: depth_maps(op, a, s, old, new),
    "width": lambda op: lambda s, old, new, a: width_maps(op, s, old, new),
    "ffn": lambda op: lambda s, old, new, a: ffn_maps(op, s, old, new),
    "len": lambda op: lambda s, old, new, a: identity_maps(s, new),  # pooling is in the parent's training
}

REGISTRY: dict[tuple[str, str], GrowthOp] = {
    (dim, name): GrowthOp(dim, name, _BUILDERS[dim](name)) for (dim, name) in OPERATORS
}


@dataclass(frozen=True)
class GrowthStep:
    dim: str
    op: str
    maps: dict[str, ParamMap]


@dataclass(frozen=True)
class GrowthMaps:
    """The steps of one transition, in the order applied; replayed by carry_optimizer_state."""

    steps: tuple[GrowthStep, ...]


def check_transition(old: ModelConfig, new: ModelConfig) -> None:
    """The front end's transition check (growlang.growth.transition_ops: shrinks, heads and
    head_dim) on two model configs, plus the model keys a growth cannot change."""
    if type(old) is not type(new):
        raise UserError(f"cannot change family at growth ({old.family} -> {new.family})")
    for key in old.FIXED_AT_GROWTH:
        if getattr(old, key) != getattr(new, key):
            raise UserError(f"cannot change {key} at growth ({getattr(old, key)} -> {getattr(new, key)})")

    def shape(c: ModelConfig) -> Shape:
        return Shape(c.depth, c.width, c.heads, c.ffn, c.max_len, c.kv_heads)

    _, found = transition_ops(shape(old), shape(new), old.family, {}, {}, Span.whole_file(), "this growth")
    errors = [d.message + (f" ({d.hint})" if d.hint else "") for d in found if d.is_error]
    if errors:
        raise UserError("; ".join(errors))


def grow(state: State, old_cfg: ModelConfig, new_cfg: ModelConfig, ops: tuple[OpUse, ...],
         generator: torch.Generator | None = None) -> tuple[State, GrowthMaps]:
    """Grow `state` (parameter name -> tensor) from old_cfg to new_cfg: width, then ffn, then depth."""
    check_transition(old_cfg, new_cfg)
    by_dim = {}
    for use in ops:
        if use.dim == "heads":
            raise UserError("growing heads at fixed width is not supported (heads follow width)")
        if (use.dim, use.op) not in REGISTRY:
            raise UserError(f"unknown operator `{use.op}` for {use.dim}")
        by_dim[use.dim] = use
    state = {k: v.detach().to(torch.float32) for k, v in state.items()}
    steps = []
    cfg = old_cfg
    width = {key: getattr(new_cfg, key) for key in new_cfg.WIDTH_FIELDS}
    for dim, changes in (("width", width),
                         ("ffn", dict(ffn=new_cfg.ffn)), ("depth", dict(depth=new_cfg.depth))):
        if getattr(new_cfg, dim) == getattr(old_cfg, dim):
            continue
        use = by_dim.get(dim) or OpUse(dim, DEFAULT_OPERATOR[dim], defaulted=True)
        op = REGISTRY[(dim, use.op)]
        nxt = dataclasses.replace(cfg, **changes)
        args = dict(use.args)
        maps = op.build(state, cfg, nxt, args)
        state = add_noise(apply_maps(maps, state, generator), maps, float(args.get("noise") or 0.0), generator)
        steps.append(GrowthStep(dim, use.op, maps))
        cfg = nxt
    return state, GrowthMaps(tuple(steps))


def carry_optimizer_state(old_state: dict[str, dict], maps: GrowthMaps) -> dict[str, dict]:
    """Map AdamW moments (`{name: {"step", "exp_avg", "exp_avg_sq"}}`) with the weights' index maps.

    Where a weight is divided by c, exp_avg is divided by c and exp_avg_sq by c^2 (staged
    training); fresh units start at zero; the step is kept (docs/operators.md, on_grow=carry).
    """
    if not old_state:
        return {}
    steps = [s["step"] for s in old_state.values() if "step" in s]
    default_step = max(steps, key=lambda t: float(t)) if steps else 0
    state = {n: dict(s) for n, s in old_state.items()}
    for step in maps.steps:
        new_state = {}
        avg = {n: s["exp_avg"] for n, s in state.items()}
        sq = {n: s["exp_avg_sq"] for n, s in state.items()}
        for name, pm in step.maps.items():
            src = state.get(pm.src) if pm.src is not None else None
            if pm.src is not None and src is None:  # parameter had no optimizer state yet
                pm = dataclasses.replace(pm, src=None)
            new_state[name] = {
                "step": _clone(src["step"]) if src is not None else _clone(default_step),
                "exp_avg": apply_map(pm, avg, None, power=1, moment=True),
                "exp_avg_sq": apply_map(pm, sq, None, power=2, moment=True),
            }
        state = new_state
    return state


def _clone(step):
    return step.clone() if isinstance(step, torch.Tensor) else step


__all__ = ["REGISTRY", "GrowthOp", "GrowthMaps", "GrowthStep", "grow", "carry_optimizer_state",
           "check_transition"]
