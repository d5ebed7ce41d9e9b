"""HF export/import of the decoder families: GPT2LMHeadModel and LlamaForCausalLM logits, generate(),
the tokenizer alongside, round trips, and folders transformers wrote itself."""

import json

import pytest
import torch
from transformers import (AutoModelForCausalLM, AutoTokenizer, GPT2Config, GPT2LMHeadModel, GPT2Model,
                          LlamaConfig, LlamaForCausalLM, LlamaModel)

from growlang.runtime.decoder import Decoder, DecoderConfig
from growlang.runtime.errors import UserError
from growlang.runtime.hf import export_hf, import_hf, read_config

EOT = "<|endoftext|>"
V, T = 300, 32

CASES = [  # (family, kv_heads, tie, with a tokenizer)
    pytest.param("gpt2", None, True, True, id="gpt2-tied"),
    pytest.param("gpt2", None, False, False, id="gpt2-untied"),
    pytest.param("llama", 2, False, True, id="llama-gqa-untied"),
    pytest.param("llama", 2, True, False, id="llama-gqa-tied"),
]


def perturbed(family, kv_heads=None, tie=True, seed=0):
    cfg = DecoderConfig(family, vocab=V, width=32, depth=2, heads=4, ffn=48, max_len=T, kv_heads=kv_heads, tie=tie,
                        rope_theta=5000.0 if family == "llama" else 10000.0)
    torch.manual_seed(seed)
    m = Decoder(cfg)
    with torch.no_grad():
        for p in m.parameters():  # norms and biases away from ones/zeros, so every mapping matters
            p.add_(torch.randn_like(p) * 0.1)
    return m.eval(), cfg


def tiny_bpe():
    """A byte-level BPE like the decoder families' builtin one: <|endoftext|> (id 0) is bos, eos and
    pad, then the 256 byte symbols, padded with unused entries to V."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = {EOT: 0}
    words.update((ch, i + 1) for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet())))
    words.update((f"<|unused{i}|>", len(words) + i) for i in range(V - len(words)))
    tok = Tokenizer(models.BPE(vocab=words, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOT, eos_token=EOT, pad_token=EOT, unk_token=EOT)


def greedy(model, ids, n, eos=None):
    """n greedy tokens from the runtime model, stopping after eos as generate() does."""
    with torch.no_grad():
        for _ in range(n):
            nxt = model(ids)[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
            if eos is not None and nxt.item() == eos:
                break
    return ids


def batch(seed=0, B=3):
    ids = torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))
    ids[0, :4] = torch.tensor([0, 0, 1, 0])  # the special token id, repeated
    return ids


@pytest.mark.parametrize("family,kv_heads,tie,with_tok", CASES)
def test_export_parity_generate_round_trip(tmp_path, family, kv_heads, tie, with_tok):
    m, cfg = perturbed(family, kv_heads, tie)
    tok = tiny_bpe() if with_tok else None
    out = export_hf(m, cfg, tmp_path / "hf", tokenizer=tok)
    assert [p.name for p in tmp_path.iterdir()] == ["hf"]  # no temp folder left behind
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    assert type(hf).__name__ == {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}[family]
    c = json.loads((out / "config.json").read_text())
    assert c["tie_word_embeddings"] is tie
    assert [c.get(k) for k in ("bos_token_id", "eos_token_id", "pad_token_id")] == [0 if with_tok else None] * 3
    if family == "llama":
        assert (c["num_key_value_heads"], c["head_dim"], c["rope_parameters"]["rope_theta"]) == (2, 8, 5000.0)

    ids = batch()
    with torch.no_grad():
        want, got = m(ids), hf(input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)

    prompt = ids[1:2, :6]
    eos = 0 if with_tok else None
    expect = greedy(m, prompt, 5, eos)
    gen = hf.generate(prompt, max_new_tokens=5, do_sample=False, pad_token_id=0)
    assert torch.equal(gen[:, :expect.shape[1]], expect)

    if with_tok:
        back_tok = AutoTokenizer.from_pretrained(out)
        assert back_tok.encode("hi there") == tok.encode("hi there")
        assert back_tok.eos_token == back_tok.bos_token == back_tok.pad_token == EOT

    back, cfg2 = import_hf(out)
    assert cfg2 == cfg
    assert back.state_dict().keys() == m.state_dict().keys()
    for name, t in m.state_dict().items():
        assert torch.equal(t, back.state_dict()[name]), name


def gpt2_config(**kw):
    return GPT2Config(**{**dict(vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=T, n_inner=None,
                                bos_token_id=None, eos_token_id=None), **kw})


def llama_config(**kw):
    return LlamaConfig(**{**dict(vocab_size=V, hidden_size=32, intermediate_size=40, num_hidden_layers=2,
                                 num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=T,
                                 bos_token_id=None, eos_token_id=None), **kw})


@pytest.mark.parametrize("make", [
    pytest.param(lambda: GPT2LMHeadModel(gpt2_config()), id="gpt2"),
    pytest.param(lambda: GPT2LMHeadModel(gpt2_config(tie_word_embeddings=False,
                                                     activation_function="gelu_pytorch_tanh")), id="gpt2-untied"),
    pytest.param(lambda: LlamaForCausalLM(llama_config()), id="llama-gqa-untied"),
    pytest.param(lambda: LlamaForCausalLM(llama_config(tie_word_embeddings=True, num_key_value_heads=1,
                                                       rope_theta=500000.0)), id="llama-mqa-tied"),
])
def test_import_transformers_folder(tmp_path, make):
    torch.manual_seed(1)
    hf = make().eval()
    with torch.no_grad():  # transformers initialises norms to ones and biases to zeros
        for p in hf.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    hf.save_pretrained(tmp_path / "hf")
    ids = batch(1)
    with torch.no_grad():
        want = hf(input_ids=ids).logits
    m, cfg = import_hf(tmp_path / "hf")
    assert (cfg.width, cfg.depth, cfg.heads, cfg.max_len, cfg.tie) == (32, 2, 4, T, hf.config.tie_word_embeddings)
    with torch.no_grad():
        torch.testing.assert_close(m.eval()(ids), want, atol=1e-5, rtol=0)


def test_import_bare_body_and_half_precision(tmp_path):
    """A GPT2Model checkpoint (names without `transformer.`) with a tied head, stored in bf16."""
    torch.manual_seed(2)
    hf = GPT2LMHeadModel(gpt2_config()).eval()
    hf.transformer.to(torch.bfloat16).save_pretrained(tmp_path / "body")
    hf.float()
    ids = batch(2)
    with torch.no_grad():
        want = hf(input_ids=ids).logits
    m, _ = import_hf(tmp_path / "body")
    with torch.no_grad():
        torch.testing.assert_close(m.eval()(ids), want, atol=1e-5, rtol=0)


def test_import_untied_without_head(tmp_path):
    LlamaModel(llama_config()).save_pretrained(tmp_path / "body")
    with pytest.raises(UserError, match=r"lacks an LM head: lm_head.weight .*LlamaForCausalLM"):
        import_hf(tmp_path / "body")


@pytest.mark.parametrize("config,field", [
    (lambda: llama_config(rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 1e4}),
     "`rope_parameters.rope_type` is \"linear\""),
    (lambda: llama_config(attention_bias=True), "`attention_bias` is true"),
    (lambda: llama_config(mlp_bias=True), "`mlp_bias` is true"),
    (lambda: llama_config(hidden_act="gelu"), "`hidden_act` is \"gelu\""),
    (lambda: llama_config(head_dim=16), "`head_dim` is 16, not hidden_size/num_attention_heads = 8"),
    (lambda: llama_config(num_key_value_heads=3), "heads 4 is not a multiple of kv_heads 3"),
    (lambda: gpt2_config(activation_function="relu"), "`activation_function` is \"relu\""),
    (lambda: gpt2_config(scale_attn_by_inverse_layer_idx=True), "`scale_attn_by_inverse_layer_idx` is true"),
    (lambda: gpt2_config(add_cross_attention=True), "`add_cross_attention` is true"),
])
def test_unsupported_settings(tmp_path, config, field):
    config().save_pretrained(tmp_path / "m")
    with pytest.raises(UserError, match="config.json") as e:
        read_config(tmp_path / "m")
    assert field in str(e.value)


def test_transformers_4_rope_fields(tmp_path):
    """A config.json written by transformers 4.x: `rope_theta` and `rope_scaling` at the top level."""
    c = llama_config().to_dict()
    c.pop("rope_parameters")
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({**c, "rope_theta": 500000.0, "rope_scaling": None}))
    assert read_config(folder).rope_theta == 500000.0
    (folder / "config.json").write_text(json.dumps({**c, "rope_scaling": {"type": "linear", "factor": 4.0}}))
    with pytest.raises(UserError, match="`rope_scaling` is .*plain RoPE"):
        read_config(folder)


def test_parameters_on_meta_keeps_buffers():
    """The export builds its transformers model without memory for the weights, with the computed
    buffers (rotary inv_freq) real and equal to a normal build's."""
    from growlang.runtime.hf import parameters_on_meta

    cfg = llama_config(rope_theta=5000.0)
    with parameters_on_meta():
        empty = LlamaForCausalLM(cfg)
    assert all(p.is_meta for p in empty.parameters())
    real = dict(LlamaForCausalLM(cfg).named_buffers())
    assert real.keys() == dict(empty.named_buffers()).keys()
    for name, b in empty.named_buffers():
        assert not b.is_meta and torch.equal(b, real[name]), name
    assert not torch.nn.Linear(2, 2).weight.is_meta  # undone on leaving
