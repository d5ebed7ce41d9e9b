"""The frozen `Plan`: the one thing the front end hands to the runtime.

It is plain data (frozen dataclasses, tuples, ints, floats, strings): no Lark, no pydantic model,
no networkx. The runtime reads only this. `to_dict`/`from_dict` round-trip it through JSON so a
run directory's `plan.json` and every checkpoint record exactly what was trained.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Shape:
    """One stage's model and input shape."""

    depth: int  # transformer layers L
    width: int  # hidden size d
    heads: int  # attention heads h (= width / head_dim)
    ffn: int  # FFN inner size f
    len: int  # sequence length T the stage's model is built for (before pooling)
    kv_heads: int | None = None  # key/value heads (grouped-query attention); None -> heads (MHA)

    def __post_init__(self):
        if self.kv_heads is None:
            object.__setattr__(self, "kv_heads", self.heads)


@dataclass(frozen=True)
class ModelSpec:
    family: str  # a name in growlang.families.FAMILIES (what it is: families.family(name))
    vocab: int
    head_dim: int
    max_len: int  # rows of the position table (learned positions), the longest `len`; fixed across stages
    type_vocab: int = 2  # token type rows (bert families); 0 for a family without a type table
    dropout: float = 0.1
    layer_norm_eps: float = 1e-12  # the norm epsilon of every family (the model key `norm_eps`)
    tie: bool = True  # head weight tied to the token embeddings (bert always ties)
    rope_theta: float = 10000.0  # rotary base (families with positions "rope")


@dataclass(frozen=True)
class DataSpec:
    corpus: str  # "builtin", or an absolute path / glob / saved datasets folder / token store
    tokenizer: str  # "builtin", or an absolute path to a Hugging Face tokenizer folder
    mask: float  # MLM mask rate
    holdout: float  # fraction of documents held out for evaluation
    text_field: str = "text"  # the JSON field / column holding a document's text


@dataclass(frozen=True)
class TrainSpec:
    batch: int  # global batch, sequences per optimizer step
    micro_batch: int  # sequences per forward/backward (batch % micro_batch == 0)
    lr: float
    warmup: int  # steps
    decay: str  # "linear" | "cosine" | "constant"
    min_lr: float  # fraction of peak the decay ends at
    optimizer: str  # "adamw"
    weight_decay: float
    beta1: float
    beta2: float
    eps: float
    grad_clip: float  # max global grad norm; 0 disables
    precision: str  # "fp32" | "bf16" | "fp16" | "auto" (autocast; master weights stay fp32; runtime/precision.py)
    seed: int
    on_grow: str  # "reset" | "carry"
    lr_on_grow: str  # "restart" | "continue" | "rewarm"
    rewarm_steps: int  # for lr_on_grow=rewarm
    eval_every: int  # steps; 0 = only at stage ends
    eval_batches: int
    checkpoint_every: int  # steps; 0 = only at stage ends
    log_every: int
    sharding: str = "none"  # "none" | "fsdp"
    compile: str = "off"  # "auto" | "on" | "off": torch.compile of the training step (runtime/precision.py)
    attention: str = "fused"  # "fused" | "math" | "fused-fp32" | "gemm" | "auto": the attention kernel, per stage (runtime/attention.py; unset: assemble.default_attention)


@dataclass(frozen=True)
class OpUse:
    """One operator applied to one dimension at one transition."""

    dim: str  # "depth" | "width" | "ffn" | "heads" | "len"
    op: str  # registry name, see growlang.operators
    args: tuple[tuple[str, Any], ...] = ()
    preservation: str = "none"  # "exact" | "approximate" | "none", resolved for this use
    defaulted: bool = False  # True when the schedule did not name it

    def arg(self, name: str, default: Any = None) -> Any:
        return dict(self.args).get(name, default)


@dataclass(frozen=True)
class Cost:
    """Static estimate for one stage (see growlang.accounting for every formula)."""

    params: int
    nonembedding_params: int
    tokens: int  # batch * steps * tokens per sequence (accounting.tokens_per_sequence)
    flops: float  # training FLOPs, matmuls only, 3 x forward
    flops_per_seq: float
    memory_bytes: int  # weights + grads + AdamW moments + activations


@dataclass(frozen=True)
class Reading:
    """How one stage reads data, resolved once (growlang.accounting.reading); the runtime reads it."""

    len: int  # the stage's `len` (= shape.len)
    read_len: int  # tokens per sequence read from the stream (the child's len under `len by pool`; T+1 for clm)
    pool: int  # mean-pooling factor k for `len by pool`; 1 = no pooling
    predicted: int  # positions with a loss: masked P = max(1, round(mask * (read_len - 1))); clm: T
    encoder_len: int  # positions the encoder runs on (after pooling): the model must agree


@dataclass(frozen=True)
class StagePlan:
    name: str
    parent: str | None
    shape: Shape
    steps: int
    batch: int  # sequences per optimizer step
    micro_batch: int  # sequences per forward/backward: train.micro_batch, at most this stage's batch
    lr: float
    reading: Reading
    cost: Cost
    line: int = 0  # where the stage is written, for messages


@dataclass(frozen=True)
class TransitionPlan:
    src: str
    dst: str
    ops: tuple[OpUse, ...]

    def op_for(self, dim: str) -> OpUse | None:
        return next((o for o in self.ops if o.dim == dim), None)


@dataclass(frozen=True)
class PathCost:
    """One root-to-leaf path of the stage tree against its from-scratch baseline."""

    stages: tuple[str, ...]
    tokens: int
    flops: float
    baseline_flops: float  # leaf model trained from scratch on `tokens`, at the leaf's len/batch
    saving: float  # 1 - flops / baseline_flops
    speedup: float  # baseline_flops / flops


@dataclass(frozen=True)
class Plan:
    name: str  # schedule name (file stem)
    source: str  # absolute path of the .grow file
    model: ModelSpec
    data: DataSpec
    train: TrainSpec
    stages: tuple[StagePlan, ...]  # topological order: every parent before its children
    transitions: tuple[TransitionPlan, ...]
    paths: tuple[PathCost, ...]
    eval_len: int  # evaluation always runs at the final (longest) length
    defaults_used: tuple[str, ...] = field(default=())  # "train.lr=1e-4", shown by check

    def stage(self, name: str) -> StagePlan:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)

    def transition_into(self, name: str) -> TransitionPlan | None:
        return next((t for t in self.transitions if t.dst == name), None)

    def children(self, name: str) -> tuple[str, ...]:
        return tuple(t.dst for t in self.transitions if t.src == name)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Plan":
        def op(o: dict) -> OpUse:
            return OpUse(o["dim"], o["op"], tuple(tuple(a) for a in o["args"]), o["preservation"], o["defaulted"])

        def stage(s: dict) -> StagePlan:
            return StagePlan(**{**s, "shape": Shape(**s["shape"]), "reading": Reading(**s["reading"]),
                                "cost": Cost(**s["cost"])})

        return cls(
            name=d["name"],
            source=d["source"],
            model=ModelSpec(**d["model"]),
            data=DataSpec(**d["data"]),
            train=TrainSpec(**d["train"]),
            stages=tuple(stage(s) for s in d["stages"]),
            transitions=tuple(
                TransitionPlan(t["src"], t["dst"], tuple(op(o) for o in t["ops"])) for t in d["transitions"]
            ),
            paths=tuple(PathCost(**{**p, "stages": tuple(p["stages"])}) for p in d["paths"]),
            eval_len=d["eval_len"],
            defaults_used=tuple(d.get("defaults_used", ())),
        )
