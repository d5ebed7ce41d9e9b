"""The weight mappings of every growth operator (docs/operators.md is the reference).

Each builder returns, for every parameter of the grown model, the `ParamMap` that produces it from
the old state. Builders read only the model's declared structure (`param_roles`, runtime/roles.py): which axes
hold hidden units written or read, heads, FFN units, which layer a tensor belongs to and whether it
closes a residual branch. They never parse parameter names.
"""

from __future__ import annotations

import dataclasses

import torch

from growlang.runtime.architectures import ModelConfig, layer_roles, param_roles
from growlang.runtime.operators.maps import (
    FRESH, AxisMap, ParamMap, copy_counts, expand_heads, grown_shape, unit_map,
)


def identity_maps(state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, ParamMap]:
    """No weight changes (`len by truncate`, `len by pool`)."""
    roles = param_roles(cfg)
    return {n: ParamMap(n, roles[n], tuple(state[n].shape)) for n in roles}


def width_maps(op: str, state: dict[str, torch.Tensor], old: ModelConfig,
               new: ModelConfig) -> dict[str, ParamMap]:
    """Hidden size d -> d' at fixed head_dim (heads h -> h', kv heads k -> k' at a fixed group h/k).

    Writers are copied along the unit map g; readers are gathered by g and divided by c, so every
    pre-activation is unchanged; Q/K/V rows and the output projection's columns move whole heads;
    the norm feeding a tied output embedding is copied and divided by c. Under GQA the kv heads
    get the same operator's map: for whole ratios r = h'/h = k'/k, new query head j reads kv head
    j // group both before and after (stack: (j // G) mod k = (j mod h) // G; interpolate:
    floor(j / (rG)) either way), so attention is unchanged (docs/operators.md, width).
    """
    g = unit_map(op, old.width, new.width)
    c = copy_counts(g, old.width)
    gh = unit_map(op, old.heads, new.heads)
    ch = copy_counts(gh, old.heads)
    hd = old.head_dim
    g_head_units = expand_heads(gh, hd)
    c_head_units = ch.repeat_interleave(hd)
    axis_maps = {
        "d": AxisMap(g),
        "d_in": AxisMap(g, c),
        "d_tied": AxisMap(g, c),
        "head": AxisMap(g_head_units),
        "head_in": AxisMap(g_head_units, c_head_units),
        "kv": AxisMap(expand_heads(unit_map(op, old.kv_heads, new.kv_heads), hd)),
    }
    out = {}
    for name, role in param_roles(new).items():
        axes = {ax: axis_maps[tag] for ax, tag in enumerate(role.axes) if tag in axis_maps}
        out[name] = ParamMap(name, role, grown_shape(role, state[name], new), axes)
    return out


def ffn_maps(op: str, state: dict[str, torch.Tensor], old: ModelConfig,
             new: ModelConfig) -> dict[str, ParamMap]:
    """FFN inner size f -> f': new unit i copies input row g(i) and its bias; output columns are
    gathered by g and divided by c (exact for any elementwise activation). `zero`: new input rows
    random, new output columns zero."""
    g = unit_map(op, old.ffn, new.ffn)
    c = copy_counts(g, old.ffn)
    axis_maps = {"f": AxisMap(g), "f_in": AxisMap(g, c, fresh="zero" if op == "zero" else "init")}
    out = {}
    for name, role in param_roles(new).items():
        axes = {ax: axis_maps[tag] for ax, tag in enumerate(role.axes) if tag in axis_maps}
        out[name] = ParamMap(name, role, grown_shape(role, state[name], new), axes)
    return out


def depth_layer_map(op: str, n: int, m: int, where: str = "even") -> torch.Tensor:
    """Source layer of every new layer (FRESH for inserted ones)."""
    if op in ("stack", "interpolate"):
        return unit_map(op, n, m)
    if op == "middle":
        # MIDAS-style middle stacking: the centred block of k = m - n layers, starting at
        # (n - k) // 2, is repeated right after itself (growlang/operators.py: k <= n)
        k = m - n
        start = (n - k) // 2
        return torch.cat([torch.arange(start + k), torch.arange(start, n)])
    if where == "top":
        return torch.cat([torch.arange(n), torch.full((m - n,), FRESH)])
    # even: old layer j goes to slot floor(j*m/n), so new layers sit between them
    g = torch.full((m,), FRESH)
    g[torch.arange(n) * m // n] = torch.arange(n)
    return g


def depth_maps(op: str, args: dict, state: dict[str, torch.Tensor], old: ModelConfig,
               new: ModelConfig) -> dict[str, ParamMap]:
    """Layers L -> L'. `stack`/`interpolate`/`middle` copy whole layers; `zero` inserts fresh layers
    whose residual branches end in zeroed projections; `random` inserts freshly initialised layers."""
    g = depth_layer_map(op, old.depth, new.depth, args.get("where") or "even")
    out = {}
    for name, role in param_roles(new).items():
        if role.layer is None:
            out[name] = ParamMap(name, role, tuple(state[name].shape))
    for i, src in enumerate(g.tolist()):
        new_layer = layer_roles(new, i)
        if src == FRESH:
            for name, role in new_layer.items():
                shape = grown_shape(role, None, new)
                fill = "zero" if op == "zero" and role.branch_out else "init"
                out[name] = ParamMap(None, role, shape, fresh=fill)
        else:
            for (name, role), old_name in zip(new_layer.items(), layer_roles(old, src)):
                out[name] = ParamMap(old_name, role, tuple(state[old_name].shape))
    return out


def add_noise(state: dict[str, torch.Tensor], maps: dict[str, ParamMap], eps: float,
              generator: torch.Generator | None) -> dict[str, torch.Tensor]:
    """Net2Net symmetry breaking: every grown matrix gets Gaussian noise of std eps * its own std."""
    if not eps:
        return state
    out = dict(state)
    for name, pm in maps.items():
        if len(pm.shape) >= 2 and pm.axes:
            t = out[name]
            out[name] = t + eps * t.std() * torch.randn(t.shape, generator=generator)
    return out


def with_shape(cfg: ModelConfig, **changes) -> ModelConfig:
    return dataclasses.replace(cfg, **changes)
