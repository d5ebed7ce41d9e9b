"""Syntax objects -> validated pydantic values (`Schedule`), with every error as a Diagnostic.

Pydantic owns single values (types, ranges, allowed words, unknown keys via extra="forbid");
relations across stages live in the compiler (pydantic for values, the compiler for relations). Defaults are the ones docs/language.md
lists; `fields_set` tells the compiler which were used so `check` can print them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from growlang.diagnostics import Diagnostic, Span, did_you_mean, error
from growlang.families import FAMILIES
from growlang.family_checks import model_keys
from growlang.syntax import _short, Block, Call, Multiple, ScheduleSyntax, Setting, StageSyntax, Value

Family = Literal[tuple(FAMILIES)]  # type: ignore[valid-type]  # the names in growlang/families.py


class _Frozen(BaseModel):
    # defer_build: a model's validator is built on its first use, not at import, so the abstract
    # base and `Schedule` (made with model_construct from parts already validated) never pay for one.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, arbitrary_types_allowed=True,
                              defer_build=True)


class ModelBlock(_Frozen):
    """The model block as written. None = the family's default (growlang.families, `defaults`),
    resolved once by family_checks.model_spec; which family takes which key is checked there too."""

    family: Family = "bert"
    vocab: int = Field(30522, gt=0)
    head_dim: int = Field(64, gt=0)
    ffn: Union[int, Multiple] = Multiple(4.0)  # default FFN size of a stage: absolute or Nx width
    max_len: Optional[int] = Field(None, gt=0)
    type_vocab: Optional[int] = Field(None, gt=0)
    dropout: Optional[float] = Field(None, ge=0, lt=1)
    norm_eps: Optional[float] = Field(None, gt=0)
    layer_norm_eps: Optional[float] = Field(None, gt=0)  # the older spelling of norm_eps
    tie: Optional[Literal["true", "false"]] = None
    rope_theta: Optional[float] = Field(None, gt=0)

    @field_validator("ffn")
    @classmethod
    def _positive_ffn(cls, v):
        if (v.factor if isinstance(v, Multiple) else v) <= 0:
            raise ValueError("must be greater than 0")
        return v


class DataBlock(_Frozen):
    corpus: str = "builtin"
    tokenizer: str = "builtin"
    mask: float = Field(0.15, gt=0, lt=1)
    holdout: float = Field(0.01, gt=0, lt=1)
    text_field: str = Field("text", min_length=1)


class TrainBlock(_Frozen):
    batch: int = Field(256, gt=0)
    micro_batch: Optional[int] = Field(None, gt=0)  # default: = batch
    lr: float = Field(1e-4, gt=0)
    warmup: Optional[int] = Field(None, ge=0)  # default: 1% of the longest path's steps
    decay: Literal["linear", "cosine", "constant"] = "linear"
    min_lr: float = Field(0.0, ge=0, le=1)
    optimizer: Literal["adamw"] = "adamw"
    weight_decay: float = Field(0.01, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    eps: float = Field(1e-6, gt=0)
    grad_clip: float = Field(1.0, ge=0)
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    seed: int = Field(0, ge=0)
    on_grow: Literal["reset", "carry"] = "reset"
    lr_on_grow: tuple = ("restart", 0)  # (policy, rewarm steps); written restart|continue|rewarm(N)
    eval_every: int = Field(0, ge=0)
    eval_batches: int = Field(20, gt=0)
    checkpoint_every: int = Field(0, ge=0)
    log_every: int = Field(10, gt=0)
    sharding: Literal["none", "fsdp"] = "none"
    compile: Literal["auto", "on", "off"] = "off"  # torch.compile of the training step (docs/precision.md)
    # the attention kernel (runtime/attention.py); unset: by the precision (assemble.default_attention)
    attention: Optional[Literal["fused", "math", "fused-fp32", "gemm", "auto"]] = None

    @field_validator("lr_on_grow", mode="before")
    @classmethod
    def _lr_on_grow(cls, v):
        if isinstance(v, tuple):
            return v
        if isinstance(v, str) and v in ("restart", "continue"):
            return (v, 0)
        if v == "rewarm" or (isinstance(v, Call) and v.name == "rewarm" and len(v.args) != 1):
            raise ValueError("`rewarm` needs its warm-up length in steps, e.g. `lr_on_grow=rewarm(1k)`")
        if isinstance(v, Call) and v.name == "rewarm" and not v.kwargs:
            steps = v.args[0].value
            if not isinstance(steps, int) or steps <= 0:
                raise ValueError(f"`rewarm` needs a positive whole number of steps, got `{v.args[0].text}`")
            return ("rewarm", steps)
        raise ValueError(f"must be `restart`, `continue` or `rewarm(N)`, got `{getattr(v, 'name', v)}`")

    @model_validator(mode="after")
    def _micro_batch_divides(self):
        if self.micro_batch is not None and self.batch % self.micro_batch:
            raise ValueError(f"E208 `batch` ({self.batch}) must be a multiple of `micro_batch` ({self.micro_batch})")
        return self


class StageBlock(_Frozen):
    """One stage as written; missing shape keys are inherited from the parent by the compiler."""

    depth: Optional[int] = Field(None, gt=0)
    width: Optional[int] = Field(None, gt=0)
    heads: Optional[int] = Field(None, gt=0)
    kv_heads: Optional[int] = Field(None, gt=0)
    ffn: Optional[Union[int, Multiple]] = None
    len: Optional[int] = Field(None, gt=1)
    steps: Optional[int] = Field(None, gt=0)
    tokens: Optional[int] = Field(None, gt=0)
    batch: Optional[int] = Field(None, gt=0)
    lr: Optional[float] = Field(None, gt=0)

    _positive_ffn = field_validator("ffn")(lambda cls, v: ModelBlock._positive_ffn(v) if v is not None else v)

    @model_validator(mode="after")
    def _one_budget(self):
        if self.steps is None and self.tokens is None:
            raise ValueError("E205 needs a budget: `steps=N` or `tokens=N`")
        if self.steps is not None and self.tokens is not None:
            raise ValueError("E205 gives both `steps` and `tokens`; keep one")
        return self


class Schedule(_Frozen):
    model: ModelBlock
    data: DataBlock
    train: TrainBlock
    stages: tuple[StageBlock, ...]


def python_value(v: Value):
    """The plain value pydantic sees for a written value."""
    return v.value


def _where(kind: str, name: str | None = None) -> str:
    return f"stage `{name}`" if kind == "stage" else f"the `{kind}` block"


_RANGE = {"greater_than": "greater than {gt}", "greater_than_equal": "at least {ge}",
          "less_than": "less than {lt}", "less_than_equal": "at most {le}"}


def _diagnostic(err: dict, cls: type[BaseModel], settings: dict[str, Setting], where: str,
                header: Span) -> Diagnostic:
    key = str(err["loc"][0]) if err["loc"] else None
    setting = settings.get(key) if key else None
    span = setting.value.span if setting else header
    kind, ctx = err["type"], err.get("ctx", {})
    if kind == "extra_forbidden":
        return error("E101", f"unknown key `{key}` in {where}", setting.key_span,
                     did_you_mean(key, cls.model_fields))
    shown = _short(setting.value.text) if setting else ""
    if kind == "literal_error":
        choices = [c.strip(" '") for c in ctx.get("expected", "").replace(" or ", ",").split(",") if c.strip(" '")]
        if key == "family":
            return error("E103", f"unknown model family `{shown}`", span, did_you_mean(shown, choices))
        return error("E107", f"unknown `{key}` value `{shown}` in {where}", span,
                     did_you_mean(str(setting.value.value), choices))
    if kind in _RANGE:
        bound = _RANGE[kind].format(**{k: ctx.get(k) for k in ("gt", "ge", "lt", "le")})
        return error("E201", f"`{key}` must be {bound}, got `{shown}` in {where}", span)
    if kind.startswith("int_"):
        value = setting.value.value if setting else None
        if isinstance(value, float) and value.is_integer():  # 1e30: whole, but no count is that big
            return error("E201", f"`{key}` = `{shown}` is too large in {where}", span,
                         "counts are below 1e18; did you mean a smaller exponent?")
        return error("E202", f"`{key}` must be a whole number, got `{shown}` in {where}", span)
    if kind.startswith("float_") or kind.startswith("is_instance") or kind.startswith("union"):
        return error("E202", f"`{key}` must be a number, got `{shown}` in {where}", span,
                     "`ffn` takes a size or a multiple of width like `4x`" if key == "ffn" else "")
    if kind.startswith("string_"):
        return error("E202", f"`{key}` must be a word or a quoted string, got `{shown}` in {where}", span)
    message = err["msg"].removeprefix("Value error, ")
    code = "E201"
    if message[:4].startswith(("E", "W")) and message[1:4].isdigit():
        code, message = message[:4], message[5:]
    if not key:
        return error(code, f"{where} {message}", header)
    return error(code, f"`{key}` in {where} {message}" if code != "E201" or not message.startswith("must") else
                 f"`{key}` {message} in {where}", span)


def validate_part(cls: type[BaseModel], settings: tuple[Setting, ...], where: str, header: Span,
                  extra: dict | None = None) -> tuple[BaseModel | None, list[Diagnostic]]:
    """Validate one block or stage; duplicate keys and every pydantic error become Diagnostics."""
    found: list[Diagnostic] = []
    by_key: dict[str, Setting] = {}
    for s in settings:
        if s.key in by_key:
            found.append(error("E102", f"`{s.key}` is given twice in {where}", s.key_span,
                               f"first given at line {by_key[s.key].key_span.line}"))
            continue
        by_key[s.key] = s
    values = {k: python_value(s.value) for k, s in by_key.items() if s.value.kind != "bad"}
    try:
        model = cls(**values, **(extra or {}))
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        if any(s.value.kind == "bad" for s in by_key.values()):
            errors = [e for e in errors if e["loc"]]  # a budget check on a value already reported as bad
        found += [_diagnostic(e, cls, by_key, where, header) for e in errors]
        return None, found
    return (None if found else model), found


@dataclass(frozen=True)
class Parts:
    """Each block and stage validated on its own (None where that part has errors), so the
    compiler can still check everything that does not depend on a broken part (language.md: all
    semantic errors of a file are reported together)."""

    model: ModelBlock | None
    data: DataBlock | None
    train: TrainBlock | None
    stages: tuple[StageBlock | None, ...]  # in file order, like ScheduleSyntax.stages

    def schedule(self) -> Schedule | None:
        """The whole validated `Schedule`, or None when any part failed."""
        if any(p is None for p in (self.model, self.data, self.train, *self.stages)):
            return None
        return Schedule.model_construct(model=self.model, data=self.data, train=self.train, stages=self.stages)


def validate_schedule(syntax: ScheduleSyntax) -> tuple[Parts, list[Diagnostic]]:
    found: list[Diagnostic] = []
    parts: dict[str, BaseModel | None] = {}
    seen: dict[str, Block] = {}
    for block in syntax.blocks:
        if block.kind in seen:
            found.append(error("E102", f"the `{block.kind}` block is given twice", block.span,
                               f"first given at line {seen[block.kind].span.line}; merge them"))
            continue
        seen[block.kind] = block
        cls = {"model": ModelBlock, "data": DataBlock, "train": TrainBlock}[block.kind]
        settings = block.settings
        if block.kind == "model":
            family = Value("word", block.family, block.family, block.family_span)
            settings, problems = model_keys(block.family, settings)
            found += problems
            settings = settings + (Setting("family", block.family_span, family),)
        parts[block.kind], problems = validate_part(cls, settings, _where(block.kind), block.span)
        found += problems
    for kind, cls in (("model", ModelBlock), ("data", DataBlock), ("train", TrainBlock)):
        if kind not in parts:
            parts[kind] = cls()
    stages = []
    for stage in syntax.stages:
        validated, problems = validate_part(StageBlock, stage.settings, _where("stage", stage.name), stage.name_span)
        found += problems
        stages.append(validated)
    return Parts(parts["model"], parts["data"], parts["train"], tuple(stages)), found


def stage_settings(stage: StageSyntax) -> dict[str, Setting]:
    return {s.key: s for s in stage.settings}
