"""What `growlang run` tells the user when a run stops: one message each, never a traceback.

- Ctrl-C: which checkpoint is the newest and the exact command that continues (exit 130).
- A checkpoint write fails (disk full, quota, permissions): the folder, the free space, what a
  checkpoint needs; the unfinished write is removed, so the previous checkpoint stays the
  newest (exit 1).
- Out of GPU memory: the stage, the plan's memory estimate for it, and what to lower (exit 1).
- A resume into an --out started by another schedule, or after the schedule file changed: what
  differs, and whether that stops the resume or not.
"""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from growlang.plan import DataSpec, ModelSpec, Plan, StagePlan, TrainSpec
from growlang.runtime.errors import UserError

FULL = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def human_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def free_space(path: Path) -> str:
    """Free space on the file system holding `path` (or its nearest existing parent)."""
    p = Path(path)
    while not p.exists() and p != p.parent:
        p = p.parent
    try:
        return f"{human_bytes(shutil.disk_usage(p).free)} free"
    except OSError:
        return "free space unknown"


def _shown(path) -> str:
    """A path as the user would type it: relative to the working directory when inside it."""
    p = Path(path)
    try:
        rel = os.path.relpath(p.resolve())
    except ValueError:  # another drive on Windows
        return str(p)
    return rel if not rel.startswith("..") else str(p.resolve())


def resume_command(plan: Plan, out: Path, device: str = "auto") -> str:
    cmd = ["growlang", "run", _shown(plan.source), "--out", _shown(out), "--resume"]
    if device and device != "auto":
        cmd += ["--device", device]
    return shlex.join(cmd)


def newest_checkpoint(out: Path) -> str:
    from growlang.runtime import checkpoint as ck

    last = ck.latest(Path(out) / "checkpoints", warn=lambda m: None)
    return f"the newest checkpoint is {last.path.name}" if last else "no checkpoint was written yet"


def interrupted(plan: Plan, out: Path, device: str, reason: str = "Ctrl-C") -> str:
    return (f"interrupted ({reason}); {newest_checkpoint(out)}; continue with --resume:\n"
            f"  {resume_command(plan, out, device)}")


class CheckpointWriteError(UserError):
    """A checkpoint could not be written; its temporary folder has been removed."""


def non_finite_loss(error, last_checkpoint: Path | None, plan: Plan, out: Path, device: str,
                    amp_in_use: bool) -> str:
    """A NaN/inf loss: where the run can continue from, and advice that fits the run: lowering
    precision is only advice when a reduced precision (bf16/fp16 autocast) was in use."""
    lower = [f"lower the learning rate of stage {error.stage} (its `lr=`)"]
    if amp_in_use:
        lower.append(f"use precision=fp32 (this run used {plan.train.precision})")
    fix = " or ".join(lower)
    if last_checkpoint is None:
        return (f"error: {error}; stopped before any checkpoint was written. To fix it, {fix}, "
                f"then run the schedule again (it starts from the beginning)")
    return (f"error: {error}; stopped, the last good checkpoint is {last_checkpoint}. To fix it, {fix}, "
            f"then continue from that checkpoint with: {resume_command(plan, out, device)}")


def checkpoint_write_error(final: Path, e: OSError, need: int) -> CheckpointWriteError:
    root = final.parent
    what = "the disk is full" if e.errno in FULL else (e.strerror or str(e))
    return CheckpointWriteError(
        f"cannot write checkpoint {final.name} in {root}: {what} ({free_space(root)}, a checkpoint needs "
        f"about {human_bytes(need)}); the unfinished write was removed and the previous checkpoints are "
        "intact. Free some space, then rerun with --resume")


def disk_full(out: Path, e: OSError) -> str:
    where = e.filename or out
    return (f"no space left on the device writing {where} ({free_space(Path(where))}); the checkpoints in "
            f"{Path(out) / 'checkpoints'} are intact. Free some space, then rerun with --resume")


def is_oom(e: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)
    return isinstance(e, (oom, torch.cuda.OutOfMemoryError)) or (
        isinstance(e, RuntimeError) and "out of memory" in str(e).lower())


def out_of_memory(plan: Plan, stage: StagePlan, device, out: Path, cmd: str) -> str:
    t = plan.train
    micro = stage.micro_batch
    if micro > 1:
        lower = (f"lower `train {{ micro_batch={max(1, micro // 2)} }}` (now {micro}; gradient accumulation keeps "
                 f"the batch of {stage.batch}, so the results stay comparable)")
    else:
        lower = "micro_batch is already 1: lower the stage's `len` or `width`, or use precision=bf16"
    have = ""
    try:
        import torch

        if getattr(device, "type", None) == "cuda":
            have = f"; the GPU has {human_bytes(torch.cuda.get_device_properties(device).total_memory)}"
    except Exception:  # the message must not fail on a GPU that has just run out of memory
        pass
    return (f"out of GPU memory in stage {stage.name} (batch={stage.batch}, micro_batch={micro}, "
            f"len={stage.reading.read_len}): the plan estimates {human_bytes(stage.cost.memory_bytes)} for it{have}. "
            f"To fit, {lower}; {newest_checkpoint(out)}, continue with:\n  {cmd}")


# ------------------------------------------------------------------------------- resume checks
def _normal(plan: Plan) -> dict:
    return json.loads(json.dumps(plan.to_dict()))  # tuples -> lists, as in plan.json


def foreign_run(old: dict, plan: Plan) -> str | None:
    """How the schedule that started the run in --out differs by identity from `plan`, or None."""
    if old.get("source") == plan.source and old.get("name") == plan.name:
        return None
    names = lambda d: ", ".join(s["name"] for s in d.get("stages", []))  # noqa: E731
    return (f"it was started by schedule {old.get('source', '?')} (stages {names(old)}), "
            f"not {plan.source} (stages {names(_normal(plan))})")


def field_change(key: str, was, now) -> str:
    """`steps 4 -> 5`; for a shape only the dimensions that changed: `ffn 64 -> 128`."""
    if isinstance(was, dict) and isinstance(now, dict):
        return ", ".join(f"{k} {was.get(k)} -> {now.get(k)}" for k in now if was.get(k) != now.get(k))
    return f"{key} {was} -> {now}"


@dataclass(frozen=True)
class Change:
    """One difference between a run's plan.json and a new Plan."""

    part: str  # "model", "data", "train", "stage" or "growth" (the operators into a stage)
    name: str  # the block's key, or the stage's name
    text: str  # in the schedule's words, e.g. `train.lr 0.001 -> 0.002`, `stage big: steps 4 -> 6`
    kind: str = "changed"  # "changed", or for a stage "added" / "removed"
    detail: str = ""  # a changed stage's fields, e.g. `steps 4 -> 6`
    fields: tuple[str, ...] = ()  # a changed stage's keys


def plan_diff(old: dict, plan: Plan) -> list[Change]:
    """Every difference between the plan.json of a run and `plan` (the one plan diff: the resume
    refusal and the resume note both read it)."""
    cur, changes = _normal(plan), []
    for block, spec in (("model", ModelSpec), ("data", DataSpec), ("train", TrainSpec)):
        # a key added to the language since the run started counts with its default
        was = {**{f.name: f.default for f in dataclasses.fields(spec) if f.default is not dataclasses.MISSING},
               **old.get(block, {})}
        for k in sorted(set(was) | set(cur[block])):
            a, b = was.get(k), cur[block].get(k)
            if a != b:
                changes.append(Change(block, k, f"{block}.{k} {a} -> {b}"))
    was = {s["name"]: s for s in old.get("stages", [])}
    now = {s["name"]: s for s in cur["stages"]}
    for name in was.keys() - now.keys():
        changes.append(Change("stage", name, f"stage {name} removed", "removed"))
    for name, s in now.items():
        if name not in was:
            changes.append(Change("stage", name, f"stage {name} added", "added"))
            continue
        keys = tuple(k for k in s if k not in ("line", "cost") and was[name].get(k) != s[k])
        if keys:
            detail = ", ".join(field_change(k, was[name].get(k), s[k]) for k in keys)
            changes.append(Change("stage", name, f"stage {name}: {detail}", detail=detail, fields=keys))
    old_trans = {t["dst"]: t for t in old.get("transitions", [])}
    new_trans = {t["dst"]: t for t in cur["transitions"]}
    for name in now:
        if name in was and old_trans.get(name) != new_trans.get(name):
            changes.append(Change("growth", name, f"the growth into {name}"))
    return changes


def refuse_resume(out: Path, old: dict | None, plan: Plan, reason: str) -> UserError:
    other = foreign_run(old, plan) if old is not None else None
    if other:
        return UserError(f"cannot resume {out}: {other}; {reason}. Resume it with the schedule that started "
                         "it, or choose another --out for this one")
    return UserError(f"cannot resume {out}: {reason}; a finished stage must stay as it was trained. Undo the "
                     "change, or choose another --out to start afresh")


def resume_note(old: dict, plan: Plan, finished: list[str]) -> str | None:
    """A note for a resume that goes on although the schedule changed (only what is still to train)."""
    changes = [c.text for c in plan_diff(old, plan)]
    other = foreign_run(old, plan)
    if not changes and not other:
        return None
    done = ", ".join(finished) or "none"
    head = f"note: {other}" if other else "note: the schedule changed since the run started"
    what = f" ({'; '.join(changes)})" if changes else ""
    return (f"{head}{what}; the finished stages ({done}) and the newest checkpoint are unaffected, so the "
            "run continues with the new schedule")
