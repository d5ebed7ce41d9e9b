"""HF export parity (AutoModelForMaskedLM logits) and import round trips."""

import json
import os
import stat

import pytest
import torch
from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM

from growlang.runtime.errors import UserError
from growlang.runtime.hf import export_hf, import_hf
from growlang.runtime.model import Encoder, EncoderConfig


def perturbed(family, seed=0, **kw):
    c = EncoderConfig(family, **{**dict(vocab=60, width=16, depth=2, heads=2, ffn=24, max_len=40), **kw})
    torch.manual_seed(seed)
    m = Encoder(c)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return m.eval(), c


@pytest.mark.parametrize("family,cls", [("bert", "BertForMaskedLM"), ("bert-preln", "RobertaPreLayerNormForMaskedLM")])
def test_export_parity_and_round_trip(tmp_path, family, cls):
    m, c = perturbed(family)
    out = export_hf(m, c, tmp_path / "hf")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # no temp folder left behind
    hf = AutoModelForMaskedLM.from_pretrained(out).eval()
    assert type(hf).__name__ == cls
    ids = torch.randint(0, 60, (3, 40))  # full max_len, includes token id 0 and 1
    ids[0, :5] = torch.tensor([0, 1, 2, 0, 1])
    with torch.no_grad():
        torch.testing.assert_close(hf(input_ids=ids).logits, m(ids), atol=1e-5, rtol=0)
    back, c2 = import_hf(out)
    assert c2 == c
    for (n, a), (_, b) in zip(m.state_dict().items(), back.state_dict().items()):
        assert torch.equal(a, b), n


def test_export_respects_umask(tmp_path):
    m, c = perturbed("bert")
    old = os.umask(0o022)
    try:
        out = export_hf(m, c, tmp_path / "hf")
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert {p.name: stat.S_IMODE(p.stat().st_mode) for p in out.iterdir()} == {
        "config.json": 0o644, "model.safetensors": 0o644}


def test_export_refuses_existing(tmp_path):
    m, c = perturbed("bert")
    (tmp_path / "x").mkdir()
    with pytest.raises(UserError, match="exists"):
        export_hf(m, c, tmp_path / "x")


def test_import_transformers_folder_and_bin(tmp_path):
    torch.manual_seed(1)
    hf = BertForMaskedLM(BertConfig(vocab_size=80, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                    intermediate_size=48, max_position_embeddings=24)).eval()
    hf.save_pretrained(tmp_path / "st")
    hf.save_pretrained(tmp_path / "bin", safe_serialization=False)
    ids = torch.randint(0, 80, (2, 24))
    with torch.no_grad():
        want = hf(input_ids=ids).logits
    for sub in ("st", "bin"):
        m, c = import_hf(tmp_path / sub)
        assert (c.width, c.depth, c.heads, c.ffn, c.max_len) == (32, 2, 4, 48, 24)
        with torch.no_grad():
            torch.testing.assert_close(m.eval()(ids), want, atol=1e-5, rtol=0)


def test_import_errors(tmp_path):
    with pytest.raises(UserError, match="no such folder"):
        import_hf(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="config.json"):
        import_hf(tmp_path / "empty")
    (tmp_path / "t5").mkdir()
    (tmp_path / "t5" / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(UserError, match="holds a 't5' model"):
        import_hf(tmp_path / "t5")
    (tmp_path / "gpt").mkdir()
    (tmp_path / "gpt" / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(UserError, match="lacks 'vocab_size'"):
        import_hf(tmp_path / "gpt")
    m, c = perturbed("bert")
    out = export_hf(m, c, tmp_path / "noweights")
    (out / "model.safetensors").unlink()
    with pytest.raises(UserError, match="no weights"):
        import_hf(out)


def test_import_rejects_headless_bert(tmp_path):
    from transformers import BertModel

    BertModel(BertConfig(vocab_size=40, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                         intermediate_size=16, max_position_embeddings=8)).save_pretrained(tmp_path / "base")
    with pytest.raises(UserError, match="MLM head"):
        import_hf(tmp_path / "base")


def test_export_is_quiet_and_leaves_state_alone(tmp_path, capfd):
    """No transformers output (shard bars, the bert-preln pad id note); its verbosity and bars as they
    were; the exported model's tensors untouched (export shares them, it does not copy)."""
    from transformers.utils import logging as hf_logging

    m, c = perturbed("bert-preln")
    before = {n: t.clone() for n, t in m.state_dict().items()}
    hf_logging.set_verbosity_info()
    hf_logging.enable_progress_bar()
    try:
        export_hf(m, c, tmp_path / "hf")
        assert (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()) == (hf_logging.INFO, True)
    finally:
        hf_logging.set_verbosity_warning()
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")
    for n, t in m.state_dict().items():
        assert torch.equal(t, before[n]), n
