"""LoRA against PEFT: the layer's math and init, and adapter folders in both directions.

lmforge -> PEFT: an lmforge model with LoRA (trained-looking, non-zero B and head) is
exported (base: the family's HF converter; adapter: ``save_peft_adapter``) and
``transformers`` + ``peft.PeftModel.from_pretrained`` must give the same outputs.
PEFT -> lmforge: a ``peft.get_peft_model`` adapter saved by PEFT is loaded onto the
lmforge model of its base and must give PEFT's outputs.
"""

from __future__ import annotations

import math
import os

import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
peft = pytest.importorskip("peft")

from lmforge.errors import CheckpointError, ConfigError  # noqa: E402
from lmforge.hf import converter_for_arch  # noqa: E402
from lmforge.hf.io import write_hf_folder  # noqa: E402
from lmforge.hf.peft import load_peft_adapter, save_peft_adapter  # noqa: E402
from lmforge.hub import load_pretrained  # noqa: E402
from lmforge.models import arch_of  # noqa: E402
from lmforge.models.bert import BertConfig, BertModel  # noqa: E402
from lmforge.models.deberta import DebertaV2, DebertaV2Config  # noqa: E402
from lmforge.models.gpt import GPT, GPTConfig  # noqa: E402
from lmforge.nn.lora import (  # noqa: E402
    LoraConfig,
    LoraLinear,
    apply_lora,
    lora_state_dict,
    merge_lora,
    trainable_parameters,
)

V = 64


def _peft_layer(r: int, alpha: float, rslora: bool, dropout: float = 0.0):
    """A PEFT LoRA layer on a fresh nn.Linear(16, 12), and an lmforge one on a copy."""
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = nn.Linear(16, 12)

        def forward(self, x):
            return self.lin(x)

    net = Net()
    base = nn.Linear(16, 12)
    base.load_state_dict(net.lin.state_dict())
    pm = peft.get_peft_model(net, peft.LoraConfig(r=r, lora_alpha=alpha, target_modules=["lin"],
                                                  use_rslora=rslora, lora_dropout=dropout))
    layer = pm.base_model.model.lin
    ours = LoraLinear(base, r, alpha, dropout, rslora)
    with torch.no_grad():
        layer.lora_B["default"].weight.normal_()  # as if trained: B != 0
        ours.lora_A.weight.copy_(layer.lora_A["default"].weight)
        ours.lora_B.weight.copy_(layer.lora_B["default"].weight)
    return pm, layer, ours


@pytest.mark.parametrize("rslora", [False, True])
def test_layer_matches_peft(rslora):
    torch.manual_seed(0)
    pm, layer, ours = _peft_layer(r=4, alpha=12, rslora=rslora)
    assert ours.scaling == pytest.approx(layer.scaling["default"])
    assert ours.scaling == pytest.approx(12 / (math.sqrt(4) if rslora else 4))
    x = torch.randn(3, 5, 16)
    ours.weight.requires_grad_(False)
    ours(x).square().sum().backward()  # the same gradients reach A and B
    pm(x).square().sum().backward()
    for mine, theirs in ((ours.lora_A, layer.lora_A), (ours.lora_B, layer.lora_B)):
        torch.testing.assert_close(mine.weight.grad, theirs["default"].weight.grad,
                                   atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), pm(x), atol=1e-6, rtol=1e-6)
        w0 = ours.weight.clone()
        ours.merge()
        layer.merge()
        torch.testing.assert_close(ours.weight, layer.base_layer.weight, atol=1e-6, rtol=1e-6)
        torch.testing.assert_close(ours(x), pm(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(ours.delta_weight(), layer.get_delta_weight("default"))
        ours.unmerge()
        torch.testing.assert_close(ours.weight, w0, atol=1e-6, rtol=0)
        assert not ours.merged


def test_dropout_only_on_the_lora_branch_as_peft():
    torch.manual_seed(0)
    pm, _layer, ours = _peft_layer(r=4, alpha=8, rslora=False, dropout=0.5)
    pm.train()
    ours.train()
    x = torch.randn(4, 16)
    with torch.no_grad():
        torch.manual_seed(7)
        theirs = pm(x)
        torch.manual_seed(7)
        mine = ours(x)  # the same dropout mask, drawn the same way
        torch.testing.assert_close(mine, theirs, atol=1e-6, rtol=1e-6)
        ours.lora_B.weight.zero_()  # no update: dropout must leave the base path alone
        torch.testing.assert_close(ours(x), nn.functional.linear(x, ours.weight, ours.bias))


def test_init_matches_peft():
    """B = 0; A ~ U(-1/sqrt(in), 1/sqrt(in)), the same law as PEFT's (Kaiming, a = sqrt 5)."""
    torch.manual_seed(0)
    fan_in, r = 400, 64
    ours = LoraLinear(nn.Linear(fan_in, 30), r=r)
    net = nn.Sequential(nn.Linear(fan_in, 30))
    layer = peft.get_peft_model(net, peft.LoraConfig(r=r, target_modules=["0"])
                                ).base_model.model[0]
    bound = 1 / math.sqrt(fan_in)
    for a, b in ((ours.lora_A.weight, ours.lora_B.weight),
                 (layer.lora_A["default"].weight, layer.lora_B["default"].weight)):
        assert a.shape == (r, fan_in) and b.shape == (30, r)
        assert torch.count_nonzero(b) == 0
        assert a.abs().max() <= bound and a.abs().max() > 0.99 * bound
        assert a.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.02)
    x = torch.randn(2, fan_in)
    torch.testing.assert_close(ours(x), nn.functional.linear(x, ours.weight, ours.bias))


# ------------------------------------------------------------------ lmforge -> PEFT

def _bert(flavor: str, head: str) -> BertModel:
    torch.manual_seed(3)
    model = BertModel(BertConfig(vocab_size=V, flavor=flavor, n_layer=2, n_head=4, d_model=32,
                                 d_ff=64, max_position=40, head=head, num_labels=3,
                                 type_vocab_size=2, dropout=0.0))
    with torch.no_grad():  # non-trivial biases and norms, so a mix-up would show
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def _inputs(pad_id: int):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(3, V, (3, 12), generator=g)
    am = torch.ones(3, 12, dtype=torch.long)
    am[1, 9:] = 0
    am[2, 5:] = 0
    ids[am == 0] = pad_id
    return ids, am


def _train_a_little(model: nn.Module) -> None:
    """Stand-in for training: random values in every tensor the adapter holds."""
    with torch.no_grad():
        for t in lora_state_dict(model).values():
            t.normal_(0, 0.3)


def _close(ours, theirs, am=None):
    if am is not None and theirs.dim() >= 2 and theirs.shape[:2] == am.shape:
        ours, theirs = ours[am.bool()], theirs[am.bool()]  # real tokens only
    torch.testing.assert_close(ours, theirs, atol=1e-4, rtol=1e-4)


def _load_in_peft(hf, folder):
    """``PeftModel.from_pretrained``, checking that the file holds exactly the tensors PEFT
    itself would save (PEFT ignores unknown keys silently)."""
    from safetensors.torch import load_file

    pm = peft.PeftModel.from_pretrained(hf, folder).eval()
    theirs = {k for k in peft.get_peft_model_state_dict(pm)
              if ".original_module." not in k and ".modules_to_save." not in k}
    assert set(load_file(folder / "adapter_model.safetensors")) == theirs
    return pm


def _export_base(model: nn.Module, folder) -> None:
    hf_config, state = converter_for_arch(arch_of(model.config)).export(model)
    write_hf_folder(folder, hf_config, state)


BERT_CASES = [  # flavor, head, transformers class, LoraConfig
    ("bert", "seq_cls", "BertForSequenceClassification", LoraConfig(r=4)),
    ("bert", "token_cls", "BertForTokenClassification",
     LoraConfig(r=4, target_modules="all-linear", bias="lora_only", alpha=16)),
    ("roberta", "seq_cls", "RobertaForSequenceClassification",
     LoraConfig(r=2, alpha=6, use_rslora=True, bias="all")),
    ("roberta", "token_cls", "RobertaForTokenClassification", LoraConfig(r=4)),
    ("bert", "none", "BertModel", LoraConfig(r=4, target_modules=["ff_in", "out_proj"])),
    ("bert", "qa", "BertForQuestionAnswering", LoraConfig(r=4)),
    ("roberta", "mlm", "RobertaForMaskedLM", LoraConfig(r=4, modules_to_save=["mlm.dense"])),
    ("bert", "pretraining", "BertForPreTraining", LoraConfig(r=4, target_modules="all-linear")),
]
OUTPUTS = {"none": ["last_hidden_state"], "qa": ["start_logits", "end_logits"],
           "pretraining": ["prediction_logits", "seq_relationship_logits"]}


@pytest.mark.parametrize("flavor,head,cls_name,cfg", BERT_CASES)
def test_lmforge_adapter_loads_in_peft(tmp_path, flavor, head, cls_name, cfg):
    model = _bert(flavor, head)
    _export_base(model, tmp_path / "base")
    apply_lora(model, cfg)
    _train_a_little(model)
    save_peft_adapter(model, cfg, tmp_path / "adapter",
                      base_model_name_or_path=str(tmp_path / "base"))
    hf = getattr(transformers, cls_name).from_pretrained(tmp_path / "base")
    pm = _load_in_peft(hf, tmp_path / "adapter")
    ids, am = _inputs(model.config.pad_id)
    with torch.no_grad():
        out = pm(input_ids=ids, attention_mask=am)
        ours = model(ids, am)
        ours = ours if isinstance(ours, tuple) else (ours,)
        for mine, key in zip(ours, OUTPUTS.get(head, ["logits"]), strict=True):
            _close(mine, out[key], am)
    # loaded for training, PEFT trains exactly what lmforge trains
    pm2 = peft.PeftModel.from_pretrained(
        getattr(transformers, cls_name).from_pretrained(tmp_path / "base"),
        tmp_path / "adapter", is_trainable=True)
    assert pm2.get_nb_trainable_parameters()[0] == trainable_parameters(model)[0]


def test_lmforge_gpt2_adapter_loads_in_peft(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=V, n_layer=2, n_head=4, d_model=32, max_seq_len=32)).eval()
    _export_base(model, tmp_path / "base")
    cfg = LoraConfig(r=4, target_modules=["qkv", "down"], modules_to_save=["blocks.1.mlp.up"])
    apply_lora(model, cfg)
    _train_a_little(model)
    save_peft_adapter(model, cfg, tmp_path / "adapter")
    hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "base")
    pm = _load_in_peft(hf, tmp_path / "adapter")
    assert pm.peft_config["default"].fan_in_fan_out
    ids = torch.randint(0, V, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _close(model(ids), pm(input_ids=ids).logits)


def test_lmforge_deberta_adapter_loads_in_peft(tmp_path):
    torch.manual_seed(0)
    model = DebertaV2(DebertaV2Config(vocab_size=V, d_model=32, n_layer=2, n_head=4, d_ff=64,
                                      max_seq_len=64, position_buckets=8,
                                      max_relative_positions=16, head="none",
                                      dropout=0.0, attention_dropout=0.0)).eval()
    _export_base(model, tmp_path / "base")
    cfg = LoraConfig(r=4)  # PEFT's default for deberta-v2: query_proj, value_proj
    assert apply_lora(model, cfg) == [f"layers.{i}.attn.{p}" for i in range(2)
                                      for p in ("query", "value")]
    _train_a_little(model)
    save_peft_adapter(model, cfg, tmp_path / "adapter")
    hf = transformers.DebertaV2Model.from_pretrained(tmp_path / "base")
    pm = _load_in_peft(hf, tmp_path / "adapter")
    ids = torch.randint(1, V, (2, 12), generator=torch.Generator().manual_seed(0))
    am = torch.ones_like(ids)
    am[1, 8:] = 0
    with torch.no_grad():
        _close(model(ids, am), pm(input_ids=ids, attention_mask=am).last_hidden_state, am)


# ------------------------------------------------------------------ PEFT -> lmforge

def _hf_bert(cls_name: str):
    family = "Roberta" if cls_name.startswith("Roberta") else "Bert"
    cfg = getattr(transformers, f"{family}Config")(
        vocab_size=V, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=40, num_labels=3)
    torch.manual_seed(0)
    return getattr(transformers, cls_name)(cfg).eval()


def _perturb_adapter(pm) -> None:
    with torch.no_grad():
        for p in pm.parameters():
            if p.requires_grad:  # lora_A/B, the modules_to_save copy, trained biases
                p.add_(torch.randn_like(p) * 0.3)


@pytest.mark.parametrize("cls_name,peft_kw", [
    ("BertForSequenceClassification",
     dict(r=4, target_modules=["query", "value"], modules_to_save=["classifier"])),
    ("RobertaForSequenceClassification",
     dict(task_type="SEQ_CLS", r=4, lora_alpha=16, target_modules=["key", "dense"],
          bias="all")),
    ("BertForTokenClassification",
     dict(task_type="TOKEN_CLS", r=2, target_modules=r".*\.attention\.self\.(query|value)",
          use_rslora=True, bias="lora_only")),
])
def test_peft_adapter_loads_in_lmforge(tmp_path, cls_name, peft_kw):
    hf = _hf_bert(cls_name)
    hf.save_pretrained(tmp_path / "base")
    pm = peft.get_peft_model(hf, peft.LoraConfig(**peft_kw))
    _perturb_adapter(pm)
    pm.save_pretrained(tmp_path / "adapter")
    pm.eval()
    model, _ = load_pretrained(tmp_path / "base")
    lcfg = load_peft_adapter(model, tmp_path / "adapter")
    assert lcfg.r == peft_kw["r"] and lcfg.bias == peft_kw.get("bias", "none")
    ids, am = _inputs(model.config.pad_id)
    with torch.no_grad():
        _close(model(ids, am), pm(input_ids=ids, attention_mask=am).logits, am)
    # PEFT also trains the biases of its untouched copy of the head (bias="all")
    trained = sum(p.numel() for n, p in pm.named_parameters()
                  if p.requires_grad and ".original_module." not in n)
    assert trainable_parameters(model)[0] == trained


def test_peft_gpt2_adapter_loads_in_lmforge(tmp_path):
    torch.manual_seed(0)
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=V, n_embd=32, n_layer=2, n_head=4, n_positions=32, bos_token_id=0,
        eos_token_id=0)).eval()
    hf.save_pretrained(tmp_path / "base")
    pm = peft.get_peft_model(hf, peft.LoraConfig(task_type="CAUSAL_LM", r=4,
                                                 target_modules=["c_attn", "c_fc"],
                                                 fan_in_fan_out=True,
                                                 modules_to_save=["h.0.mlp.c_proj"]))
    _perturb_adapter(pm)
    pm.save_pretrained(tmp_path / "adapter")
    pm.eval()
    model, _ = load_pretrained(tmp_path / "base")
    lcfg = load_peft_adapter(model, tmp_path / "adapter")
    assert lcfg.modules_to_save == ["blocks.0.mlp.down"]
    ids = torch.randint(0, V, (2, 10), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        _close(model(ids), pm(input_ids=ids).logits)


# --------------------------------------------------------------- merge and counts

def test_merge_gives_the_same_function_and_plain_layers():
    model = _bert("roberta", "seq_cls")
    targets = apply_lora(model, LoraConfig(r=4, target_modules="all-linear", dropout=0.1))
    assert "classifier.linear" not in targets and "pooler" not in targets  # head: saved
    assert {n for n, m in model.named_modules() if isinstance(m, LoraLinear)} == set(targets)
    _train_a_little(model)
    ids, am = _inputs(model.config.pad_id)
    with torch.no_grad():
        before = model(ids, am)
        names = set(model.state_dict()) - {n for n in model.state_dict() if ".lora_" in n}
        assert merge_lora(model) is model
        assert not any(isinstance(m, LoraLinear) for m in model.modules())
        assert set(model.state_dict()) == names  # the plain model's tensors, same names
        torch.testing.assert_close(model(ids, am), before, atol=1e-5, rtol=1e-5)
    assert not hasattr(model, "lora_config")


def test_counts_and_adapter_tensors_match_peft():
    ours = _bert("bert", "none")
    cfg = LoraConfig(r=4)
    assert apply_lora(ours, cfg) == [f"layers.{i}.attn.{p}" for i in range(2)
                                     for p in ("q_proj", "v_proj")]
    hf = _hf_bert("BertModel")
    pm = peft.get_peft_model(hf, peft.LoraConfig(task_type="FEATURE_EXTRACTION", r=4))
    assert trainable_parameters(ours) == pm.get_nb_trainable_parameters()
    assert sorted(lora_state_dict(ours)) == sorted(
        f"layers.{i}.attn.{p}.lora_{ab}.weight" for i in range(2) for p in ("q_proj", "v_proj")
        for ab in "AB")
    # sequence classification, every linear layer: PEFT keeps a second copy of the head
    ours = _bert("bert", "seq_cls")
    apply_lora(ours, LoraConfig(r=4, target_modules="all-linear"))
    pm = peft.get_peft_model(_hf_bert("BertForSequenceClassification"),
                             peft.LoraConfig(task_type="SEQ_CLS", r=4,
                                             target_modules="all-linear"))
    head = sum(p.numel() for p in ours.classifier.parameters())
    trainable, total = pm.get_nb_trainable_parameters()
    assert trainable_parameters(ours) == (trainable, total - head)
    assert all(p.requires_grad == (".lora_" in n or n.startswith("classifier."))
               for n, p in ours.named_parameters())


# ------------------------------------------------------------------------ bad input

def test_bad_config_and_folders_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match=r"^LoraConfig\.r must be an integer >= 1 \(got 0\)$"):
        LoraConfig(r=0)
    with pytest.raises(ConfigError, match=r"LoraConfig\.dropout must be in \[0, 1\)"):
        LoraConfig(dropout=1.0)
    model = _bert("bert", "seq_cls")
    with pytest.raises(ConfigError, match=r"'query' matches no Linear layer; Linear layers "
                                          r"\(14\): layers\.0\.attn\.q_proj"):
        apply_lora(model, LoraConfig(target_modules=["query"]))
    with pytest.raises(ConfigError, match="'head' matches no module"):
        apply_lora(model, LoraConfig(modules_to_save=["head"]))
    with pytest.raises(CheckpointError, match="has no adapter_config.json"):
        load_peft_adapter(model, tmp_path)
    (tmp_path / "adapter_config.json").write_text('{"peft_type": "IA3"}', encoding="utf-8")
    with pytest.raises(CheckpointError, match="peft_type 'IA3' is not supported"):
        load_peft_adapter(model, tmp_path)
    gpt = GPT(GPTConfig(vocab_size=V, n_layer=1, n_head=2, d_model=8))
    apply_lora(gpt, LoraConfig(r=2))
    save_peft_adapter(gpt, None, tmp_path / "gpt")
    with pytest.raises(CheckpointError, match="task_type 'CAUSAL_LM' does not fit this model"):
        load_peft_adapter(model, tmp_path / "gpt")
    with pytest.raises(ConfigError, match="already has LoRA"):
        apply_lora(gpt, LoraConfig(r=2))
    # a head of another size: refused, and the model is left as it was
    other = _bert("bert", "seq_cls")
    apply_lora(other, LoraConfig(r=2))
    save_peft_adapter(other, None, tmp_path / "seq3")
    two = BertModel(BertConfig(**{**vars(other.config), "num_labels": 2}))
    before = {n: t.clone() for n, t in two.state_dict().items()}
    with pytest.raises(CheckpointError, match=r"tensor for classifier\.linear\.bias has "
                                              r"shape \(3,\), the model expects \(2,\)$"):
        load_peft_adapter(two, tmp_path / "seq3")
    assert not any(isinstance(m, LoraLinear) for m in two.modules())
    assert all(p.requires_grad for p in two.parameters())
    assert all(torch.equal(t, before[n]) for n, t in two.state_dict().items())
    # an adapter of another architecture: its tensors fit nowhere
    bert = _bert("bert", "none")
    apply_lora(bert, LoraConfig(r=2))
    save_peft_adapter(bert, None, tmp_path / "bert")
    with pytest.raises(CheckpointError, match=r"tensor base_model\.model\.encoder\.layer\.0\."
                                              r"attention\.self\.query\.lora_A\.weight adapts a "
                                              "layer this GPT does not have"):
        load_peft_adapter(GPT(GPTConfig(vocab_size=V, n_layer=1, n_head=2, d_model=8)),
                          tmp_path / "bert")
