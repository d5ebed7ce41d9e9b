"""The tokenizer of a run: one trained on the corpus (`tokenizer=builtin`), or a local one.

`builtin` trains, with the `tokenizers` library on a bounded, deterministic sample of the run's
corpus (`sample_documents`: all of it up to SAMPLE_CHARS, e.g. the whole State of the Union corpus
for `corpus=builtin`), a tokenizer of exactly `model { vocab }` entries that suits the family's
objective: for masked-LM encoders ("mlm") a BERT-style uncased WordPiece (`train_wordpiece`), for
causal-LM decoders ("clm") a GPT-2-style byte-level BPE (`train_bpe`) whose one special token
`<|endoftext|>` is bos, eos, unk and pad. It is cached under `$GROWLANG_CACHE/tokenizers/<key>/`
(default `~/.cache/growlang`), keyed by the corpus fingerprint, the vocab size and the trainer's
version (BUILTINS), and training is deterministic.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers

from growlang.family_checks import BUILTIN_VOCAB_MIN
from growlang.plan import DataSpec
from growlang.runtime.errors import UserError

if TYPE_CHECKING:  # transformers takes seconds to import; training a vocab does not need it
    from transformers import PreTrainedTokenizerFast

SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")  # ids 0..4, BERT's names
EOT = "<|endoftext|>"  # GPT-2's name; the byte-level BPE's only special token, id 0
BYTES = 256  # the byte-level alphabet: every byte is a symbol, so no text is ever unknown
OBJECTIVES = {"mlm": "masked-LM", "clm": "causal-LM"}  # a family's pretraining objective, in words
# The token that ends every document in the token store, per objective (`document_separator`).
DOCUMENT_END = {"mlm": "sep_token", "clm": "eos_token"}
MAX_ALPHABET = 1000  # BERT's limit_alphabet
SAMPLE_CHARS = 32 << 20  # the builtin tokenizer trains on at most this much text of the corpus
ALPHABET_CHUNK = 4096  # documents counted at a time


def cache_root(cache_dir: Path | None = None) -> Path:
    """`cache_dir`, else $GROWLANG_CACHE, else ~/.cache/growlang."""
    if cache_dir is not None:
        return Path(cache_dir)
    return Path(os.environ.get("GROWLANG_CACHE") or Path.home() / ".cache" / "growlang")


def tokenizer_hash(tok: PreTrainedTokenizerFast) -> str:
    """A content hash of a tokenizer's full pipeline (its tokenizer.json)."""
    return hashlib.blake2b(tok.backend_tokenizer.to_str().encode(), digest_size=16).hexdigest()


def _alphabet(docs: list[str], normalizer, limit: int) -> list[str]:
    """The `limit` most frequent characters after normalization, ties broken by code point."""
    # Count raw characters with numpy, then normalize each distinct one: the BERT normalizer works
    # character by character (lowercase, strip accents, drop control chars), and normalizing 73
    # characters instead of 12 MB of text takes the time from seconds to milliseconds.
    raw_counts: dict[int, int] = {}
    for i in range(0, len(docs), ALPHABET_CHUNK):  # in chunks: 4 bytes per character at a time
        raw = np.frombuffer("".join(docs[i:i + ALPHABET_CHUNK]).encode("utf-32-le"), dtype=np.uint32)
        for cp, c in zip(*(a.tolist() for a in np.unique(raw, return_counts=True))):
            raw_counts[cp] = raw_counts.get(cp, 0) + c
    counts: dict[str, int] = {}
    for cp, c in sorted(raw_counts.items()):
        for ch in normalizer.normalize_str(chr(cp)):
            if not ch.isspace():
                counts[ch] = counts.get(ch, 0) + c
    return sorted(sorted(counts, key=lambda ch: (-counts[ch], ord(ch)))[:limit])


def train_wordpiece(docs: list[str], vocab: int) -> dict[str, int]:
    """A WordPiece vocabulary of exactly `vocab` entries, the same in every process.

    Why the detour: the `tokenizers` trainer numbers the `##x` continuation symbols in HashMap
    order, which Rust seeds per process, and breaks ties between equally frequent merges by those
    numbers, so two trainings can pick different tokens near the end of a large vocab. We choose
    the alphabet ourselves (frequency, then code point) and register every symbol and its `##`
    form up front in sorted order, so every id the trainer compares is fixed. Then the vocab is
    renumbered: specials first, the rest sorted by string. A corpus too small to fill the vocab is
    padded with `[unused0]`, `[unused1]`, ... (BERT's placeholders), which never match any text.
    """
    limit = max(1, min(MAX_ALPHABET, (vocab - len(SPECIALS)) // 4))
    normalizer = normalizers.BertNormalizer(lowercase=True)
    alphabet = _alphabet(docs, normalizer, limit)
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    fixed = list(SPECIALS) + alphabet + ["##" + ch for ch in alphabet]
    if vocab < BUILTIN_VOCAB_MIN["mlm"]:  # the alphabet is capped to fit, so only this can fail
        raise UserError(f"`model {{ vocab={vocab} }}` is too small for the builtin WordPiece, which holds "
                        f"{len(SPECIALS)} special tokens, then each character and its ## form; "
                        f"use vocab >= {BUILTIN_VOCAB_MIN['mlm']} (a few thousand for real text)")
    trainer = trainers.WordPieceTrainer(vocab_size=vocab, special_tokens=fixed, initial_alphabet=alphabet,
                                        limit_alphabet=len(alphabet), show_progress=False)
    tok.train_from_iterator(docs, trainer)
    rest = sorted(t for t in tok.get_vocab() if t not in SPECIALS)
    tokens = list(SPECIALS) + rest[: vocab - len(SPECIALS)]
    tokens += [f"[unused{i}]" for i in range(vocab - len(tokens))]
    return {t: i for i, t in enumerate(tokens)}


def bert_tokenizer(vocab: dict[str, int]) -> PreTrainedTokenizerFast:
    """An uncased BertTokenizerFast (BERT normalizer, pre-tokenizer, WordPiece decoder) over `vocab`."""
    from transformers import BertTokenizerFast

    return BertTokenizerFast(vocab=vocab, do_lower_case=True, model_max_length=1 << 30)


def train_bpe(docs: list[str], vocab: int) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE of exactly `vocab` entries, the same in every process: its vocabulary
    (<|endoftext|> = 0, the 256 byte symbols in code point order, then one token per merge in the
    order learned) and its merges.

    No detour is needed here, unlike `train_wordpiece`: with the whole byte alphabet given up front
    and no continuation prefix, the trainer adds no symbol in HashMap order, and it breaks ties
    between equally frequent merges by the symbols' ids, which are then all fixed (tokenizers'
    bpe/trainer.rs, `Merge::cmp`). A corpus too small to fill the vocab is padded with
    `<|unused0|>`, `<|unused1|>`, ..., vocabulary entries that no merge produces, so no text maps
    to them.
    """
    if vocab < BUILTIN_VOCAB_MIN["clm"]:
        raise UserError(f"`model {{ vocab={vocab} }}` is too small for the byte-level BPE, which holds the "
                        f"{BYTES} bytes and {EOT}; use vocab >= {BUILTIN_VOCAB_MIN['clm']}")
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's, as in `gpt2_tokenizer`
    trainer = trainers.BpeTrainer(vocab_size=vocab, special_tokens=[EOT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer)
    model = json.loads(tok.to_str())["model"]
    words: dict[str, int] = model["vocab"]
    unused = (t for t in (f"<|unused{i}|>" for i in range(vocab)) if t not in words)
    for t in itertools.islice(unused, vocab - len(words)):
        words[t] = len(words)
    return words, [tuple(m) for m in model["merges"]]  # pairs since tokenizers 0.20 (pyproject's floor)


def gpt2_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]) -> PreTrainedTokenizerFast:
    """A GPT-2 tokenizer (byte-level pre-tokenizer and decoder, no prefix space) over `vocab` and
    `merges`, with <|endoftext|> as bos, eos, unk and pad; it adds no special token to a text."""
    from transformers import GPT2Tokenizer  # backed by `tokenizers` in transformers 5

    return GPT2Tokenizer(vocab=vocab, merges=merges, unk_token=EOT, bos_token=EOT, eos_token=EOT, pad_token=EOT,
                         model_max_length=1 << 30)


def _wordpiece(docs: list[str], vocab: int) -> tuple[PreTrainedTokenizerFast, dict[str, str]]:
    words = train_wordpiece(docs, vocab)
    return bert_tokenizer(words), {"vocab.txt": "".join(t + "\n" for t in words)}


def _bpe(docs: list[str], vocab: int) -> tuple[PreTrainedTokenizerFast, dict[str, str]]:
    return gpt2_tokenizer(*train_bpe(docs, vocab)), {}


# The builtin tokenizer per objective: its trainer's version (bump it when training changes, so old
# caches are not reused; it is part of the cache key) and the function that trains it and gives
# the tokenizer with any extra files to save beside it.
BUILTINS = {"mlm": ("wordpiece-v1", _wordpiece), "clm": ("bytelevel-bpe-v1", _bpe)}


def _atomic_save(tok: PreTrainedTokenizerFast, extra: dict[str, str], folder: Path) -> None:
    # Write a sibling temp folder, then rename: a crash or a concurrent run never sees half a cache.
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=folder.name + ".tmp", dir=folder.parent))
    try:
        tok.save_pretrained(str(tmp))
        for name, text in extra.items():
            (tmp / name).write_text(text, encoding="utf-8")
        os.replace(tmp, folder)
    except OSError:
        if not folder.exists():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # left over when another process won the race


def sample_documents(spec: DataSpec) -> list[str]:
    """The documents the builtin tokenizer trains on: every k-th document, k = the corpus' size on
    disk / SAMPLE_CHARS rounded up (1 for the builtin corpus: all of it), until SAMPLE_CHARS
    characters (for a compressed corpus, whose size on disk understates its text, the sample
    comes from its first files)."""
    from growlang.runtime.corpus import ReadCounts, iter_documents

    counts, sample, chars = ReadCounts(), [], 0
    docs = iter_documents(spec, counts)
    for i, d in enumerate(docs):
        if i == 0:
            stride = max(1, -(-counts.total // SAMPLE_CHARS))
        if i % stride == 0:
            sample.append(d)
            chars += len(d)
            if chars >= SAMPLE_CHARS:
                break
    if not sample:
        raise UserError(f"corpus {spec.corpus} is empty: it holds no non-blank documents")
    return sample


def builtin_tokenizer(spec: DataSpec, vocab: int, fp_key: str, cache_dir: Path | None = None,
                      objective: str = "mlm") -> PreTrainedTokenizerFast:
    """The objective's builtin tokenizer (BUILTINS) trained on the corpus' sample with `vocab`
    entries, from the cache when it is there."""
    version, train = BUILTINS[objective]  # the version names the kind: "wordpiece-v1" keys are as before
    key = hashlib.blake2b(f"{fp_key}:{vocab}:{version}:{SAMPLE_CHARS}".encode(), digest_size=12).hexdigest()
    folder = cache_root(cache_dir) / "tokenizers" / key
    if not (folder / "tokenizer.json").exists():
        _atomic_save(*train(sample_documents(spec), vocab), folder)
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "tokenizer.model", "spiece.model",
                   "sentencepiece.bpe.model")


# The tokens a local tokenizer must have per objective, and why (the masked-LM batches need all three).
NEEDED = {"mlm": (("cls_token", "sep_token", "mask_token"),
                  "masked-LM pretraining needs [CLS], [SEP] and [MASK] tokens"),
          "clm": (("eos_token",), "causal-LM pretraining ends every document with the eos token (GPT-2's is "
                                  "<|endoftext|>); set `eos_token` in its tokenizer_config.json")}


def local_tokenizer(path: str, vocab: int, objective: str = "mlm") -> PreTrainedTokenizerFast:
    """A Hugging Face tokenizer folder, checked against the objective's needs and the model's vocab size."""
    from transformers import AutoTokenizer, PreTrainedTokenizerFast

    folder = Path(os.path.expanduser(path))
    fix = "set `data { tokenizer=... }` to `builtin` or to a folder written by `save_pretrained`"
    if not folder.exists():
        raise UserError(f"tokenizer folder {path} does not exist; {fix}")
    if not folder.is_dir():
        raise UserError(f"tokenizer {path} is a file, not a folder; point `data {{ tokenizer=... }}` at the folder "
                        "holding it and its tokenizer_config.json (a folder written by `save_pretrained`)")
    if not any((folder / name).is_file() for name in TOKENIZER_FILES):
        raise UserError(f"tokenizer folder {path} holds no tokenizer files (none of {', '.join(TOKENIZER_FILES)}); "
                        f"{fix}")
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # transformers raises OSError, ValueError, KeyError... for a bad folder
        raise UserError(f"tokenizer folder {path} does not hold a readable tokenizer ({type(e).__name__}: "
                        f"{str(e).splitlines()[0] if str(e) else ''}); {fix}") from None
    if not isinstance(tok, PreTrainedTokenizerFast):
        raise UserError(f"tokenizer folder {path} holds a slow tokenizer; save one with a tokenizer.json")
    names, why = NEEDED[objective]
    missing = [name for name in names if getattr(tok, name, None) is None]
    if missing:
        raise UserError(f"tokenizer folder {path} has no {', '.join(missing)}; {why}")
    if len(tok) != vocab:
        raise UserError(f"tokenizer folder {path} has {len(tok)} tokens but `model {{ vocab={vocab} }}`; "
                        f"set `vocab={len(tok)}` in the model block")
    return tok


def load_tokenizer(spec: DataSpec, vocab: int, cache_dir: Path | None = None,
                   fp_key: str | None = None, objective: str = "mlm") -> PreTrainedTokenizerFast:
    """The run's tokenizer with exactly `vocab` entries for the family's `objective` ("mlm" or
    "clm"; `fp_key`: the corpus fingerprint's key, when the caller has it)."""
    if spec.tokenizer != "builtin":
        return local_tokenizer(spec.tokenizer, vocab, objective)
    if fp_key is None:
        from growlang.runtime.corpus import fingerprint, fingerprint_key

        fp_key = fingerprint_key(fingerprint(spec))
    return builtin_tokenizer(spec, vocab, fp_key, cache_dir, objective)


def document_separator(tok: PreTrainedTokenizerFast, objective: str) -> int:
    """The id that ends every document in the token store: [SEP] for "mlm", eos for "clm"."""
    return getattr(tok, DOCUMENT_END[objective] + "_id")
