"""Weight-only int4 layers (``lmforge.compress.int4``).

References: the rounding bound of 16-level asymmetric groups (``|w - w^| <= s / 2``),
``F.linear`` with the dequantised weights (exact for long inputs, within bf16 rounding
for the kernel), the same on an AVX2-capped CPU (whose kernel wants another packing),
fp32 logits, a trained model's bits per sentence, and the file size against fp32.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_quantize import assert_saved_folder_loads_as_is, tiny_models, tiny_run  # noqa: F401

from lmforge.compress.int4 import (
    GROUP_SIZES,
    Int4Linear,
    dequantize_int4_weight,
    quantize_int4,
    quantize_int4_weight,
    unpack_nibbles,
)
from lmforge.compress.quantize import quantize_embeddings_int8
from lmforge.errors import ConfigError
from lmforge.models.gpt import GPT, GPTConfig

AVX2_ENV = {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
            "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}


def awkward_weight(n: int = 40, k: int = 256) -> torch.Tensor:
    """Groups of every kind: normal, one outlier, constant, far from zero (where bf16
    rounds the zero point by more than a step would allow unchecked), all negative."""
    torch.manual_seed(0)
    w = torch.randn(n, k) * 0.02
    w[3, 10] = 1.5
    w[5, :] = 0.25
    w[7, :] = 40.0 + torch.rand(k) * 0.01
    w[9, :] = -w[9, :].abs() - 0.1
    return w


@pytest.mark.parametrize("group_size", GROUP_SIZES)
def test_round_trip_within_half_a_step_per_group(group_size):
    w = awkward_weight()
    q, s, z = quantize_int4_weight(w, group_size)
    assert q.dtype == torch.uint8 and q.shape == (40, 128)
    assert s.dtype == z.dtype == torch.bfloat16 and s.shape == (40, 256 // group_size)
    levels = unpack_nibbles(q).reshape(40, -1, group_size)
    w_hat = dequantize_int4_weight(q, s, z).reshape(40, -1, group_size)
    wg = w.reshape(40, -1, group_size)
    step = s.float()[..., None]
    assert ((wg - w_hat).abs() <= step / 2 + 1e-6 * wg.abs()).all()
    spread = wg.amax(-1) - wg.amin(-1)
    assert (s.float() >= spread / 15).all()  # 16 levels cover the group
    normal = torch.ones_like(spread, dtype=torch.bool)
    normal[[5, 7, 9]] = False
    assert (s.float()[normal] <= spread[normal] / 15 * 1.02).all()  # and no coarser
    assert (levels.amax(-1)[normal] >= 14).all() and (levels.amin(-1)[normal] <= 1).all()
    assert torch.equal(w_hat[5], wg[5])  # a constant group is exact


def check_layer_against_reference() -> None:
    """Both paths of a layer with out_features=40 (not a multiple of the kernel's 16)
    against F.linear with the dequantised weights: the fp32 path to 1e-5; the kernel
    (bf16 activations and output) within bf16's bound from the module doc."""
    torch.manual_seed(1)
    lin = torch.nn.Linear(256, 40)
    with torch.no_grad():
        lin.weight.copy_(awkward_weight())
    for group_size in GROUP_SIZES:
        layer = Int4Linear.from_linear(lin, group_size, small_batch=8)
        w_hat = layer.dequantized_weight()
        for rows in (1, 3, 8, 9, 200):
            x = torch.randn(rows, 256)
            with torch.inference_mode():
                got = layer(x)
            want = F.linear(x, w_hat, lin.bias)
            if rows > 8:
                torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
                continue
            bound = 2**-8 * (x.abs() @ w_hat.abs().T) + 2**-9 * want.abs() + 1e-5
            worst = ((got - want).abs() / bound).max().item()
            assert worst <= 1.0, f"g={group_size}, rows={rows}: {worst:.2f}x the bound"


def test_layer_matches_dequantised_reference():
    check_layer_against_reference()


def tiny_gpt(style: str = "llama", vocab: int = 96, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig(vocab_size=vocab, n_layer=2, n_head=2, d_model=64, d_ff=128,
                         max_seq_len=32, style=style)).eval()


def test_kernel_and_saved_folder_on_avx2(tmp_path):
    """A folder saved here (AVX-512 where the CPU has it) loads on an AVX2-capped CPU,
    whose kernel packs the levels differently: the layer check passes there too, and the
    logits agree with this process's within bf16 rounding."""
    if torch.backends.cpu.get_cpu_capability() not in ("AVX512", "AVX2"):
        pytest.skip("an x86-64 test: this CPU has neither AVX2 nor AVX-512")
    model = quantize_int4(tiny_gpt(), 32)
    model.save_pretrained(tmp_path / "int4")
    ids = torch.randint(0, 96, (2, 7))
    with torch.inference_mode():
        here = model(ids)
    torch.save(ids, tmp_path / "ids.pt")
    code = ("import sys, torch; sys.path.insert(0, '.')\n"
            "assert torch.backends.cpu.get_cpu_capability() == 'AVX2'\n"
            "from test_int4 import check_layer_against_reference\n"
            "from lmforge.hub import load_pretrained\n"
            "check_layer_against_reference()\n"
            f"model, _ = load_pretrained({str(tmp_path / 'int4')!r})\n"
            f"ids = torch.load({str(tmp_path / 'ids.pt')!r})\n"
            "with torch.inference_mode():\n"
            f"    torch.save(model(ids), {str(tmp_path / 'avx2.pt')!r})\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env={**os.environ, **AVX2_ENV},
                         cwd=Path(__file__).resolve().parent)
    assert out.returncode == 0, out.stderr[-2000:]
    there = torch.load(tmp_path / "avx2.pt")
    assert (there - here).norm() / here.norm() < 0.01


def test_tiny_gpt_logits_close_to_fp32():
    """Random N(0, 0.02) weights are the hard case (no structure): a group of g normal
    values spans about 4.1 sigma (g = 32), so the rounding error's RMS is
    s / sqrt(12) ~ 0.08 sigma per weight: logits stay within 15% (relative norm)."""
    for style in ("gpt2", "llama"):
        model = tiny_gpt(style)
        ids = torch.randint(0, 96, (2, 20))
        with torch.inference_mode():
            ref = model(ids)
            quantize_int4(model, 32)
            got = model(ids)
        assert isinstance(model.lm_head, Int4Linear)
        assert (got - ref).norm() / ref.norm() < 0.15


@pytest.mark.parametrize("name", ["gpt", "bert-seq-cls", "task-tag-crf",
                                  "task-attention-pool"])
def test_int4_folder_saves_and_loads_without_requantizing(name, tmp_path, monkeypatch):
    import lmforge.compress.int4 as int4

    model, inputs, run = tiny_models()[name]
    quantize_int4(model, 32)
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert_saved_folder_loads_as_is(model, inputs, run, tmp_path / "int4", int4,
                                    "quantize_int4_weight", "U8", monkeypatch)


def test_bad_group_sizes_name_the_layer_and_change_nothing():
    model = tiny_gpt()
    with pytest.raises(ConfigError, match="group_size must be one of 32, 64, 128, 256, got 48"):
        quantize_int4(model, 48)
    model.blocks[0].mlp.down = torch.nn.Linear(96, 64, bias=False)
    with pytest.raises(ConfigError) as e:
        quantize_int4(model, 64)
    msg = str(e.value)
    assert "'blocks.0.mlp.down'" in msg and "in_features=96" in msg and "group_size 32" in msg
    assert "\n" not in msg
    assert not any(isinstance(m, Int4Linear) for m in model.modules())  # nothing changed
    quantize_int4(model, 64, skip=["blocks.0.mlp.down"])
    assert isinstance(model.blocks[0].mlp.down, torch.nn.Linear)
    assert isinstance(model.blocks[1].mlp.down, Int4Linear)


def test_quickstart_shaped_file_is_over_5x_smaller(tmp_path):
    """The quickstart's shape (Llama style, d=128, d_ff=256, 4 layers, vocab 2048,
    untied head): the two 2048 x 128 tables are 44% of the weights, so int4 layers alone
    cannot reach 5x; with int8 tables the file is over 5x smaller than fp32 at every
    group size (measured: 6.2x at g=128, 5.5x at g=32; int4 layers alone: 3.1x, 2.9x)."""
    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=2048, style="llama", norm="layernorm", n_layer=4, n_head=4,
                    d_model=128, d_ff=256, max_seq_len=64)
    GPT(cfg).save_pretrained(tmp_path / "fp32")
    fp32 = (tmp_path / "fp32" / "model.safetensors").stat().st_size
    for g in (32, 128):
        model = quantize_embeddings_int8(quantize_int4(GPT(cfg), g))
        model.save_pretrained(tmp_path / f"g{g}")
        ratio = fp32 / (tmp_path / f"g{g}" / "model.safetensors").stat().st_size
        assert ratio >= 5.0, (g, ratio)
    only_layers = quantize_int4(GPT(cfg), 128)
    only_layers.save_pretrained(tmp_path / "layers")
    assert fp32 / (tmp_path / "layers" / "model.safetensors").stat().st_size < 5.0


def test_trained_model_keeps_its_bits(tiny_run):  # noqa: F811
    """The issue's quality target: int4 layers (g=32) and int8 tables move a trained
    model's mean bits per sentence by under 3% (measured: 0.03-0.4%), through the kernel
    (one text at a time: under 64 rows) and the fp32 path (all 12 texts at once)."""
    from lmforge.eval.lm import score_texts
    from lmforge.hub import load_pretrained

    texts = ["the cat sat on the mat", "我们今天去公园", "a dog ran in the park"] * 4
    model, tok = load_pretrained(tiny_run)
    base = sum(score_texts(model, tok, texts))
    quantize_embeddings_int8(quantize_int4(model, 32))
    for batch_size in (1, 12):
        bits = sum(score_texts(model, tok, texts, batch_size=batch_size))
        assert abs(bits - base) / base < 0.03
