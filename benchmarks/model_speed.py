"""Training tokens/s of the runtime encoder vs transformers' BertForMaskedLM (sdpa), same shape,
same batch, AdamW, on this machine's CPU.

    .venv/bin/python benchmarks/model_speed.py          # 4 layers x 256, len 128, batch 16
    .venv/bin/python benchmarks/model_speed.py --tiny   # seconds, for a smoke test

Rows: the runtime with its MLM head on the masked positions only (what the trainer runs), the
runtime with the head on every position (like-for-like with HF), and HF with labels -100 on the
unmasked positions (its head always runs on every position).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time


def op_parser(doc: str, rounds: int = 50) -> argparse.ArgumentParser:
    """The options of a benchmark that times one op's variants with `bench` (pool_speed.py,
    row_softmax_speed.py): --threads, --rounds and --tiny (a small shape, 3 rounds: a smoke test)."""
    p = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rounds", type=int, default=rounds)
    p.add_argument("--tiny", action="store_true", help="a tiny shape and 3 rounds (a smoke test)")
    return p


def bench(steps_by_name: dict, warmup: int, steps: int) -> dict[str, float]:
    """Median seconds per step. The models take turns, one step each per round, so a noisy
    neighbour on the machine slows all of them alike."""
    for step in steps_by_name.values():
        for _ in range(warmup):
            step()
    times = {name: [] for name in steps_by_name}
    for _ in range(steps):
        for name, step in steps_by_name.items():
            t0 = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - t0)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tiny", action="store_true", help="tiny shape, finishes in seconds")
    p.add_argument("--vocab", type=int, default=30522)
    a = p.parse_args()

    import torch
    import torch.nn.functional as F
    from transformers import BertConfig, BertForMaskedLM

    from growlang.accounting import predicted_positions
    from growlang.runtime.hf import hf_names
    from growlang.runtime.model import Encoder, EncoderConfig

    torch.set_num_threads(2)
    L, d, h, f, T, B, V = (2, 64, 2, 256, 32, 4, 1000) if a.tiny else (4, 256, 4, 1024, 128, 16, a.vocab)
    warmup, steps = (1, 2) if a.tiny else (3, 10)
    cfg = EncoderConfig("bert", V, d, L, h, f, max(T, 128))
    torch.manual_seed(0)
    ours = Encoder(cfg).train()
    hf_cfg = BertConfig(vocab_size=V, hidden_size=d, num_hidden_layers=L, num_attention_heads=h,
                        intermediate_size=f, max_position_embeddings=cfg.max_len)
    hf_cfg._attn_implementation = "sdpa"
    hf = BertForMaskedLM(hf_cfg).train()
    assert hf.config._attn_implementation == "sdpa"
    hf.load_state_dict({hf_names(cfg)[n]: t for n, t in ours.state_dict().items()}, strict=False)

    P = predicted_positions(0.15, T)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(0, V, (B, T), generator=g)
    pos = torch.stack([torch.randperm(T - 1, generator=g)[:P] + 1 for _ in range(B)])
    targets = torch.randint(0, V, (B, P), generator=g)
    labels = torch.full((B, T), -100).scatter_(1, pos, targets)

    def stepper(model, loss_fn):
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            loss_fn().backward()
            opt.step()
        return step

    ours_full_copy = Encoder(cfg).train()  # its own weights and AdamW, so rows do not share state
    ours_full_copy.load_state_dict(ours.state_dict())

    def ours_full():
        logits = ours_full_copy(ids)  # (B, T, V)
        return F.cross_entropy(logits.view(-1, V), labels.view(-1), ignore_index=-100)

    rows = [
        ("runtime, head on masked positions", stepper(ours, lambda: ours.loss(ids, pos, targets))),
        ("runtime, head on every position", stepper(ours_full_copy, ours_full)),
        ("transformers BertForMaskedLM (sdpa)", stepper(hf, lambda: hf(input_ids=ids, labels=labels).loss)),
    ]
    print(f"train step, {L} layers x {d} (ffn {f}, vocab {V}), len {T}, batch {B}, {P} masked/seq, "
          f"AdamW fp32, {torch.get_num_threads()} CPU threads, {warmup} warm-up + median of {steps} timed steps")
    print(f"{'model':<40} {'s/step':>8} {'tokens/s':>10}")
    speeds = {}
    for name, s in bench(dict(rows), warmup, steps).items():
        speeds[name] = B * T / s
        print(f"{name:<40} {s:>8.3f} {B * T / s:>10.0f}")
    hf_speed = speeds[rows[2][0]]
    print(f"ratio runtime/HF: {speeds[rows[0][0]] / hf_speed:.2f} (masked head), "
          f"{speeds[rows[1][0]] / hf_speed:.2f} (every position, like-for-like)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
