"""Hugging Face BERT / RoBERTa checkpoints <-> :class:`lmforge.models.bert.BertModel`.

``load(hf_config, hf_state)`` accepts the state dict of any of ``BertModel``,
``BertForMaskedLM``, ``BertForPreTraining``, ``BertFor{Sequence,Token}Classification``,
``BertForQuestionAnswering`` and their ``Roberta*`` (and ``XLMRoberta*``) counterparts,
prefixed (``bert.`` / ``roberta.``, as the task models save it) or not (the bare
model). The head is read from the tensors present (``cls.predictions.*`` /
``lm_head.*``: MLM; ``cls.seq_relationship.*``: NSP; ``qa_outputs.*``: span QA;
``classifier.*``: sequence or token classification, told apart by
``config["architectures"]``, else by the pooler, which only the sequence classifier
has); the pooler is kept when ``pooler.dense.*`` is present.
RoBERTa's classification head ``dense -> tanh -> out_proj`` on ``<s>`` is the pooler
followed by a linear layer, so it maps onto ``pooler`` + ``classifier``.

Old names from Google's TensorFlow release (``LayerNorm.gamma`` / ``LayerNorm.beta``) are
read as ``LayerNorm.weight`` / ``LayerNorm.bias``. Loading is strict: every tensor the model needs must be present with its shape, and a
checkpoint tensor that nothing uses is an error. Ignored on purpose, because they hold
nothing the model does not already have:

- ``*.embeddings.position_ids`` and ``*.embeddings.token_type_ids`` (index buffers that
  older ``transformers`` versions saved);
- ``cls.predictions.decoder.bias`` / ``lm_head.decoder.bias`` (the same tensor as
  ``cls.predictions.bias`` / ``lm_head.bias``);
- ``cls.predictions.decoder.weight`` / ``lm_head.decoder.weight`` when the decoder is
  tied to the word embeddings (``tie_word_embeddings``, the default).

``export(model)`` writes the config and state dict of the matching ``transformers``
class, without tied duplicates (``transformers`` re-ties them on load). A pooler on an
MLM-only model is dropped: ``BertForMaskedLM`` has none, and the MLM head never reads it.
"""

from __future__ import annotations

import torch

from ..errors import CheckpointError
from ..models.bert import BertConfig, BertModel
from . import HFConverter, HFState, assign_state, register_hf

_ACT_IN = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh",
           "gelu_fast": "gelu_tanh", "relu": "relu"}
_ACT_OUT = {"gelu": "gelu", "gelu_tanh": "gelu_new", "relu": "relu"}
_PREFIX = {"bert": "bert.", "roberta": "roberta."}
_HF_CLASS = {"none": "Model", "mlm": "ForMaskedLM", "pretraining": "ForPreTraining",
             "seq_cls": "ForSequenceClassification", "token_cls": "ForTokenClassification",
             "qa": "ForQuestionAnswering"}

_LAYER = {  # lmforge name -> HF name, inside layers.{i} / encoder.layer.{i}
    "attn.q_proj": "attention.self.query",
    "attn.k_proj": "attention.self.key",
    "attn.v_proj": "attention.self.value",
    "attn.out_proj": "attention.output.dense",
    "norm1": "attention.output.LayerNorm",
    "ff_in": "intermediate.dense",
    "ff_out": "output.dense",
    "norm2": "output.LayerNorm",
}
_EMB = {"embeddings.word": "embeddings.word_embeddings",
        "embeddings.position": "embeddings.position_embeddings",
        "embeddings.token_type": "embeddings.token_type_embeddings",
        "embeddings.norm": "embeddings.LayerNorm"}


def hf_names(model: BertModel, prefix: str) -> dict[str, str]:
    """lmforge state-dict name -> Hugging Face name, for every tensor ``model`` owns.

    ``prefix`` is the base-model prefix (``"bert."``, ``"roberta."`` or ``""``). Tied
    aliases (the MLM decoder weight when tied) are left out.
    """
    cfg = model.config
    roberta = cfg.flavor == "roberta"
    out: dict[str, str] = {}
    for name in model.state_dict():
        module, _, leaf = name.rpartition(".")
        if name == "mlm.decoder.weight" and cfg.tie_embeddings:
            continue
        if module in _EMB:
            out[name] = f"{prefix}{_EMB[module]}.{leaf}"
        elif module.startswith("layers."):
            _, i, sub = module.split(".", 2)
            out[name] = f"{prefix}encoder.layer.{i}.{_LAYER[sub]}.{leaf}"
        elif module == "pooler":
            out[name] = (f"classifier.dense.{leaf}" if roberta and cfg.head == "seq_cls"
                         else f"{prefix}pooler.dense.{leaf}")
        elif module.startswith("mlm."):
            sub = module[4:]
            if roberta:
                hf = {"dense": "lm_head.dense", "norm": "lm_head.layer_norm",
                      "decoder": "lm_head.decoder"}[sub]
                out[name] = "lm_head.bias" if name == "mlm.decoder.bias" else f"{hf}.{leaf}"
            else:
                hf = {"dense": "cls.predictions.transform.dense",
                      "norm": "cls.predictions.transform.LayerNorm",
                      "decoder": "cls.predictions.decoder"}[sub]
                out[name] = ("cls.predictions.bias" if name == "mlm.decoder.bias"
                             else f"{hf}.{leaf}")
        elif module == "nsp.linear":
            out[name] = f"cls.seq_relationship.{leaf}"
        elif module == "classifier.linear":
            out[name] = (f"classifier.out_proj.{leaf}" if roberta and cfg.head == "seq_cls"
                         else f"classifier.{leaf}")
        elif module == "qa.linear":
            out[name] = f"qa_outputs.{leaf}"
        else:  # pragma: no cover - a new module without a mapping
            raise AssertionError(f"no Hugging Face name for {name}")
    return out


def _legacy_name(name: str) -> str:
    """Checkpoints converted from Google's TensorFlow release call LayerNorm's weight and
    bias ``gamma`` and ``beta``."""
    if name.endswith(("LayerNorm.gamma", "LayerNorm.beta")):
        return name[:-5] + "weight" if name.endswith("gamma") else name[:-4] + "bias"
    return name


def _is_ignorable(name: str, tied: bool) -> bool:
    if name.endswith(("embeddings.position_ids", "embeddings.token_type_ids")):
        return True
    if name in ("cls.predictions.decoder.bias", "lm_head.decoder.bias"):
        return True
    return tied and name in ("cls.predictions.decoder.weight", "lm_head.decoder.weight")


def _head_of(hf_config: dict, keys: set[str], flavor: str) -> str:
    archs = hf_config.get("architectures") or []
    arch = archs[0] if archs else ""
    mlm = any(k.startswith(("cls.predictions.", "lm_head.")) for k in keys)
    nsp = any(k.startswith("cls.seq_relationship.") for k in keys)
    if nsp:
        if not mlm:
            raise CheckpointError("NSP-only checkpoints (BertForNextSentencePrediction) are "
                                  "not supported; lmforge's NSP head comes with the MLM head "
                                  "(BertForPreTraining)")
        return "pretraining"
    if mlm:
        return "mlm"
    if any(k.startswith("qa_outputs.") for k in keys):
        return "qa"
    if any(k.startswith("classifier.") for k in keys):
        if arch.endswith("ForTokenClassification"):
            return "token_cls"
        if arch.endswith("ForSequenceClassification"):
            return "seq_cls"
        if "classifier.dense.weight" in keys:  # RoBERTa's sequence classification head
            return "seq_cls"
        # No architectures: BertForSequenceClassification has a pooler, the token
        # classifier does not.
        return "seq_cls" if any(k.endswith("pooler.dense.weight") for k in keys) \
            else "token_cls"
    return "none"


def config_from_hf(hf_config: dict, hf_state: HFState | None = None) -> BertConfig:
    """The :class:`BertConfig` of a Hugging Face BERT/RoBERTa ``config.json``."""
    c = hf_config
    model_type = c.get("model_type", "bert")
    if model_type not in ("bert", "roberta", "xlm-roberta"):
        raise CheckpointError(f"not a BERT/RoBERTa config (model_type={model_type!r})")
    flavor = "bert" if model_type == "bert" else "roberta"
    if c.get("position_embedding_type", "absolute") != "absolute":
        raise CheckpointError(f"position_embedding_type={c['position_embedding_type']!r} is "
                              "not supported (only 'absolute')")
    if c.get("is_decoder") or c.get("add_cross_attention"):
        raise CheckpointError("BERT used as a decoder (is_decoder / add_cross_attention) "
                              "is not supported")
    act = c.get("hidden_act", "gelu")
    if act not in _ACT_IN:
        raise CheckpointError(f"hidden_act={act!r} is not supported; "
                              f"supported: {', '.join(_ACT_IN)}")
    keys = set(hf_state or {})
    head = _head_of(c, keys, flavor) if hf_state is not None else "none"
    base = _PREFIX[flavor]
    has_pooler = (f"{base}pooler.dense.weight" in keys or "pooler.dense.weight" in keys
                  or (flavor == "roberta" and head == "seq_cls"))
    num_labels = 2
    if head in ("seq_cls", "token_cls"):
        w = (hf_state or {}).get("classifier.weight",
                                 (hf_state or {}).get("classifier.out_proj.weight"))
        num_labels = int(w.shape[0]) if w is not None else len(c.get("id2label") or {}) or 2
    pad = c.get("pad_token_id")
    hidden_p = float(c.get("hidden_dropout_prob", 0.1))
    attn_p = float(c.get("attention_probs_dropout_prob", 0.1))
    try:
        return BertConfig(
            vocab_size=int(c["vocab_size"]), flavor=flavor,
            n_layer=int(c["num_hidden_layers"]), n_head=int(c["num_attention_heads"]),
            d_model=int(c["hidden_size"]), d_ff=int(c["intermediate_size"]),
            max_position=int(c.get("max_position_embeddings", 512)),
            type_vocab_size=int(c.get("type_vocab_size", 2)),
            dropout=hidden_p, attn_dropout=None if attn_p == hidden_p else attn_p,
            classifier_dropout=c.get("classifier_dropout"),
            norm_eps=float(c.get("layer_norm_eps", 1e-12)),
            activation=_ACT_IN[act],
            pad_id=None if pad is None else int(pad),
            head=head, pooler=has_pooler, num_labels=num_labels,
            tie_embeddings=bool(c.get("tie_word_embeddings", True)),
            init_std=float(c.get("initializer_range", 0.02)))
    except KeyError as e:
        raise CheckpointError(f"config.json has no {e.args[0]!r}") from None
    except ValueError as e:
        raise CheckpointError(f"config.json: {e}") from None


def load(hf_config: dict, hf_state: HFState) -> BertModel:
    """Build the lmforge model of a Hugging Face BERT/RoBERTa config + state dict."""
    hf_state = {_legacy_name(k): v for k, v in hf_state.items()}
    cfg = config_from_hf(hf_config, hf_state)
    base = _PREFIX[cfg.flavor]
    prefix = base if any(k.startswith(base) for k in hf_state) else ""
    with torch.device("meta"):  # no random init: every tensor is overwritten below
        model = BertModel(cfg)
    model = model.to_empty(device="cpu")
    model.tie_weights()
    names = hf_names(model, prefix)  # lmforge -> HF
    expected = model.state_dict()
    state = {}
    for lm, hf in names.items():
        t = hf_state.get(hf)
        if t is None and lm == "mlm.decoder.bias":  # old checkpoints: only the alias
            t = hf_state.get({"bert": "cls.predictions.decoder.bias",
                              "roberta": "lm_head.decoder.bias"}[cfg.flavor])
        if t is None:
            raise CheckpointError(f"Hugging Face checkpoint: missing tensor {hf} (expected "
                                  f"shape {tuple(expected[lm].shape)})")
        if tuple(t.shape) != tuple(expected[lm].shape):
            raise CheckpointError(f"Hugging Face checkpoint: tensor {hf} has shape "
                                  f"{tuple(t.shape)}, model expects "
                                  f"{tuple(expected[lm].shape)}")
        state[lm] = t
    used = set(names.values())
    unused = sorted(k for k in hf_state
                    if k not in used and not _is_ignorable(k, cfg.tie_embeddings))
    if unused:
        raise CheckpointError(f"Hugging Face checkpoint: unexpected tensor {unused[0]} with "
                              f"shape {tuple(hf_state[unused[0]].shape)} (not used by the "
                              f"{cfg.flavor} model with head={cfg.head!r})")
    assign_state(model, state, "Hugging Face checkpoint")
    return model.eval()


def export(model: BertModel) -> tuple[dict, HFState]:
    """``(config.json dict, state dict)`` that ``transformers`` loads into the matching
    ``Bert*`` / ``Roberta*`` class (``architectures`` names it)."""
    if not isinstance(model, BertModel):
        raise CheckpointError(f"cannot export a {type(model).__name__} as BERT")
    cfg = model.config
    family = "Bert" if cfg.flavor == "bert" else "Roberta"
    if cfg.flavor == "roberta" and cfg.head == "pretraining":
        raise CheckpointError("transformers has no RoBERTa class with an NSP head; export "
                              "with head='mlm' instead")
    if cfg.flavor == "roberta" and cfg.position_offset != cfg.pad_id + 1:
        raise CheckpointError("transformers' RoBERTa needs position_offset = pad_id + 1")
    if cfg.flavor == "bert" and cfg.position_offset != 0:
        raise CheckpointError("transformers' BERT needs position_offset = 0")
    if cfg.n_head * cfg.head_dim != cfg.d_model:
        raise CheckpointError(f"transformers' {family} derives the head size from "
                              f"hidden_size / num_attention_heads; this model has head_dim="
                              f"{cfg.head_dim} with n_head={cfg.n_head}, d_model={cfg.d_model} "
                              "(pruned heads): keep it as an lmforge folder")
    prefix = "" if cfg.head == "none" else _PREFIX[cfg.flavor]
    names = hf_names(model, prefix)
    drop_pooler = cfg.head in ("mlm", "token_cls", "qa")
    state = {}
    for lm, t in model.state_dict().items():
        if lm not in names or (drop_pooler and lm.startswith("pooler.")):
            continue
        state[names[lm]] = t.detach().clone().contiguous().cpu()
    hf_config = {
        "architectures": [family + _HF_CLASS[cfg.head]],
        "model_type": cfg.flavor,
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "intermediate_size": cfg.d_ff,
        "hidden_act": _ACT_OUT[cfg.activation],
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.dropout if cfg.attn_dropout is None
        else cfg.attn_dropout,
        "classifier_dropout": cfg.classifier_dropout,
        "max_position_embeddings": cfg.max_position,
        "type_vocab_size": cfg.type_vocab_size,
        "layer_norm_eps": cfg.norm_eps,
        "initializer_range": cfg.init_std,
        "pad_token_id": cfg.pad_id,
        "position_embedding_type": "absolute",
        "tie_word_embeddings": cfg.tie_embeddings,
    }
    if cfg.head in ("seq_cls", "token_cls"):
        hf_config["id2label"] = {str(i): f"LABEL_{i}" for i in range(cfg.num_labels)}
        hf_config["label2id"] = {f"LABEL_{i}": i for i in range(cfg.num_labels)}
    return hf_config, state


register_hf(HFConverter(model_types=("bert", "roberta", "xlm-roberta"), archs=("bert",),
                        load=load, export=export))
