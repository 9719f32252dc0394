"""Structured pruning: importance against finite differences, physical removal equal to
gating the removed heads and neurons off, GQA, config round trips, and the bad inputs."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from lmforge.compress.slicing import gates, layer_parts, prune_ffn, prune_heads
from lmforge.compress.structured import (
    choose_heads,
    choose_neurons,
    importance,
    structured_prune,
)
from lmforge.errors import CheckpointError, ConfigError
from lmforge.models.base import load_model_folder
from lmforge.models.bert import BertConfig, BertModel
from lmforge.models.gpt import GPT, GPTConfig
from lmforge.tasks.model import TaskModel, task_config_from

VOCAB = 50


def tiny_gpt(style: str = "gpt2", **kw) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=VOCAB, style=style, n_layer=2, n_head=4, d_model=32, max_seq_len=32)
    cfg.update(kw)
    return GPT(GPTConfig(**cfg)).eval()


def tiny_bert_config(**kw) -> BertConfig:
    cfg = dict(vocab_size=VOCAB, n_layer=2, n_head=4, d_model=32, d_ff=48, max_position=32,
               dropout=0.0)
    cfg.update(kw)
    return BertConfig(**cfg)


def tiny_classifier() -> TaskModel:
    torch.manual_seed(0)
    cfg = task_config_from("classify", ["neg", "pos"], "bert", tiny_bert_config(),
                           dropout=0.0)
    return TaskModel(cfg).eval()


def lm_loss(model, batch):
    return F.cross_entropy(model(batch).flatten(0, 1)[:-1], batch.flatten()[1:])


def cls_loss(model, batch):
    return F.cross_entropy(model(batch), batch["labels"])


def lm_batches(n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, VOCAB, (3, 12), generator=g) for _ in range(n)]


def cls_batches(n=2, seed=1):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        mask = torch.ones(3, 10, dtype=torch.long)
        mask[1, 7:] = 0  # padding
        out.append({"input_ids": torch.randint(2, VOCAB, (3, 10), generator=g),
                    "attention_mask": mask, "labels": torch.tensor([0, 1, 1])})
    return out


def gate_values(keep, n_layer, size):
    g = torch.zeros(n_layer, size)
    for layer in range(n_layer):
        g[layer, keep.get(layer, range(size))] = 1.0
    return g


def assert_pruned_equals_gated(model, heads, neurons, forward):
    """``forward()`` of the pruned model equals that of the original with the removed
    heads' gates and the removed neurons set to 0 (within 1e-5)."""
    parts = layer_parts(model)
    n_layer, n_head, d_ff = len(parts), parts[0].n_head, parts[0].d_ff
    with torch.no_grad(), gates(model, gate_values(heads, n_layer, n_head),
                                gate_values(neurons, n_layer, d_ff)):
        want = forward()
    prune_heads(model, heads)
    prune_ffn(model, neurons)
    with torch.no_grad():
        got = forward()
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    return got


# --------------------------------------------------------------------- equivalence


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_pruned_gpt_equals_gated_original(style):
    model = tiny_gpt(style)
    d_ff = model.config.d_ff
    x = lm_batches(1)[0]
    with torch.no_grad():
        dense = model(x)
    heads = {0: [1, 3], 1: [0, 2]}
    neurons = {0: list(range(0, d_ff, 2)), 1: list(range(1, d_ff, 2))}
    got = assert_pruned_equals_gated(model, heads, neurons, lambda: model(x))
    assert not torch.allclose(got, dense, atol=1e-3)  # something was removed
    attn, mlp = model.blocks[0].attn, model.blocks[0].mlp
    assert attn.qkv.weight.shape == (3 * 2 * 8, 32) and attn.proj.weight.shape == (32, 16)
    up_rows = d_ff // 2 * (2 if style == "llama" else 1)
    assert mlp.up.weight.shape == (up_rows, 32) and mlp.down.weight.shape == (32, d_ff // 2)
    c = model.config
    assert (c.n_head, c.n_kv_head, c.head_dim, c.d_ff, c.d_model) == (2, 2, 8, d_ff // 2, 32)


def test_pruned_gpt_decodes_with_its_kv_cache():
    model = tiny_gpt("llama", n_kv_head=2)
    prune_heads(model, {0: [2, 3], 1: [0, 1]})
    x = lm_batches(1)[0]
    cache = model.new_cache(3, 16)
    with torch.no_grad():
        full = model(x)
        steps = [model(x[:, :6], cache=cache)] + [model(x[:, t:t + 1], cache=cache)
                                                   for t in range(6, 12)]
    assert cache.k.shape == (2, 3, 1, 16, 8)
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_gqa_whole_groups_and_equal_heads_per_group():
    model = tiny_gpt("llama", n_head=4, n_kv_head=2)
    x = lm_batches(1)[0]
    # whole key/value groups: layer 0 keeps group 1 (heads 2, 3), layer 1 group 0
    scores = torch.tensor([[0.1, 0.2, 0.5, 0.4], [0.9, 0.0, 0.3, 0.3]])
    heads = choose_heads(scores, 0.5, n_kv_head=2)
    assert heads == {0: [2, 3], 1: [0, 1]}
    assert_pruned_equals_gated(model, heads, {}, lambda: model(x))
    assert (model.config.n_head, model.config.n_kv_head) == (2, 1)
    assert model.blocks[0].attn.qkv.weight.shape == ((2 + 2 * 1) * 8, 32)
    # the other option: one query head from every group keeps both key/value heads
    model = tiny_gpt("llama", n_head=4, n_kv_head=2)
    assert_pruned_equals_gated(model, {0: [0, 3], 1: [1, 2]}, {}, lambda: model(x))
    assert (model.config.n_head, model.config.n_kv_head) == (2, 2)
    with pytest.raises(ConfigError, match="same number of its query heads"):
        prune_heads(tiny_gpt("llama", n_head=4, n_kv_head=2), {0: [0, 1, 2], 1: [0, 1, 2]})


def test_pruned_bert_equals_gated_original():
    model = BertModel(tiny_bert_config()).eval()
    batch = cls_batches(1)[0]
    heads = {0: [0, 1, 3], 1: [1, 2, 3]}
    neurons = {0: list(range(20)), 1: list(range(10, 30))}
    assert_pruned_equals_gated(model, heads, neurons,
                               lambda: model(batch["input_ids"], batch["attention_mask"]))
    attn = model.layers[1].attn
    assert attn.q_proj.weight.shape == (24, 32) and attn.out_proj.weight.shape == (32, 24)
    assert model.layers[1].ff_in.weight.shape == (20, 32)
    assert (model.config.n_head, model.config.head_dim, model.config.d_ff) == (3, 8, 20)


def test_pruned_classifier_round_trips_through_its_folder(tmp_path):
    model = tiny_classifier()
    batch = cls_batches(1)[0]
    assert_pruned_equals_gated(model, {0: [2, 3], 1: [0, 3]}, {0: [5, 7, 9], 1: [1, 2, 3]},
                               lambda: model(batch))
    enc = model.config.encoder_config
    assert (enc["n_head"], enc["head_dim"], enc["d_ff"]) == (2, 8, 3)
    model.save_pretrained(tmp_path / "m")
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved["encoder_config"]["head_dim"] == 8
    loaded = load_model_folder(tmp_path / "m")
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch), model(batch), atol=0, rtol=0)


@pytest.mark.parametrize("style", ["gpt2", "llama"])
def test_structured_prune_report_and_folder(tmp_path, style):
    model = tiny_gpt(style, n_head=6, d_model=48)
    d_ff = model.config.d_ff
    report = structured_prune(model, 0.3, 0.3, lm_batches(), lm_loss)
    assert report.n_head == (6, 4)  # floor(0.3 * 6 + 1/2) = 2 heads go in every layer
    removed = int(0.3 * d_ff + 0.5)
    assert report.d_ff == (d_ff, d_ff - removed)
    assert all(len(v) == 4 for v in report.heads_kept.values())
    assert all(len(v) == d_ff - removed for v in report.neurons_kept.values())
    fresh = GPT(model.config)  # the config alone builds the same shapes
    assert report.params_after == fresh.num_parameters() < report.params_before
    json.dumps(report.to_dict())
    model.save_pretrained(tmp_path / "m")
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert (cfg["n_head"], cfg["head_dim"], cfg["d_ff"]) == (4, 8, d_ff - removed)
    loaded = load_model_folder(tmp_path / "m")
    x = lm_batches(1, seed=7)[0]
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), atol=0, rtol=0)


def test_structured_prune_classifier():
    model = tiny_classifier()
    report = structured_prune(model, 0.25, 0.5, cls_batches(), cls_loss)
    assert report.n_head == (4, 3) and report.d_ff == (48, 24)
    assert model.config.encoder_config["n_head"] == 3
    assert model(cls_batches(1)[0]).shape == (3, 2)


# --------------------------------------------------------------------- importance


def _finite_difference(model, batches, loss_fn, linear_of, width, layer, index, eps=1e-4):
    """E_batches |dL/dξ| with ξ scaling input channels ``index*width..`` of the layer's
    projection: W[:, channels] *= 1 ± eps (a reference independent of the gate hooks)."""
    lin = linear_of(layer)
    cols = slice(index * width, (index + 1) * width)
    total = 0.0
    for batch in batches:
        losses = []
        for sign in (1, -1):
            with torch.no_grad():
                lin.weight[:, cols] *= 1 + sign * eps
                losses.append(float(loss_fn(model, batch)))
                lin.weight[:, cols] /= 1 + sign * eps
        total += abs(losses[0] - losses[1]) / (2 * eps)
    return total / len(batches)


def test_importance_matches_finite_differences():
    model = tiny_gpt("llama", n_kv_head=2, d_model=16, n_head=4).double()
    batches = lm_batches(2)
    scores = importance(model, batches, lm_loss)
    assert scores.n_batches == 2
    assert scores.heads.shape == (2, 4) and scores.neurons.shape == (2, model.config.d_ff)
    for layer in range(2):
        for head in range(4):
            ref = _finite_difference(model, batches, lm_loss,
                                     lambda i: model.blocks[i].attn.proj, 4, layer, head)
            assert scores.heads[layer, head].item() == pytest.approx(ref, rel=1e-4, abs=1e-9)
        for j in range(0, model.config.d_ff, 7):
            ref = _finite_difference(model, batches, lm_loss,
                                     lambda i: model.blocks[i].mlp.down, 1, layer, j)
            assert scores.neurons[layer, j].item() == pytest.approx(ref, rel=1e-4, abs=1e-9)
    norm = scores.normalized_heads()
    torch.testing.assert_close(norm.norm(dim=1), torch.ones(2))
    assert all(p.grad is None for p in model.parameters())


def test_importance_of_a_classifier_matches_finite_differences():
    model = tiny_classifier().double()
    batches = cls_batches()
    scores = importance(model, batches, cls_loss)
    layers = model.encoder.layers
    for layer, head in ((0, 1), (1, 3)):
        ref = _finite_difference(model, batches, cls_loss, lambda i: layers[i].attn.out_proj,
                                 8, layer, head)
        assert scores.heads[layer, head].item() == pytest.approx(ref, rel=1e-4, abs=1e-9)
    ref = _finite_difference(model, batches, cls_loss, lambda i: layers[i].ff_out, 1, 1, 5)
    assert scores.neurons[1, 5].item() == pytest.approx(ref, rel=1e-4, abs=1e-9)


def test_choices_drop_the_least_important():
    scores = torch.tensor([[3.0, 1.0, 2.0, 0.5, 4.0, 2.5]])
    assert choose_heads(scores, 0.3) == {0: [0, 2, 4, 5]}  # 1.8 -> 2 removed
    assert choose_neurons(scores, 0.5) == {0: [0, 4, 5]}
    assert choose_neurons(scores, 0.99) == {0: [4]}  # at least one stays
    assert choose_heads(scores, 0.0) == {0: list(range(6))}


# --------------------------------------------------------------------- bad input


def test_bad_keeps_and_fractions_are_config_errors():
    with pytest.raises(ConfigError, match=r"head_fraction must be in \[0, 1\), got 1.0"):
        structured_prune(tiny_gpt(), 1.0, 0.1, lm_batches(), lm_loss)
    with pytest.raises(ConfigError, match=r"ffn_fraction must be in \[0, 1\)"):
        structured_prune(tiny_gpt(), 0.1, -0.2, lm_batches(), lm_loss)
    with pytest.raises(ConfigError, match="same number of heads"):
        prune_heads(tiny_gpt(), {0: [0, 1], 1: [0, 1, 2]})
    with pytest.raises(ConfigError, match="same number of heads"):
        prune_heads(tiny_gpt(), {0: [0, 1]})  # layer 1 keeps all 4
    with pytest.raises(ConfigError, match=r"indices in 0..3"):
        prune_heads(tiny_gpt(), {0: [0, 4], 1: [0, 1]})
    with pytest.raises(ConfigError, match="layers are 0..1"):
        prune_ffn(tiny_gpt(), {2: [0]})
    with pytest.raises(ConfigError, match="GPT and BERT"):
        prune_heads(torch.nn.Linear(3, 3), {})
    with pytest.raises(ConfigError, match="at least one batch"):
        importance(tiny_gpt(), [], lm_loss)


def test_head_dim_config_field_and_hf_export_refusal():
    from lmforge.hf.bert import export as export_bert
    from lmforge.hf.gpt import export_gpt

    cfg = GPTConfig(vocab_size=VOCAB, n_head=5, d_model=32, head_dim=8, n_layer=1)
    assert GPT(cfg).blocks[0].attn.qkv.weight.shape == (3 * 40, 32)
    assert GPTConfig(vocab_size=VOCAB, n_head=4, d_model=32).head_dim == 8  # derived
    with pytest.raises(ValueError, match="not divisible"):
        GPTConfig(vocab_size=VOCAB, n_head=5, d_model=32)
    with pytest.raises(ValueError, match="even head size"):
        GPTConfig(vocab_size=VOCAB, style="llama", n_head=4, d_model=32, head_dim=7)
    gpt = tiny_gpt()
    prune_heads(gpt, {0: [0, 1, 2], 1: [1, 2, 3]})
    with pytest.raises(CheckpointError, match="head_dim=8"):
        export_gpt(gpt)
    llama = tiny_gpt("llama")
    prune_heads(llama, {0: [0, 1, 2], 1: [1, 2, 3]})
    hf, state = export_gpt(llama)  # Hugging Face's Llama config has head_dim
    assert hf["head_dim"] == 8 and state["model.layers.0.self_attn.q_proj.weight"].shape == (24, 32)
    bert = BertModel(tiny_bert_config())
    prune_heads(bert, {0: [0, 1, 2], 1: [0, 1, 2]})
    with pytest.raises(CheckpointError, match="head size"):
        export_bert(bert)


def test_kept_ffn_width_rounds_to_a_multiple():
    from lmforge.compress.structured import kept_width

    assert kept_width(768, 0.3) == 538                 # exact: 230 of 768 go
    assert kept_width(768, 0.3, multiple=64) == 512    # 538 -> the nearest multiple
    assert kept_width(768, 0.2, multiple=64) == 640    # 614 -> 640
    assert kept_width(768, 0.99, multiple=64) == 64    # at least one multiple
    assert kept_width(48, 0.3, multiple=64) == 34      # narrower than the multiple: exact
    with pytest.raises(ConfigError, match="multiple"):
        kept_width(768, 0.3, multiple=0)
