"""DeBERTa-v2/v3 between Hugging Face (``model_type: deberta-v2``) and lmforge.

``load`` reads ``DebertaV2Model`` and ``DebertaV2ForMaskedLM`` checkpoints (both MLM
head layouts: the legacy ``cls.predictions.*`` of ``transformers`` and the original
``lm_predictions.lm_head.*`` of microsoft/DeBERTa). Names, Hugging Face -> lmforge
(the ``deberta.`` prefix of task models is stripped first)::

    embeddings.word_embeddings            word_embeddings
    embeddings.position_embeddings        position_embeddings  (position_biased_input)
    embeddings.token_type_embeddings      token_type_embeddings
    embeddings.embed_proj                 embed_proj
    embeddings.LayerNorm                  embed_norm
    encoder.rel_embeddings                rel_embeddings
    encoder.LayerNorm                     rel_norm             (norm_rel_ebd: layer_norm)
    encoder.conv.conv / .LayerNorm        conv.conv / conv.norm
    encoder.layer.i.attention.self.{query,key,value}_proj   layers.i.attn.{query,key,value}
    encoder.layer.i.attention.self.pos_{key,query}_proj     layers.i.attn.pos_{key,query}
    encoder.layer.i.attention.output.dense / .LayerNorm     layers.i.attn_out / attn_norm
    encoder.layer.i.intermediate.dense                       layers.i.ff_in
    encoder.layer.i.output.dense / .LayerNorm                layers.i.ff_out / ff_norm
    cls.predictions.transform.dense / .LayerNorm   mlm_dense / mlm_norm
    cls.predictions.bias (= decoder.bias)          mlm_bias   (decoder.weight: tied to E)
    lm_predictions.lm_head.dense / .LayerNorm / .bias   mlm_dense / mlm_norm / mlm_bias

Dropped, as ``transformers`` drops them: ``embeddings.position_ids`` (a buffer), the
absolute ``position_embeddings`` when ``position_biased_input`` is false, the unused
relative-embedding LayerNorm of a model without ``relative_attention``, and
DeBERTa-v3's replaced-token-detection head ``mask_predictions.*``. Anything else unknown
is an error (strict loading).

``export(model)`` goes back: a model with ``head: mlm`` becomes ``DebertaV2ForMaskedLM``
(``deberta.``-prefixed, the head in the legacy ``cls.predictions.*`` layout, ``legacy:
true``), one with ``head: none`` a bare ``DebertaV2Model``. Tied duplicates are not
written, as ``save_pretrained`` does not write them: ``cls.predictions.decoder.weight``
is the word embedding table and ``cls.predictions.decoder.bias`` is
``cls.predictions.bias``, both re-tied by ``transformers`` on load
(``tie_word_embeddings: true``). A checkpoint in the ``lm_predictions.*`` layout thus
comes back in the ``cls.predictions.*`` one (same function, same numbers).
"""

from __future__ import annotations

import re

import torch

from ..errors import CheckpointError
from ..models.deberta import DebertaV2, DebertaV2Config
from . import HFConverter, HFState, assign_state, register_hf

_SIMPLE = {
    "embeddings.word_embeddings.weight": "word_embeddings.weight",
    "embeddings.position_embeddings.weight": "position_embeddings.weight",
    "embeddings.token_type_embeddings.weight": "token_type_embeddings.weight",
    "embeddings.embed_proj.weight": "embed_proj.weight",
    "embeddings.LayerNorm.weight": "embed_norm.weight",
    "embeddings.LayerNorm.bias": "embed_norm.bias",
    "encoder.rel_embeddings.weight": "rel_embeddings.weight",
    "encoder.LayerNorm.weight": "rel_norm.weight",
    "encoder.LayerNorm.bias": "rel_norm.bias",
    "encoder.conv.conv.weight": "conv.conv.weight",
    "encoder.conv.conv.bias": "conv.conv.bias",
    "encoder.conv.LayerNorm.weight": "conv.norm.weight",
    "encoder.conv.LayerNorm.bias": "conv.norm.bias",
}
_HEAD = {
    "cls.predictions.transform.dense.weight": "mlm_dense.weight",
    "cls.predictions.transform.dense.bias": "mlm_dense.bias",
    "cls.predictions.transform.LayerNorm.weight": "mlm_norm.weight",
    "cls.predictions.transform.LayerNorm.bias": "mlm_norm.bias",
    "cls.predictions.bias": "mlm_bias",
    "lm_predictions.lm_head.dense.weight": "mlm_dense.weight",
    "lm_predictions.lm_head.dense.bias": "mlm_dense.bias",
    "lm_predictions.lm_head.LayerNorm.weight": "mlm_norm.weight",
    "lm_predictions.lm_head.LayerNorm.bias": "mlm_norm.bias",
    "lm_predictions.lm_head.bias": "mlm_bias",
}
_LAYER = {
    "attention.self.query_proj": "attn.query",
    "attention.self.key_proj": "attn.key",
    "attention.self.value_proj": "attn.value",
    "attention.self.pos_key_proj": "attn.pos_key",
    "attention.self.pos_query_proj": "attn.pos_query",
    "attention.output.dense": "attn_out",
    "attention.output.LayerNorm": "attn_norm",
    "intermediate.dense": "ff_in",
    "output.dense": "ff_out",
    "output.LayerNorm": "ff_norm",
}
_LAYER_RE = re.compile(r"^encoder\.layer\.(\d+)\.(.+)\.(weight|bias)$")
_ACTS = ("gelu", "gelu_new", "relu")


def _config_from_hf(c: dict, has_head: bool) -> DebertaV2Config:
    if c.get("model_type", "deberta-v2") != "deberta-v2":
        raise CheckpointError(f"not a DeBERTa-v2 checkpoint (model_type {c['model_type']!r})")
    pos_att_type = c.get("pos_att_type") or []
    if isinstance(pos_att_type, str):
        pos_att_type = [x.strip() for x in pos_att_type.lower().split("|") if x.strip()]
    pos_att_type = [p for p in pos_att_type if p != "p2p"]  # p2p never changes the output
    unknown = [p for p in pos_att_type if p not in ("c2p", "p2c")]
    if unknown:
        raise CheckpointError(f"DeBERTa pos_att_type {unknown[0]!r} is not supported "
                              "(supported: c2p, p2c)")
    norm_rel = [x.strip() for x in str(c.get("norm_rel_ebd", "none")).lower().split("|")]
    act = c.get("hidden_act", "gelu")
    if act not in _ACTS:
        raise CheckpointError(f"DeBERTa hidden_act {act!r} is not supported ({', '.join(_ACTS)})")
    conv_act = c.get("conv_act", "tanh")
    if conv_act not in _ACTS + ("tanh",):
        raise CheckpointError(f"DeBERTa conv_act {conv_act!r} is not supported")
    if c.get("attention_head_size") not in (None, int(c["hidden_size"]) // int(
            c["num_attention_heads"])):
        raise CheckpointError("DeBERTa attention_head_size != hidden_size / heads is not "
                              "supported")
    try:
        return DebertaV2Config(
            vocab_size=int(c["vocab_size"]), d_model=int(c["hidden_size"]),
            n_layer=int(c["num_hidden_layers"]), n_head=int(c["num_attention_heads"]),
            d_ff=int(c["intermediate_size"]),
            max_seq_len=int(c.get("max_position_embeddings", 512)),
            type_vocab_size=int(c.get("type_vocab_size", 0)),
            embedding_size=int(c.get("embedding_size") or c["hidden_size"]),
            hidden_act=act, norm_eps=float(c.get("layer_norm_eps", 1e-7)),
            dropout=float(c.get("hidden_dropout_prob", 0.1)),
            attention_dropout=float(c.get("attention_probs_dropout_prob", 0.1)),
            relative_attention=bool(c.get("relative_attention", False)),
            max_relative_positions=int(c.get("max_relative_positions", -1)),
            position_buckets=int(c.get("position_buckets", -1)),
            pos_att_type=pos_att_type, share_att_key=bool(c.get("share_att_key", False)),
            norm_rel_ebd="layer_norm" if "layer_norm" in norm_rel else "none",
            position_biased_input=bool(c.get("position_biased_input", True)),
            conv_kernel_size=int(c.get("conv_kernel_size", 0) or 0),
            conv_groups=int(c.get("conv_groups", 1)), conv_act=conv_act,
            pad_token_id=int(c.get("pad_token_id", 0) or 0),
            head="mlm" if has_head else "none")
    except KeyError as e:
        raise CheckpointError(f"DeBERTa-v2 config.json has no {e.args[0]!r}") from None
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"DeBERTa-v2 config.json is invalid: {e}") from None


def _rename(hf_state: HFState, cfg: DebertaV2Config) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    tied_decoder = decoder_bias = None
    for name, t in hf_state.items():
        n = name[len("deberta."):] if name.startswith("deberta.") else name
        if n == "embeddings.position_ids" or n.startswith("mask_predictions."):
            continue
        if n == "embeddings.position_embeddings.weight" and not cfg.position_biased_input:
            continue
        if n.startswith("encoder.LayerNorm.") and not cfg.relative_attention:
            continue  # transformers builds it from norm_rel_ebd alone; unused then
        if n == "cls.predictions.decoder.weight":  # tied to the word embeddings
            tied_decoder = t
            continue
        if n == "cls.predictions.decoder.bias":  # tied to cls.predictions.bias
            decoder_bias = t
            continue
        m = _LAYER_RE.match(n)
        if n in _SIMPLE:
            out[_SIMPLE[n]] = t
        elif n in _HEAD:
            out[_HEAD[n]] = t
        elif m and m.group(2) in _LAYER:
            out[f"layers.{m.group(1)}.{_LAYER[m.group(2)]}.{m.group(3)}"] = t
        else:
            out[name] = t
    if decoder_bias is not None and "mlm_bias" not in out:
        out["mlm_bias"] = decoder_bias
    if tied_decoder is not None:
        emb = out.get("word_embeddings.weight")
        if emb is None or emb.shape != tied_decoder.shape or not torch.equal(emb, tied_decoder):
            raise CheckpointError("checkpoint: cls.predictions.decoder.weight differs from the "
                                  "word embeddings; lmforge's MLM head is tied to them")
    return out


def _has_head(hf_state: HFState) -> bool:
    return any(n.startswith(("cls.predictions.", "lm_predictions.")) for n in hf_state)


def load(hf_config: dict, hf_state: HFState) -> DebertaV2:
    """Build an lmforge :class:`DebertaV2` (with the MLM head when the checkpoint has one)."""
    cfg = _config_from_hf(hf_config, _has_head(hf_state))
    model = DebertaV2(cfg)
    assign_state(model, _rename(hf_state, cfg), source="Hugging Face DeBERTa-v2 checkpoint")
    return model.eval()


# lmforge -> Hugging Face: the inverse of the maps above (the head in transformers' legacy
# cls.predictions layout, which DebertaV2ForMaskedLM builds by default).
_SIMPLE_OUT = {lm: hf for hf, lm in _SIMPLE.items()}
_HEAD_OUT = {lm: hf for hf, lm in _HEAD.items() if hf.startswith("cls.")}
_LAYER_OUT = {lm: hf for hf, lm in _LAYER.items()}


def _hf_name(name: str, prefix: str) -> str:
    """The Hugging Face name of lmforge tensor ``name``; ``prefix`` is ``"deberta."`` for
    ``DebertaV2ForMaskedLM`` (the head itself is never prefixed), else ``""``."""
    if name in _HEAD_OUT:
        return _HEAD_OUT[name]
    if name in _SIMPLE_OUT:
        return prefix + _SIMPLE_OUT[name]
    module, _, leaf = name.rpartition(".")
    if module.startswith("layers."):
        _, i, sub = module.split(".", 2)
        if sub in _LAYER_OUT:
            return f"{prefix}encoder.layer.{i}.{_LAYER_OUT[sub]}.{leaf}"
    raise AssertionError(f"no Hugging Face name for {name}")  # pragma: no cover


def _config_to_hf(cfg: DebertaV2Config) -> dict:
    """The ``config.json`` of ``transformers``' ``DebertaV2Config`` for ``cfg`` (every field
    :func:`_config_from_hf` reads, plus dropout and init)."""
    return {
        "architectures": ["DebertaV2ForMaskedLM" if cfg.head == "mlm" else "DebertaV2Model"],
        "model_type": "deberta-v2",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "intermediate_size": cfg.d_ff,
        "max_position_embeddings": cfg.max_seq_len,
        "type_vocab_size": cfg.type_vocab_size,
        "embedding_size": cfg.embedding_size,
        "hidden_act": cfg.hidden_act,
        "layer_norm_eps": cfg.norm_eps,
        "hidden_dropout_prob": cfg.dropout,
        "attention_probs_dropout_prob": cfg.attention_dropout,
        "initializer_range": cfg.init_std,
        "relative_attention": cfg.relative_attention,
        "max_relative_positions": cfg.max_relative_positions,  # resolved: >= 1
        "position_buckets": cfg.position_buckets,
        "pos_att_type": list(cfg.pos_att_type),
        "share_att_key": cfg.share_att_key,
        # transformers builds encoder.LayerNorm from norm_rel_ebd alone; without relative
        # attention lmforge has no such norm, and saying "none" keeps the folder complete.
        "norm_rel_ebd": cfg.norm_rel_ebd if cfg.relative_attention else "none",
        "position_biased_input": cfg.position_biased_input,
        "conv_kernel_size": cfg.conv_kernel_size,
        "conv_groups": cfg.conv_groups,
        "conv_act": cfg.conv_act,
        "pad_token_id": cfg.pad_token_id,
        "legacy": True,  # the cls.predictions.* MLM head
        "tie_word_embeddings": True,  # the MLM decoder is the word embedding table
    }


def export(model: DebertaV2) -> tuple[dict, HFState]:
    """``(config.json dict, state dict)`` that ``transformers`` loads into
    ``DebertaV2ForMaskedLM`` (``head: mlm``) or ``DebertaV2Model`` (``head: none``).

    The tensors are the model's own (detached, on the CPU), without tied duplicates."""
    if not isinstance(model, DebertaV2):
        raise CheckpointError(f"cannot export a {type(model).__name__} as DeBERTa-v2")
    cfg = model.config
    prefix = "deberta." if cfg.head == "mlm" else ""
    state: HFState = {_hf_name(name, prefix): t.detach().cpu().contiguous()
                      for name, t in model.state_dict().items()}
    return _config_to_hf(cfg), state


register_hf(HFConverter(model_types=("deberta-v2",), archs=("deberta_v2",), load=load,
                        export=export))
