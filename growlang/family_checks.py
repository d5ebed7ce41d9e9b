"""What the model family decides about the rest of a schedule (docs/language.md "Families"): which
model-block and stage keys it takes (E109), its defaults (one `ModelSpec`, resolved here once), and
what its objective ignores (W410: `mask` for a causal LM). Reads only the table in growlang.families.
"""

from __future__ import annotations

from growlang.diagnostics import Diagnostic, Span, error, warning
from growlang.families import COMMON_KEYS, FAMILIES, Family, family
from growlang.plan import ModelSpec
from growlang.syntax import Setting

# Keys some families take and others do not: the model-block ones, and the stage key `kv_heads`
# (families with gqa). Each says what a family without it does instead (E109's message).
_INSTEAD = {
    "type_vocab": lambda f: f"{f.name} has no token type embeddings",
    "tie": lambda f: f"{f.name} always ties its output layer to the token embeddings",
    "rope_theta": lambda f: f"{f.name} uses learned positions",
    "kv_heads": lambda f: f"{f.name} uses multi-head attention (kv_heads = heads)",
}
OLD_EPS = "layer_norm_eps"  # the older spelling of `norm_eps`, still accepted


def takes(fam: Family, key: str) -> bool:
    return fam.gqa if key == "kv_heads" else key in fam.keys


def other_family_key(key: str, fam: Family, span: Span) -> Diagnostic:
    """E109: `key` exists, but not for `fam`."""
    owners = [f.name for f in FAMILIES.values() if takes(f, key)]
    return error("E109", f"`{key}` is a key of {', '.join(owners)} only; {_INSTEAD[key](fam)}", span,
                 "remove it, or train a family that takes it: " + ", ".join(f"`model {n}`" for n in owners))


def model_keys(name: str, settings: tuple[Setting, ...]) -> tuple[tuple[Setting, ...], list[Diagnostic]]:
    """The model block's settings its family takes, and an error for each it does not (E109), and
    for `norm_eps` written next to its older spelling (E102). Unknown family: all kept (E103)."""
    if name not in FAMILIES:
        return settings, []
    fam, found, kept = family(name), [], []
    written = {s.key: s for s in settings}
    for s in settings:
        if s.key in _INSTEAD and not takes(fam, s.key):
            found.append(other_family_key(s.key, fam, s.key_span))
        elif s.key == OLD_EPS and "norm_eps" in written:
            found.append(error("E102", "`norm_eps` is given twice in the `model` block, once as its older spelling "
                                       "`layer_norm_eps`", s.key_span, "keep `norm_eps`"))
        else:
            kept.append(s)
    return tuple(kept), found


# `max_len` not written: the longest stage's `len` (`longest`), so every position row is trained and
# the exported model reads what it was trained on; before the shapes are known, no limit at all.
UNBOUNDED_LEN = 1 << 40


def model_spec(m, longest: int | None = None) -> ModelSpec:
    """A validated ModelBlock with its family's defaults filled: the one place they are resolved.
    `longest`: the longest stage `len`, the default `max_len` (None: not known yet, no limit)."""
    fam = family(m.family)

    def value(key: str, fallback=None):
        written = getattr(m, key)
        if key == "max_len" and written is None:
            return longest if longest is not None else UNBOUNDED_LEN
        return written if written is not None else fam.defaults.get(key, fallback)

    eps = next((v for v in (m.norm_eps, m.layer_norm_eps) if v is not None), fam.defaults["norm_eps"])
    tie = (m.tie == "true") if m.tie is not None else fam.defaults.get("tie", True)
    return ModelSpec(m.family, m.vocab, m.head_dim, value("max_len"), value("type_vocab", 0), value("dropout"), eps,
                     tie, value("rope_theta", 10000.0))


def model_defaults_used(m, spec: ModelSpec) -> list[str]:
    """`model.KEY=VALUE` for every key of the family not written, in the block's field order, with
    the values of `spec` (the resolved ModelSpec). The epsilon is listed once: as `layer_norm_eps`
    for the bert families (BERT's name for it, so their check output stays as it was), as
    `norm_eps` for the others."""
    fam = family(m.family)
    eps_key = OLD_EPS if fam.objective == "mlm" else "norm_eps"
    shown = {"type_vocab": spec.type_vocab, "norm_eps": spec.layer_norm_eps, "tie": "true" if spec.tie else "false",
             "max_len": spec.max_len, "dropout": spec.dropout, "rope_theta": spec.rope_theta}
    used = []
    for key in type(m).model_fields:
        if key == OLD_EPS or (key not in COMMON_KEYS + ("family",) and key not in fam.keys):
            continue
        if key in m.model_fields_set or (key == "norm_eps" and OLD_EPS in m.model_fields_set):
            continue
        v = shown.get(key, getattr(m, key))
        why = " (the longest stage's len)" if key == "max_len" else ""
        used.append(f"model.{eps_key if key == 'norm_eps' else key}={_text(v)}{why}")
    return used


def _text(v) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


def objective_warnings(fam: Family, data_settings: tuple[Setting, ...]) -> list[Diagnostic]:
    """W410: data keys the family's objective ignores (a causal LM masks nothing)."""
    if fam.objective != "clm":
        return []
    return [warning("W410", f"`mask` is ignored: {fam.name} is a causal LM and predicts every next token", s.key_span,
                    "remove `mask`; it applies to the masked-LM families " + ", ".join(
                        n for n, f in FAMILIES.items() if f.objective == "mlm"))
            for s in data_settings if s.key == "mask"]


def data_defaults_hidden(fam: Family) -> tuple[str, ...]:
    """Data keys `check` does not list as defaults used because the family ignores them."""
    return ("mask",) if fam.objective == "clm" else ()


# The smallest `vocab` the builtin tokenizer of each objective can have (runtime/tokenizer.py reads
# these): the WordPiece holds its 5 specials plus at least one character and its `##` form; the
# byte-level BPE holds the 256 bytes and <|endoftext|>.
BUILTIN_VOCAB_MIN = {"mlm": 7, "clm": 257}


def builtin_vocab_problem(fam: Family, vocab: int, span) -> Diagnostic | None:
    """E201 when `vocab` is below what the builtin tokenizer of the family's objective holds."""
    need = BUILTIN_VOCAB_MIN[fam.objective]
    if vocab >= need:
        return None
    what = ("the byte-level BPE (256 bytes and <|endoftext|>)" if fam.objective == "clm" else
            "the WordPiece (5 special tokens, then each character and its ## form)")
    return error("E201", f"`vocab` {vocab} is too small for the builtin tokenizer of {fam.name}: {what} "
                         f"needs at least {need}", span,
                 f"use vocab >= {need} (a few thousand for real text), or a tokenizer folder")

