"""`growlang run`: check the I/O, load the data, train the plan, export the leaves, summarise.

Every user mistake (an --out that exists, a corpus that cannot be read, a tokenizer of the wrong
size, a resume against a changed schedule, a loss that blows up) ends as one `error: ...` line
on stderr and exit code 1, never a traceback. The cheap checks come before anything expensive.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

from growlang.plan import Plan
from growlang.runtime import failures
from growlang.runtime.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_PROBLEM, UserError
from growlang.runtime.out_lock import LOCK_NAME, OutLock

# train fields that do not change what a finished stage computed
HARMLESS = ("lr", "eval_every", "eval_batches", "checkpoint_every", "log_every")


def run_plan(plan: Plan, out: Path, resume: bool = False, device: str = "auto", *,
             stop_after_steps: int | None = None) -> int:
    """Train `plan` into `out`; returns the exit code. `stop_after_steps` is for tests only."""
    out = Path(out)
    fresh = not out.exists()
    lock = None
    try:
        if os.environ.get("RANK", "0") == "0":  # torchrun: the others wait for rank 0 in setup
            prepare_out(out, resume)
            lock = OutLock.acquire(out)
        return _run(plan, out, resume, device, stop_after_steps)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        if lock is not None and fresh and [p.name for p in out.iterdir()] == [LOCK_NAME]:
            lock.release()
            (out / LOCK_NAME).unlink()
        if fresh and out.is_dir() and not any(out.iterdir()):
            out.rmdir()  # a refused run leaves nothing behind
        return EXIT_PROBLEM
    except KeyboardInterrupt:  # while loading or exporting; during training _run reports it
        print(failures.interrupted(plan, out, device), file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as e:
        if e.errno not in failures.FULL:
            raise
        print(f"error: {failures.disk_full(out, e)}", file=sys.stderr)
        return EXIT_PROBLEM
    finally:
        if lock is not None:
            lock.release()


def prepare_out(out: Path, resume: bool) -> None:
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file, not a folder; choose another --out")
    if out.is_dir() and any(out.iterdir()) and not resume:
        raise UserError(f"--out {out} already exists and is not empty; pass --resume to continue that run, "
                        "or choose another --out")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as e:
        raise UserError(f"cannot write to --out {out}: {e.strerror or e}; choose another --out") from None


def resolve_device(device: str | None):
    import torch

    name = (device or "auto").lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown --device {device}; use cpu, cuda, cuda:N or auto") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {device} asked for a GPU but torch sees none; use --device cpu")
    if dev.type not in ("cpu", "cuda"):
        raise UserError(f"--device {device} is not supported; use cpu, cuda, cuda:N or auto")
    return dev


def plan_change(old: dict, new: Plan, stages: list[str], current: str | None = None) -> str | None:
    """Why `stages` (finished under `old`) would not be reproduced by `new`, or None.

    `current`, the stage a mid-stage checkpoint is in, must keep its shape and growth (the
    checkpoint holds that model); its steps and lr may change (e.g. to recover from a blow-up).
    """
    changes = failures.plan_diff(old, new)
    for block in ("model", "data"):
        keys = [c.name for c in changes if c.part == block]
        if keys:
            return f"the {block} block changed ({', '.join(f'{block}.{k}' for k in keys)})"
    keys = [c.name for c in changes if c.part == "train" and c.name not in HARMLESS]
    if keys:
        return f"the train block changed ({', '.join(f'train.{k}' for k in keys)})"
    stage = {c.name: c for c in changes if c.part == "stage"}
    growth = {c.name for c in changes if c.part == "growth"}
    for name in stages:
        c = stage.get(name)
        if c is not None and c.kind == "added":
            return f"stage {name} is not in the plan the run started with"
        if c is not None or name in growth:
            return f"stage {name} changed ({c.detail if c is not None else 'its growth operators'})"
    if current is not None:
        c = stage.get(current)
        if (c is not None and (c.kind == "added" or "shape" in c.fields)) or current in growth:
            return f"stage {current}, which the newest checkpoint is in, changed its shape or growth operators"
    return None


def _write_json(path: Path, obj) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def _run(plan: Plan, out: Path, resume: bool, device: str, stop_after_steps: int | None) -> int:
    import torch

    from growlang.runtime import checkpoint as ck
    from growlang.accounting import reading
    from growlang.runtime.allocator import keep_freed_memory
    from growlang.families import FAMILIES
    from growlang.runtime.data import TokenStream, check_enough, eval_batches, load_data, stream_tokens
    from growlang.runtime.c_kernels import c_kernels
    from growlang.runtime.metrics import MetricsLog, history_gap, summary_table
    from growlang.runtime.signals import StopRequest
    from growlang.runtime.threads import cpu_threads_note
    from growlang.runtime.trainer import NonFiniteLoss, Stopped, Trainer
    from growlang.runtime import distributed
    from growlang.runtime.precision import resolve as resolve_precision

    par = distributed.setup(resolve_device(device), plan)  # one process, or a rank of torchrun's
    dev = par.device
    if dev.type == "cpu":
        keep_freed_memory()  # each step's big tensors reuse warm pages (runtime/allocator.py)
    precision = resolve_precision(plan.train.precision, dev)  # fp16 off CUDA stops here, before the data
    ckdir = out / "checkpoints"
    start, old = None, None
    if resume:
        if par.is_main:
            ck.remove_temporaries(ckdir)
        start = ck.latest(ckdir)
        if start is None:
            print(f"note: no complete checkpoint in {ckdir}; starting from the beginning", file=sys.stderr)
        else:
            names = [s.name for s in plan.stages]
            old = json.loads((out / "plan.json").read_text()) if (out / "plan.json").exists() else None
            if start.state["stage"] not in names:
                raise failures.refuse_resume(out, old, plan, f"its newest checkpoint {start.path.name} is for "
                                             f"stage {start.state['stage']}, which this schedule does not have")
            i = names.index(start.state["stage"]) + (start.state["kind"] == "stage_end")
            current = None if start.state["kind"] == "stage_end" else start.state["stage"]
            why = plan_change(old, plan, names[:i], current) if old is not None else None
            if why:
                raise failures.refuse_resume(out, old, plan, f"{why} since the run started")
            if old is not None and (note := failures.resume_note(old, plan, names[:i])):
                print(note, file=sys.stderr)
            if all(ck.find_stage_end(ckdir, n) is not None for n in names):
                missing = [str(f) for f in leaf_folders(plan, out) if not (f / "model.safetensors").is_file()]
                if not missing:
                    print(f"note: the run in {out} is already complete (every stage finished); its model is "
                          f"in {out / 'final'}; nothing to do", file=sys.stderr)
                    return EXIT_OK
                print(f"note: every stage had finished but {', '.join(missing)} is missing; "
                      "exporting it again", file=sys.stderr)
            print(f"resuming from {start.path.name} (stage {start.state['stage']}, step "
                  f"{start.state['global_step']})", file=sys.stderr)

    objective = FAMILIES[plan.model.family].objective  # "mlm" | "clm": how batches are made
    micro = plan.train.micro_batch  # the eval batches are micro batches of the final length
    eval_read = reading(plan.eval_len, plan.eval_len, 1, plan.data.mask, objective)
    eval_tokens = micro * stream_tokens(eval_read.read_len, objective)  # held-out documents fill one eval batch

    def read_data():
        return load_data(plan.data, plan.model.vocab, plan.train.seed, eval_tokens=eval_tokens, progress=par.is_main,
                         objective=objective)

    if par.active:  # rank 0 prepares the token store when it is missing, the others wait for it
        par.on_main(lambda: read_data() is None)
    data = read_data()
    if len(data.tokenizer) != plan.model.vocab:
        raise UserError(f"the tokenizer has {len(data.tokenizer)} tokens but `model {{ vocab={plan.model.vocab} }}`; "
                        f"set vocab={len(data.tokenizer)}")
    for s in plan.stages:
        check_enough(len(data.train_ids), s.batch, s.reading.read_len, plan.data.corpus, objective=objective)
    check_enough(len(data.eval_ids), micro, eval_read.read_len, plan.data.corpus, what="eval", objective=objective)
    stream = TokenStream(data.train_ids, plan.train.seed, data.specials, identity=data.digest,
                         objective=objective).shard(par.rank, par.world_size)
    evals = eval_batches(data.eval_ids, plan.train.eval_batches, micro, plan.eval_len, plan.data.mask,
                         data.specials, objective)
    if par.is_main:
        _write_json(out / "plan.json", plan.to_dict())

    torch.manual_seed(plan.train.seed)
    if start and par.is_main and (gap := history_gap(out / "metrics.jsonl", start.state["metrics_bytes"])):
        print(gap, file=sys.stderr)
    log = (MetricsLog(out / "metrics.jsonl", truncate_to=start.state["metrics_bytes"] if start else 0)
           if par.is_main else distributed.NullLog())
    if par.is_main and precision.requested != "fp32":  # fp32 as asked needs no word; auto/bf16 say why
        print(precision.describe(), file=sys.stderr)
    if dev.type == "cpu":  # the C kernels, chosen (and built: 0.5 s) before training
        kernels = c_kernels()
        if par.is_main:
            print(kernels.describe(), file=sys.stderr)
    if dev.type == "cpu" and not par.active and (note := cpu_threads_note()):  # --nproc sets threads per rank
        print(note, file=sys.stderr)
    stop = StopRequest()  # Ctrl-C / SIGTERM: finish the step, write a checkpoint, exit 130
    trainer = Trainer(plan, out, stream, evals, dev, log, stop_after_steps=stop_after_steps, parallel=par,
                      precision=precision, stop=stop)
    try:
        with stop.installed():
            trainer.train(start)
    except NonFiniteLoss as e:
        last = ck.latest(ckdir, warn=lambda m: None)
        print(failures.non_finite_loss(e, last.path if last else None, plan, out, device,
                                       amp_in_use=trainer.amp_dtype is not None), file=sys.stderr)
        return EXIT_PROBLEM
    except (Stopped, KeyboardInterrupt) as e:
        if par.is_main:  # one message, not one per rank
            print(failures.interrupted(plan, out, device, str(e) or "Ctrl-C"), file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as e:  # out of GPU memory: a message naming the stage, not a traceback
        if not failures.is_oom(e):
            raise
        stage = trainer.stage or plan.stages[0]
        print(f"error: {failures.out_of_memory(plan, stage, dev, out, failures.resume_command(plan, out, device))}",
              file=sys.stderr)
        return EXIT_PROBLEM
    finally:
        log.close()

    par.finish()  # before rank 0 exports: the others need not wait for it
    if not par.is_main:  # rank 0 exports and summarises
        return EXIT_OK
    models = export_leaves(plan, out, data.tokenizer, previous=old)
    rows = [trainer.summaries[s.name] for s in plan.stages if s.name in trainer.summaries]
    table = summary_table(rows, perplexity=objective == "clm")
    if objective == "clm":  # a decoder shows what it learned: text after a held-out prompt
        from growlang.runtime.sample import sample_text

        table += "\n" + "\n".join(sample_text(model, data.tokenizer, data.eval_ids, plan.train.seed, name)
                                   for name, model in models.items())
    (out / "summary.txt").write_text(table + "\n")
    print(table)
    auto = "AutoModelForCausalLM" if objective == "clm" else "AutoModelForMaskedLM"
    for folder in leaf_folders(plan, out):
        print(f"model written to {folder} ({auto}.from_pretrained loads it); metrics in {out / 'metrics.jsonl'}",
              file=sys.stderr)
    return EXIT_OK


def leaves(plan: Plan) -> list[str]:
    return [s.name for s in plan.stages if not plan.children(s.name)]


def leaf_folders(plan: Plan, out: Path) -> list[Path]:
    """Where each leaf's HF folder goes: out/final for one leaf, out/final/<leaf> for a tree."""
    names = leaves(plan)
    return [out / "final"] if len(names) == 1 else [out / "final" / n for n in names]


def keep_former_leaves(plan: Plan, out: Path, previous: dict) -> None:
    """A resumed run whose schedule gained stages: a stage that was a leaf and is not one now had
    its model exported into final/; move that folder to out/final-<stage> instead of deleting it."""
    old_leaves = [s["name"] for s in previous["stages"] if not any(t["src"] == s["name"] for t in previous["transitions"])]
    gone = [n for n in old_leaves if n not in leaves(plan)]
    final = out / "final"
    for name in gone:
        folder = final if len(old_leaves) == 1 else final / name
        keep = out / f"final-{name}"
        if (folder / "model.safetensors").is_file() and not keep.exists():
            staging = out / f".final-{name}.moving"
            shutil.rmtree(staging, ignore_errors=True)
            os.replace(folder, staging)  # final/ itself may be the folder: move it out first
            os.replace(staging, keep)
            print(f"note: stage {name} is no longer a leaf of the schedule; its exported model moved from "
                  f"{folder} to {keep}", file=sys.stderr)


def export_leaves(plan: Plan, out: Path, tokenizer, previous: dict | None = None) -> dict:
    """An HF folder per leaf from its end-of-stage checkpoint: out/final, or out/final/<leaf>;
    returns the leaves' models by stage name. `previous`: the run's plan.json before a resume
    whose schedule changed (former leaves' exports are kept, `keep_former_leaves`)."""
    from growlang.runtime import checkpoint as ck
    from growlang.runtime.architectures import build, config_from_dict
    from growlang.runtime.hf import export_hf

    names, models = leaves(plan), {}
    final = out / "final"
    if previous is not None:
        keep_former_leaves(plan, out, previous)
    if final.exists():  # ours, from an earlier attempt of this run
        shutil.rmtree(final)
    for name, folder in zip(names, leaf_folders(plan, out)):
        c = ck.find_stage_end(out / "checkpoints", name)
        if c is None:
            raise UserError(f"the end-of-stage checkpoint of {name} is missing or corrupted; "
                            "cannot export it (rerun into another --out)")
        cfg = config_from_dict(c.state["config"])
        model = build(cfg)
        model.load_state_dict(c.model_state())
        export_hf(model.eval(), cfg, folder, tokenizer=tokenizer)
        models[name] = model
    return models
