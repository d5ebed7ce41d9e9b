"""A short generated sample at the end of a decoder run: the first tokens of a held-out document
as the prompt, then the model's continuation (top-k sampling, seeded by `train.seed`, so the
same run prints the same text)."""

from __future__ import annotations

import numpy as np
import torch

PROMPT_TOKENS = 8
NEW_TOKENS = 40
TOP_K = 40
TEMPERATURE = 0.8


def sample_text(model, tokenizer, eval_ids, seed: int, stage: str) -> str:
    """'sample (stage): <prompt> >> <continuation>' from `model` (a Decoder in eval mode)."""
    n = min(PROMPT_TOKENS, len(eval_ids))
    prompt = torch.from_numpy(np.asarray(eval_ids.read(0, n), dtype=np.int64))[None]  # (1, n)
    device = next(model.parameters()).device
    g = torch.Generator().manual_seed(seed)
    out = model.eval().generate(prompt.to(device), NEW_TOKENS, TEMPERATURE, TOP_K, generator=g)[0].tolist()
    text = tokenizer.decode(out[n:]).replace("\n", " ")
    return (f"sample ({stage}, {NEW_TOKENS} tokens after a held-out prompt, top-k {TOP_K}, "
            f"temperature {TEMPERATURE}):\n  {tokenizer.decode(out[:n])!s} >> {text}")
