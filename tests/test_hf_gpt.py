"""GPT-2 and Llama checkpoints: parity with ``transformers`` in both directions.

Every model here has random weights and is built from a config (nothing is downloaded):
a Hugging Face model saved with ``save_pretrained`` must give the same logits when
loaded by lmforge, and an lmforge GPT exported with ``convert`` the same logits when
loaded by ``transformers``.
"""

import pytest
import torch

transformers = pytest.importorskip("transformers")

from lmforge.convert import convert  # noqa: E402
from lmforge.errors import CheckpointError  # noqa: E402
from lmforge.generate import GenerationConfig, generate_ids  # noqa: E402
from lmforge.hf.gpt import export_gpt, gpt_config_from_hf  # noqa: E402
from lmforge.hub import load_pretrained  # noqa: E402
from lmforge.models.gpt import GPT, GPTConfig  # noqa: E402
from lmforge.tokenize import train_tokenizer  # noqa: E402

TEXTS = ["你好，世界！Hello world. 语言模型 language models.",
         "The quick brown fox 跳过 the lazy dog 懒狗."] * 10
ATOL = 1e-4


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer("bpe", texts=TEXTS, vocab_size=300, show_progress=False)


def _hf_gpt2(vocab: int, **kw):
    # initializer_range 0.2 (not 0.02): logits that differ clearly between positions and
    # tokens, so that a wrong position or a swapped weight cannot hide under the tolerance
    kw = {"initializer_range": 0.2, **kw}
    cfg = transformers.GPT2Config(vocab_size=vocab, n_positions=32, n_embd=32, n_layer=2,
                                  n_head=4, bos_token_id=None, eos_token_id=None, **kw)
    torch.manual_seed(0)
    return transformers.GPT2LMHeadModel(cfg).eval()


def _hf_llama(vocab: int, **kw):
    cfg = dict(vocab_size=vocab, hidden_size=32, intermediate_size=48, num_hidden_layers=2,
               num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32,
               rope_theta=500.0, rms_norm_eps=1e-5, bos_token_id=None, eos_token_id=None,
               initializer_range=0.2)
    cfg.update(kw)
    torch.manual_seed(0)
    return transformers.LlamaForCausalLM(transformers.LlamaConfig(**cfg)).eval()


def _ids(tok, texts=("你好，世界！Hello", "quick brown fox")):
    rows = [tok.encode(t) for t in texts]
    n = min(len(r) for r in rows)
    return torch.tensor([r[:n] for r in rows])


def _save(hf_model, tok, path):
    hf_model.save_pretrained(path)
    tok.save(path)
    return path


def test_gpt2_from_hf_logits_match(tmp_path, tok):
    hf = _hf_gpt2(tok.vocab_size)
    model, tokenizer = load_pretrained(_save(hf, tok, tmp_path / "gpt2"))
    assert isinstance(model, GPT) and model.config.style == "gpt2" and not model.training
    assert model.lm_head.weight is model.wte.weight
    assert tokenizer is not None and tokenizer.encode("你好 world") == tok.encode("你好 world")
    ids = _ids(tok)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits, atol=ATOL, rtol=0)


def test_gpt2_left_padded_batch_matches(tmp_path, tok):
    hf = _hf_gpt2(tok.vocab_size)
    model, _ = load_pretrained(_save(hf, tok, tmp_path / "gpt2"))
    a, b = tok.encode("你好，世界！Hello world"), tok.encode("fox")
    T = len(a)
    ids = torch.tensor([a, [0] * (T - len(b)) + b])
    mask = torch.tensor([[1] * T, [0] * (T - len(b)) + [1] * len(b)])
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ours = model(ids, attention_mask=mask)
        theirs = hf(ids, attention_mask=mask, position_ids=position_ids).logits
    real = mask.bool()
    torch.testing.assert_close(ours[real], theirs[real], atol=ATOL, rtol=0)
    # and the padded row equals the prompt alone
    with torch.no_grad():
        alone = model(torch.tensor([b]))
    torch.testing.assert_close(ours[1, -len(b):], alone[0], atol=ATOL, rtol=0)


@pytest.mark.parametrize("tied", [False, True])
def test_llama_gqa_from_hf_logits_match(tmp_path, tok, tied):
    hf = _hf_llama(tok.vocab_size, tie_word_embeddings=tied)
    model, _ = load_pretrained(_save(hf, tok, tmp_path / "llama"))
    c = model.config
    assert (c.style, c.n_head, c.n_kv_head, c.rope_theta, c.d_ff) == ("llama", 4, 2, 500.0, 48)
    assert (model.lm_head.weight is model.wte.weight) == tied
    ids = _ids(tok)
    with torch.no_grad():
        torch.testing.assert_close(model(ids), hf(ids).logits, atol=ATOL, rtol=0)


def _lmforge_gpt(style: str, vocab: int, **kw) -> GPT:
    torch.manual_seed(1)
    extra = {"n_kv_head": 2, "rope_theta": 2000.0} if style == "llama" else {}
    model = GPT(GPTConfig(vocab_size=vocab, style=style, n_layer=2, n_head=4, d_model=32,
                          max_seq_len=32, init_std=0.2, **{**extra, **kw})).eval()
    with torch.no_grad():  # non-trivial norms and biases, so that a swapped name shows
        for name, p in model.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * 0.1)
    return model


@pytest.mark.parametrize("style,kw", [
    ("gpt2", {}), ("llama", {}),
    ("gpt2", {"tie_embeddings": False}), ("llama", {"tie_embeddings": True, "bias": True})],
    ids=["gpt2", "llama", "gpt2-untied", "llama-tied-bias"])
def test_export_to_transformers_logits_match(tmp_path, tok, style, kw):
    model = _lmforge_gpt(style, tok.vocab_size, **kw)
    model.save_pretrained(tmp_path / "ours")
    tok.save(tmp_path / "ours")
    out = convert(tmp_path / "ours", tmp_path / "hf", to="hf")
    hf = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    arch = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}[style]
    assert type(hf).__name__ == arch
    ids = _ids(tok)
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), atol=ATOL, rtol=0)
    # the tokenizer travels with it and transformers reads it
    hf_tok = transformers.AutoTokenizer.from_pretrained(out)
    assert hf_tok("你好 world", add_special_tokens=False)["input_ids"] == tok.encode("你好 world")
    # and back: HF folder -> lmforge folder -> same model
    back = convert(out, tmp_path / "back")  # to= inferred: lmforge
    again, _ = load_pretrained(back)
    with torch.no_grad():
        torch.testing.assert_close(again(ids), model(ids), atol=1e-6, rtol=0)


def test_greedy_generation_matches_transformers(tmp_path, tok):
    hf = _hf_gpt2(tok.vocab_size, initializer_range=0.3)  # large weights: varied tokens
    model, _ = load_pretrained(_save(hf, tok, tmp_path / "gpt2"))
    prompt = tok.encode("你好，世界！")
    ours = generate_ids(model, [prompt], GenerationConfig(max_new_tokens=12, temperature=0),
                        eos_id=None)
    with torch.no_grad():
        theirs = hf.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=12,
                             min_new_tokens=12, pad_token_id=0)
    assert ours[0] == theirs[0, len(prompt):].tolist()
    assert len(set(ours[0])) > 3  # not one token repeated


def test_unsupported_configs_are_refused():
    base = dict(model_type="gpt2", vocab_size=10, n_positions=8, n_embd=8, n_layer=1, n_head=2)
    assert gpt_config_from_hf(base).d_ff == 32
    with pytest.raises(CheckpointError, match="activation_function='relu'"):
        gpt_config_from_hf({**base, "activation_function": "relu"})
    with pytest.raises(CheckpointError, match="scale_attn_by_inverse_layer_idx"):
        gpt_config_from_hf({**base, "scale_attn_by_inverse_layer_idx": True})
    with pytest.raises(CheckpointError, match="missing field 'n_embd'"):
        gpt_config_from_hf({k: v for k, v in base.items() if k != "n_embd"})
    llama = dict(model_type="llama", vocab_size=10, hidden_size=8, intermediate_size=16,
                 num_hidden_layers=1, num_attention_heads=2)
    assert gpt_config_from_hf({**llama, "rope_scaling": {"rope_type": "default"}}).style == "llama"
    assert gpt_config_from_hf({**llama, "rope_parameters": {"rope_type": "default",
                                                            "rope_theta": 7.0}}).rope_theta == 7.0
    with pytest.raises(CheckpointError, match="rope_scaling of type 'llama3'"):
        gpt_config_from_hf({**llama, "rope_scaling": {"rope_type": "llama3", "factor": 8.0}})
    with pytest.raises(CheckpointError, match="hidden_act='gelu'"):
        gpt_config_from_hf({**llama, "hidden_act": "gelu"})
    with pytest.raises(CheckpointError, match="head_dim=8"):
        gpt_config_from_hf({**llama, "head_dim": 8})
    with pytest.raises(CheckpointError, match="mlp_bias=False"):
        gpt_config_from_hf({**llama, "attention_bias": True})


def test_mixed_styles_cannot_export():
    # GPT-2 with RoPE matches neither gpt2 nor llama: the error names the field
    model = GPT(GPTConfig(vocab_size=20, style="gpt2", pos="rope", n_layer=1, n_head=2,
                          d_model=8, max_seq_len=8))
    with pytest.raises(CheckpointError, match=r"gpt2: pos='rope' \(gpt2 needs 'learned'\)"):
        export_gpt(model)
    gqa = GPT(GPTConfig(vocab_size=20, style="gpt2", n_kv_head=1, n_layer=1, n_head=2,
                        d_model=8, max_seq_len=8))
    with pytest.raises(CheckpointError, match="n_kv_head=1"):
        export_gpt(gqa)
    # a "gpt2"-style config with every Llama choice exports as llama
    llama_like = GPT(GPTConfig(vocab_size=20, style="gpt2", pos="rope", norm="rmsnorm",
                               mlp="swiglu", bias=False, n_layer=1, n_head=2, d_model=8,
                               max_seq_len=8))
    assert export_gpt(llama_like)[0]["model_type"] == "llama"
