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
    """Write checkpoint `root/name` atomically and return its path."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / name
    tmp = root / f".tmp-{name}-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    save_file({k: v.detach().cpu().contiguous() for k, v in model_state.items()}, tmp / MODEL)
    save_file(flatten_optimizer(optimizer_state), tmp / OPTIMIZER)
    state = {**state, "sha256": {f: sha256(tmp / f) for f in (MODEL, OPTIMIZER)}}
    (tmp / STATE).write_text(json.dumps(state, indent=1))
    for f in (MODEL, OPTIMIZER, STATE):
        _fsync_file(tmp / f)
    _fsync_dir(tmp)
    if _crash_before_rename:  # tests: a process killed mid-write
        raise KeyboardInterrupt("simulated crash while writing a checkpoint")
    if final.exists():  # rewriting the same step (a resumed run that saves it again)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    return final


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
            shutil.rmtree(path, ignore_errors=True)


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
