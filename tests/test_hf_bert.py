"""Hugging Face BERT/RoBERTa <-> lmforge parity, both directions, and strict loading."""

from __future__ import annotations

import json
import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")

from safetensors.torch import save_file  # noqa: E402

from lmforge.errors import CheckpointError  # noqa: E402
from lmforge.hf import converter_for_arch, converter_for_model_type  # noqa: E402
from lmforge.hf.bert import export, load  # noqa: E402
from lmforge.models.bert import BertConfig, BertModel  # noqa: E402

V = 60
SMALL = dict(vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
             intermediate_size=64, max_position_embeddings=40, type_vocab_size=2)


def hf_model(cls_name: str, seed: int = 0, **kw):
    family = "Roberta" if cls_name.startswith("Roberta") else "Bert"
    cfg = getattr(transformers, f"{family}Config")(**{**SMALL, **kw})
    torch.manual_seed(seed)
    model = getattr(transformers, cls_name)(cfg).eval()
    with torch.no_grad():  # non-trivial biases and norms, so a mix-up would show
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name or "layer_norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    hf_config = model.config.to_dict()
    hf_config["architectures"] = [cls_name]
    return model, hf_config


def inputs(pad_id: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, V, (3, 12), generator=g)
    am = torch.ones(3, 12, dtype=torch.long)
    am[1, 9:] = 0
    am[2, 5:] = 0
    ids[am == 0] = pad_id
    tt = torch.zeros_like(ids)
    tt[:, 6:] = 1
    return ids, am, tt


def check_close(ours, theirs, am):
    """Compare on real tokens only (outputs at padding are not meaningful)."""
    if theirs.dim() >= 2 and theirs.shape[:2] == am.shape:
        ours, theirs = ours[am.bool()], theirs[am.bool()]
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


CASES = [  # class, lmforge head, HF output names
    ("BertModel", "none", ["last_hidden_state"]),
    ("BertForMaskedLM", "mlm", ["logits"]),
    ("RobertaModel", "none", ["last_hidden_state"]),
    ("RobertaForMaskedLM", "mlm", ["logits"]),
    ("BertForPreTraining", "pretraining", ["prediction_logits", "seq_relationship_logits"]),
    ("BertForSequenceClassification", "seq_cls", ["logits"]),
    ("RobertaForSequenceClassification", "seq_cls", ["logits"]),
    ("BertForTokenClassification", "token_cls", ["logits"]),
    ("BertForQuestionAnswering", "qa", ["start_logits", "end_logits"]),
]


@pytest.mark.parametrize("cls_name,head,keys", CASES)
def test_load_matches_transformers(cls_name, head, keys):
    kw = {"num_labels": 3} if "Classification" in cls_name else {}
    if cls_name.startswith("Roberta"):
        kw["type_vocab_size"] = 1 if head == "mlm" else 2  # real RoBERTa has 1
    ref_model, hf_config = hf_model(cls_name, **kw)
    model = load(hf_config, ref_model.state_dict())
    assert model.config.head == head
    assert model.config.flavor == ("roberta" if cls_name.startswith("Roberta") else "bert")
    ids, am, tt = inputs(hf_config["pad_token_id"])
    if model.config.type_vocab_size == 1:
        tt = torch.zeros_like(tt)
    with torch.no_grad():
        ref = ref_model(input_ids=ids, attention_mask=am, token_type_ids=tt)
        out = model(ids, am, tt)
    outs = out if isinstance(out, tuple) else (out,)
    for o, k in zip(outs, keys, strict=True):
        check_close(o, ref[k], am)


def test_unprefixed_state_and_old_buffers_load():
    """A bare BertModel state (no 'bert.' prefix) with the position_ids buffer older
    checkpoints (like all-MiniLM-L6-v2's) carry."""
    ref_model, hf_config = hf_model("BertModel")
    state = dict(ref_model.state_dict())
    assert not any(k.startswith("bert.") for k in state)
    state["embeddings.position_ids"] = torch.arange(40)[None]
    model = load(hf_config, state)
    ids, am, tt = inputs(0)
    with torch.no_grad():
        check_close(model(ids, am, tt), ref_model(ids, am, tt).last_hidden_state, am)


def test_tensorflow_era_layernorm_names():
    ref_model, hf_config = hf_model("BertForMaskedLM")
    state = {k.replace("LayerNorm.weight", "LayerNorm.gamma")
             .replace("LayerNorm.bias", "LayerNorm.beta"): v
             for k, v in ref_model.state_dict().items()}
    assert "bert.embeddings.LayerNorm.gamma" in state
    model = load(hf_config, state)
    torch.testing.assert_close(model.embeddings.norm.bias,
                               ref_model.bert.embeddings.LayerNorm.bias)


def test_decoder_aliases_in_old_checkpoints_are_accepted():
    ref_model, hf_config = hf_model("BertForMaskedLM")
    state = dict(ref_model.state_dict())  # includes the tied decoder weight and bias
    assert "cls.predictions.decoder.weight" in state
    load(hf_config, state)
    state.pop("cls.predictions.bias")  # only the alias left: still loads
    model = load(hf_config, state)
    torch.testing.assert_close(model.mlm.decoder.bias, ref_model.cls.predictions.bias)


def save_hf_folder(folder, hf_config, state):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(hf_config), encoding="utf-8")
    save_file(state, str(folder / "model.safetensors"), metadata={"format": "pt"})


@pytest.mark.parametrize("flavor,head,cls_name", [
    ("bert", "mlm", "BertForMaskedLM"), ("bert", "none", "BertModel"),
    ("roberta", "mlm", "RobertaForMaskedLM"), ("roberta", "none", "RobertaModel"),
    ("bert", "pretraining", "BertForPreTraining"),
    ("roberta", "seq_cls", "RobertaForSequenceClassification"),
    ("bert", "token_cls", "BertForTokenClassification"),
])
def test_export_loads_in_transformers(tmp_path, flavor, head, cls_name):
    torch.manual_seed(3)
    model = BertModel(BertConfig(vocab_size=V, flavor=flavor, n_layer=2, n_head=4,
                                 d_model=32, max_position=40, head=head,
                                 num_labels=3 if head.endswith("cls") else 2,
                                 type_vocab_size=2)).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    hf_config, state = export(model)
    assert hf_config["architectures"] == [cls_name]
    save_hf_folder(tmp_path / "hf", hf_config, state)
    ref = getattr(transformers, cls_name).from_pretrained(tmp_path / "hf").eval()
    ids, am, tt = inputs(model.config.pad_id)
    with torch.no_grad():
        theirs = ref(input_ids=ids, attention_mask=am, token_type_ids=tt)
        ours = model(ids, am, tt)
    ours = ours if isinstance(ours, tuple) else (ours,)
    keys = {"none": ["last_hidden_state"], "pretraining":
            ["prediction_logits", "seq_relationship_logits"]}.get(head, ["logits"])
    for o, k in zip(ours, keys, strict=True):
        check_close(o, theirs[k], am)
    # and back: the exported pair loads into an identical lmforge model
    again = load(hf_config, state)
    assert again.config == model.config
    for a, b in zip(again.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_missing_tensor_names_it_and_its_shape():
    ref_model, hf_config = hf_model("BertForMaskedLM")
    state = dict(ref_model.state_dict())
    del state["bert.encoder.layer.1.attention.self.key.weight"]
    with pytest.raises(CheckpointError, match=r"missing tensor "
                       r"bert\.encoder\.layer\.1\.attention\.self\.key\.weight.*\(32, 32\)"):
        load(hf_config, state)


def test_wrong_shape_names_both_shapes():
    ref_model, hf_config = hf_model("RobertaModel")
    state = dict(ref_model.state_dict())
    state["encoder.layer.0.intermediate.dense.weight"] = torch.zeros(65, 32)
    with pytest.raises(CheckpointError, match=r"intermediate\.dense\.weight has shape "
                       r"\(65, 32\), model expects \(64, 32\)"):
        load(hf_config, state)


def test_unexpected_tensor_is_an_error():
    ref_model, hf_config = hf_model("BertModel")
    state = dict(ref_model.state_dict())
    state["encoder.layer.0.attention.self.rotary.weight"] = torch.zeros(3)
    with pytest.raises(CheckpointError, match="unexpected tensor.*rotary"):
        load(hf_config, state)


def test_unsupported_configs():
    ref_model, hf_config = hf_model("BertModel")
    with pytest.raises(CheckpointError, match="position_embedding_type"):
        load({**hf_config, "position_embedding_type": "relative_key"}, ref_model.state_dict())
    with pytest.raises(CheckpointError, match="hidden_act"):
        load({**hf_config, "hidden_act": "swish"}, ref_model.state_dict())
    with pytest.raises(CheckpointError, match="hidden_size"):
        load({k: v for k, v in hf_config.items() if k != "hidden_size"},
             ref_model.state_dict())


def test_registered_converter():
    for t in ("bert", "roberta", "xlm-roberta"):
        assert converter_for_model_type(t).load is load
    assert converter_for_arch("bert").export is export
