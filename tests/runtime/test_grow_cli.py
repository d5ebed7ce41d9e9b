"""`growlang grow` through grow_cli.main, on folders written by transformers itself."""

import argparse
import json

import pytest
import torch
from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM

from growlang.runtime.grow_cli import EXIT_OK, EXIT_PROBLEM, EXIT_USAGE, main, parse_ops, parse_sizes


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    folder = tmp_path_factory.mktemp("src") / "tiny-bert"
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=90, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(f"tok{i}" for i in range(90)))
    return folder


def ns(src, out, to, by="", seed=None):
    return argparse.Namespace(src=str(src), out=str(out), to=to, by=by, seed=seed)


def test_parsers():
    assert parse_sizes("depth=12 ffn=4x width=768", 32) == {"depth": 12, "width": 768, "ffn": 3072}
    assert parse_ops("depth by zero(where=top), width by interpolate(noise=0.01)") == [
        ("depth", "zero", (("where", "top"),)), ("width", "interpolate", (("noise", 0.01),))]


def test_grow_exact(src, tmp_path, capsys):
    out = tmp_path / "grown"
    assert main(ns(src, out, "width=64 ffn=256", "width by interpolate, ffn by stack", seed=3)) == EXIT_OK
    text = capsys.readouterr().out
    assert "preservation: exact; as expected" in text and "logits moved" in text
    assert (out / "vocab.txt").is_file()
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["hidden_size"], cfg["num_attention_heads"], cfg["intermediate_size"]) == (64, 8, 256)
    ids = torch.randint(0, 90, (2, 30))
    with torch.no_grad():
        a = AutoModelForMaskedLM.from_pretrained(src).eval()(input_ids=ids).logits
        b = AutoModelForMaskedLM.from_pretrained(out).eval()(input_ids=ids).logits
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_grow_depth_and_defaults(src, tmp_path, capsys):
    assert main(ns(src, tmp_path / "deep", "depth=4 width=48")) == EXIT_OK
    text = capsys.readouterr().out
    assert "depth by stack (default): none" in text
    assert "width by interpolate (default): approximate" in text  # 32 -> 48 is uneven


@pytest.mark.parametrize("to,by,code,msg", [
    ("depth=1", "", EXIT_PROBLEM, "shrinks"),
    ("depth=4", "depth by teleport", EXIT_PROBLEM, "unknown operator"),
    ("width=44", "", EXIT_PROBLEM, "head_dim"),
    ("depth 4", "", EXIT_USAGE, "KEY=VALUE"),
    ("depth=4", "depth stack", EXIT_USAGE, "DIM by OP"),
    ("colour=4", "", EXIT_USAGE, "unknown size"),
])
def test_bad_requests(src, tmp_path, capsys, to, by, code, msg):
    out = tmp_path / "never"
    assert main(ns(src, out, to, by)) == code
    assert msg in capsys.readouterr().err
    assert not out.exists()


def test_bad_folders(src, tmp_path, capsys):
    assert main(ns(tmp_path / "nope", tmp_path / "o", "depth=4")) == EXIT_PROBLEM
    assert "no such folder" in capsys.readouterr().err
    (tmp_path / "taken").mkdir()
    assert main(ns(src, tmp_path / "taken", "depth=4")) == EXIT_PROBLEM
    assert "already exists" in capsys.readouterr().err
    (tmp_path / "t5").mkdir()
    (tmp_path / "t5" / "config.json").write_text('{"model_type": "t5"}')
    assert main(ns(tmp_path / "t5", tmp_path / "o", "depth=4")) == EXIT_PROBLEM
    assert "BERT" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_grow_from_growlang_checkpoint(tmp_path, capsys):
    from growlang.runtime import checkpoint
    from growlang.runtime.model import Encoder, EncoderConfig

    cfg = EncoderConfig("bert-preln", 50, 16, 2, 2, 32, 32)
    m = Encoder(cfg)
    import dataclasses

    ck = checkpoint.save(tmp_path / "ck", "s1-10", m.state_dict(), {}, {"config": dataclasses.asdict(cfg)})
    assert main(ns(ck, tmp_path / "out", "depth=3", "depth by zero")) == EXIT_OK
    assert "preservation: exact; as expected" in capsys.readouterr().out
    assert json.loads((tmp_path / "out" / "config.json").read_text())["model_type"] == "roberta-prelayernorm"
