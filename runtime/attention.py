"""Which attention kernel a stage's training step runs, resolved once per stage from
`train { attention=... }`.

Both kernels compute `F.scaled_dot_product_attention`; they differ in how:
- `fused` is torch's own dispatch: a fused kernel (flash attention on a CPU; flash,
  memory-efficient or cuDNN on CUDA) that never stores the T x T scores and recomputes them in
  backward. The default, as every run before this option trained. On a CPU the fused kernels take
  no dropout, so with `dropout` above 0 torch's dispatch trains on the math kernel anyway (and
  evaluates, dropout off, on flash); `auto` then has nothing to choose.
- `math` is torch's reference composite: two batched matmuls and a softmax, the scores and the
  probabilities kept for backward (depth x micro batch x heads x T^2 values each).
- `auto` times both, forward and backward, on the stage's own attention shape in the run's
  precision, and keeps `math` where it is clearly faster (MARGIN). Measured on this project's AMD
  EPYC (avx512_bf16, one thread): the CPU flash kernel's bf16 backward was the largest single op
  of the quickstart's small stage (docs/precision.md, "Work around the matmuls"), and `math` ran
  that stage's attention faster at some lengths and not at others, so no rule from the shape
  alone is safe: the probe decides. On CUDA and for a compiled step `auto` keeps `fused` (torch's
  dispatch is made for the GPU; a compiled step is not the eager kernels the probe times).

The choice changes rounding, so it must not change inside a stage: it is recorded in every
checkpoint (`Trainer.save`) and a resumed stage runs the recorded kernel. The probe's result is
cached per machine (`$GROWLANG_CACHE/attention.json`, keyed like the matmul ceilings plus the
shape), so two runs of one schedule on one machine choose alike and stay comparable bit for bit;
with several processes rank 0 probes and every rank takes its choice (`Parallel.on_main`).
"""

from __future__ import annotations

import contextlib
import statistics
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from growlang.runtime.ceiling import cached, key as device_key

KERNELS = ("fused", "math")
MARGIN = 0.9  # math is kept only when its median time is under 0.9x fused's: fused stores no scores
MIN_ROUNDS, MAX_ROUNDS, MIN_SECONDS = 5, 200, 0.3  # the probe's timed rounds (time_kernels)
SCORES_LIMIT = 2 << 30  # bytes of scores the math kernel may keep for backward before it is not tried


@dataclass(frozen=True)
class AttentionShape:
    """What one stage's attention calls look like: (micro_batch, heads, length, head_dim) per layer."""

    depth: int
    micro_batch: int
    heads: int
    length: int
    head_dim: int
    causal: bool
    dropout: float

    @property
    def scores_bytes(self) -> int:
        """What the math kernel keeps for backward over the whole model: scores and probabilities
        in fp32 (an upper bound for bf16), depth x micro batch x heads x T^2 each."""
        return 2 * 4 * self.depth * self.micro_batch * self.heads * self.length ** 2

    def describe(self) -> str:
        return f"({self.micro_batch}, {self.heads}, {self.length}, {self.head_dim}){' causal' if self.causal else ''}"


@dataclass(frozen=True)
class AttentionChoice:
    requested: str  # auto | fused | math
    name: str  # fused | math
    why: str

    def kernel(self):
        """The context every forward of the stage runs in (backward follows its forward's kernel)."""
        return sdpa_kernel(SDPBackend.MATH) if self.name == "math" else contextlib.nullcontext()

    def describe(self) -> str:
        return f"attention: {self.name} ({self.why})"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, d: dict | None) -> "AttentionChoice":
        """A checkpoint's record; checkpoints written before the option trained with `fused`."""
        if not d:
            return cls("fused", "fused", "recorded before train.attention existed: torch's dispatch")
        return cls(d["requested"], d["name"], d["why"])


def stage_shape(plan, stage, micro_batch: int) -> AttentionShape:
    """The attention shape of a plan stage's training step with `micro_batch` sequences per forward."""
    from growlang.families import FAMILIES

    sh = stage.shape
    return AttentionShape(sh.depth, micro_batch, sh.heads, stage.reading.encoder_len, sh.width // sh.heads,
                          FAMILIES[plan.model.family].objective == "clm", plan.model.dropout)


def time_kernels(shape: AttentionShape, dtype: torch.dtype, device: torch.device) -> dict[str, float]:
    """Median seconds of one forward and backward of each kernel on `shape`, alternated round by
    round after a warm-up: at least MIN_ROUNDS rounds and MIN_SECONDS in all (a small shape gets
    many samples, so one slow round on a shared machine does not decide), at most MAX_ROUNDS.
    The operands come from a private generator and dropout's draws are undone, so probing never
    moves the RNG a run seeds."""
    g = torch.Generator().manual_seed(0)
    size = (shape.micro_batch, shape.heads, shape.length, shape.head_dim)
    q, k, v, grad = (torch.randn(size, generator=g).to(device=device, dtype=dtype) for _ in range(4))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rng = torch.random.get_rng_state()
    times: dict[str, list[float]] = {name: [] for name in KERNELS}
    try:
        start = time.perf_counter()
        for r in range(MAX_ROUNDS + 1):
            if r > MIN_ROUNDS and time.perf_counter() - start > MIN_SECONDS:
                break
            for name in KERNELS:
                t0 = time.perf_counter()
                with AttentionChoice("probe", name, "").kernel():
                    y = F.scaled_dot_product_attention(q, k, v, is_causal=shape.causal, dropout_p=shape.dropout)
                y.backward(grad)
                sync()
                if r:  # round 0 warms up
                    times[name].append(time.perf_counter() - t0)
    finally:
        torch.random.set_rng_state(rng)
    return {name: statistics.median(ts) for name, ts in times.items()}


def cache_key(device: torch.device, dtype: torch.dtype, shape: AttentionShape) -> str:
    return (f"{device_key(device, dtype)}|{shape.describe()}|dropout {shape.dropout > 0}")


def resolve(requested: str, shape: AttentionShape, dtype: torch.dtype, device: torch.device,
            compiled: bool = False, cache_dir=None, timer=None) -> AttentionChoice:
    """The kernel for one stage (`timer` is replaced in tests)."""
    if requested != "auto":
        return AttentionChoice(requested, requested, "as the schedule asks")
    if device.type != "cpu":
        return AttentionChoice(requested, "fused", f"auto: torch's dispatch on {device.type}")
    if compiled:
        return AttentionChoice(requested, "fused", "auto: the step is compiled; the probe times eager kernels")
    if shape.dropout > 0:  # torch's CPU fused kernels take no dropout: its dispatch trains with math already
        return AttentionChoice(requested, "fused", f"auto: dropout {shape.dropout:g} in training, which torch's CPU "
                                                   "dispatch runs on its math kernel already")
    if shape.scores_bytes > SCORES_LIMIT:
        return AttentionChoice(requested, "fused", f"auto: math would keep {shape.scores_bytes / 2**30:.1f} GiB of "
                                                   f"scores, over {SCORES_LIMIT / 2**30:.0f} GiB: not tried")
    dtype_name = str(dtype).removeprefix("torch.")
    times = cached("attention.json", cache_key(device, dtype, shape), lambda: (timer or time_kernels)(shape, dtype, device),
                   lambda v: isinstance(v, dict) and all(isinstance(v.get(n), (int, float)) for n in KERNELS),
                   cache_dir)
    name = "math" if times["math"] < MARGIN * times["fused"] else "fused"
    return AttentionChoice(requested, name, f"auto: forward+backward of {shape.describe()} {dtype_name} timed "
                                            f"{times['fused'] * 1e3:.2f} ms fused, {times['math'] * 1e3:.2f} ms math")
