"""T5 (v1.0 and v1.1) between Hugging Face ``T5ForConditionalGeneration`` and lmforge.

Loads ``model_type`` ``t5`` and ``mt5`` (same architecture: v1.1, never rescaled);
exports as ``t5``.

Names, Hugging Face -> lmforge (``S`` is ``encoder`` or ``decoder``)::

    shared.weight                                          shared.weight
    S.block.0.layer.0.SelfAttention.relative_attention_bias S.rel_bias.embedding
    S.block.i.layer.0.SelfAttention.{q,k,v,o}              S.blocks.i.self_attn.{q,k,v,o}
    S.block.i.layer.0.layer_norm                           S.blocks.i.self_norm
    decoder.block.i.layer.1.EncDecAttention.{q,k,v,o}      decoder.blocks.i.cross_attn.*
    decoder.block.i.layer.1.layer_norm                     decoder.blocks.i.cross_norm
    S.block.i.layer.-1.DenseReluDense.wi                   S.blocks.i.ff.wi
    S.block.i.layer.-1.DenseReluDense.{wi_0; wi_1}         S.blocks.i.ff.wi (concatenated)
    S.block.i.layer.-1.DenseReluDense.wo                   S.blocks.i.ff.wo
    S.block.i.layer.-1.layer_norm                          S.blocks.i.ff_norm
    S.final_layer_norm                                     S.norm_f
    lm_head.weight                                         lm_head.weight (v1.1, untied)

``encoder.embed_tokens`` / ``decoder.embed_tokens`` are copies of ``shared`` (checked),
and the unused ``decoder.block.0.layer.1.EncDecAttention.relative_attention_bias`` of
old checkpoints is dropped, as ``transformers`` does.

Tying and rescaling: ``transformers`` 5 always ties ``lm_head`` to ``shared`` unless the
checkpoint holds a different ``lm_head.weight``, and reads the ``d^-0.5`` rescale from
``scale_decoder_outputs`` (older configs: from ``tie_word_embeddings``). We do the same:
``lm_head`` is untied exactly when the checkpoint's ``lm_head.weight`` differs from
``shared.weight``, and the rescale follows ``scale_decoder_outputs`` if present, else
``tie_word_embeddings`` (default True; always False for ``mt5``).
"""

from __future__ import annotations

import re

import torch

from ..errors import CheckpointError
from ..models.t5 import T5, T5Config
from . import HFConverter, HFState, assign_state, register_hf


def _config_from_hf(c: dict) -> T5Config:
    ffp = c.get("feed_forward_proj", "relu")
    if ffp not in ("relu", "gated-gelu"):
        raise CheckpointError(f"T5 feed_forward_proj {ffp!r} is not supported "
                              "(supported: 'relu' (v1.0), 'gated-gelu' (v1.1))")
    if ffp == "gated-gelu" and c.get("dense_act_fn", "gelu_new") not in (
            "gelu_new", "gelu_pytorch_tanh", "gelu_fast"):
        raise CheckpointError(f"T5 dense_act_fn {c['dense_act_fn']!r} with gated-gelu is not "
                              "supported (T5 v1.1 uses gelu_new)")
    tie = c.get("tie_word_embeddings", True) is not False
    scale = c.get("scale_decoder_outputs")
    if scale is None:
        scale = tie
    try:
        n_layer = int(c.get("num_layers", 6))
        return T5Config(
            vocab_size=int(c["vocab_size"]), d_model=int(c.get("d_model", 512)),
            d_kv=int(c.get("d_kv", 64)), d_ff=int(c.get("d_ff", 2048)), n_layer=n_layer,
            n_decoder_layer=int(c.get("num_decoder_layers") or n_layer),
            n_head=int(c.get("num_heads", 8)),
            relative_buckets=int(c.get("relative_attention_num_buckets", 32)),
            relative_max_distance=int(c.get("relative_attention_max_distance", 128)),
            feed_forward_proj=ffp, tie_word_embeddings=tie, scale_decoder_output=bool(scale),
            dropout=0.0, norm_eps=float(c.get("layer_norm_epsilon", 1e-6)),
            init_factor=float(c.get("initializer_factor", 1.0)),
            pad_token_id=int(c.get("pad_token_id", 0) or 0),
            eos_token_id=int(_first(c.get("eos_token_id", 1))),
            decoder_start_token_id=int(c.get("decoder_start_token_id",
                                             c.get("pad_token_id", 0)) or 0))
    except KeyError as e:
        raise CheckpointError(f"T5 config.json has no {e.args[0]!r}") from None
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"T5 config.json is invalid: {e}") from None


def _first(v):
    return v[0] if isinstance(v, list | tuple) else (1 if v is None else v)


_BLOCK = re.compile(r"^(encoder|decoder)\.block\.(\d+)\.layer\.(\d+)\.(.+)$")


def _rename(hf_state: HFState, cfg: T5Config) -> dict[str, torch.Tensor]:
    """Hugging Face names -> lmforge names; unknown names pass through (and are then
    reported by :func:`assign_state`)."""
    state = dict(hf_state)
    out: dict[str, torch.Tensor] = {}
    if "shared.weight" not in state:
        for alt in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
            if alt in state:
                state["shared.weight"] = state[alt]
                break
    shared = state.get("shared.weight")
    for alt in ("encoder.embed_tokens.weight", "decoder.embed_tokens.weight"):
        t = state.pop(alt, None)
        if t is not None and shared is not None and (
                t.shape != shared.shape or not torch.equal(t, shared)):
            raise CheckpointError(f"checkpoint: {alt} differs from shared.weight; T5 shares "
                                  "one embedding between encoder and decoder")
    state.pop("decoder.block.0.layer.1.EncDecAttention.relative_attention_bias.weight", None)
    lm_head = state.pop("lm_head.weight", None)
    if lm_head is not None and not cfg.tie_word_embeddings:
        out["lm_head.weight"] = lm_head
    gates: dict[str, dict[str, torch.Tensor]] = {}
    for name, t in state.items():
        m = _BLOCK.match(name)
        if name == "shared.weight":
            out[name] = t
        elif name in ("encoder.final_layer_norm.weight", "decoder.final_layer_norm.weight"):
            out[name.split(".")[0] + ".norm_f.weight"] = t
        elif m:
            stack, i, j, rest = m.group(1), int(m.group(2)), int(m.group(3)), m.group(4)
            ff_index = 2 if stack == "decoder" else 1
            p = f"{stack}.blocks.{i}."
            if j == 0 and rest == "SelfAttention.relative_attention_bias.weight" and i == 0:
                out[f"{stack}.rel_bias.embedding.weight"] = t
            elif j == 0 and rest.startswith("SelfAttention.") and rest[14] in "qkvo" \
                    and rest[15:] == ".weight":
                out[p + "self_attn." + rest[14:]] = t
            elif j == 0 and rest == "layer_norm.weight":
                out[p + "self_norm.weight"] = t
            elif stack == "decoder" and j == 1 and rest.startswith("EncDecAttention.") \
                    and rest[16] in "qkvo" and rest[17:] == ".weight":
                out[p + "cross_attn." + rest[16:]] = t
            elif stack == "decoder" and j == 1 and rest == "layer_norm.weight":
                out[p + "cross_norm.weight"] = t
            elif j == ff_index and rest == "layer_norm.weight":
                out[p + "ff_norm.weight"] = t
            elif j == ff_index and rest in ("DenseReluDense.wi.weight",
                                            "DenseReluDense.wo.weight"):
                out[p + "ff." + rest.split(".")[1] + ".weight"] = t
            elif j == ff_index and rest in ("DenseReluDense.wi_0.weight",
                                            "DenseReluDense.wi_1.weight"):
                gates.setdefault(p, {})[rest.split(".")[1]] = t
            else:
                out[name] = t
        else:
            out[name] = t
    for p, g in gates.items():
        if set(g) != {"wi_0", "wi_1"}:
            missing = ({"wi_0", "wi_1"} - set(g)).pop()
            hf_p = p.replace("blocks", "block")
            raise CheckpointError(f"checkpoint: missing tensor {hf_p}layer.*.DenseReluDense."
                                  f"{missing}.weight (gated-gelu needs wi_0 and wi_1)")
        if g["wi_0"].shape != g["wi_1"].shape:
            raise CheckpointError(f"checkpoint: {p} wi_0 {tuple(g['wi_0'].shape)} and wi_1 "
                                  f"{tuple(g['wi_1'].shape)} differ in shape")
        out[p + "ff.wi.weight"] = torch.cat([g["wi_0"], g["wi_1"]], dim=0)  # gate, linear
    return out


def load(hf_config: dict, hf_state: HFState) -> T5:
    """Build an lmforge :class:`T5` from a Hugging Face T5 config dict and state dict."""
    if hf_config.get("model_type", "t5") not in ("t5", "mt5"):
        raise CheckpointError(f"not a T5 checkpoint (model_type {hf_config['model_type']!r})")
    hf_config = dict(hf_config)
    shared = hf_state.get("shared.weight", hf_state.get("encoder.embed_tokens.weight"))
    lm_head = hf_state.get("lm_head.weight")
    # Untied exactly when the checkpoint has its own, different lm_head (transformers 5).
    untied = lm_head is not None and (shared is None or lm_head.shape != shared.shape
                                      or not torch.equal(lm_head, shared))
    scale = hf_config.get("scale_decoder_outputs")
    if scale is None:
        scale = hf_config.get("tie_word_embeddings", True) is not False
    if hf_config.get("model_type") == "mt5":
        scale = False  # mT5 (a v1.1 model) never rescales
    hf_config["scale_decoder_outputs"] = scale
    hf_config["tie_word_embeddings"] = not untied
    cfg = _config_from_hf(hf_config)
    model = T5(cfg)
    state = _rename(hf_state, cfg)
    assign_state(model, state, source="Hugging Face T5 checkpoint")
    return model.eval()


def export(model: T5) -> tuple[dict, HFState]:
    """(config.json dict, state dict) that ``T5ForConditionalGeneration`` loads."""
    cfg = model.config
    hf_config = {
        "model_type": "t5", "architectures": ["T5ForConditionalGeneration"],
        "vocab_size": cfg.vocab_size, "d_model": cfg.d_model, "d_kv": cfg.d_kv,
        "d_ff": cfg.d_ff, "num_layers": cfg.n_layer, "num_decoder_layers": cfg.n_decoder_layer,
        "num_heads": cfg.n_head, "relative_attention_num_buckets": cfg.relative_buckets,
        "relative_attention_max_distance": cfg.relative_max_distance,
        "dropout_rate": cfg.dropout, "layer_norm_epsilon": cfg.norm_eps,
        "initializer_factor": cfg.init_factor, "feed_forward_proj": cfg.feed_forward_proj,
        "dense_act_fn": "gelu_new" if cfg.feed_forward_proj == "gated-gelu" else "relu",
        "is_gated_act": cfg.feed_forward_proj == "gated-gelu",
        "tie_word_embeddings": cfg.tie_word_embeddings,
        "scale_decoder_outputs": bool(cfg.scale_decoder_output),
        "is_encoder_decoder": True, "pad_token_id": cfg.pad_token_id,
        "eos_token_id": cfg.eos_token_id, "decoder_start_token_id": cfg.decoder_start_token_id,
    }
    sd = {n: t.detach() for n, t in model.state_dict().items()}
    out: HFState = {"shared.weight": sd["shared.weight"]}
    if not cfg.tie_word_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    for stack, n in (("encoder", cfg.n_layer), ("decoder", cfg.n_decoder_layer)):
        out[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"] = \
            sd[f"{stack}.rel_bias.embedding.weight"]
        out[f"{stack}.final_layer_norm.weight"] = sd[f"{stack}.norm_f.weight"]
        ff = 2 if stack == "decoder" else 1
        for i in range(n):
            p, h = f"{stack}.blocks.{i}.", f"{stack}.block.{i}.layer."
            for w in "qkvo":
                out[f"{h}0.SelfAttention.{w}.weight"] = sd[f"{p}self_attn.{w}.weight"]
                if stack == "decoder":
                    out[f"{h}1.EncDecAttention.{w}.weight"] = sd[f"{p}cross_attn.{w}.weight"]
            out[f"{h}0.layer_norm.weight"] = sd[f"{p}self_norm.weight"]
            if stack == "decoder":
                out[f"{h}1.layer_norm.weight"] = sd[f"{p}cross_norm.weight"]
            out[f"{h}{ff}.layer_norm.weight"] = sd[f"{p}ff_norm.weight"]
            out[f"{h}{ff}.DenseReluDense.wo.weight"] = sd[f"{p}ff.wo.weight"]
            wi = sd[f"{p}ff.wi.weight"]
            if cfg.feed_forward_proj == "gated-gelu":
                g, lin = wi.chunk(2, dim=0)
                out[f"{h}{ff}.DenseReluDense.wi_0.weight"] = g.contiguous()
                out[f"{h}{ff}.DenseReluDense.wi_1.weight"] = lin.contiguous()
            else:
                out[f"{h}{ff}.DenseReluDense.wi.weight"] = wi
    return hf_config, out


register_hf(HFConverter(model_types=("t5", "mt5"), archs=("t5",), load=load, export=export))
