"""Checkpoints: safetensors + JSON only (no pickle), written atomically, verified on load.

Layout of `out/checkpoints/<stage>-<global step>/`:
    model.safetensors      the Encoder's state_dict
    optimizer.safetensors  AdamW state flattened by parameter name: `<param>::exp_avg`, ...
    state.json             architecture (EncoderConfig), stage, steps, stream state, RNG states,
                           counters, and the sha256 of each tensor file

Atomicity (the usual POSIX recipe): write everything into a hidden temporary folder next to the
final one, fsync each file, rename the folder into place, fsync the parent directory. A crash
before the rename leaves only a `.tmp-*` folder, which is ignored and cleaned up; a crash after
it leaves a complete checkpoint. A checkpoint whose files do not match their recorded checksums
(disk corruption, a truncated copy) is reported and skipped in favour of the previous one.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from growlang.runtime.crash_points import pause
from growlang.runtime.failures import checkpoint_write_error
from growlang.runtime.signals import deferred_interrupt

MODEL = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
STATE = "state.json"
SEP = "::"  # parameter names contain dots, so the moment name is joined with this


@dataclass
class Checkpoint:
    path: Path
    state: dict  # the parsed state.json

    def model_state(self) -> dict[str, torch.Tensor]:
        return load_file(self.path / MODEL)

    def optimizer_state(self) -> dict[str, dict[str, torch.Tensor]]:
        return unflatten_optimizer(load_file(self.path / OPTIMIZER))

    @property
    def order(self) -> tuple[int, int]:
        """Processing order: stages run one after another in topological order."""
        return (self.state["stage_index"], self.state["stage_step"])


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:  # some platforms cannot open a directory; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def flatten_optimizer(state_by_name: dict[str, dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    flat = {}
    for name, st in state_by_name.items():
        for key, value in st.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            flat[f"{name}{SEP}{key}"] = t.detach().cpu().contiguous()
    return flat


def unflatten_optimizer(flat: dict[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in flat.items():
        name, moment = key.rsplit(SEP, 1)
        out.setdefault(name, {})[moment] = value
    return out


def save(root: Path, name: str, model_state: dict[str, torch.Tensor],
         optimizer_state: dict[str, dict[str, torch.Tensor]], state: dict, *, _crash_before_rename=False) -> Path:
    """Write checkpoint `root/name` atomically and return its path.

    A Ctrl-C during the write is held until the checkpoint is in place (a second one abandons it);
    any failure removes the temporary folder, and an OSError (disk full, quota, permissions)
    becomes a CheckpointWriteError naming the folder and the free space.
    """
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    with deferred_interrupt(f"writing checkpoint {name}"):
        try:
            _write_files(tmp, name, model_state, optimizer_state, state)
        except BaseException as e:
            shutil.rmtree(tmp, ignore_errors=True)  # abandoned: never left half-written
            if isinstance(e, OSError):
                raise checkpoint_write_error(final, e, _nbytes(model_state, optimizer_state)) from None
            raise
        if _crash_before_rename:  # tests: a process killed mid-write (no cleanup, as with SIGKILL)
            raise KeyboardInterrupt("simulated crash while writing a checkpoint")
        try:
            if final.exists():  # rewriting the same step (a resumed run that saves it again)
                _discard(final)
            os.replace(tmp, final)
        except OSError as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise checkpoint_write_error(final, e, _nbytes(model_state, optimizer_state)) from None
        _fsync_dir(root)
    pause("checkpoint-done", name)
    return final


def _write_files(tmp: Path, name: str, model_state, optimizer_state, state: dict) -> None:
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in model_state.items()}, tmp / MODEL)
    pause("checkpoint-write", name)
    save_file(flatten_optimizer(optimizer_state), tmp / OPTIMIZER)
    state = {**state, "sha256": {f: sha256(tmp / f) for f in (MODEL, OPTIMIZER)}}
    (tmp / STATE).write_text(json.dumps(state, indent=1))
    for f in (MODEL, OPTIMIZER, STATE):
        _fsync_file(tmp / f)
    _fsync_dir(tmp)


def _nbytes(model_state, optimizer_state) -> int:
    tensors = list(model_state.values()) + [v for st in optimizer_state.values() for v in st.values()]
    return sum(t.numel() * t.element_size() for t in tensors if torch.is_tensor(t))


def _discard(path: Path) -> None:
    """Delete a checkpoint folder: first renamed to a temporary name, so a crash half-way through
    the delete leaves a `.tmp-*` folder (cleaned on resume), never a damaged checkpoint."""
    trash = path.with_name(f".tmp-discard-{path.name}-{os.getpid()}")
    os.replace(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def verify(path: Path) -> tuple[dict | None, str]:
    """(state, "") when the checkpoint is complete and intact, else (None, why)."""
    try:
        state = json.loads((path / STATE).read_text())
    except (OSError, ValueError) as e:
        return None, f"cannot read {STATE} ({e.__class__.__name__})"
    for f, digest in state.get("sha256", {}).items():
        if not (path / f).is_file():
            return None, f"{f} is missing"
        if sha256(path / f) != digest:
            return None, f"{f} does not match its recorded sha256 (corrupted or truncated)"
    if set(state.get("sha256", {})) != {MODEL, OPTIMIZER}:
        return None, "checksums are missing from state.json"
    return state, ""


def candidates(root: Path) -> list[Path]:
    if not root.is_dir():
        return []
    return [p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")]


def _order_hint(path: Path) -> tuple[int, int]:
    try:
        st = json.loads((path / STATE).read_text())
        return (int(st["stage_index"]), int(st["stage_step"]))
    except (OSError, ValueError, KeyError, TypeError):
        return (-1, -1)


def complete(root: Path, warn=lambda msg: print(msg, file=sys.stderr)) -> list[Checkpoint]:
    """Every intact checkpoint under root, newest first; broken ones are reported via `warn`."""
    good = []
    for path in sorted(candidates(root), key=_order_hint, reverse=True):
        state, why = verify(path)
        if state is None:
            warn(f"warning: skipping checkpoint {path}: {why}")
        else:
            good.append(Checkpoint(path, state))
    return good


def latest(root: Path, warn=lambda msg: print(msg, file=sys.stderr)) -> Checkpoint | None:
    """The newest complete checkpoint; a corrupted newer one is reported and the previous used."""
    found = None
    for path in sorted(candidates(root), key=_order_hint, reverse=True):
        if found is not None and _order_hint(path) != (-1, -1):
            continue  # older and orderable: not needed (unorderable ones are still reported)
        state, why = verify(path)
        if state is None:
            warn(f"warning: skipping checkpoint {path}: {why}; using the previous complete one")
        elif found is None:
            found = Checkpoint(path, state)
    return found


def find_stage_end(root: Path, stage: str) -> Checkpoint | None:
    for path in candidates(root):
        state, _ = verify(path)
        if state is not None and state["stage"] == stage and state["kind"] == "stage_end":
            return Checkpoint(path, state)
    return None


def remove_temporaries(root: Path) -> None:
    if root.is_dir():
        for p in root.iterdir():
            if p.name.startswith(".tmp-") and p.is_dir():
                shutil.rmtree(p, ignore_errors=True)


def prune(root: Path, keep: Path) -> None:
    """Keep stage-end checkpoints and the newest periodic one (`keep`); delete older periodic."""
    for path in candidates(root):
        if path == keep:
            continue
        try:
            kind = json.loads((path / STATE).read_text()).get("kind")
        except (OSError, ValueError):
            continue  # a broken one is left for the user to inspect
        if kind == "periodic":
            try:
                _discard(path)
            except OSError:
                pass  # pruning is tidying up; a failure leaves one more checkpoint, nothing worse


def rng_state() -> dict:
    """Torch RNG states as JSON lists of ints (CPU, and every CUDA device when present)."""
    st = {"cpu": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        st["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return st


def set_rng_state(st: dict) -> None:
    torch.set_rng_state(torch.tensor(st["cpu"], dtype=torch.uint8))
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in st["cuda"]])
