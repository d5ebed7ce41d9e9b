"""How much of an MLM eval loss is the draw of the masks: one trained run's final model scored on
the same held-out text under masks drawn with different seeds (before EVAL_SEED, runtime/data.py,
the mask seed was the training seed, so runs with different seeds were scored on different masks).

    .venv/bin/python benchmarks/eval_mask_spread.py RUN_DIR [--batches 16] [--seeds 0 1 2 3 4 5]

RUN_DIR is a finished `growlang run` folder of an encoder (its plan.json and final/). Prints the
eval loss per mask seed over --batches micro batches of the run's eval length, and the spread.
docs/data.md quotes a run.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", type=Path)
    p.add_argument("--batches", type=int, default=16)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    a = p.parse_args(argv)
    import torch

    from growlang.accounting import reading
    from growlang.families import FAMILIES
    from growlang.plan import Plan
    from growlang.runtime.data import eval_batches, load_data, stream_tokens
    from growlang.runtime.hf import import_hf

    plan = Plan.from_dict(json.loads((a.run_dir / "plan.json").read_text()))
    if FAMILIES[plan.model.family].objective != "mlm":
        raise SystemExit(f"{a.run_dir}: a causal LM predicts every token; there are no masks to draw")
    torch.set_num_threads(1)
    model, _ = import_hf(a.run_dir / "final")
    model.eval()
    micro = plan.train.micro_batch
    r = reading(plan.eval_len, plan.eval_len, 1, plan.data.mask, "mlm")
    data = load_data(plan.data, plan.model.vocab, plan.train.seed,
                     eval_tokens=micro * stream_tokens(r.read_len, "mlm"), progress=False)
    losses = {}
    for seed in a.seeds:
        batches = eval_batches(data.eval_ids, a.batches, micro, plan.eval_len, plan.data.mask, data.specials,
                               mask_seed=seed)  # the run's own eval batches, under another mask draw
        with torch.no_grad():
            batch_losses = [float(model.loss(b.input_ids, b.positions, b.targets)) for b in batches]
        losses[seed] = sum(batch_losses) / len(batch_losses)
        print(f"mask seed {seed}: eval loss {losses[seed]:.4f} over {a.batches} x {micro} sequences of {plan.eval_len}")
    print(f"spread (max - min) over {len(losses)} mask seeds: {max(losses.values()) - min(losses.values()):.4f} nats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
