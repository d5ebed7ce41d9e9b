"""The training precision a run uses on its device, resolved once from `train { precision=... }`.

`fp32` trains in fp32. `bf16` and `fp16` autocast the forward pass (the matmuls in the reduced
type) and keep fp32 master weights, gradients and Adam moments, on the CPU as on CUDA; `fp16`
also scales the loss and is supported on CUDA only (the loss scaler here is CUDA's).
`auto` picks bf16 where the device runs it fast and fp32 elsewhere:
- CUDA: bf16 when `torch.cuda.is_bf16_supported()` (Ampere and newer), else fp32;
- CPU: bf16 when the CPU has AMX (`amx_bf16`) or AVX512-BF16 (`avx512_bf16`) in /proc/cpuinfo's
  flags, the instructions oneDNN's bf16 matmuls run on natively (measured on an AMD EPYC with
  avx512_bf16: bf16 matmuls 4.5x fp32's, training 2.17x, benchmarks/trainer_speed.py); without
  them torch falls back to a generic bf16 matmul, 1 GFLOP/s against fp32's 89 on an AVX2 AMD EPYC
  (lscpu family 25 model 1, one thread, runtime/ceiling.py's probe; docs/precision.md), so `auto`
  keeps fp32 there and an explicit `bf16` gets a note saying so.
The run prints what it chose and why (`Precision.describe`).

`train { compile=... }` is resolved here too (`resolve_compile`): whether the training step runs
under `torch.compile`, from the measurement in docs/precision.md ("Compilation").
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from growlang.runtime.errors import UserError

FAST_BF16_CPU_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Precision:
    requested: str  # what the schedule says: fp32 | bf16 | fp16 | auto
    name: str  # what the run uses: fp32 | bf16 | fp16
    why: str  # one clause, printed at the start of the run

    @property
    def amp_dtype(self) -> torch.dtype | None:
        return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name)

    @property
    def scales_loss(self) -> bool:
        return self.name == "fp16"

    def describe(self) -> str:
        if self.name == "fp32":
            return f"precision: fp32 ({self.why})"
        return f"precision: {self.name} autocast, fp32 master weights ({self.why})"


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The CPU feature flags the kernel reports; empty where there is no /proc/cpuinfo."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return frozenset()
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return frozenset()


def fast_bf16(device: torch.device, flags: frozenset[str] | None = None) -> tuple[bool, str]:
    """Whether `device` runs bf16 matmuls faster than fp32, and the reason in words."""
    if device.type == "cuda":
        if torch.cuda.is_bf16_supported():
            return True, f"{torch.cuda.get_device_name(device)} supports bf16"
        return False, f"{torch.cuda.get_device_name(device)} has no bf16 support"
    found = [f for f in FAST_BF16_CPU_FLAGS if f in (cpu_flags() if flags is None else flags)]
    if found:
        return True, f"this CPU has {' and '.join(found)}"
    return False, f"this CPU has neither {' nor '.join(FAST_BF16_CPU_FLAGS)}"


def resolve(requested: str, device: torch.device, flags: frozenset[str] | None = None) -> Precision:
    """The precision for `device`; UserError for fp16 off CUDA (before any data is read)."""
    if requested == "fp16" and device.type != "cuda":
        raise UserError(f"precision=fp16 needs a CUDA GPU and this run is on {device.type}; "
                        "use precision=bf16 (autocast on this device) or precision=fp32 in the `train` block")
    if requested == "auto":
        fast, why = fast_bf16(device, flags)
        return Precision("auto", "bf16" if fast else "fp32", f"auto: {why}")
    if requested == "bf16" and device.type == "cpu":
        fast, why = fast_bf16(device, flags)
        if not fast:
            return Precision("bf16", "bf16", f"as asked; note {why}, so its bf16 matmuls run far slower than "
                             "fp32 (about 90x on an AVX2 EPYC, docs/precision.md): precision=auto trains in fp32 here")
    return Precision(requested, requested, "as the schedule asks")


@dataclass(frozen=True)
class Compilation:
    """Whether a stage's training step runs under `torch.compile` (`train { compile=... }`), and why."""

    requested: str  # auto | on | off
    on: bool
    why: str

    def describe(self) -> str:
        return f"compile: {'on' if self.on else 'off'}, the training step of every stage ({self.why})"


def resolve_compile(requested: str, device: torch.device, processes: int = 1) -> Compilation:
    """The compile decision for `device`. `auto` compiles on CUDA and not on a CPU: measured on
    this project's AMD EPYC (benchmarks/compile_speed.py, docs/precision.md "Compilation") the
    compiled step ran 0.35x to 1.37x the eager one across the quickstart's stages, so no stage
    length repays the compile on every shape. Several processes (DDP/FSDP) train eager: compiling
    a wrapped replica is not supported yet."""
    if requested == "off":
        return Compilation(requested, False, "as the schedule asks")
    if processes > 1:
        return Compilation(requested, False, f"{processes} processes: compile of a DDP/FSDP replica is not supported yet")
    if requested == "on":
        return Compilation(requested, True, "as the schedule asks")
    if device.type == "cuda":
        return Compilation(requested, True, "auto: CUDA")
    return Compilation(requested, False, "auto: on a CPU the compiled step was 0.35x-1.37x eager's, measured "
                                         "(docs/precision.md)")
