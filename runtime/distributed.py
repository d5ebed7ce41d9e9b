"""Data-parallel training: one process per device, DDP (default) or FSDP2 (`train { sharding=fsdp }`).

Started by `torchrun --nproc-per-node N -m growlang run FILE` or by `growlang run FILE --nproc N`
(`launch` below: N copies of the command with torchrun's environment variables). Every rank runs
the same Trainer; `Parallel` is the little it needs from the process group:

- data: every rank reads the whole global batch from the one TokenStream (same position, same
  masks) and keeps rows rank, rank + W, ... (`TokenStream.shard`), so the stream state in a
  checkpoint is global and the ranks' rows together are exactly what one process would read.
- growth: every rank reads the parent's end-of-stage checkpoint from disk and grows it with the
  same seeded generator, so the grown model is identical everywhere (DDP's construction also
  broadcasts rank 0's weights). The model is re-wrapped and the optimizer rebuilt after growth.
- logging and checkpoints: the loss is the all-reduced mean; eval runs the whole eval set on
  every rank (identical, so no broadcast); rank 0 alone writes metrics, checkpoints and the
  final model, the others wait for it (`on_main`) and re-raise what it raised.
- dropout RNG is per rank; a checkpoint stores every rank's RNG state, restored only when the
  world size matches (see docs/distributed.md for what a resume guarantees).

Backends: gloo on CPU, nccl on CUDA with device cuda:LOCAL_RANK (the CUDA path is untested here).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import signal
import socket
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn

from growlang.runtime import checkpoint as ck
from growlang.runtime.errors import EXIT_INTERRUPTED, UserError
from growlang.runtime.signals import silence_hung_up_terminal
from growlang.runtime.optim_carry import MOMENTS, adam_state_by_name, load_adam_state_by_name


def is_main_process() -> bool:
    """Rank 0, or not started by a launcher (read from the environment: usable before init)."""
    return os.environ.get("RANK", "0") == "0"


class ModelLoss(nn.Module):
    """The model's training loss (masked LM or causal LM) as a module's forward, so DDP's hooks see
    every call."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, ids, positions, targets, pool: int = 1, encoder_len: int | None = None):
        return self.model.loss(ids, positions, targets, pool=pool, encoder_len=encoder_len)


class Replica:
    """The model as one training step calls it: `loss(...)` and, per micro batch, `sync(last)`
    (gradients are reduced across ranks only on the last micro batch of a step)."""

    def __init__(self, model: nn.Module, ddp: nn.Module | None = None, fsdp: bool = False):
        self.model, self.ddp, self.fsdp = model, ddp, fsdp

    def loss(self, ids, positions, targets, pool: int = 1, encoder_len: int | None = None) -> torch.Tensor:
        if self.ddp is not None:
            return self.ddp(ids, positions, targets, pool, encoder_len)
        return self.model.loss(ids, positions, targets, pool=pool, encoder_len=encoder_len)

    @contextlib.contextmanager
    def sync(self, last: bool):
        if self.ddp is not None and not last:
            with self.ddp.no_sync():
                yield
        elif self.fsdp:
            self.model.set_requires_gradient_sync(last)
            try:
                yield
            finally:
                self.model.set_requires_gradient_sync(True)
        else:
            yield


def _reshard(model: nn.Module) -> None:
    from torch.distributed.fsdp import FSDPModule

    for m in model.modules():
        if isinstance(m, FSDPModule):
            m.reshard()


def _full(t):
    from torch.distributed.tensor import DTensor

    return t.full_tensor() if isinstance(t, DTensor) else t


def _portable(e: BaseException) -> BaseException:
    """`e` if it survives pickling (to reach the other ranks), else a UserError with its message."""
    try:
        pickle.loads(pickle.dumps(e))
        return e
    except Exception:  # noqa: BLE001 - exceptions with custom __init__ arguments
        return UserError(str(e))


def _derived_seed(seed: int, step: int, rank: int) -> int:
    digest = hashlib.blake2b(f"dropout:{seed}:{step}:{rank}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


@dataclass
class Parallel:
    rank: int = 0
    world_size: int = 1
    device: torch.device = torch.device("cpu")
    sharding: str = "none"  # "none" (DDP when world_size > 1) | "fsdp"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def fsdp(self) -> bool:
        return self.active and self.sharding == "fsdp"

    def finish(self) -> None:
        """Training is over on this rank: wait for every rank, then close the process group.
        A rank whose process exits with the group still open can abort in gloo's C++ threads
        ("terminate called without an active exception") while a peer is still connected; the
        barrier makes every rank close only after the last collective of all of them."""
        if self.active and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()

    # ---------------------------------------------------------------------------- model
    def wrap(self, model: nn.Module) -> Replica:
        """Call after loading the full state into `model` and moving it to `self.device`, before
        building the optimizer (FSDP2 replaces the parameters with sharded DTensors)."""
        if not self.active:
            return Replica(model)
        if self.fsdp:
            from torch.distributed.fsdp import fully_shard

            # each layer is one all-gather unit; the root holds embeddings, tied MLM head, final LN
            # the MLM head returns F.linear's (B, P, V) view; the loss only reshapes it, never in place
            warnings.filterwarnings("ignore", message="FSDP2-wrapped module .* returned a view tensor")
            for layer in model.layers:
                fully_shard(layer)
            fully_shard(model)
            return Replica(model, fsdp=True)
        from torch.nn.parallel import DistributedDataParallel as DDP

        ids = [self.device.index] if self.device.type == "cuda" else None
        return Replica(model, ddp=DDP(ModelLoss(model), device_ids=ids))

    def full_state(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The unsharded state_dict on CPU (a collective under FSDP: call on every rank)."""
        if self.fsdp:
            _reshard(model)
        return {k: _full(v).detach().cpu() for k, v in model.state_dict().items()}

    def optimizer_state(self, opt: torch.optim.Optimizer, model: nn.Module) -> dict[str, dict]:
        """AdamW state by parameter name, unsharded (a collective under FSDP)."""
        return {n: {k: _full(v) for k, v in s.items()} for n, s in adam_state_by_name(opt, model).items()}

    def load_optimizer_state(self, opt: torch.optim.Optimizer, model: nn.Module, state: dict[str, dict]) -> None:
        """Full (unsharded) AdamW state by name into `opt`; each rank keeps its own shard."""
        if not self.fsdp:
            return load_adam_state_by_name(opt, model, state)
        from torch.distributed.tensor import distribute_tensor

        _reshard(model)  # an eval forward leaves the root unsharded: its params are plain tensors then
        for name, p in model.named_parameters():
            s = state.get(name)
            if s is None:
                continue

            def shard(t, p=p):
                full = t.to(self.device, p.dtype).reshape(p.shape).contiguous()
                return distribute_tensor(full, p.device_mesh, p.placements)

            step = s["step"]
            opt.state[p] = {"step": step.clone() if torch.is_tensor(step) else torch.tensor(float(step)),
                            **{k: shard(s[k]) for k in MOMENTS if k != "step"}}

    # ---------------------------------------------------------------------------- collectives
    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of `value` over ranks (every rank gets it)."""
        if not self.active:
            return value
        value = value.detach().clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        return value / self.world_size

    def on_main(self, fn):
        """Run `fn` on rank 0 only; the other ranks wait, then return its result or raise what it
        raised (so a failed checkpoint write stops every rank instead of leaving them waiting)."""
        if not self.active:
            return fn()
        box, mine = [None], None
        if self.is_main:
            try:
                box = [(fn(), None)]
            except BaseException as e:  # re-raised below, on every rank (Ctrl-C included)
                mine, box = e, [(None, _portable(e))]
        dist.broadcast_object_list(box, src=0)
        result, error = box[0]
        if mine is not None:
            raise mine
        if error is not None:
            raise error
        return result

    # ---------------------------------------------------------------------------- RNG
    def rng_state(self) -> dict:
        """Checkpoint fields: `rng` (rank 0's, what a 1-process resume restores) and, with more
        ranks, `rng_by_rank` (every rank's, restored when the world size matches)."""
        if not self.active:
            return {"rng": ck.rng_state()}
        # this rank's device only: ck.rng_state would touch (and create a context on) every GPU
        mine = {"cpu": torch.get_rng_state().tolist()}
        if self.device.type == "cuda":
            mine["cuda"] = [torch.cuda.get_rng_state(self.device).tolist()]
        every = [None] * self.world_size
        dist.all_gather_object(every, mine)
        return {"rng": every[0], "rng_by_rank": every}

    def set_rng_state(self, st: dict, seed: int) -> None:
        if not self.active:
            return ck.set_rng_state(st["rng"])
        by_rank = st.get("rng_by_rank")
        same = bool(by_rank) and len(by_rank) == self.world_size
        mine = by_rank[self.rank] if same else st["rng"]
        torch.set_rng_state(torch.tensor(mine["cpu"], dtype=torch.uint8))
        if self.device.type == "cuda" and mine.get("cuda"):
            torch.cuda.set_rng_state(torch.tensor(mine["cuda"][0], dtype=torch.uint8), self.device)
        if not same:  # another world size: rank 0 continues rank 0's stream, the others start fresh ones
            self.seed_dropout(seed, int(st.get("global_step", 0)))

    def seed_dropout(self, seed: int, step: int) -> None:
        """Give ranks 1.. their own dropout stream (rank 0 keeps the single-process one)."""
        if self.active and self.rank > 0:
            torch.manual_seed(_derived_seed(seed, step, self.rank))


class NullLog:
    """What the ranks other than 0 log into: nothing."""

    def write(self, record: dict) -> None:
        pass

    def size(self) -> int:
        return 0

    def close(self) -> None:
        pass


def setup(device: torch.device, plan) -> Parallel:
    """A Parallel from torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT),
    the process group started; one process without them. UserError for a batch that does not split."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Parallel(device=device, sharding=plan.train.sharding)
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    check_split(plan, world)  # before the process group: every rank fails the same way, nobody waits
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        import atexit

        atexit.register(teardown)
    return Parallel(rank=dist.get_rank(), world_size=dist.get_world_size(), device=device,
                    sharding=plan.train.sharding)


def check_split(plan, world: int) -> None:
    """UserError unless every stage's global batch splits evenly over `world` processes."""
    uneven = [s for s in plan.stages if s.batch % world]
    if uneven:
        s = uneven[0]
        raise UserError(f"stage {s.name} has batch={s.batch}, which does not split over {world} processes; "
                        f"make `batch` a multiple of {world} or use another number of processes")


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


# -------------------------------------------------------------------------------- launcher
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A rank started by `launch` reads the parent's Plan (JSON) from this variable instead of
# compiling the schedule again.
PLAN_ENV = "GROWLANG_PLAN_JSON"
KILL_AFTER_S = 30  # a rank that ignores SIGTERM this long after another failed is killed
# Signals on the launcher and what the ranks get instead: a closed terminal or a dropped ssh
# session (SIGHUP) stops the ranks like SIGTERM, which signals.StopRequest handles.
FORWARDED = {signal.SIGINT: signal.SIGINT, signal.SIGTERM: signal.SIGTERM, signal.SIGHUP: signal.SIGTERM}


def _die_with_parent():
    """A preexec_fn making the rank receive SIGTERM when the launcher dies without forwarding
    anything (SIGKILL, OOM killer), or None where that is not available (not Linux, no libc).

    prctl(PR_SET_PDEATHSIG) (man 2 prctl) fires when the thread that forked the child exits, so
    `launch` must run in a thread that lives as long as the launcher (the main thread does).
    preexec_fn runs Python between fork and exec, which the subprocess docs warn can deadlock if
    the parent has other threads (a lock held by one of them at the fork stays held in the child):
    so ctypes and libc are loaded here, in the parent, and the child imports nothing and makes
    only the prctl and getppid calls. The launcher itself starts no threads."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (ImportError, OSError, AttributeError):
        return None
    pr_set_pdeathsig, parent = 1, os.getpid()  # <linux/prctl.h>

    def preexec():
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return preexec


def _failed(code: int | None) -> bool:
    """Whether a rank's exit code means it will not take part in the others' collectives. 0 (the
    run finished) and 130 (stopped after a checkpoint, which the ranks agree on at the same step:
    trainer.stop_agreed) are not failures; anything else is, also death by a signal we forwarded (a
    rank that had not installed its handler yet): the others would wait for it in their last
    all-reduce forever."""
    return code not in (None, 0, EXIT_INTERRUPTED)


def _describe(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def launch(nproc: int, argv: list[str], plan=None) -> int:
    """`growlang run --nproc N`: run `python -m growlang *argv` N times on this machine with the
    variables torchrun --standalone would set, and `plan` (compiled once, by the parent) in
    PLAN_ENV. The first rank to fail stops the others, also after a forwarded signal; the exit
    code is that rank's (130 if it died of the signal we forwarded), else 130 if a signal stopped
    the ranks, else 0. SIGINT, SIGTERM and SIGHUP (as SIGTERM) on the launcher are forwarded to
    every rank; on Linux a rank gets SIGTERM when the launcher dies without forwarding."""
    if nproc < 1:
        print(f"growlang: --nproc must be at least 1, not {nproc}", file=sys.stderr)
        return 2
    if plan is not None:  # once here rather than once per rank
        try:
            check_split(plan, nproc)
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    shared = json.dumps(plan.to_dict()) if plan is not None else None
    port, threads = _free_port(), max(1, (os.cpu_count() or 1) // nproc)
    preexec = _die_with_parent()
    procs, sent = [], []
    for rank in range(nproc):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
               "LOCAL_WORLD_SIZE": str(nproc), "GROUP_RANK": "0", "MASTER_ADDR": "127.0.0.1",
               "MASTER_PORT": str(port)}
        if plan is not None:
            env[PLAN_ENV] = shared
        env.setdefault("OMP_NUM_THREADS", str(threads))  # N processes must not each use every core
        # own session: a terminal's Ctrl-C reaches the launcher only, which forwards it once
        procs.append(subprocess.Popen([sys.executable, "-m", "growlang", *argv], env=env, start_new_session=True,
                                      **({"preexec_fn": preexec} if preexec else {})))

    def forward(signum, frame):  # every rank gets it once (signals.StopRequest)
        silence_hung_up_terminal(signum)
        sent.append(FORWARDED[signum])
        for p in procs:
            if p.poll() is None:
                p.send_signal(FORWARDED[signum])

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    failed, stopping = None, None
    try:
        while any([p.poll() is None for p in procs]):  # a list: poll every rank, not up to the first running one
            if failed is None:
                failed = next((r for r, p in enumerate(procs) if _failed(p.returncode)), None)
                if failed is not None:  # the rest would wait for the failed rank forever
                    stopping = time.monotonic()
                    print(f"growlang: rank {failed} {_describe(procs[failed].returncode)}; "
                          "stopping the other ranks", file=sys.stderr)
                    for p in procs:
                        if p.poll() is None:
                            p.terminate()
            elif time.monotonic() - stopping > KILL_AFTER_S:
                for p in procs:  # SIGTERM was not enough (a rank stuck in a collective, or stopping already)
                    if p.poll() is None:
                        p.kill()
            time.sleep(0.1)
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    codes = [p.returncode for p in procs]
    if failed is None:
        failed = next((r for r, c in enumerate(codes) if _failed(c)), None)
    if failed is not None:
        code = codes[failed]
        # death by a signal is the shell's 128 + N (sys.exit of a negative code would give 256 - N)
        return EXIT_INTERRUPTED if -code in sent else (128 - code if code < 0 else code)
    return EXIT_INTERRUPTED if EXIT_INTERRUPTED in codes else 0


class NullProgress:
    """The progress display of the ranks other than 0: nothing (rank 0 speaks for all)."""

    def update(self, *args, **kwargs) -> None:
        pass

    def close(self) -> None:
        pass
