"""Token streams and masked-LM batches.

The documents are tokenized once, joined with [SEP] into one array of ids and cached next to the
tokenizer cache (`$GROWLANG_CACHE/tokens/<corpus+tokenizer hash>.npz`); the train/eval split then
picks documents out of it, so another seed or holdout does not tokenize again. A `TokenStream` reads that
array front to back across all stages: every sequence is [CLS] + the next read_len-1 ids, so no
token is seen twice in a pass, and at the end it wraps around and counts an epoch.
"""

from __future__ import annotations

import functools
import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from transformers import PreTrainedTokenizerFast

from growlang.accounting import predicted_positions
from growlang.plan import DataSpec
from growlang.runtime.errors import UserError
from growlang.runtime.tokenizer import cache_root, documents_hash, load_tokenizer, tokenizer_hash

ENCODE_CHUNK = 2048  # documents per encode_batch call: bounds memory, keeps the Rust threads busy


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
    input_ids: torch.Tensor  # (n, T) long, [CLS] first, masked positions replaced
    positions: torch.Tensor  # (n, P) long, ascending, in 1..T-1
    targets: torch.Tensor  # (n, P) long, the original ids at `positions`

    def split(self, size: int) -> list["Batch"]:
        """Micro-batches of `size` sequences (the last one may be smaller)."""
        parts = zip(*(t.split(size) for t in (self.input_ids, self.positions, self.targets)))
        return [Batch(*p) for p in parts]

    def to(self, device) -> "Batch":
        return Batch(self.input_ids.to(device), self.positions.to(device), self.targets.to(device))


def encode_documents(docs: list[str], tok: PreTrainedTokenizerFast,
                     cache_dir: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids, ends): `docs` tokenized (no [CLS] added), each followed by one [SEP], concatenated;
    document i is ids[ends[i-1]:ends[i]].

    Cached as .npz keyed by the documents and the tokenizer, so a second run loads in milliseconds.
    """
    key = hashlib.blake2b(f"{documents_hash(docs)}:{tokenizer_hash(tok)}".encode(), digest_size=12).hexdigest()
    path = cache_root(cache_dir) / "tokens" / f"{key}.npz"
    if path.exists():
        with np.load(path) as cached:
            return cached["ids"], cached["ends"]
    dtype = np.uint16 if len(tok) <= np.iinfo(np.uint16).max + 1 else np.int32
    backend, sep = tok.backend_tokenizer, np.array([tok.sep_token_id], dtype=dtype)
    parts = []
    for i in range(0, len(docs), ENCODE_CHUNK):
        # encode_batch_fast skips the offsets we never use; the Rust side runs on all cores
        for enc in backend.encode_batch_fast(docs[i:i + ENCODE_CHUNK], add_special_tokens=False):
            parts.append(np.concatenate([np.asarray(enc.ids, dtype=dtype), sep]))
    ids = np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)
    ends = np.cumsum([len(p) for p in parts], dtype=np.int64)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".npz", dir=path.parent)  # write, then rename: atomic
    with os.fdopen(fd, "wb") as f:
        np.savez(f, ids=ids, ends=ends)
    os.replace(tmp, path)
    return ids, ends


def select_documents(ids: np.ndarray, ends: np.ndarray, which: np.ndarray) -> np.ndarray:
    """The token ids of documents `which` (in that order), from `encode_documents`' output."""
    starts = np.concatenate([[0], ends[:-1]])
    if len(which) == 0:
        return ids[:0]
    return np.concatenate([ids[starts[i]:ends[i]] for i in which])


def check_enough(n_tokens: int, n: int, read_len: int, corpus: str, what: str = "training") -> None:
    """UserError unless `n_tokens` fill one batch of `n` sequences of `read_len` (with [CLS])."""
    need = n * (read_len - 1)
    if n_tokens < need:
        raise UserError(
            f"corpus {corpus} has {n_tokens:,} {what} tokens, fewer than one batch needs: {n} sequences x "
            f"{read_len - 1} tokens (len={read_len} minus [CLS]) = {need:,}; use a bigger corpus, "
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

    def __init__(self, ids: np.ndarray, seed: int, specials: Specials, salt: str = "train"):
        if len(ids) == 0:
            raise UserError("the token stream is empty: the corpus has no tokens")
        self.ids, self.seed, self.specials, self.salt = ids, seed, specials, salt
        self.pos = 0  # next token to read
        self.epoch = 0  # completed passes over the stream
        self.rank, self.world_size = 0, 1

    def shard(self, rank: int, world_size: int) -> "TokenStream":
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} outside world size {world_size}")
        self.rank, self.world_size = rank, world_size
        return self

    def _read(self, count: int) -> np.ndarray:
        n = len(self.ids)
        idx = (self.pos + np.arange(count, dtype=np.int64)) % n
        self.epoch += (self.pos + count) // n
        self.pos = (self.pos + count) % n
        return np.asarray(self.ids[idx], dtype=np.int64)

    def batch(self, n: int, read_len: int, predicted: int, step: int) -> Batch:
        """The global batch for `step`: n sequences of [CLS] + the next read_len-1 stream tokens,
        `predicted` of them masked (the plan's `Reading.predicted`) with a generator seeded by
        (seed, step); this rank's rows when sharded."""
        if n % self.world_size:
            raise ValueError(f"batch {n} is not divisible by world size {self.world_size}")
        body = torch.from_numpy(self._read(n * (read_len - 1))).view(n, read_len - 1)
        seqs = torch.cat([torch.full((n, 1), self.specials.cls, dtype=torch.long), body], dim=1)
        g = torch.Generator().manual_seed(_seed(self.seed, step, self.salt))
        b = mask_tokens(seqs, predicted, self.specials, g)
        if self.world_size == 1:
            return b
        rows = slice(self.rank, None, self.world_size)
        return Batch(b.input_ids[rows], b.positions[rows], b.targets[rows])

    def state_dict(self) -> dict:
        return {"pos": self.pos, "epoch": self.epoch, "seed": self.seed, "n_tokens": len(self.ids)}

    def load_state_dict(self, state: dict) -> None:
        if state["n_tokens"] != len(self.ids):
            raise UserError(f"the checkpoint's token stream had {state['n_tokens']:,} tokens but the corpus now "
                            f"gives {len(self.ids):,}: the corpus or tokenizer changed since the run started")
        self.pos, self.epoch, self.seed = int(state["pos"]), int(state["epoch"]), int(state["seed"])


def eval_batches(eval_ids: np.ndarray, n_batches: int, batch: int, read_len: int, mask: float, seed: int,
                 specials: Specials) -> list[Batch]:
    """A fixed list of batches from the start of the held-out stream: the same on every call.

    A held-out stream shorter than n_batches batches wraps around (later batches repeat text with
    other masks); `check_enough(..., what="eval")` guarantees at least one full batch.
    """
    stream = TokenStream(eval_ids, seed, specials, salt="eval")
    predicted = predicted_positions(mask, read_len)
    return [stream.batch(batch, read_len, predicted, step=i) for i in range(n_batches)]


@dataclass
class Data:
    """Everything a run reads: the tokenizer and the train and eval token arrays."""

    tokenizer: PreTrainedTokenizerFast
    specials: Specials
    train_ids: np.ndarray
    eval_ids: np.ndarray

    def check(self, corpus: str, batch: int, read_len: int, eval_batch: int, eval_len: int) -> None:
        """UserError unless both streams fill one batch at the given (longest) length."""
        check_enough(len(self.train_ids), batch, read_len, corpus, "training")
        check_enough(len(self.eval_ids), eval_batch, eval_len, corpus, "eval")


def load_data(spec: DataSpec, vocab: int, seed: int, cache_dir: Path | None = None) -> Data:
    """Corpus -> tokenizer -> token ids (cached, independent of the split) -> train/eval split."""
    from growlang.runtime.corpus import read_documents, split_indices

    docs = list(read_documents(spec)["text"])
    tok = load_tokenizer(spec, vocab, cache_dir, docs=docs)
    ids, ends = encode_documents(docs, tok, cache_dir)
    train_idx, eval_idx = split_indices(len(docs), spec.holdout, seed)
    return Data(tok, Specials.from_tokenizer(tok), select_documents(ids, ends, train_idx),
                select_documents(ids, ends, eval_idx))
