"""Model folders: Hugging Face I/O, load_pretrained dispatch, convert and its errors.

The Hugging Face folders here are written by lmforge's own exporter (fast, no
``transformers`` needed); ``tests/test_hf_gpt.py`` checks them against ``transformers``.
"""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from lmforge.convert import convert
from lmforge.errors import CheckpointError, ConfigError, LmforgeError
from lmforge.hf import converter_for_model_type
from lmforge.hf.gpt import export_gpt
from lmforge.hf.io import dedupe_shared, is_hf_folder, read_hf_state, write_hf_folder
from lmforge.hub import hf_tokenizer, load_pretrained, load_tokenizer, resolve_model_dir
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.tokenize import train_tokenizer


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer("bpe", texts=["你好，世界！Hello world."] * 10, vocab_size=280,
                           show_progress=False)


def _model(style="gpt2", vocab=280):
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=vocab, style=style, n_layer=2, n_head=4, d_model=32,
                         max_seq_len=16)).eval()


def _hf_folder(path, style="gpt2", tok=None):
    model = _model(style)
    cfg, state = export_gpt(model)
    write_hf_folder(path, cfg, state, tok)
    return model


IDS = torch.tensor([[1, 5, 9, 200, 3]])


def test_write_hf_folder_layout_and_tied_weights(tmp_path, tok):
    model = _hf_folder(tmp_path / "hf", "gpt2", tok)
    names = sorted(p.name for p in (tmp_path / "hf").iterdir())
    assert names == ["config.json", "model.safetensors", "tokenizer.json",
                     "tokenizer_config.json"]
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert cfg["model_type"] == "gpt2" and cfg["architectures"] == ["GPT2LMHeadModel"]
    assert "arch" not in cfg and is_hf_folder(tmp_path / "hf")
    state = load_file(str(tmp_path / "hf" / "model.safetensors"))
    assert "lm_head.weight" not in state  # tied: transformers re-ties it
    torch.testing.assert_close(state["transformer.h.0.attn.c_attn.weight"],
                               model.blocks[0].attn.qkv.weight.t())
    # shared storage: the tied duplicate is dropped, other aliases cloned
    w = torch.randn(4, 3)
    out = dedupe_shared({"a": w, "lm_head.weight": w, "c": w[:2]}, drop=("lm_head.weight",))
    assert set(out) == {"a", "c"} and out["c"].data_ptr() != w.data_ptr()


def test_read_hf_state_all_layouts(tmp_path):
    state = {"x": torch.randn(2, 3), "y": torch.arange(4.0)}
    single = tmp_path / "st"
    single.mkdir()
    save_file(state, str(single / "model.safetensors"))
    assert set(read_hf_state(single)) == {"x", "y"}
    sharded = tmp_path / "sharded"
    sharded.mkdir()
    save_file({"x": state["x"]}, str(sharded / "model-00001-of-00002.safetensors"))
    save_file({"y": state["y"]}, str(sharded / "model-00002-of-00002.safetensors"))
    (sharded / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {
        "x": "model-00001-of-00002.safetensors", "y": "model-00002-of-00002.safetensors"}}))
    torch.testing.assert_close(read_hf_state(sharded)["y"], state["y"])
    pt = tmp_path / "pt"
    pt.mkdir()
    torch.save(state, pt / "pytorch_model.bin")
    torch.testing.assert_close(read_hf_state(pt)["x"], state["x"])
    pt_sharded = tmp_path / "pt_sharded"
    pt_sharded.mkdir()
    torch.save({"x": state["x"]}, pt_sharded / "a.bin")
    torch.save({"y": state["y"]}, pt_sharded / "b.bin")
    (pt_sharded / "pytorch_model.bin.index.json").write_text(
        json.dumps({"weight_map": {"x": "a.bin", "y": "b.bin"}}))
    assert set(read_hf_state(pt_sharded)) == {"x", "y"}
    (pt_sharded / "b.bin").unlink()
    with pytest.raises(CheckpointError, match="lists shard b.bin, which is missing"):
        read_hf_state(pt_sharded)


@pytest.mark.parametrize("name", ["model.safetensors", "pytorch_model.bin"])
def test_truncated_weights_name_the_file(tmp_path, name):
    state = {"x": torch.randn(64, 64)}
    if name.endswith(".bin"):
        torch.save(state, tmp_path / name)
    else:
        save_file(state, str(tmp_path / name))
    data = (tmp_path / name).read_bytes()
    (tmp_path / name).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=f"{name} is corrupt or truncated"):
        read_hf_state(tmp_path)


def test_load_pretrained_dispatches_on_folder_kind(tmp_path, tok):
    # Hugging Face folder
    ref = _hf_folder(tmp_path / "hf", "llama", tok)
    model, t = load_pretrained(tmp_path / "hf")
    assert isinstance(model, GPT) and t is not None and not model.training
    with torch.no_grad():
        torch.testing.assert_close(model(IDS), ref(IDS), atol=1e-6, rtol=0)
    # lmforge folder (as converted) and a run folder whose best checkpoint is a model folder
    convert(tmp_path / "hf", tmp_path / "ours", to="lmforge")
    assert not is_hf_folder(tmp_path / "ours")
    meta = json.loads((tmp_path / "ours" / "lmforge.json").read_text())
    assert meta["converted_from"]["model_type"] == "llama"
    ckpt = tmp_path / "run" / "checkpoints" / "step_0000010"
    ckpt.parent.mkdir(parents=True)
    (tmp_path / "ours").rename(ckpt)
    assert resolve_model_dir(tmp_path / "run") == ckpt
    model, t = load_pretrained(tmp_path / "run")
    assert t is not None and load_tokenizer(tmp_path / "run").encode("hi") == tok.encode("hi")
    with torch.no_grad():
        torch.testing.assert_close(model(IDS), ref(IDS), atol=1e-6, rtol=0)
    # no tokenizer files -> None
    _hf_folder(tmp_path / "bare", "gpt2")
    assert load_pretrained(tmp_path / "bare")[1] is None


def test_model_id_from_local_hf_cache(tmp_path, monkeypatch, tok):
    snap = tmp_path / "cache" / "models--someorg--tiny" / "snapshots" / "abc123"
    _hf_folder(snap, "gpt2", tok)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc123")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    assert resolve_model_dir("someorg/tiny") == snap
    assert isinstance(load_pretrained("someorg/tiny")[0], GPT)
    with pytest.raises(CheckpointError, match="never downloads"):
        load_pretrained("someorg/absent")


def test_gpt2_vocab_json_merges_tokenizer(tmp_path, tok):
    # Old GPT-2 folders ship vocab.json + merges.txt instead of tokenizer.json
    tok.hf.model.save(str(tmp_path))
    t = hf_tokenizer(tmp_path)
    assert t is not None and t.encode("你好 world") == tok.encode("你好 world")
    assert t.decode(t.encode("你好, world!")) == "你好, world!"


def test_convert_errors(tmp_path, tok):
    _hf_folder(tmp_path / "hf", "gpt2", tok)
    # unsupported model_type: one line listing the supported ones
    cfg = json.loads((tmp_path / "hf" / "config.json").read_text())
    bad = tmp_path / "bad_type"
    write_hf_folder(bad, {**cfg, "model_type": "mamba"}, {"x": torch.zeros(1)})
    with pytest.raises(CheckpointError) as e:
        convert(bad, tmp_path / "out", to="lmforge")
    msg = str(e.value)
    assert "unsupported Hugging Face model_type 'mamba'" in msg and "gpt2" in msg
    assert "llama" in msg and "\n" not in msg
    with pytest.raises(CheckpointError, match="supported: .*gpt2"):
        converter_for_model_type("mamba")
    # a deleted tensor
    state = load_file(str(tmp_path / "hf" / "model.safetensors"))
    missing = dict(state)
    del missing["transformer.h.1.mlp.c_fc.weight"]
    write_hf_folder(tmp_path / "missing", cfg, missing)
    with pytest.raises(CheckpointError,
                       match=r"missing tensor transformer.h.1.mlp.c_fc.weight \(expected shape \(32, 128\)\)"):
        convert(tmp_path / "missing", tmp_path / "out", to="lmforge")
    # a changed shape
    wrong = dict(state)
    wrong["transformer.h.0.attn.c_proj.weight"] = torch.zeros(32, 16)
    write_hf_folder(tmp_path / "wrong", cfg, wrong)
    with pytest.raises(CheckpointError, match=r"transformer.h.0.attn.c_proj.weight has shape "
                                              r"\(32, 16\), expected \(32, 32\)"):
        load_pretrained(tmp_path / "wrong")
    # an extra tensor
    extra = {**state, "transformer.h.0.attn.q_norm.weight": torch.zeros(8)}
    write_hf_folder(tmp_path / "extra", cfg, extra)
    with pytest.raises(CheckpointError, match="unexpected tensor transformer.h.0.attn.q_norm"):
        load_pretrained(tmp_path / "extra")
    assert not (tmp_path / "out").exists()  # nothing written on failure
    # wrong direction, existing destination, bad target
    with pytest.raises(CheckpointError, match="already a Hugging Face folder"):
        convert(tmp_path / "hf", tmp_path / "out", to="hf")
    with pytest.raises(LmforgeError, match="exists and is not empty"):
        convert(tmp_path / "hf", tmp_path / "missing", to="lmforge")
    with pytest.raises(LmforgeError, match="is the source folder"):
        convert(tmp_path / "hf", tmp_path / "hf", to="lmforge", overwrite=True)
    with pytest.raises(ConfigError, match="must be 'hf' or 'lmforge'"):
        convert(tmp_path / "hf", tmp_path / "out", to="onnx")
    # overwrite replaces the folder atomically
    convert(tmp_path / "hf", tmp_path / "missing", to="lmforge", overwrite=True)
    assert (tmp_path / "missing" / "lmforge.json").is_file()


def test_export_fills_token_ids_from_tokenizer(tmp_path, tok):
    model = _model("llama")
    model.save_pretrained(tmp_path / "ours")
    tok.save(tmp_path / "ours")
    out = convert(tmp_path / "ours", tmp_path / "hf")  # to= inferred: hf
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["eos_token_id"] == tok.eos_id and cfg["bos_token_id"] == tok.bos_id
    with pytest.raises(CheckpointError, match="already an lmforge model"):
        convert(tmp_path / "ours", tmp_path / "x", to="lmforge")
