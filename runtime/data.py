"""Token streams and masked-LM batches.

The corpus is tokenized once into a token store (`runtime/store.py`, prepared by
`runtime/prepare.py`): memory-mapped shards of whole documents, each ending in [SEP]. The
train/eval split picks documents of it (`corpus.split_indices`), and `Documents` shows a list of
them as one virtual token array without copying, so memory does not grow with the corpus. A
`TokenStream` reads the training documents front to back across all stages, so no token is seen
twice in a pass, and at the end it wraps around and counts an epoch. A masked-LM sequence is
[CLS] + the next read_len-1 ids with P of them masked; a causal-LM sequence is the next read_len =
T+1 ids, inputs the first T and targets the next T (growlang.accounting.reading).
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from growlang.accounting import reading
from growlang.plan import DataSpec
from growlang.runtime.errors import UserError

@dataclass(frozen=True)
class Specials:
    """What masking needs to know about the vocabulary."""

    size: int
    cls: int
    sep: int
    mask: int
    special: tuple[int, ...]  # ids never drawn as random replacements

    @classmethod
    def from_tokenizer(cls, tok: PreTrainedTokenizerFast) -> "Specials":
        return cls(len(tok), tok.cls_token_id, tok.sep_token_id, tok.mask_token_id, tuple(sorted(tok.all_special_ids)))

    @functools.cached_property
    def replacements(self) -> torch.Tensor:
        """The ids a 'random token' replacement draws from: every id that is not special."""
        return torch.tensor(sorted(set(range(self.size)) - set(self.special)), dtype=torch.long)


@dataclass
class Batch:
    input_ids: torch.Tensor  # (n, T) long; mlm: [CLS] first, masked positions replaced
    positions: torch.Tensor  # (n, P) long, ascending: mlm the masked ones in 1..T-1, clm all of 0..T-1
    targets: torch.Tensor  # (n, P) long: mlm the original ids at `positions`, clm the next tokens

    def split(self, size: int) -> list["Batch"]:
        """Micro-batches of `size` sequences (the last one may be smaller)."""
        parts = zip(*(t.split(size) for t in (self.input_ids, self.positions, self.targets)))
        return [Batch(*p) for p in parts]

    def to(self, device) -> "Batch":
        return Batch(self.input_ids.to(device), self.positions.to(device), self.targets.to(device))


class Documents:
    """Documents `which` of a store (in that order) as one token array: `len()` and `read()`."""

    def __init__(self, store, which: np.ndarray):
        self.store = store
        which = np.asarray(which, dtype=np.int64)
        self.starts = store.starts[which]
        self.ends = np.cumsum(store.lengths[which])  # where each document ends in this view

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def read(self, start: int, count: int) -> np.ndarray:
        """ids[start:start+count] of the view (start + count <= len)."""
        i = int(np.searchsorted(self.ends, start, side="right"))
        pieces, pos = [], start
        while count > 0:
            begin = int(self.ends[i - 1]) if i else 0
            take = min(count, int(self.ends[i]) - pos)
            at = int(self.starts[i]) + pos - begin
            pieces.append(self.store.read(at, at + take))
            pos, count, i = pos + take, count - take, i + 1
        return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)


class Array:
    """A plain id array with the same interface as `Documents` (tests, benchmarks)."""

    def __init__(self, ids: np.ndarray):
        self.ids = ids

    def __len__(self) -> int:
        return len(self.ids)

    def read(self, start: int, count: int) -> np.ndarray:
        return self.ids[start:start + count]


def stream_tokens(read_len: int, objective: str) -> int:
    """Stream tokens one sequence of `read_len` consumes: mlm adds its own [CLS] in front of
    read_len - 1 of them; clm reads all read_len (= T inputs + the last target)."""
    return read_len - 1 if objective == "mlm" else read_len


def check_enough(n_tokens: int, n: int, read_len: int, corpus: str, what: str = "training",
                 objective: str = "mlm") -> None:
    """UserError unless `n_tokens` fill one batch of `n` sequences of `read_len`."""
    per = stream_tokens(read_len, objective)
    need = n * per
    if n_tokens < need:
        why = f"len={read_len} minus [CLS]" if objective == "mlm" else f"len={read_len - 1} plus the last target"
        raise UserError(
            f"corpus {corpus} has {n_tokens:,} {what} tokens, fewer than one batch needs: {n} sequences x "
            f"{per} tokens ({why}) = {need:,}; use a bigger corpus, "
            "or a smaller `batch` or `len`" + (", or a larger `data { holdout }`" if what == "eval" else "")
        )


def _seed(seed: int, step: int, salt: str) -> int:
    # A hash, not seed + step: nearby (seed, step) pairs must not give overlapping streams.
    digest = hashlib.blake2b(f"{salt}:{seed}:{step}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & ((1 << 63) - 1)


def mask_tokens(seqs: torch.Tensor, P: int, specials: Specials, generator: torch.Generator) -> Batch:
    """BERT's masking of (n, T) sequences: exactly P positions among 1..T-1 per row, sorted;
    80% become [MASK], 10% a random non-special token, 10% stay (Devlin et al. 2019, 3.1)."""
    n, T = seqs.shape
    if P > T - 1:
        raise UserError(f"len={T} leaves no room to mask {P} tokens; use a longer `len`")
    # argsort of uniform noise = a uniform random P-subset per row, all rows at once
    noise = torch.rand(n, T - 1, generator=generator)
    positions = noise.argsort(dim=1, stable=True)[:, :P].sort(dim=1).values + 1
    targets = seqs.gather(1, positions)
    u = torch.rand(n, P, generator=generator)
    allowed = specials.replacements
    random_ids = allowed[torch.randint(len(allowed), (n, P), generator=generator)]
    replaced = torch.where(u < 0.8, torch.full_like(targets, specials.mask), targets)
    replaced = torch.where((u >= 0.8) & (u < 0.9), random_ids, replaced)
    input_ids = seqs.clone()
    input_ids.scatter_(1, positions, replaced)
    return Batch(input_ids, positions, targets)


class TokenStream:
    """One packed stream over a token array that continues across stages and wraps at its end.

    Data-parallel: `shard(rank, world_size)` makes `batch` return only this rank's rows (rank,
    rank + world_size, ...) of the global batch. Every rank advances the stream by the whole
    global batch and draws the same masks, so the ranks' rows together are exactly the batch one
    process would see.
    """

    def __init__(self, ids, seed: int, specials: Specials, salt: str = "train", identity: str | None = None,
                 objective: str = "mlm"):
        """`ids`: a `Documents` view, or a numpy array; `identity`: what names its content (the
        store's digest), checked on resume; `objective`: "mlm" (masked batches) or "clm"."""
        ids = Array(ids) if isinstance(ids, np.ndarray) else ids
        if len(ids) == 0:
            raise UserError("the token stream is empty: the corpus has no tokens")
        self.ids, self.seed, self.specials, self.salt, self.identity = ids, seed, specials, salt, identity
        self.objective = objective
        self.pos = 0  # next token to read
        self.epoch = 0  # completed passes over the stream
        self.rank, self.world_size = 0, 1

    def shard(self, rank: int, world_size: int) -> "TokenStream":
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.rank, self.world_size = rank, world_size
        return self

    def _read(self, count: int) -> np.ndarray:
        n, pieces = len(self.ids), []
        while count > 0:  # to the end of the stream, then around
            take = min(count, n - self.pos)
            pieces.append(np.asarray(self.ids.read(self.pos, take), dtype=np.int64))
            count -= take
            self.epoch += (self.pos + take) // n
            self.pos = (self.pos + take) % n
        return np.concatenate(pieces)

    def batch(self, n: int, read_len: int, predicted: int, step: int) -> Batch:
        """The global batch for `step` (the plan's `Reading.read_len` and `.predicted`); this
        rank's rows when sharded. mlm: n sequences of [CLS] + the next read_len-1 stream tokens,
        `predicted` of them masked with a generator seeded by (seed, step). clm: n runs of the
        next read_len tokens, inputs [:-1] and targets [1:], every position predicted."""
        if n % self.world_size:
            raise ValueError(f"batch {n} is not divisible by world size {self.world_size}")
        per = stream_tokens(read_len, self.objective)
        body = torch.from_numpy(self._read(n * per)).view(n, per)
        if self.objective == "clm":
            T = read_len - 1
            if predicted != T:
                raise ValueError(f"a causal-LM batch predicts all {T} positions, not {predicted}")
            b = Batch(body[:, :-1].contiguous(), torch.arange(T).expand(n, T).contiguous(), body[:, 1:].contiguous())
        else:
            seqs = torch.cat([torch.full((n, 1), self.specials.cls, dtype=torch.long), body], dim=1)
            g = torch.Generator().manual_seed(_seed(self.seed, step, self.salt))
            b = mask_tokens(seqs, predicted, self.specials, g)
        if self.world_size == 1:
            return b
        rows = slice(self.rank, None, self.world_size)
        return Batch(b.input_ids[rows], b.positions[rows], b.targets[rows])

    def state_dict(self) -> dict:
        return {"pos": self.pos, "epoch": self.epoch, "seed": self.seed, "n_tokens": len(self.ids),
                "store": self.identity}

    def load_state_dict(self, state: dict) -> None:
        if state["n_tokens"] != len(self.ids):
            raise UserError(f"the checkpoint's token stream had {state['n_tokens']:,} tokens but the corpus now "
                            f"gives {len(self.ids):,}: the corpus or tokenizer changed since the run started; "
                            "restore them, or start a new run into another --out")
        if state.get("store") and self.identity and state["store"] != self.identity:
            raise UserError("the corpus or tokenizer changed since the run started: its token store's content "
                            f"(digest {state['store'][:12]}) differs from the one it reads now ({self.identity[:12]}); "
                            "restore them, or start a new run into another --out")
        self.pos, self.epoch, self.seed = int(state["pos"]), int(state["epoch"]), int(state["seed"])


# The held-out masks do not depend on the training seed: runs with different seeds are scored on the
# same masked positions (as on the same documents, corpus.split_indices), so their eval losses differ
# by what the models learned, not by which ~15% of the tokens each was asked for.
EVAL_SEED = 0


def eval_batches(eval_ids: np.ndarray, n_batches: int, batch: int, length: int, mask: float,
                 specials: Specials, objective: str = "mlm", mask_seed: int = EVAL_SEED) -> list[Batch]:
    """A fixed list of batches of `len=length` from the start of the held-out stream: the same on
    every call and for every training seed (EVAL_SEED; `mask_seed` only for measuring how much the
    masks matter, benchmarks/eval_mask_spread.py).

    A held-out stream shorter than n_batches batches wraps around (later batches repeat text, for
    mlm with other masks); `check_enough(..., what="eval")` guarantees at least one full batch.
    """
    stream = TokenStream(eval_ids, mask_seed, specials, salt="eval", objective=objective)
    r = reading(length, length, 1, mask, objective)
    return [stream.batch(batch, r.read_len, r.predicted, step=i) for i in range(n_batches)]


@dataclass
class Data:
    """Everything a run reads: the tokenizer, the train and eval token views and their store."""

    tokenizer: PreTrainedTokenizerFast
    specials: Specials
    train_ids: Documents
    eval_ids: Documents
    digest: str  # the store's content digest: the stream's identity on resume

    def check(self, corpus: str, batch: int, read_len: int, eval_batch: int, eval_len: int) -> None:
        """UserError unless both streams fill one batch at the given (longest) length."""
        check_enough(len(self.train_ids), batch, read_len, corpus, "training")
        check_enough(len(self.eval_ids), eval_batch, eval_len, corpus, "eval")


def load_data(spec: DataSpec, vocab: int, seed: int, cache_dir: Path | None = None, eval_tokens: int = 0,
              progress: bool = True, objective: str = "mlm") -> Data:
    """Corpus -> tokenizer -> token store (reused, independent of the split) -> train/eval views.

    `eval_tokens`: the held-out documents hold at least this many tokens when the corpus allows
    (one eval batch; `corpus.split_indices`)."""
    from growlang.runtime.corpus import split_indices
    from growlang.runtime.prepare import prepare

    prepared = prepare(spec, vocab, cache_dir, progress=progress, objective=objective)
    store = prepared.store
    train_idx, eval_idx = split_indices(store.n_documents, spec.holdout, seed, store.lengths, eval_tokens)
    return Data(prepared.tokenizer, Specials.from_tokenizer(prepared.tokenizer), Documents(store, train_idx),
                Documents(store, eval_idx), store.digest)
