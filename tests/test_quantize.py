"""Int8 linear layers (``lmforge.compress.quantize``) against fp32 ``nn.Linear``.

References: the rounding bound of per-channel symmetric quantisation, ``F.linear`` with
the dequantised weights (exact for the long-input path), and a trained model's
bits/sentence, which int8 must leave nearly unchanged.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from lmforge.compress.quantize import Int8Linear, quantize_int8, quantize_weight
from lmforge.errors import ConfigError


@pytest.fixture(scope="module")
def tiny_run(tiny_lm_run):
    """A small GPT trained for 60 steps on the world corpus (the session's, conftest)."""
    return tiny_lm_run


def make_linear() -> torch.nn.Linear:
    torch.manual_seed(0)
    lin = torch.nn.Linear(96, 80)
    with torch.no_grad():
        lin.weight[3] *= 50  # one channel with a large range: per-channel scales matter
    return lin


@pytest.fixture
def linear():
    return make_linear()


def test_weight_rounding_bound(linear):
    q, s = quantize_weight(linear.weight)
    assert q.dtype == torch.int8 and q.abs().max() <= 127
    err = (linear.weight - s[:, None] * q.float()).abs()
    assert (err <= s[:, None] / 2 + 1e-7).all()
    assert (q.abs().amax(1) == 127).all()  # each channel uses its full range


def test_weight_only_paths(linear):
    x = torch.randn(2, 40, 96)  # 80 rows: the dequantised fp32 path
    q, s = quantize_weight(linear.weight)
    want = F.linear(x, s[:, None] * q.float(), linear.bias)
    layer = Int8Linear(linear, "weight-only")
    torch.testing.assert_close(layer(x), want, rtol=1e-5, atol=1e-5)
    # decoding rows (<= small_batch): int8 matmul with bf16 activations
    x1 = torch.randn(3, 1, 96)
    got = layer(x1)
    ref = linear(x1)
    bound = (x1.abs() @ (s[:, None] / 2 + 0.01 * linear.weight.abs()).T)  # weights + bf16
    assert ((got - ref).abs() <= bound + 1e-3).all()
    assert (got - ref).norm() / ref.norm() < 0.02


def _dynamic_bound(linear, x, levels: int = 127):
    """The W8A8 error bound of the module doc, elementwise ``(rows, N)``: activations on
    ``levels`` steps of ``d`` (rounding and the zero point's rounding: at most ``d``
    each), weights within ``s_n / 2``, plus fp32 rounding. ``levels=127`` (7-bit, reduced
    range) is the coarsest any CPU may use, so the bound is the same everywhere."""
    q, s = quantize_weight(linear.weight)
    w_hat = s[:, None] * q.float()
    d = (max(float(x.max()), 0.0) - min(float(x.min()), 0.0)) / levels
    return (d * w_hat.abs().sum(1)[None, :] + x.abs().sum(1, keepdim=True) * s[None, :] / 2
            + 1e-5 * (x.abs() @ linear.weight.abs().T))


def check_dynamic_within_bound(linear) -> None:
    """Every output of the dynamic layer within the bound, over scales, row counts and
    an outlier feature; and a small error on average."""
    layer = Int8Linear(linear, "dynamic")
    gen = torch.Generator().manual_seed(1)
    rel = []
    with torch.no_grad():
        for draw in range(12):
            for rows in (1, 8, 300):
                x = torch.randn(rows, 96, generator=gen) * (1 + draw % 3)
                if draw % 4 == 0:
                    x[:, 7] += 6.0  # one outlier feature widens every step
                ref = linear(x)
                err = (layer(x) - ref).abs()
                worst = (err / _dynamic_bound(linear, x)).max().item()
                assert worst <= 1.0, f"rows {rows}, draw {draw}: error {worst:.2f}x the bound"
                rel.append(((layer(x) - ref).norm() / ref.norm()).item())
    assert sum(rel) / len(rel) < 0.04, sum(rel) / len(rel)


def test_dynamic_is_within_its_error_bound(linear):
    check_dynamic_within_bound(linear)


def test_dynamic_is_within_its_bound_without_vnni():
    """The path of CPUs without VNNI, run here too: fbgemm capped to AVX2 (a no-op on an
    AVX2-only CPU) must be detected as saturating and handled, within the same bound.
    Without the handling, saturated outputs are 2-3x the bound."""
    import os
    import subprocess
    import sys

    if "fbgemm" not in torch.backends.quantized.supported_engines:
        pytest.skip("fbgemm (x86 int8 kernels) is not in this torch build")
    code = ("import sys; sys.path.insert(0, '.')\n"
            "from lmforge.hardware import int8_dynamic_saturates\n"
            "from test_quantize import check_dynamic_within_bound, make_linear\n"
            "assert int8_dynamic_saturates()\n"
            "check_dynamic_within_bound(make_linear())\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, env={**os.environ, "FBGEMM_ENABLE_INSTRUCTIONS": "AVX2"},
                         cwd=Path(__file__).resolve().parent)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]
    assert "7-bit activations" in out.stderr  # said once on stderr


def test_quantize_int8_replaces_every_linear_and_keeps_a_tied_embedding():
    from lmforge.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, n_layer=2, n_head=2, d_model=32, max_seq_len=32))
    ref = copy.deepcopy(model).eval()
    quantize_int8(model)
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert isinstance(model.lm_head, Int8Linear)
    assert torch.equal(model.wte.weight, ref.wte.weight)  # embeddings stay fp32
    ids = torch.randint(0, 64, (2, 20))
    with torch.inference_mode():
        a, b = ref(ids), model(ids)
    assert (a - b).norm() / a.norm() < 0.02
    with pytest.raises(ValueError, match="int8 mode"):
        quantize_int8(model, "int4")


@pytest.mark.parametrize("mode", ["int8", "int8-dynamic"])
def test_trained_model_keeps_its_quality(mode, tiny_run):
    """A trained model's mean NLL (bits) moves by under 1% when quantised."""
    from lmforge.eval.lm import score_texts
    from lmforge.hub import load_pretrained

    texts = ["the cat sat on the mat", "我们今天去公园", "a dog ran in the park"] * 4
    model, tok = load_pretrained(tiny_run)
    qmodel, _ = load_pretrained(tiny_run, quantize=mode)
    base, quant = score_texts(model, tok, texts), score_texts(qmodel, tok, texts)
    assert abs(sum(quant) - sum(base)) / sum(base) < 0.01


def test_bad_quantize_value(tiny_run):
    from lmforge.hub import load_pretrained

    with pytest.raises(ConfigError, match="quantize must be one of int8, int8-dynamic"):
        load_pretrained(tiny_run, quantize="int4")


# ------------------------------------------------------------------ saved int8 folders

def tiny_models() -> dict:
    """``{name: (model, inputs, run)}``: a GPT, a BERT sequence classifier, and task
    models on a BERT encoder with a CRF tagging head and with attention pooling; every
    ``in_features`` a multiple of 32 (so int4 groups of 32 fit too), heads with 2-3
    outputs. ``run(model, inputs)`` returns the outputs to compare (for the tagger, the
    emissions and the CRF's decoded tags)."""
    from lmforge.models.bert import BertConfig, BertModel
    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.tasks.model import TaskModel, TaskModelConfig

    torch.manual_seed(0)
    enc = {"vocab_size": 50, "n_layer": 2, "n_head": 2, "d_model": 32, "d_ff": 64,
           "max_position": 32, "dropout": 0.0}
    ids = torch.randint(2, 50, (3, 9))
    mask = torch.ones(3, 9, dtype=torch.long)
    mask[1, 6:] = 0
    batch = {"input_ids": ids, "attention_mask": mask}
    tag_batch = {**batch, "word_index": torch.tensor([[1, 3, 5], [1, 2, 4], [2, 3, 7]]),
                 "word_mask": torch.tensor([[1, 1, 1], [1, 1, 0], [1, 1, 1]])}
    tagger = TaskModel(TaskModelConfig("tag", ["O", "B-PER", "I-PER"], "bert", dict(enc),
                                       head="crf", dropout=0.0))
    with torch.no_grad():
        tagger.crf.transitions.normal_()  # a CRF that matters for the decoded tags

    def run_tagger(model, b):
        emissions = model(b)
        tags = model.decode_tags(emissions, b["word_mask"])  # one list per text
        return emissions, torch.tensor([t for row in tags for t in row])

    return {
        "gpt": (GPT(GPTConfig(vocab_size=50, n_layer=2, n_head=2, d_model=64,
                              max_seq_len=32)), ids, lambda m, x: m(x)),
        "bert-seq-cls": (BertModel(BertConfig(**enc, head="seq_cls", num_labels=3)), batch,
                         lambda m, b: m(b["input_ids"], b["attention_mask"])),
        "task-tag-crf": (tagger, tag_batch, run_tagger),
        "task-attention-pool": (TaskModel(TaskModelConfig(
            "classify", ["neg", "pos"], "bert", dict(enc), pooling="attention",
            dropout=0.0)), batch, lambda m, b: m(b)),
    }


def assert_saved_folder_loads_as_is(model, inputs, run, folder, quantizer_module, quantizer,
                                    stored_dtype, monkeypatch) -> None:
    """Save ``model`` (already compressed), load the folder with the quantiser replaced by
    one that fails: every output bit-identical, and the stored weights of ``stored_dtype``."""
    from safetensors import safe_open

    from lmforge.hub import load_pretrained

    with torch.inference_mode():
        before = run(model, inputs)
    model.save_pretrained(folder)
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys() if k.endswith("qweight")}
    assert dtypes == {stored_dtype}

    def no_quantising(*_a, **_k):
        raise AssertionError("loading a saved folder must not quantise again")

    monkeypatch.setattr(quantizer_module, quantizer, no_quantising)
    loaded, _ = load_pretrained(folder)
    with torch.inference_mode():
        after = run(loaded, inputs)
    for a, b in zip(before if isinstance(before, tuple) else (before,),
                    after if isinstance(after, tuple) else (after,), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["gpt", "bert-seq-cls", "task-tag-crf",
                                  "task-attention-pool"])
@pytest.mark.parametrize("mode", ["weight-only", "dynamic"])
def test_int8_folder_saves_and_loads_without_requantizing(name, mode, tmp_path, monkeypatch):
    """Every family's int8 model (every nn.Linear replaced, heads with 1-3 outputs, the
    CRF and attention pooling included) stays close to fp32, and its saved folder gives
    bit-identical outputs when loaded."""
    import lmforge.compress.quantize as quantize

    model, inputs, run = tiny_models()[name]
    with torch.inference_mode():
        ref = run(model.eval(), inputs)
    quantize_int8(model, mode)
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    with torch.inference_mode():
        got = run(model, inputs)
    ref_out, got_out = (ref[0], got[0]) if isinstance(ref, tuple) else (ref, got)
    assert (got_out - ref_out).norm() / ref_out.norm() < 0.05
    assert_saved_folder_loads_as_is(model, inputs, run, tmp_path / "int8", quantize,
                                    "quantize_weight", "I8", monkeypatch)


def test_int8_embedding_rows_and_folder(tmp_path, monkeypatch):
    """Per-row int8 tables: each entry within half a step of fp32, lookups equal rows of
    the dequantised table, ids outside the vocabulary get the model's clear error, and a
    GPT with int8 tables and layers round-trips through its folder."""
    import lmforge.compress.quantize as quantize
    from lmforge.compress.quantize import Int8Embedding, quantize_embeddings_int8
    from lmforge.errors import ModelInputError

    model, ids, run = tiny_models()["gpt"]
    table = model.wte.weight.detach().clone()
    quantize_embeddings_int8(model.eval(), skip=["wpe"])
    assert isinstance(model.wte, Int8Embedding) and isinstance(model.wpe, torch.nn.Embedding)
    q, s = quantize_weight(table)
    assert ((model.wte.weight - table).abs() <= s[:, None] / 2 + 1e-7).all()
    torch.testing.assert_close(model.wte(ids), model.wte.weight[ids], rtol=0, atol=0)
    with pytest.raises(ModelInputError, match="vocab_size=50"):
        model(torch.tensor([[3, 50]]))
    quantize_int8(model)
    assert_saved_folder_loads_as_is(model, ids, run, tmp_path / "emb", quantize,
                                    "quantize_weight", "I8", monkeypatch)
