"""bert-preln's pad id (issue 12 item 17): exported as the tokenizer's, with RoBERTa's position
offset (pad_token_id + 1 leading rows); logits parity with and without padding, a silent load,
fine-tuning that trains the last position and word rows, and imports of any integer pad id."""

import json
import logging

import pytest
import torch
from transformers import (AutoModelForMaskedLM, AutoModelForSequenceClassification, AutoTokenizer,
                          RobertaPreLayerNormConfig, RobertaPreLayerNormForMaskedLM)
from transformers.utils import logging as hf_logging

from growlang.runtime.errors import UserError
from growlang.runtime.hf import export_hf, import_hf, quiet_transformers, to_hf
from growlang.runtime.model import Encoder, EncoderConfig
from growlang.runtime.tokenizer import SPECIALS, bert_tokenizer

V, T = 60, 24
POS = "roberta_prelayernorm.embeddings.position_embeddings.weight"
WORD = "roberta_prelayernorm.embeddings.word_embeddings.weight"


def builtin_tokenizer():
    """The builtin WordPiece's layout ([PAD] 0, [UNK], [CLS], [SEP], [MASK], then words), V tokens."""
    words = [*SPECIALS, *"abcdefghij", *(f"w{i}" for i in range(V - len(SPECIALS) - 10))]
    return bert_tokenizer({w: i for i, w in enumerate(words)})


def perturbed(seed=0):
    c = EncoderConfig("bert-preln", vocab=V, width=16, depth=2, heads=2, ffn=24, max_len=T)
    torch.manual_seed(seed)
    m = Encoder(c)
    with torch.no_grad():
        for p in m.parameters():  # norms and biases away from ones/zeros, so every mapping matters
            p.add_(torch.randn_like(p) * 0.1)
    return m.eval(), c


@pytest.fixture
def exported(tmp_path):
    m, c = perturbed()
    tok = builtin_tokenizer()
    return m, c, tok, export_hf(m, c, tmp_path / "hf", tokenizer=tok)


def no_pad_ids(B=3, L=T, seed=0):
    """Token ids 1..V-1 (no [PAD]), the last word (V-1) in every row."""
    ids = torch.randint(1, V, (B, L), generator=torch.Generator().manual_seed(seed))
    ids[:, 1] = V - 1
    return ids


def test_export_writes_the_tokenizer_pad_id_and_round_trips(exported):
    m, c, tok, out = exported
    cfg = json.loads((out / "config.json").read_text())
    assert tok.pad_token_id == 0
    assert (cfg["pad_token_id"], cfg["max_position_embeddings"]) == (0, T + 1)  # offset pad + 1
    back_tok = AutoTokenizer.from_pretrained(out)
    assert (back_tok.pad_token, back_tok.pad_token_id) == ("[PAD]", cfg["pad_token_id"])
    assert json.loads((out / "tokenizer_config.json").read_text())["pad_token"] == "[PAD]"
    back, c2 = import_hf(out)
    assert c2 == c
    assert back.state_dict().keys() == m.state_dict().keys()
    for n, t in m.state_dict().items():
        assert torch.equal(back.state_dict()[n], t), n


def test_export_without_a_tokenizer_takes_the_pad_id_given(tmp_path):
    """What `growlang grow` does from an HF folder: the ids are its config.json's (RoBERTa's pad 1)."""
    m, c = perturbed()
    out = export_hf(m, c, tmp_path / "hf", ids={"bos_token_id": 0, "eos_token_id": 2, "pad_token_id": 1})
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["pad_token_id"], cfg["max_position_embeddings"]) == (1, T + 2)
    hf = AutoModelForMaskedLM.from_pretrained(out).eval()
    ids = no_pad_ids().masked_fill(no_pad_ids() == 1, 2)  # no token is pad id 1
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=ids).logits, m(ids), atol=1e-5, rtol=0)
    back, c2 = import_hf(out)
    assert c2 == c and all(torch.equal(back.state_dict()[n], t) for n, t in m.state_dict().items())


def test_to_hf_shifts_the_position_table_and_shares_the_rest():
    m, c = perturbed()
    state = m.state_dict()
    out = to_hf(state, c, 3)
    assert torch.equal(out[POS][:3], torch.zeros(3, c.width)) and torch.equal(out[POS][3:], state["emb.pos.weight"])
    assert out[WORD].data_ptr() == state["emb.word.weight"].data_ptr()  # no copy where none is needed


def test_logits_parity_unpadded_and_padded(exported):
    m, c, tok, out = exported
    hf = AutoModelForMaskedLM.from_pretrained(out).eval()
    ids = no_pad_ids()
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=ids).logits, m(ids), atol=1e-5, rtol=0)
    lengths = [T, 7, 15]  # a full row, and rows padded to T with [PAD] on the right or the left
    rows = [no_pad_ids(1, n, seed=i)[0] for i, n in enumerate(lengths)]
    for side in ("right", "left"):
        batch = tok.pad({"input_ids": [r.tolist() for r in rows]}, padding="max_length", max_length=T,
                        padding_side=side, return_tensors="pt")
        assert (batch["input_ids"] == tok.pad_token_id).sum() == len(rows) * T - sum(lengths)
        with torch.no_grad():
            got = hf(**batch).logits
            for b, r in enumerate(rows):
                keep = batch["attention_mask"][b].bool()
                torch.testing.assert_close(got[b][keep], m(r[None])[0], atol=1e-5, rtol=0, msg=f"{side} {b}")


def test_load_is_silent(exported, monkeypatch):
    """transformers warns once per process about an out-of-vocabulary pad id (-1): clear that cache."""
    *_, out = exported
    if hasattr(logging.Logger.warning_once, "cache_clear"):
        logging.Logger.warning_once.cache_clear()
    records = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    root = hf_logging.get_logger()  # transformers' root logger: it does not propagate to pytest's
    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_warning()
    root.addHandler(handler)
    try:
        AutoModelForMaskedLM.from_pretrained(out)
        AutoTokenizer.from_pretrained(out)
    finally:
        root.removeHandler(handler)
        hf_logging.set_verbosity(verbosity)
    assert [r.getMessage() for r in records] == []


def test_fine_tuning_trains_the_last_position_and_word_rows(exported):
    """nn.Embedding never updates row padding_idx; with pad_token_id -1 that was the last row of both
    tables. Now it is [PAD]'s row and the pad position's, which no real token reads."""
    *_, out = exported
    with quiet_transformers():  # "newly initialized classifier" is expected here
        hf = AutoModelForSequenceClassification.from_pretrained(out, num_labels=2).train()
    ids = no_pad_ids(B=2)  # T tokens: the last position row is read, and the last word (V-1)
    opt = torch.optim.AdamW(hf.parameters(), lr=1e-2)
    before = {n: p.detach().clone() for n, p in hf.named_parameters() if n in (POS, WORD)}
    hf(input_ids=ids, labels=torch.tensor([0, 1])).loss.backward()
    params = dict(hf.named_parameters())
    assert params[POS].grad[-1].abs().sum() > 0 and params[WORD].grad[-1].abs().sum() > 0
    assert params[POS].grad[0].abs().sum() == 0 and params[WORD].grad[0].abs().sum() == 0  # pad's rows
    opt.step()
    for name in (POS, WORD):
        assert not torch.equal(params[name][-1], before[name][-1]), name


def roberta_folder(path, pad, positions, seed=1):
    """A RoBERTa-PreLN masked LM as transformers writes it, weights perturbed."""
    torch.manual_seed(seed)
    with quiet_transformers():  # pad -1's out-of-vocabulary note
        hf = RobertaPreLayerNormForMaskedLM(RobertaPreLayerNormConfig(
            vocab_size=V, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=24,
            max_position_embeddings=positions, pad_token_id=pad, bos_token_id=0, eos_token_id=2, type_vocab_size=1))
        with torch.no_grad():
            for p in hf.parameters():
                p.add_(torch.randn_like(p) * 0.1)
        hf.save_pretrained(path)
    return hf.eval()


@pytest.mark.parametrize("pad", [1, 0, -1], ids=["roberta-pad-1", "pad-0", "legacy-pad--1"])
def test_import_any_integer_pad_id(tmp_path, pad):
    offset = pad + 1
    hf = roberta_folder(tmp_path / "m", pad, offset + T)
    m, c = import_hf(tmp_path / "m")
    assert (c.max_len, c.type_vocab) == (T, 1)
    ids = no_pad_ids()
    if pad >= 0:
        ids = ids.masked_fill(ids == pad, pad + 2)
    with torch.no_grad():
        torch.testing.assert_close(m.eval()(ids), hf(input_ids=ids).logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("edit,field,says", [
    ({"pad_token_id": None}, "pad_token_id", "is null; .* integer from -1"),
    ({"pad_token_id": "1"}, "pad_token_id", 'is "1"; .* integer from -1'),
    ({"pad_token_id": True}, "pad_token_id", "is true; .* integer from -1"),
    ({"pad_token_id": -2}, "pad_token_id", "is -2; .* integer from -1"),
    ({"pad_token_id": V}, "pad_token_id", f"is {V}; .* integer from -1"),
    ({"pad_token_id": 1, "max_position_embeddings": 2}, "max_position_embeddings", "is 2, which leaves no position"),
    ({"pad_token_id": -1, "max_position_embeddings": 0}, "max_position_embeddings", "is 0, which leaves no position"),
])
def test_import_refuses_a_bad_pad_id(tmp_path, edit, field, says):
    roberta_folder(tmp_path / "m", 1, T + 2)
    path = tmp_path / "m" / "config.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **edit}))
    with pytest.raises(UserError, match=rf"config\.json: `{field}` {says}"):
        import_hf(tmp_path / "m")


def test_import_refuses_a_missing_pad_id(tmp_path):
    roberta_folder(tmp_path / "m", 1, T + 2)
    path = tmp_path / "m" / "config.json"
    c = json.loads(path.read_text())
    del c["pad_token_id"]
    path.write_text(json.dumps(c))
    with pytest.raises(UserError, match=r"config\.json: no `pad_token_id`"):
        import_hf(tmp_path / "m")
