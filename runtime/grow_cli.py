"""`growlang grow SRC --to 'depth=12 width=768 ffn=3072' --by 'depth by stack, width by interpolate'
--out DST [--seed N]`: grow a trained model once, outside a schedule, and say how far it moved.

SRC is a Hugging Face BERT masked-LM folder (a growlang export is one). The request syntax is the
`.grow` growth clause's: `DIM by OP` or `DIM by OP(key=value, ...)`, comma separated. The runtime
may not import the front end (Lark), so a minimal parser lives here; a caller that has already
parsed the request with `growlang.compiler.parse_growth_request` (with its diagnostics) can pass
`args.request = (sizes: dict, ops: tuple[OpUse, ...])` and this parser is skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
from pathlib import Path

EXIT_OK, EXIT_PROBLEM, EXIT_USAGE = 0, 1, 2

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt")
_SIZE_KEYS = ("depth", "width", "heads", "ffn", "len")
_OP = re.compile(r"^\s*(\w+)\s+by\s+(\w+)\s*(?:\((.*)\))?\s*$")


class RequestError(ValueError):
    """A malformed --to or --by (usage error)."""


def parse_sizes(text: str, width: int | None = None) -> dict[str, int]:
    """'depth=12 width=768 ffn=4x' -> {'depth': 12, 'width': 768, 'ffn': 3072}; `Nx` is N * width."""
    items = []
    for item in text.replace(",", " ").split():
        key, eq, value = item.partition("=")
        if not eq or not value:
            raise RequestError(f"expected KEY=VALUE in --to, got {item!r}")
        if key not in _SIZE_KEYS:
            raise RequestError(f"unknown size {key!r} in --to (expected one of {', '.join(_SIZE_KEYS)})")
        items.append((key, value))
    out: dict[str, int] = {}
    for key, value in sorted(items, key=lambda kv: kv[0] != "width"):  # `ffn=4x` is of the new width
        out[key] = _number(key, value, out.get("width", width))
    return out


def _number(key: str, value: str, width: int | None) -> int:
    mult = {"k": 1000, "M": 1_000_000}
    try:
        if value.endswith("x"):
            if key != "ffn" or width is None:
                raise RequestError(f"{key}={value}: `Nx` only works for ffn (a multiple of width)")
            return int(float(value[:-1]) * width)
        if value[-1] in mult:
            return int(float(value[:-1]) * mult[value[-1]])
        return int(value)
    except ValueError:
        raise RequestError(f"{key}={value!r} is not a whole number") from None


def parse_ops(text: str) -> list[tuple[str, str, tuple[tuple[str, object], ...]]]:
    """'depth by stack, width by interpolate(noise=0.01)' -> [(dim, op, args), ...]."""
    out = []
    for part in _split_top(text):
        m = _OP.match(part)
        if not m:
            raise RequestError(f"expected `DIM by OP` in --by, got {part.strip()!r}")
        dim, op, arg_text = m.groups()
        args = []
        for a in filter(None, (s.strip() for s in (arg_text or "").split(","))):
            k, eq, v = a.partition("=")
            if not eq:
                raise RequestError(f"expected key=value in the arguments of `{dim} by {op}`, got {a!r}")
            try:
                args.append((k.strip(), float(v)))
            except ValueError:
                args.append((k.strip(), v.strip()))
        out.append((dim, op, tuple(args)))
    return out


def _split_top(text: str) -> list[str]:
    parts, depth, cur = [], 0, ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    return [p for p in parts + [cur] if p.strip()]


def resolve_ops(parsed, old, new):
    """OpUse per growing dimension, with its preservation class from growlang.operators."""
    from growlang.operators import DEFAULT_OPERATOR, OPERATORS, operators_for
    from growlang.plan import OpUse
    from growlang.runtime.errors import UserError

    named = {}
    for dim, op, args in parsed:
        if (dim, op) not in OPERATORS:
            known = ", ".join(operators_for(dim)) or "none"
            raise UserError(f"unknown operator `{op}` for {dim} (known: {known})")
        if dim in named:
            raise UserError(f"{dim} is named twice in --by")
        named[dim] = (op, args)
    uses = []
    for dim in ("width", "ffn", "depth"):
        n, m = getattr(old, dim), getattr(new, dim)
        if dim in named and n == m:
            print(f"warning: {dim} does not change ({n}); `{dim} by {named[dim][0]}` has no effect", file=sys.stderr)
        if n == m:
            continue
        op, args = named.get(dim, (DEFAULT_OPERATOR[dim], ()))
        info = OPERATORS[(dim, op)]
        why = info.precondition(n, m)
        if why:
            raise UserError(why)
        uses.append(OpUse(dim, op, args, info.preservation(n, m, old.family, dict(args)), dim not in named))
    return tuple(uses)


def overall_class(uses) -> str:
    classes = {u.preservation for u in uses}
    return "none" if "none" in classes else "approximate" if "approximate" in classes else "exact"


def main(args: argparse.Namespace) -> int:
    try:
        return _main(args)
    except RequestError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as e:  # UserError and friends: a message, not a traceback
        from growlang.runtime.errors import UserError
        if isinstance(e, UserError):
            print(f"error: {e}", file=sys.stderr)
            return EXIT_PROBLEM
        raise


def load_source(src: Path):
    """(model, cfg) from a growlang checkpoint folder (state.json + model.safetensors, checksums
    verified) or a Hugging Face folder."""
    from growlang.runtime.hf import import_hf

    if (src / "state.json").is_file():
        from safetensors.torch import load_file

        from growlang.runtime.checkpoint import MODEL, verify
        from growlang.runtime.errors import UserError
        from growlang.runtime.model import Encoder, EncoderConfig

        state, why = verify(src)
        if state is None:
            raise UserError(f"{src} is not a usable growlang checkpoint: {why}")
        cfg = EncoderConfig(**state["config"])
        model = Encoder(cfg)
        model.load_state_dict(load_file(src / MODEL))
        return model, cfg
    return import_hf(src)


def _main(args: argparse.Namespace) -> int:
    import torch

    from growlang.runtime.errors import UserError
    from growlang.runtime.hf import export_hf
    from growlang.runtime.model import Encoder
    from growlang.runtime.operators import grow

    src, out = Path(args.src), Path(args.out)
    request = getattr(args, "request", None)
    if request is not None:
        sizes, front_ops = request
        parsed_ops = [(u.dim, u.op, tuple(u.args)) for u in front_ops]
    else:
        parsed_ops = parse_ops(args.by or "")
    if out.exists():
        raise UserError(f"{out} already exists; choose a new --out")
    model, old = load_source(src)
    if request is None:
        sizes = parse_sizes(args.to or "", old.width)
    if not sizes:
        raise RequestError("--to names no size (e.g. --to 'depth=12 width=768')")
    width = sizes.get("width", old.width)
    heads = sizes.get("heads", width // old.head_dim if width % old.head_dim == 0 else -1)
    if heads <= 0 or width % heads:
        raise UserError(f"width {width} is not a multiple of head_dim {old.head_dim}")
    if sizes.get("len", 0) > old.max_len:
        raise UserError(f"len {sizes['len']} is above max_len {old.max_len}")
    new = dataclasses.replace(old, depth=sizes.get("depth", old.depth), width=width, heads=heads,
                              ffn=sizes.get("ffn", old.ffn))
    from growlang.runtime.operators import check_transition
    check_transition(old, new)
    if new == old:
        raise UserError("--to does not grow anything")
    uses = resolve_ops(parsed_ops, old, new)
    seed = args.seed if getattr(args, "seed", None) is not None else 0
    state, _ = grow(model.state_dict(), old, new, uses, torch.Generator().manual_seed(seed))
    grown = Encoder(new)
    grown.load_state_dict(state)

    # how far did the function move, on a fixed random batch
    model.eval()
    grown.eval()
    g = torch.Generator().manual_seed(1234)
    T = min(64, old.max_len)
    ids = torch.randint(0, old.vocab, (4, T), generator=g)
    with torch.no_grad():
        a, b = model(ids), grown(ids)
    max_abs = (a - b).abs().max().item()
    rel = max_abs / max(a.abs().max().item(), 1e-30)
    expected = overall_class(uses)
    ok = {"exact": max_abs <= 1e-4, "approximate": True, "none": True}[expected]
    export_hf(grown, new, out, copy_files=tuple(src / f for f in TOKENIZER_FILES if (src / f).is_file()))

    def shape(c):
        return f"depth={c.depth} width={c.width} heads={c.heads} ffn={c.ffn}"

    print(f"grew {src}  {shape(old)}")
    print(f"  -> {out}  {shape(new)}")
    for u in uses:
        arg_text = f"({', '.join(f'{k}={v}' for k, v in u.args)})" if u.args else ""
        print(f"  {u.dim} by {u.op}{arg_text}{' (default)' if u.defaulted else ''}: {u.preservation}")
    print(f"logits moved: max abs {max_abs:.3g}, relative {rel:.3g} (4 x {T} random tokens)")
    verdict = "as expected" if ok else "MORE THAN EXPECTED for an exact growth"
    print(f"preservation: {expected}; {verdict}")
    return EXIT_OK if ok else EXIT_PROBLEM
