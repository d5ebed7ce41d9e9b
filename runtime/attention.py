"""Which attention kernel a stage's training step runs, resolved once per stage from
`train { attention=... }`, and the attention call the models make (`scaled_dot_product_attention`).

All kernels compute `F.scaled_dot_product_attention`; they differ in how:
- `fused` is torch's own dispatch: a fused kernel (flash attention on a CPU; flash,
  memory-efficient or cuDNN on CUDA) that never stores the T x T scores and recomputes them in
  backward. The default, as every run before this option trained. On a CPU the fused kernels take
  no dropout, so with `dropout` above 0 torch's dispatch trains on the math kernel anyway (and
  evaluates, dropout off, on flash); `math` is then no other choice, only `fused-fp32` may be.
- `math` is torch's reference composite: two batched matmuls and a softmax, the scores and the
  probabilities kept for backward (depth x micro batch x heads x T^2 values each).
- `fused-fp32`, under bf16/fp16 autocast: torch's dispatch on fp32 copies of q, k and v, the
  result cast back (in an fp32 run it is `fused`). Measured on this project's AMD EPYC
  (avx512_bf16, no AMX, one thread): the CPU flash kernel's bf16 backward was about 30% of every
  bf16 step of the quickstart's stages (torch.profiler, benchmarks/step_profile.py: 46.5 of
  157 ms on stage 1, 100.7 of 320 on stage 3), several times its fp32 cost, and upcasting made
  the steps 13-16% faster (docs/precision.md, "Attention kernel"). More exact, not less.
- `gemm` is growlang's own (runtime/attention_gemm.py): the two products as batched GEMMs in the
  operands' dtype, the softmax computed in fp32, the probabilities kept for backward like
  `math`'s but in the operands' dtype, and a backward of four GEMMs. Under bf16 on the same CPU
  it was 2.8-4.6x faster than `fused` at lengths 84 and 128 without dropout and 1.4x with it
  (docs/precision.md, "Attention kernel"), because the CPU flash kernel's bf16 backward runs far
  below the bf16 matmul rate; at length 512 `fused` won there (since 2026-12-07 `gemm` wins it in
  bf16 on an Intel Xeon with AMX: runtime/attention_gemm.py).
- `auto` times the candidates that differ in the run (`candidates`), forward and backward, on
  the stage's own attention shape in the run's precision, and keeps the fastest where it beats
  `fused` clearly (MARGIN): which one wins depends on the CPU, the dtype and the length, so the
  probe decides, not a rule. On CUDA and for a compiled step `auto` keeps `fused` (torch's
  dispatch is made for the GPU; a compiled step is not the eager kernels the probe times).

The choice changes rounding, so it must not change inside a stage: it is recorded in every
checkpoint (`Trainer.save`) and a resumed stage runs the recorded kernel. The probe's result is
cached per machine (`$GROWLANG_CACHE/attention.json`, keyed like the matmul ceilings plus the
shape and a hash of runtime/attention_gemm.py and its row softmax, so a changed kernel is timed
anew), so two runs of one schedule on one machine choose alike and stay comparable bit for bit;
with several processes
rank 0 probes and every rank takes its choice (`Parallel.on_main`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import hashlib
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

KERNELS = ("fused", "math", "fused-fp32", "gemm")
REDUCED = (torch.bfloat16, torch.float16)
_KERNEL = contextvars.ContextVar("growlang_attention_kernel", default="fused")  # set by AttentionChoice.kernel()


def scaled_dot_product_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, is_causal: bool = False,
                                 dropout_p: float = 0.0) -> torch.Tensor:
    """`F.scaled_dot_product_attention` (no mask: packed sequences have no padding) with the
    current stage's kernel (`AttentionChoice.kernel`): the encoder's and the decoder's call."""
    kernel = _KERNEL.get()
    if kernel == "gemm":
        from growlang.runtime.attention_gemm import gemm_attention

        return gemm_attention(q, k, v, is_causal=is_causal, dropout_p=dropout_p)
    if kernel == "fused-fp32" and q.dtype in REDUCED:
        with torch.autocast(q.device.type, enabled=False):
            y = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=is_causal,
                                               dropout_p=dropout_p)
        return y.to(q.dtype)
    return F.scaled_dot_product_attention(q, k, v, is_causal=is_causal, dropout_p=dropout_p)


MARGIN = 0.9  # another kernel is kept only when its median time is under 0.9x fused's, the default
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
        """About what the math and gemm kernels keep for backward over the whole model: two
        T^2 tensors per (layer, sequence, head) in fp32 (8 bytes a score; gemm's P, dropped P and
        mask are 5 in bf16, 9 in fp32 with dropout)."""
        return 2 * 4 * self.depth * self.micro_batch * self.heads * self.length ** 2

    def describe(self) -> str:
        return f"({self.micro_batch}, {self.heads}, {self.length}, {self.head_dim}){' causal' if self.causal else ''}"


@dataclass(frozen=True)
class AttentionChoice:
    requested: str  # auto | one of KERNELS
    name: str  # one of KERNELS
    why: str

    @contextlib.contextmanager
    def kernel(self):
        """The context every forward of the stage runs in (backward follows its forward's kernel)."""
        if self.name == "math":
            with sdpa_kernel(SDPBackend.MATH):
                yield
            return
        token = _KERNEL.set(self.name)
        try:
            yield
        finally:
            _KERNEL.reset(token)

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


def candidates(shape: AttentionShape, dtype: torch.dtype) -> tuple[str, ...]:
    """The kernels that compute differently in this run, `fused` first: `math` only with dropout off
    (with dropout torch's CPU dispatch trains on math already, so the two are one); `fused-fp32`
    only under reduced precision (in fp32 it is `fused`); `math` and `gemm` only where the
    T^2 tensors they keep fit SCORES_LIMIT."""
    fits = shape.scores_bytes <= SCORES_LIMIT
    out = ["fused"]
    if shape.dropout == 0 and fits:
        out.append("math")
    if dtype in REDUCED:
        out.append("fused-fp32")
    if fits:
        out.append("gemm")
    return tuple(out)


def time_kernels(shape: AttentionShape, dtype: torch.dtype, device: torch.device,
                 kernels: tuple[str, ...] = KERNELS) -> dict[str, float]:
    """Median seconds of one forward and backward of each of `kernels` on `shape`, alternated round
    by round after a warm-up: at least MIN_ROUNDS rounds and MIN_SECONDS in all (a small shape gets
    many samples, so one slow round on a shared machine does not decide), at most MAX_ROUNDS.
    The operands come from a private generator and dropout's draws are undone, so probing never
    moves the RNG a run seeds."""
    g = torch.Generator().manual_seed(0)
    size = (shape.micro_batch, shape.heads, shape.length, shape.head_dim)
    q, k, v, grad = (torch.randn(size, generator=g).to(device=device, dtype=dtype) for _ in range(4))
    q, k, v = (t.requires_grad_() for t in (q, k, v))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    rng = torch.random.get_rng_state()
    times: dict[str, list[float]] = {name: [] for name in kernels}
    try:
        start = time.perf_counter()
        for r in range(MAX_ROUNDS + 1):
            if r > MIN_ROUNDS and time.perf_counter() - start > MIN_SECONDS:
                break
            for name in kernels:
                t0 = time.perf_counter()
                with AttentionChoice("probe", name, "").kernel():
                    y = scaled_dot_product_attention(q, k, v, is_causal=shape.causal, dropout_p=shape.dropout)
                y.backward(grad)
                sync()
                if r:  # round 0 warms up
                    times[name].append(time.perf_counter() - t0)
    finally:
        torch.random.set_rng_state(rng)
    return {name: statistics.median(ts) for name, ts in times.items()}


def cache_key(device: torch.device, dtype: torch.dtype, shape: AttentionShape) -> str:
    """The probe's cache key: the device (runtime/ceiling.py: name, torch version, threads, dtype),
    the shape, and the source of growlang's own kernel, whose timings a new version changes (the
    other kernels are torch's, which the torch version covers)."""
    from growlang.runtime.ceiling import key as device_key

    return f"{device_key(device, dtype)}|{shape.describe()}|dropout {shape.dropout > 0}|gemm {gemm_source_hash()}"


@functools.cache
def gemm_source_hash() -> str:
    """The gemm kernel's version: its source, its row softmax's (Python, C and the shared header)
    and which of those runs (the C kernel or torch's ops, runtime/c_kernels.py)."""
    from growlang.runtime import attention_gemm, c_kernels, row_softmax

    files = (Path(attention_gemm.__file__), Path(row_softmax.__file__), *c_kernels.SOURCES, *c_kernels.HEADERS)
    h = hashlib.sha256(c_kernels.c_kernels().name.encode())
    for f in files:
        h.update(f.read_bytes())
    return h.hexdigest()[:12]


def resolve(requested: str, shape: AttentionShape, dtype: torch.dtype, device: torch.device,
            compiled: bool = False, cache_dir=None, timer=None) -> AttentionChoice:
    """The kernel for one stage (`timer`, time_kernels's stand-in, is replaced in tests)."""
    from growlang.runtime.ceiling import cached

    if requested != "auto":
        return AttentionChoice(requested, requested, "as the schedule asks")
    if device.type != "cpu":
        return AttentionChoice(requested, "fused", f"auto: torch's dispatch on {device.type}")
    if compiled:
        return AttentionChoice(requested, "fused", "auto: the step is compiled; the probe times eager kernels")
    names = candidates(shape, dtype)
    dtype_name = str(dtype).removeprefix("torch.")
    if len(names) == 1:
        return AttentionChoice(requested, "fused", f"auto: no other kernel computes differently here ({dtype_name}, "
                                                   f"dropout {shape.dropout:g}, scores {shape.scores_bytes / 2**30:.1f} GiB)")
    times = cached("attention.json", cache_key(device, dtype, shape),
                   lambda: (timer or time_kernels)(shape, dtype, device, names),
                   lambda v: isinstance(v, dict) and all(isinstance(v.get(n), (int, float)) for n in names),
                   cache_dir)
    best = min(names, key=lambda n: times[n])
    name = best if times[best] < MARGIN * times["fused"] else "fused"
    timed = ", ".join(f"{n} {times[n] * 1e3:.2f} ms" for n in names)
    return AttentionChoice(requested, name, f"auto: forward+backward of {shape.describe()} {dtype_name} timed {timed}")
