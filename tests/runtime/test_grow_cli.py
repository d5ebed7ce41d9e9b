"""`growlang grow` through grow_cli.main, on folders written by transformers itself."""

import argparse
import json

import pytest
import torch
from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM

from growlang.runtime.grow_cli import EXIT_OK, EXIT_PROBLEM, main


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    folder = tmp_path_factory.mktemp("src") / "tiny-bert"
    torch.manual_seed(0)
    BertForMaskedLM(BertConfig(vocab_size=90, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                               intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(f"tok{i}" for i in range(90)))
    return folder


# Decoder folders (GPT-2, Llama), also written by transformers itself.
def decoder_folder(root, make, with_tokenizer=False):
    torch.manual_seed(0)
    hf = make().eval()
    with torch.no_grad():  # norms and biases away from their ones/zeros init
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(root)
    if with_tokenizer:
        from test_hf_decoder import tiny_bpe

        tiny_bpe().save_pretrained(root)
    return root


@pytest.fixture(scope="module")
def llama_src(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=48, num_hidden_layers=2, num_attention_heads=4,
                      num_key_value_heads=2, max_position_embeddings=64, bos_token_id=0, eos_token_id=0, pad_token_id=0)
    return decoder_folder(tmp_path_factory.mktemp("src") / "tiny-llama", lambda: LlamaForCausalLM(cfg), True)


@pytest.fixture(scope="module")
def gpt2_src(tmp_path_factory):
    from transformers import GPT2Config, GPT2LMHeadModel

    cfg = GPT2Config(vocab_size=90, n_embd=32, n_layer=2, n_head=4, n_positions=64, bos_token_id=None,
                     eos_token_id=None)
    return decoder_folder(tmp_path_factory.mktemp("src") / "tiny-gpt2", lambda: GPT2LMHeadModel(cfg))


def ns(src, out, to, by="", seed=None):
    return argparse.Namespace(src=str(src), out=str(out), to=to, by=by, seed=seed)


def test_parsers():
    """The request goes through the front end's parser (growlang.growth_request)."""
    from growlang.growth_request import parse_growth_request
    from growlang.plan import ModelSpec, OpUse, Shape

    old, model = Shape(2, 32, 4, 64, 64), ModelSpec("bert", 90, 8, 64)
    sizes, _ = parse_growth_request("depth=12 ffn=4x width=768", "", old, model)
    assert {k: sizes[k] for k in ("depth", "width", "ffn")} == {"depth": 12, "width": 768, "ffn": 3072}
    _, ops = parse_growth_request("depth=4", "depth by zero(where=top), width by interpolate(noise=0.01)")
    assert ops == (OpUse("depth", "zero", (("where", "top"),)), OpUse("width", "interpolate", (("noise", 0.01),)))


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


# Every problem in a request exits 1 and prints as `check` prints a schedule's (code, place, hint).
@pytest.mark.parametrize("source,to,by,msg", [
    ("src", "depth=1", "", "error[E401]: `depth` shrinks from 2 to 1"),
    ("src", "depth=4", "depth by teleport", "error[E104]: unknown operator `teleport` for `depth`"),
    ("src", "width=44", "", "error[E203]: `width` 44 is not divisible by head_dim 8"),
    ("src", "depth 4", "", "error[E0"),
    ("src", "depth=4", "depth stack", "error[E0"),
    ("src", "colour=4", "", "unknown key `colour`"),
    ("src", "depth=4", "width by interpolate(nosie=0.1)", "error[E106]: unknown argument `nosie`"),
    ("src", "depth=4", "depth by zero(where=middle)", "error[E106]: `where` of `zero` must be one of even, top"),
    ("src", "depth=4", "depth by zero(wher=top)", "error[E106]: unknown argument `wher`"),
    ("src", "width=64", "width by interpolate(noise=-1)", "error[E106]: `noise` of `interpolate` must be at least 0"),
    ("src", "len=1k", "", "error[E101]: `len` is not something `grow` changes"),
    # decoders: shrinking, pooling a causal LM, a kv group the new heads do not divide
    ("llama_src", "depth=1", "", "error[E401]: `depth` shrinks from 2 to 1"),
    ("llama_src", "width=16", "", "error[E401]: `width` shrinks from 32 to 16"),
    ("llama_src", "depth=3", "len by pool", "error[E110]: `len by pool` does not apply to llama"),
    ("llama_src", "width=40", "", "error[E211]: stage `grown` has 5 heads, not a multiple of the group size 2"),
])
def test_bad_requests(request, tmp_path, capsys, source, to, by, msg):
    """Exit 1 with `msg` rendered as `check` renders it, and nothing written."""
    assert main(ns(request.getfixturevalue(source), tmp_path / "never", to, by)) == EXIT_PROBLEM
    err = capsys.readouterr().err
    assert msg in err and " --> growlang grow --to/--by:" in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == []


def test_typo_hint_and_no_model_loaded(tmp_path, capsys):
    """An operator-argument typo is found before SRC is even read, with a did-you-mean hint."""
    assert main(ns(tmp_path / "nope", tmp_path / "o", "depth=4", "width by interpolate(nosie=0.1)")) == EXIT_PROBLEM
    err = capsys.readouterr().err
    assert "E106" in err and "noise" in err.split("unknown argument")[1] and "no such folder" not in err


def test_numbers_parse_as_in_grow_files():
    from growlang.growth_request import parse_growth_request

    sizes, _ = parse_growth_request("depth=1B width=2k", "")
    assert sizes == {"depth": 1_000_000_000, "width": 2000}


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


def causal_logits(folder, ids):
    from transformers import AutoModelForCausalLM

    with torch.no_grad():
        return AutoModelForCausalLM.from_pretrained(folder).eval()(input_ids=ids).logits


def test_grow_llama_depth_by_zero(llama_src, tmp_path, capsys):
    """LLaMA-Pro style block expansion in one command: zero blocks interleaved, logits unchanged."""
    out = tmp_path / "pro"
    assert main(ns(llama_src, out, "depth=4", "depth by zero")) == EXIT_OK
    text = capsys.readouterr().out
    assert "depth=2 width=32 heads=4 kv_heads=2 ffn=48" in text and "depth=4 width=32 heads=4 kv_heads=2" in text
    assert "depth by zero: exact" in text and "logits moved: max abs 0," in text
    assert "preservation: exact; as expected" in text
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["model_type"], cfg["num_hidden_layers"], cfg["num_key_value_heads"]) == ("llama", 4, 2)
    assert (cfg["tie_word_embeddings"], cfg["eos_token_id"], cfg["pad_token_id"]) == (False, 0, 0)
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file()
    ids = torch.randint(0, 300, (2, 40))
    torch.testing.assert_close(causal_logits(out, ids), causal_logits(llama_src, ids), atol=1e-5, rtol=0)


def test_grow_gpt2_width_interpolate(gpt2_src, tmp_path, capsys):
    out = tmp_path / "wide"
    assert main(ns(gpt2_src, out, "width=64", "width by interpolate")) == EXIT_OK
    text = capsys.readouterr().out
    assert "width by interpolate: exact" in text and "preservation: exact; as expected" in text
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["model_type"], cfg["n_embd"], cfg["n_head"], cfg["n_inner"]) == ("gpt2", 64, 8, 128)
    ids = torch.randint(0, 90, (2, 40))
    torch.testing.assert_close(causal_logits(out, ids), causal_logits(gpt2_src, ids), atol=1e-4, rtol=0)


def test_grow_decoder_checkpoint(tmp_path, capsys):
    import dataclasses

    from growlang.runtime import checkpoint
    from growlang.runtime.decoder import Decoder, DecoderConfig

    cfg = DecoderConfig("llama", 60, 16, 2, 4, 32, 32, kv_heads=2, tie=True)
    ck = checkpoint.save(tmp_path / "ck", "s1-10", Decoder(cfg).state_dict(), {}, {"config": dataclasses.asdict(cfg)})
    assert main(ns(ck, tmp_path / "out", "width=32 ffn=64", "width by stack, ffn by stack")) == EXIT_OK
    assert "preservation: exact; as expected" in capsys.readouterr().out
    cfg = json.loads((tmp_path / "out" / "config.json").read_text())
    assert (cfg["hidden_size"], cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (32, 8, 4)


def test_grow_from_a_run_checkpoint_carries_the_run_tokenizer(tmp_path, corpus, capsys):
    """Issue 12 item 14: a model grown from a growlang checkpoint gets the run's tokenizer (from its
    plan.json and the cache), not a 5-token one AutoTokenizer would build."""
    from transformers import AutoTokenizer

    from growlang.plan import Shape
    from growlang.runtime import checkpoint as ck
    from growlang.runtime.run import run_plan

    try:
        from test_trainer_plans import make_plan, on_corpus
    except ImportError:
        from tests.runtime.test_trainer_plans import make_plan, on_corpus

    run = tmp_path / "run"
    plan = on_corpus(make_plan([("s", None, Shape(depth=1, width=32, heads=2, ffn=64, len=16), 2)]), corpus)
    assert run_plan(plan, run, resume=False, device="cpu") == 0
    src = ck.find_stage_end(run / "checkpoints", "s").path
    assert main(ns(src, tmp_path / "grown", "depth=2", "depth by stack")) == EXIT_OK
    grown, trained = AutoTokenizer.from_pretrained(tmp_path / "grown"), AutoTokenizer.from_pretrained(run / "final")
    assert len(grown) == plan.model.vocab and grown.get_vocab() == trained.get_vocab()
    capsys.readouterr()
