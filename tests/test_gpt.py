"""The GPT model: both styles, initialisation, and checked save/load."""

import math

import pytest
import torch

from lmforge.errors import CheckpointError
from lmforge.models.base import load_model_folder
from lmforge.models.gpt import GPT, GPTConfig


def tiny(style="gpt2", **kw):
    cfg = dict(vocab_size=50, style=style, n_layer=2, n_head=4, d_model=32, max_seq_len=32)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg))


def test_gpt2_style_structure():
    m = tiny()
    assert m.lm_head.weight is m.wte.weight  # tied
    assert m.wpe is not None and isinstance(m.blocks[0].norm1, torch.nn.LayerNorm)
    assert m.blocks[0].attn.qkv.bias is not None
    # parameter count: embeddings + positions + 2 blocks + final norm (lm_head tied)
    d, V, T, L = 32, 50, 32, 2
    block = (d * 3 * d + 3 * d) + (d * d + d) + (d * 4 * d + 4 * d) + (4 * d * d + d) + 4 * d
    assert m.num_parameters() == V * d + T * d + L * block + 2 * d


def test_llama_style_structure_and_gqa():
    m = tiny("llama", n_kv_head=2)
    assert m.wpe is None and m.lm_head.weight is not m.wte.weight
    assert isinstance(m.blocks[0].norm1, torch.nn.RMSNorm)
    attn = m.blocks[0].attn
    assert attn.qkv.bias is None
    assert attn.qkv.out_features == (4 + 2 * 2) * 8  # q heads + k,v heads of size 8
    logits = m(torch.randint(0, 50, (2, 10)))
    assert logits.shape == (2, 10, 50)


def test_scaled_residual_init():
    torch.manual_seed(0)
    m = tiny(n_layer=8, d_model=128, n_head=4, vocab_size=200, max_seq_len=64)
    std_proj = m.blocks[0].attn.proj.weight.std().item()
    std_down = m.blocks[0].mlp.down.weight.std().item()
    std_qkv = m.blocks[0].attn.qkv.weight.std().item()
    target = 0.02 / math.sqrt(2 * 8)
    assert abs(std_proj - target) / target < 0.1
    assert abs(std_down - target) / target < 0.1
    assert abs(std_qkv - 0.02) / 0.02 < 0.05


def test_causality():
    m = tiny().eval()
    x = torch.randint(0, 50, (1, 12))
    y = x.clone()
    y[0, 8:] = (y[0, 8:] + 1) % 50
    a, b = m(x), m(y)
    assert torch.allclose(a[0, :8], b[0, :8], atol=1e-6)
    assert not torch.allclose(a[0, 8], b[0, 8])


def test_rope_is_relative():
    """With RoPE, shifting the absolute positions leaves q.k unchanged."""
    from lmforge.models.gpt import apply_rope, rope_tables

    cos, sin = rope_tables(16, 64, 10000.0)
    q, k = torch.randn(16), torch.randn(16)

    def dot(m, n):
        qm = apply_rope(q.view(1, 1, 1, 16), cos[m].view(1, 1, 1, 16), sin[m].view(1, 1, 1, 16))
        kn = apply_rope(k.view(1, 1, 1, 16), cos[n].view(1, 1, 1, 16), sin[n].view(1, 1, 1, 16))
        return (qm * kn).sum().item()

    assert dot(5, 2) == pytest.approx(dot(40, 37), abs=1e-4)


def test_too_long_input_is_an_error():
    m = tiny()
    with pytest.raises(ValueError, match="exceeds max_seq_len"):
        m(torch.zeros(1, 33, dtype=torch.long))


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_save_load_round_trip(tmp_path, style):
    m = tiny(style).eval()
    m.save_pretrained(tmp_path / "m")
    again = GPT.from_pretrained(tmp_path / "m")
    x = torch.randint(0, 50, (2, 9))
    assert torch.equal(m(x), again(x))
    if style == "gpt2":
        assert again.lm_head.weight is again.wte.weight


def test_corrupt_checkpoints_are_detected(tmp_path):
    m = tiny()
    m.save_pretrained(tmp_path / "m")
    w = tmp_path / "m" / "model.safetensors"
    data = w.read_bytes()
    w.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model_folder(tmp_path / "m")
    # without the checksum file, safetensors' own header check catches truncation
    (tmp_path / "m" / "lmforge.json").unlink()
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_model_folder(tmp_path / "m")


def test_mismatched_tensor_names_shape(tmp_path):
    tiny().save_pretrained(tmp_path / "m")
    cfg = (tmp_path / "m" / "config.json").read_text().replace('"d_model": 32', '"d_model": 64')
    (tmp_path / "m" / "config.json").write_text(cfg)
    with pytest.raises(CheckpointError, match=r"tensor wte.weight has shape \(50, 32\), "
                                              r"model expects \(50, 64\)"):
        load_model_folder(tmp_path / "m")


def test_missing_tensor_is_named(tmp_path):
    from safetensors.torch import load_file, save_file

    tiny().save_pretrained(tmp_path / "m")
    (tmp_path / "m" / "lmforge.json").unlink()
    w = tmp_path / "m" / "model.safetensors"
    state = load_file(str(w))
    del state["blocks.1.mlp.up.weight"]
    save_file(state, str(w))
    with pytest.raises(CheckpointError, match="missing tensor blocks.1.mlp.up.weight"):
        load_model_folder(tmp_path / "m")


def test_not_a_model_folder(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model_folder(tmp_path)
