"""Growth operators as the front end knows them: names, dimensions, arguments, preconditions and
preservation classes. Torch-free; `growlang.runtime.operators` registers the weight mappings under
the same names and a test asserts the two registries agree.

Preservation classes (docs/operators.md): "exact" keeps the logits (fp32 allclose), "approximate"
changes them by a measured, bounded amount, "none" does not try.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from growlang.families import FAMILIES

DIMENSIONS = ("depth", "width", "ffn", "heads", "len")

# The operator a growing dimension gets when the schedule names none (check shows "(default)").
DEFAULT_OPERATOR = {"depth": "stack", "width": "interpolate", "ffn": "stack", "len": "truncate"}


@dataclass(frozen=True)
class ArgSpec:
    name: str
    kind: type  # float, int or str
    choices: tuple[str, ...] = ()
    minimum: float | None = None


@dataclass(frozen=True)
class OperatorInfo:
    name: str
    dim: str
    summary: str
    args: tuple[ArgSpec, ...] = ()
    # (old size, new size, family, args) -> "exact" | "approximate" | "none"
    preservation: Callable[[int, int, str, dict], str] = lambda n, m, fam, a: "none"
    # (old size, new size) -> None, or a message saying why the operator cannot apply
    precondition: Callable[[int, int], str | None] = lambda n, m: None
    cite: str = ""


def _even(n: int, m: int) -> bool:
    return m % n == 0


def _width_copy(n: int, m: int, fam: str, a: dict) -> str:
    # Even copies keep LayerNorm statistics (docs/operators.md, width); uneven ones or noise do not.
    return "exact" if _even(n, m) and not a.get("noise") else "approximate"


def _depth_zero(n: int, m: int, fam: str, a: dict) -> str:
    # A zeroed residual branch is an identity for pre-LN; post-LN still applies the new layer's
    # LayerNorms to the unchanged stream (identity only when gamma/beta match its statistics).
    return "exact" if FAMILIES[fam].prenorm else "approximate"


def middle_block(n: int, m: int) -> tuple[int, int]:
    """`depth by middle` from n to m layers: (start, k) of the centred block of k = m - n old
    layers that is copied, start = (n - k) // 2; the copies go right after the block. The runtime's
    weight map uses this same definition."""
    k = m - n
    return (n - k) // 2, k


def _middle_fits(n: int, m: int) -> str | None:
    if m - n > n:
        return (f"`middle` copies a block of the old layers, so it at most doubles the depth (grow in two stages, "
                f"e.g. {n} -> {2 * n} -> {m}), not {n} -> {m}")
    return None


def _pool_multiple(n: int, m: int) -> str | None:
    if m % n:
        return f"`pool` needs the next length to be a whole multiple of this one ({m} is not a multiple of {n})"
    return None


_NOISE = ArgSpec("noise", float, minimum=0.0)

OPERATORS: dict[tuple[str, str], OperatorInfo] = {
    (o.dim, o.name): o
    for o in (
        OperatorInfo("stack", "depth", "new layer i copies old layer i mod L (progressive stacking)",
                     cite="Gong et al. 2019; Gu et al. 2021"),
        OperatorInfo("interpolate", "depth", "new layer i copies old layer floor(i*L/L')", cite="Chang et al. 2018"),
        OperatorInfo("zero", "depth", "old layers kept; new layers with zeroed output projections",
                     args=(ArgSpec("where", str, choices=("even", "top")),), preservation=_depth_zero,
                     cite="Shen et al. 2022; Wang et al. 2024 (LEMON)"),
        OperatorInfo("random", "depth", "old layers kept; new layers freshly initialised"),
        OperatorInfo("middle", "depth", "new layers copy a centred contiguous block of k = L'-L old layers, inserted "
                     "right after that block", precondition=_middle_fits, cite="Saunshi et al. 2024 (MIDAS)"),
        OperatorInfo("interpolate", "width", "hidden unit i copies floor(i*d/d'); readers divide by copies",
                     args=(_NOISE,), preservation=_width_copy, cite="Chen et al. 2016 (Net2Net); bert2BERT FPI"),
        OperatorInfo("stack", "width", "hidden unit i copies i mod d; readers divide by copies",
                     args=(_NOISE,), preservation=_width_copy, cite="Shen et al. 2022"),
        OperatorInfo("random", "width", "old units kept; new units freshly initialised", args=(_NOISE,)),
        OperatorInfo("stack", "ffn", "inner unit i copies i mod f; output columns divided by copies",
                     preservation=lambda n, m, f, a: "exact", cite="Gu et al. 2021 (FFN parameter sharing)"),
        OperatorInfo("interpolate", "ffn", "inner unit i copies floor(i*f/f'); output columns divided",
                     preservation=lambda n, m, f, a: "exact"),
        OperatorInfo("zero", "ffn", "new inner units random in, zero out",
                     preservation=lambda n, m, f, a: "exact"),
        OperatorInfo("random", "ffn", "new inner units freshly initialised"),
        OperatorInfo("truncate", "len", "train short sequences; nothing changes at growth",
                     preservation=lambda n, m, f, a: "exact", cite="Gu et al. 2021 (data truncation)"),
        OperatorInfo("pool", "len", "read the next length, mean-pool unmasked embeddings by k = T'/T",
                     precondition=_pool_multiple, cite="Gu et al. 2021 (embedding pooling)"),
    )
}


def operators_for(dim: str) -> tuple[str, ...]:
    return tuple(name for (d, name) in OPERATORS if d == dim)


def all_operator_names() -> tuple[str, ...]:
    return tuple(sorted({name for (_, name) in OPERATORS}))
