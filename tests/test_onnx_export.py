"""ONNX export (lmforge.compress.onnx_export) and ONNX Runtime decoding (onnx_decode).

Every exported graph is checked against the eager model with the same weights, at two
batch sizes and two lengths (the axes are dynamic): within 1e-4 in fp32, decoders with
their past keys and values; int8 within a measured bound; generation token for token.
"""

from __future__ import annotations

import dataclasses
import sys

import numpy as np
import pytest
import torch
from fakes import TEXT, assert_user_error, one_line_error, run_cli

from lmforge.compress.onnx_decode import OnnxCausalLM, load_onnx_decoder
from lmforge.compress.onnx_export import export_model, export_onnx, onnx_session, read_sidecar
from lmforge.errors import ConfigError
from lmforge.generate import GenerationConfig, complete_ids
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.tasks.model import TaskModel, TaskModelConfig

TOL = 1e-4  # fp32 ONNX Runtime vs eager, on logits


def _bert_task(task: str, labels: list[str]) -> TaskModel:
    """A tiny BERT task model with weights large enough for well-separated logits."""
    torch.manual_seed(0)
    enc = dict(vocab_size=100, n_layer=2, n_head=2, d_model=32, max_position=64,
               dropout=0.0, init_std=0.2)
    model = TaskModel(TaskModelConfig(task, labels, "bert", enc, dropout=0.0))
    with torch.no_grad():
        model.classifier.weight.normal_(0.0, 0.5)
    return model.eval()


def _ids_and_mask(batch: int, length: int, vocab: int, left: bool) -> tuple:
    """Random ids (batch, length); row b has b padding positions (left or right)."""
    ids = torch.randint(1, vocab, (batch, length),
                        generator=torch.Generator().manual_seed(batch * 100 + length))
    mask = torch.ones(batch, length, dtype=torch.long)
    for b in range(1, batch):
        if left:
            mask[b, :b] = 0
        else:
            mask[b, length - b:] = 0
    return ids, mask


# ----------------------------------------------------------------------------- decoders

def _gpt_folder(folder, style: str):
    """A random 2-layer GPT (init 0.3: logits that differ clearly from token to token)
    with a char tokenizer, saved as an lmforge model folder."""
    from lmforge.tokenize import train_tokenizer

    tok = train_tokenizer("char", texts=TEXT.splitlines() * 3, vocab_size=60,
                          show_progress=False)
    torch.manual_seed(0)
    extra = dict(n_head=4, n_kv_head=2) if style == "llama" else dict(n_head=2)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, style=style, n_layer=2, d_model=16,
                          max_seq_len=32, init_std=0.3, **extra)).eval()
    model.save_pretrained(folder)
    tok.save(folder)
    return model


@pytest.fixture(scope="module", params=["gpt2", "llama"])
def decoder(request, tmp_path_factory):
    """``(eager model, folder, exported .onnx)``: GPT-2 style through the CLI, Llama
    style (RMSNorm, RoPE, grouped-query attention) through the library."""
    root = tmp_path_factory.mktemp(request.param)
    model = _gpt_folder(root / "model", request.param)
    (root / "onnx").mkdir()
    out = root / "onnx" / "model.onnx"
    if request.param == "gpt2":
        code, _, _ = run_cli(["export", "onnx", str(root / "model"), "--out", str(out)])
        assert code == 0
    else:
        export_onnx(root / "model", out)
    return model, root / "model", out


def _past_feeds(model: GPT, batch: int) -> dict:
    cfg = model.config
    empty = np.zeros((batch, cfg.n_kv_head, 0, cfg.head_dim), np.float32)
    return {f"past_{kind}.{i}": empty for i in range(cfg.n_layer) for kind in ("key", "value")}


@pytest.mark.parametrize(("batch", "length"), [(1, 3), (3, 7)])
def test_decoder_matches_eager_with_past(decoder, batch, length):
    model, _, path = decoder
    session = onnx_session(path)
    names = [o.name for o in session.get_outputs()]
    ids, mask = _ids_and_mask(batch, length, model.config.vocab_size, left=True)
    # prefill: an empty past, left-padded prompts
    out = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
                             **_past_feeds(model, batch)})
    cache = model.new_cache(batch, 16)
    with torch.no_grad():
        eager = model(ids, mask, cache=cache)
    np.testing.assert_allclose(out[0], eager.numpy(), atol=TOL, rtol=0)
    # two more steps with the presents as the past: two tokens, then one
    full_mask = mask
    for step in (2, 1):
        new = torch.randint(1, model.config.vocab_size, (batch, step),
                            generator=torch.Generator().manual_seed(step))
        full_mask = torch.cat([full_mask, torch.ones(batch, step, dtype=torch.long)], 1)
        feeds = {"input_ids": new.numpy(), "attention_mask": full_mask.numpy(),
                 **{n.replace("present_", "past_"): a
                    for n, a in zip(names[1:], out[1:], strict=True)}}
        out = session.run(None, feeds)
        with torch.no_grad():
            eager = model(new, cache=cache)
        np.testing.assert_allclose(out[0], eager.numpy(), atol=TOL, rtol=0)
        cfg = model.config
        assert out[1].shape == (batch, cfg.n_kv_head, full_mask.shape[1], cfg.head_dim)


def test_sidecar_describes_the_graph(decoder):
    model, _, path = decoder
    meta = read_sidecar(path)
    cfg = model.config
    layers = [f"{kind}.{i}" for i in range(cfg.n_layer) for kind in ("key", "value")]
    assert meta["arch"] == "gpt" and meta["config"] == dataclasses.asdict(cfg)
    assert [i["name"] for i in meta["inputs"]] == \
        ["input_ids", "attention_mask", *(f"past_{n}" for n in layers)]
    assert [o["name"] for o in meta["outputs"]] == ["logits", *(f"present_{n}" for n in layers)]
    shapes = {i["name"]: i["shape"] for i in meta["inputs"]}
    assert shapes["input_ids"] == ["batch", "seq"]
    assert shapes["attention_mask"] == ["batch", "total"]
    assert shapes["past_key.0"] == ["batch", cfg.n_kv_head, "past", cfg.head_dim]
    assert meta["tokenizer"] == "tokenizer.json" and (path.parent / "tokenizer.json").is_file()
    assert OnnxCausalLM.load(path).config == cfg  # the decode loop needs only the file


@pytest.mark.parametrize("options", [
    dict(temperature=0),
    dict(temperature=0.8, top_k=8, top_p=0.9, repetition_penalty=1.3, seed=3),
    dict(num_beams=3),
], ids=["greedy", "sampling", "beams"])
def test_generation_gives_the_eager_tokens(decoder, options):
    model, folder, path = decoder
    lm, tok = load_onnx_decoder(path)
    prompts = [tok.encode(p) for p in ("hello wor", "th", "你好")]
    cfg = GenerationConfig(max_new_tokens=12, **options)
    want = [c.token_ids for c in complete_ids(model, tok, prompts, cfg)]
    got = [c.token_ids for c in complete_ids(lm, tok, prompts, cfg)]
    assert got == want and all(want)


def test_cli_generate_onnxruntime(decoder, capsys):
    model, folder, path = decoder
    if model.config.style != "gpt2":
        pytest.skip("one style is enough for the command line")
    args = ["generate", str(folder), "--prompt", "hello", "--prompt", "th",
            "--temperature", "0", "--max-new-tokens", "10"]
    onnx = ["--backend", "onnxruntime"]
    runs = [args, [*args, *onnx, "--onnx", str(path)],
            ["generate", str(path), *args[2:], *onnx],  # the file as RUN_OR_DIR
            [*args, *onnx]]  # exported to a temporary folder first
    outputs = []
    for run in runs:
        code, out, err = run_cli(run, capsys)
        assert code == 0, err
        outputs.append(out)
    assert outputs == [outputs[0]] * len(runs) and outputs[0].startswith("hello")


# ----------------------------------------------------------------------------- encoders

@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A tiny BERT classifier and its export, with the int8 model."""
    model = _bert_task("classify", ["a", "b", "c", "d"])
    out = tmp_path_factory.mktemp("classify") / "classifier.onnx"
    return model, export_model(model, out, quantize="int8")


def _encoder_feeds(ids, mask) -> dict:
    return {"input_ids": ids.numpy(), "attention_mask": mask.numpy(),
            "token_type_ids": np.zeros_like(ids.numpy())}


@pytest.mark.parametrize(("batch", "length"), [(1, 4), (3, 9)])
def test_classifier_matches_eager(classifier, batch, length):
    model, exported = classifier
    ids, mask = _ids_and_mask(batch, length, 100, left=False)
    (logits,) = onnx_session(exported.model).run(None, _encoder_feeds(ids, mask))
    with torch.no_grad():
        eager = model({"input_ids": ids, "attention_mask": mask})
    assert logits.shape == (batch, 4)
    np.testing.assert_allclose(logits, eager.numpy(), atol=TOL, rtol=0)


def test_classifier_on_a_gpt_encoder_matches_eager(tmp_path):
    """A task model reading a GPT's last real token, left-padded rows included (the GPT
    keeps its padding mask under export, where a graph cannot branch on values)."""
    cfg = TaskModelConfig(task="classify", labels=["a", "b", "c"], encoder="gpt",
                          encoder_config={"vocab_size": 100, "n_layer": 2, "n_head": 2,
                                          "d_model": 32, "max_seq_len": 64}, pooling="last")
    torch.manual_seed(0)
    model = TaskModel(cfg).eval()
    exported = export_model(model, tmp_path / "gpt-task.onnx")
    for batch, length in ((1, 4), (3, 9)):
        ids, mask = _ids_and_mask(batch, length, 100, left=True)
        (logits,) = onnx_session(exported.model).run(
            None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
        with torch.no_grad():
            eager = model({"input_ids": ids, "attention_mask": mask})
        np.testing.assert_allclose(logits, eager.numpy(), atol=TOL, rtol=0)


def test_int8_classifier_stays_close(classifier):
    """Measured on 256 inputs: max |logit error| 0.40 for logits up to 7.1 (5.7%), the
    arg-max agreeing on 99.2%."""
    import onnx

    model, exported = classifier
    ids = torch.randint(1, 100, (256, 12), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[::3, 8:] = 0
    (int8,) = onnx_session(exported.quantized).run(None, _encoder_feeds(ids, mask))
    with torch.no_grad():
        eager = model({"input_ids": ids, "attention_mask": mask}).numpy()
    error = np.abs(int8 - eager).max()
    assert 0 < error <= 0.1 * np.abs(eager).max()
    assert (int8.argmax(1) == eager.argmax(1)).mean() >= 0.95
    ops = {n.op_type for n in onnx.load(str(exported.quantized)).graph.node}
    assert "MatMulInteger" in ops and read_sidecar(exported.quantized)["quantization"]


@pytest.mark.parametrize(("batch", "length", "words"), [(1, 5, 3), (3, 9, 6)])
def test_tagger_emissions_match_eager(batch, length, words, tagger):
    model, path = tagger
    ids, mask = _ids_and_mask(batch, length, 100, left=False)
    word_index = torch.arange(1, words + 1).expand(batch, words).contiguous()
    word_mask = torch.ones(batch, words, dtype=torch.long)
    feeds = {**_encoder_feeds(ids, mask), "word_index": word_index.numpy()}
    (emissions,) = onnx_session(path).run(None, feeds)
    batch_in = {"input_ids": ids, "attention_mask": mask, "word_index": word_index}
    with torch.no_grad():
        eager = model(batch_in)
    np.testing.assert_allclose(emissions, eager.numpy(), atol=TOL, rtol=0)
    # the predictor's Viterbi decoding reads the emissions: the same tags
    assert model.decode_tags(torch.from_numpy(emissions), word_mask) == \
        model.decode_tags(eager, word_mask)


@pytest.fixture(scope="module")
def tagger(tmp_path_factory):
    model = _bert_task("tag", ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"])
    out = tmp_path_factory.mktemp("tag") / "tagger.onnx"
    return model, export_model(model, out).model


@pytest.mark.parametrize(("batch", "length"), [(1, 4), (3, 9)])
def test_deberta_matches_eager(batch, length, deberta):
    model, path = deberta
    ids, mask = _ids_and_mask(batch, length, 100, left=False)
    session = onnx_session(path)
    assert [i.name for i in session.get_inputs()] == ["input_ids", "attention_mask"]
    (hidden,) = session.run(None, {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})
    with torch.no_grad():
        eager = model(ids, mask)
    np.testing.assert_allclose(hidden, eager.numpy(), atol=TOL, rtol=0)


@pytest.fixture(scope="module")
def deberta(tmp_path_factory):
    """A tiny DeBERTa-v3-shaped encoder (relative attention, log buckets), no head."""
    from lmforge.models.deberta import DebertaV2, DebertaV2Config

    torch.manual_seed(0)
    model = DebertaV2(DebertaV2Config(vocab_size=100, d_model=32, n_layer=2, n_head=2,
                                      d_ff=64, max_seq_len=64, position_buckets=8,
                                      head="none")).eval()
    return model, export_model(model, tmp_path_factory.mktemp("deberta") / "d.onnx").model


# ----------------------------------------------------------------------------- errors

class CumulativeMaxHead(torch.nn.Module):
    """A head using ``torch.cummax``, which torch 2.13's ONNX exporter cannot translate."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return torch.cummax(z, dim=-1).values[:, :2]


def test_an_op_without_onnx_translation_is_named(tmp_path):
    model = _bert_task("classify", ["a", "b"])
    model.classifier = CumulativeMaxHead()
    msg = one_line_error(ConfigError, export_model, model, tmp_path / "m.onnx")
    assert "aten.cummax" in msg
    assert not list(tmp_path.iterdir())  # nothing half-written


def test_a_graph_that_fixes_a_size_is_refused(tmp_path):
    """torch 2.13 exports the fused LSTM of a BiLSTM tagger without complaint, but the
    graph runs only at the traced batch size: the export runs the graph at other sizes
    against the eager model and refuses it."""
    torch.manual_seed(0)
    model = TaskModel(TaskModelConfig("tag", ["O", "B-X", "I-X"], "bilstm",
                                      dict(vocab_size=50, d_emb=8, hidden=8, dropout=0.0)))
    msg = one_line_error(ConfigError, export_model, model.eval(), tmp_path / "m.onnx")
    assert "other sizes" in msg
    assert not list(tmp_path.iterdir())


def test_export_errors(tmp_path, capsys):
    from lmforge.models.rnn import RNNLM, RNNLMConfig

    RNNLM(RNNLMConfig(vocab_size=10, d_embed=4, d_hidden=4, n_layer=1)).save_pretrained(
        tmp_path / "rnn")
    assert_user_error(["export", "onnx", str(tmp_path / "rnn"), "--out",
                       str(tmp_path / "rnn.onnx")], capsys, "'rnn_lm'", "allowed: bert")
    assert_user_error(["export", "onnx", str(tmp_path / "rnn"), "--out",
                       str(tmp_path / "missing" / "m.onnx")], capsys, "missing", "does not exist")
    assert_user_error(["export", "onnx", str(tmp_path / "rnn"), "--out",
                       str(tmp_path / "m.txt")], capsys, ".onnx")
    assert_user_error(["export", "onnx", str(tmp_path / "rnn"), "--out",
                       str(tmp_path / "m.onnx"), "--opset", "9"], capsys, "opset")


def test_missing_packages_name_the_extra(decoder, classifier, monkeypatch, capsys):
    model, folder, path = decoder
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert_user_error(["generate", str(folder), "--backend", "onnxruntime", "--onnx",
                       str(path)], capsys, "onnxruntime", "pip install 'lmforge[compress]'")
    monkeypatch.setitem(sys.modules, "onnxscript", None)
    msg = one_line_error(ConfigError, export_model, classifier[0],
                         path.parent / "again.onnx")
    assert "onnxscript" in msg and "lmforge[compress]" in msg


def test_generate_backend_errors(decoder, classifier, capsys):
    _, folder, path = decoder
    base = ["generate", str(folder), "--prompt", "hi"]
    assert_user_error([*base, "--onnx", str(path)], capsys, "--backend onnxruntime")
    assert_user_error([*base, "--backend", "onnxruntime", "--onnx", str(path),
                       "--quantize", "int8"], capsys, "--quantize", "export onnx")
    assert_user_error([*base, "--backend", "onnxruntime", "--onnx",
                       str(classifier[1].model)], capsys, "decoder", "'task'")
