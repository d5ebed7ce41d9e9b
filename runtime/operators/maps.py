"""Index maps and their application to tensors (docs/operators.md, "Index maps").

A growth step is described, per parameter of the grown model, by a `ParamMap`: which old parameter
it comes from and, for every axis that grows, the source index of each new unit (-1 = a fresh
unit) and the divisor applied along that axis (the copy count c for tensors that read a copied
vector). The same maps move the weights and, for `on_grow=carry`, Adam's moments (divided by c
and c^2), so the two can never disagree.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from growlang.runtime.roles import Role, init_tensor

FRESH = -1


def stack_map(n: int, m: int) -> torch.Tensor:
    """g(i) = i mod n (tile): 3 -> 6 gives [0,1,2,0,1,2]."""
    return torch.arange(m) % n


def interpolate_map(n: int, m: int) -> torch.Tensor:
    """g(i) = floor(i*n/m) (each unit repeated in place): 3 -> 6 gives [0,0,1,1,2,2]."""
    return torch.arange(m) * n // m


def keep_map(n: int, m: int) -> torch.Tensor:
    """Old units keep their place, new ones are fresh (`zero`, `random`)."""
    return torch.cat([torch.arange(n), torch.full((m - n,), FRESH)])


def unit_map(op: str, n: int, m: int) -> torch.Tensor:
    if op == "stack":
        return stack_map(n, m)
    if op == "interpolate":
        return interpolate_map(n, m)
    return keep_map(n, m)


def copy_counts(g: torch.Tensor, n: int) -> torch.Tensor:
    """c(g(i)) for every new unit i: how many copies its source has (1 for fresh units)."""
    c = torch.bincount(g[g >= 0], minlength=n).to(torch.float32)
    return torch.where(g >= 0, c[g.clamp(min=0)], torch.ones(len(g)))


def expand_heads(g_heads: torch.Tensor, head_dim: int) -> torch.Tensor:
    """A head map as a unit map: whole heads move, head_dim units each."""
    off = torch.arange(head_dim)
    src = g_heads[:, None] * head_dim + off
    return torch.where(g_heads[:, None] >= 0, src, FRESH).reshape(-1)


@dataclass(frozen=True)
class AxisMap:
    index: torch.Tensor  # (n_new,) long, source unit or FRESH
    divisor: torch.Tensor | None = None  # (n_new,) float, or None when the axis is only copied
    fresh: str = "init"  # what fresh units along this axis get: "init" (HF init) | "zero"


@dataclass(frozen=True)
class ParamMap:
    src: str | None  # old parameter name, or None for a wholly new tensor
    role: Role
    shape: tuple[int, ...]  # shape of the grown tensor
    axes: dict[int, AxisMap] = field(default_factory=dict)  # axis -> map; axes absent are unchanged
    fresh: str = "init"  # for src None: "init" | "zero"


def apply_map(pm: ParamMap, old: dict[str, torch.Tensor], generator: torch.Generator | None,
              power: int = 1, moment: bool = False) -> torch.Tensor:
    """Grow one tensor. For weights power=1; for Adam moments (moment=True) fresh units are zero and
    the divisor is raised to `power` (1 for exp_avg, 2 for exp_avg_sq)."""
    if pm.src is None:
        if moment or pm.fresh == "zero":
            return torch.zeros(pm.shape)
        return init_tensor(pm.role, pm.shape, generator)
    t = old[pm.src].detach().to(torch.float32)
    fresh_mask = None  # True where the new tensor holds a fresh entry
    zero_mask = None  # True where that fresh entry must be zero
    for ax, am in sorted(pm.axes.items()):
        t = t.index_select(ax, am.index.clamp(min=0))
        if am.divisor is not None:
            shape = [1] * t.dim()
            shape[ax] = -1
            t = t / am.divisor.view(shape) ** power
        if (am.index < 0).any():
            shape = [1] * len(pm.shape)
            shape[ax] = -1
            m = (am.index < 0).view(shape).expand(pm.shape)
            fresh_mask = m if fresh_mask is None else fresh_mask | m
            if am.fresh == "zero":
                zero_mask = m if zero_mask is None else zero_mask | m
    if fresh_mask is not None:
        fill = torch.zeros(pm.shape) if moment else init_tensor(pm.role, pm.shape, generator)
        if zero_mask is not None:
            fill = fill.masked_fill(zero_mask, 0.0)
        t = torch.where(fresh_mask, fill, t)
    return t.contiguous()


def apply_maps(maps: dict[str, ParamMap], old: dict[str, torch.Tensor],
               generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    return {name: apply_map(pm, old, generator) for name, pm in maps.items()}


def sizes(cfg) -> dict[str, int]:
    """The size of every growable axis tag under `cfg` (an encoder or decoder config)."""
    d, f = cfg.width, cfg.ffn
    return {"d": d, "d_in": d, "d_tied": d, "head": d, "head_in": d, "kv": cfg.kv_heads * cfg.head_dim,
            "f": f, "f_in": f}


def grown_shape(role: Role, old: torch.Tensor | None, cfg) -> tuple[int, ...]:
    s = sizes(cfg)
    return tuple(s[tag] if tag is not None else old.shape[ax] for ax, tag in enumerate(role.axes))
