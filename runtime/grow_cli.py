"""`growlang grow SRC --to 'depth=12 width=768 ffn=3072' --by 'depth by stack, width by interpolate'
--out DST`: grow a trained model once, outside a schedule, and say how far it moved.

SRC is a Hugging Face folder of a family growlang reads (BERT masked LM, GPT-2 or Llama causal LM;
a growlang export is one) or a growlang checkpoint. A Llama checkpoint grows LLaMA-Pro style with
`--to depth=N --by 'depth by zero'`: the new blocks' output projections are zero, the logits exact.
The request is parsed and checked by the front end (growlang.growth_request), with the `.grow`
growth clause's syntax, numbers and operator arguments; its problems print as `check` prints
them and exit 1, before the model is loaded when they need no model.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from growlang.diagnostics import Problems
from growlang.growth_request import GrowthRequest, parse_request, render_problems, resolve_request
from growlang.plan import ModelSpec, Shape
from growlang.runtime.errors import EXIT_OK, EXIT_PROBLEM

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt", "vocab.json",
                   "merges.txt")


def overall_class(uses) -> str:
    classes = {u.preservation for u in uses}
    return "none" if "none" in classes else "approximate" if "approximate" in classes else "exact"


def main(args: argparse.Namespace) -> int:
    try:
        return _main(args)
    except Problems as e:
        print(render_problems(e, args.to or "", args.by or ""), file=sys.stderr)
        return EXIT_PROBLEM
    except Exception as e:  # UserError and friends: a message, not a traceback
        from growlang.runtime.errors import UserError
        if isinstance(e, UserError):
            print(f"error: {e}", file=sys.stderr)
            return EXIT_PROBLEM
        raise


def run_tokenizer(checkpoint: Path):
    """The tokenizer of the run a growlang checkpoint belongs to (its run folder's plan.json names
    the corpus and tokenizer; the builtin one comes from the cache), or None with a note."""
    import json

    from growlang.families import family
    from growlang.plan import Plan
    from growlang.runtime.errors import UserError
    from growlang.runtime.tokenizer import load_tokenizer

    plan_file = checkpoint.parent.parent / "plan.json"  # RUN/checkpoints/<stage>-<step>
    if not plan_file.is_file():
        print(f"note: {checkpoint} is not inside a run folder with a plan.json; the grown model gets no tokenizer",
              file=sys.stderr)
        return None
    plan = Plan.from_dict(json.loads(plan_file.read_text()))
    try:
        return load_tokenizer(plan.data, plan.model.vocab, objective=family(plan.model.family).objective)
    except UserError as e:
        print(f"note: the run's tokenizer could not be loaded ({e}); the grown model gets no tokenizer",
              file=sys.stderr)
        return None


def load_source(src: Path):
    """(model, cfg, special token ids, tokenizer or None) from a growlang checkpoint folder
    (state.json + model.safetensors, checksums verified; the run's tokenizer) or a Hugging Face
    folder (ids from its config.json; its tokenizer files are copied as they are)."""
    from growlang.runtime.hf import TOKEN_IDS, import_hf, read_json

    if (src / "state.json").is_file():
        from safetensors.torch import load_file

        from growlang.runtime.architectures import build, config_from_dict
        from growlang.runtime.checkpoint import MODEL, verify
        from growlang.runtime.errors import UserError

        state, why = verify(src)
        if state is None:
            raise UserError(f"{src} is not a usable growlang checkpoint: {why}")
        cfg = config_from_dict(state["config"])
        model = build(cfg)
        model.load_state_dict(load_file(src / MODEL))
        return model, cfg, None, run_tokenizer(src)
    model, cfg = import_hf(src)
    c = read_json(src)
    return model, cfg, {k: c.get(k) for k in TOKEN_IDS}, None


def model_spec(cfg) -> ModelSpec:
    """The plan's model block for a loaded config: the fields they share, by name (a decoder has no
    token type table: type_vocab 0)."""
    known = {f.name for f in dataclasses.fields(ModelSpec)}
    shared = {k: v for k, v in dataclasses.asdict(cfg).items() if k in known}
    return ModelSpec(**{"type_vocab": 0, **shared, "head_dim": cfg.head_dim})


def resolve(request: GrowthRequest, old):
    """(grown model config, its operators, warnings) from the request and the loaded model's config."""
    model = model_spec(old)
    # `len` is refused in --to (growth_request): the shape's len is the position table's
    shape = Shape(old.depth, old.width, old.heads, old.ffn, old.max_len, kv_heads=old.kv_heads)
    new, uses, warnings = resolve_request(request, shape, model)
    widths = {k: getattr(new, k) for k in old.WIDTH_FIELDS}  # width, heads (and a decoder's kv_heads)
    return dataclasses.replace(old, depth=new.depth, ffn=new.ffn, **widths), uses, warnings


def _main(args: argparse.Namespace) -> int:
    request = parse_request(args.to or "", args.by or "")  # needs no model: before loading torch and one

    import torch

    from growlang.runtime.architectures import build
    from growlang.runtime.errors import UserError
    from growlang.runtime.hf import export_hf
    from growlang.runtime.operators import grow

    src, out = Path(args.src), Path(args.out)
    if not request.sizes:
        raise UserError("--to names no size (e.g. --to 'depth=12 width=768')")
    if out.exists():
        raise UserError(f"{out} already exists; choose a new --out")
    model, old, special, tokenizer = load_source(src)
    new, uses, warnings = resolve(request, old)
    if warnings:
        print(render_problems(Problems(warnings), args.to or "", args.by or ""), file=sys.stderr)
    if new == old:
        raise UserError("--to does not grow anything")
    seed = args.seed if getattr(args, "seed", None) is not None else 0
    state, _ = grow(model.state_dict(), old, new, uses, torch.Generator().manual_seed(seed))
    grown = build(new)
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
    export_hf(grown, new, out, tokenizer=tokenizer,
              copy_files=tuple(src / f for f in TOKENIZER_FILES if (src / f).is_file()), ids=special)

    def shape(c):
        kv = f" kv_heads={c.kv_heads}" if c.kv_heads != c.heads else ""
        return f"depth={c.depth} width={c.width} heads={c.heads}{kv} ffn={c.ffn}"

    print(f"grew {src}  {shape(old)}")
    print(f"  -> {out}  {shape(new)}")
    for u in uses:
        arg_text = f"({', '.join(f'{k}={v}' for k, v in u.args)})" if u.args else ""
        print(f"  {u.dim} by {u.op}{arg_text}{' (default)' if u.defaulted else ''}: {u.preservation}")
    print(f"logits moved: max abs {max_abs:.3g}, relative {rel:.3g} (4 x {T} random tokens)")
    verdict = "as expected" if ok else "MORE THAN EXPECTED for an exact growth"
    print(f"preservation: {expected}; {verdict}")
    return EXIT_OK if ok else EXIT_PROBLEM
