"""GPT-2 and Llama checkpoints <-> lmforge :class:`~lmforge.models.gpt.GPT`.

Both published architectures are styles of lmforge's one GPT, so conversion is renaming,
transposing and concatenating tensors; no arithmetic changes the weights.

GPT-2 (``model_type: gpt2``). GPT-2 stores its linear layers as ``Conv1D`` with weights of
shape (in, out), the transpose of ``nn.Linear``'s (out, in)::

    transformer.wte.weight               wte.weight
    transformer.wpe.weight               wpe.weight
    transformer.h.{i}.ln_1.*             blocks.{i}.norm1.*
    transformer.h.{i}.attn.c_attn.*      blocks.{i}.attn.qkv.*     weight transposed; [q; k; v]
    transformer.h.{i}.attn.c_proj.*      blocks.{i}.attn.proj.*    weight transposed
    transformer.h.{i}.ln_2.*             blocks.{i}.norm2.*
    transformer.h.{i}.mlp.c_fc.*         blocks.{i}.mlp.up.*       weight transposed
    transformer.h.{i}.mlp.c_proj.*       blocks.{i}.mlp.down.*     weight transposed
    transformer.ln_f.*                   norm_f.*
    lm_head.weight                       lm_head.weight            tied to wte: not stored

The ``transformer.`` prefix is optional (the original OpenAI checkpoints lack it); the
causal-mask buffers ``attn.bias`` and ``attn.masked_bias`` of old checkpoints are skipped.

Llama (``model_type: llama``), all ``nn.Linear`` (out, in), no transposes::

    model.embed_tokens.weight                       wte.weight
    model.layers.{i}.input_layernorm.weight         blocks.{i}.norm1.weight
    model.layers.{i}.self_attn.{q,k,v}_proj.*       blocks.{i}.attn.qkv.*   concatenated [q; k; v]
    model.layers.{i}.self_attn.o_proj.*             blocks.{i}.attn.proj.*
    model.layers.{i}.post_attention_layernorm.weight blocks.{i}.norm2.weight
    model.layers.{i}.mlp.{gate,up}_proj.*           blocks.{i}.mlp.up.*     concatenated [gate; up]
    model.layers.{i}.mlp.down_proj.*                blocks.{i}.mlp.down.*
    model.norm.weight                               norm_f.weight
    lm_head.weight                                  lm_head.weight (absent when tied)

Hugging Face's Llama applies RoPE with the same rotate-half convention as lmforge (pairs
``(c, c + d_h/2)``), so q and k need no permutation. Configurations lmforge's GPT cannot
reproduce exactly (exact-erf GELU, scaled RoPE, per-layer attention scaling, ...) are
refused with a :class:`~lmforge.errors.CheckpointError` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch

from ..errors import CheckpointError
from ..models.gpt import GPT, GPTConfig
from . import HFConverter, assign_state, register_hf

__all__ = ["gpt_config_from_hf", "load_gpt", "export_gpt", "hf_target"]

# Every one of these is the tanh approximation of GELU that lmforge's GPT-2 MLP uses.
_TANH_GELUS = ("gelu_new", "gelu_pytorch_tanh", "gelu_fast")
_ARCHITECTURES = {"gpt2": "GPT2LMHeadModel", "llama": "LlamaForCausalLM"}


def _bad(model_type: str, msg: str) -> CheckpointError:
    return CheckpointError(f"Hugging Face {model_type} config: {msg}")


def _req(hf: Mapping[str, Any], model_type: str, *keys: str) -> Any:
    """The first of ``keys`` present in ``hf`` (aliases across versions)."""
    for key in keys:
        if hf.get(key) is not None:
            return hf[key]
    raise _bad(model_type, f"missing field {keys[0]!r}")


def _rope_theta(hf: Mapping[str, Any]) -> float:
    """``rope_theta`` from a 4.x (``rope_theta``, ``rope_scaling``) or 5.x
    (``rope_parameters``) config; any real RoPE scaling is refused."""
    theta = hf.get("rope_theta")
    for key in ("rope_scaling", "rope_parameters"):
        spec = hf.get(key)
        if spec is None:
            continue
        if not isinstance(spec, Mapping):
            raise _bad("llama", f"{key}={spec!r} is not an object")
        kind = spec.get("rope_type", spec.get("type", "default"))
        factor = spec.get("factor", 1.0)
        if not (kind == "default" or (kind in ("linear", "dynamic") and factor == 1.0)):
            raise _bad("llama", f"{key} of type {kind!r} (factor {factor}) is not supported: "
                                "lmforge's RoPE has no scaling (only 'default' is)")
        if spec.get("rope_theta") is not None:
            theta = spec["rope_theta"]
    return float(theta if theta is not None else 10000.0)


def gpt_config_from_hf(hf: Mapping[str, Any]) -> GPTConfig:
    """The :class:`GPTConfig` equivalent to a Hugging Face gpt2 or llama ``config.json``."""
    model_type = hf.get("model_type")
    if model_type == "gpt2":
        act = hf.get("activation_function", "gelu_new")
        if act not in _TANH_GELUS:
            raise _bad("gpt2", f"activation_function={act!r} is not supported; lmforge's "
                               f"GPT-2 MLP uses the tanh-approximate GELU ({', '.join(_TANH_GELUS)})")
        for key, want in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False),
                          ("add_cross_attention", False)):
            if hf.get(key, want) != want:
                raise _bad("gpt2", f"{key}={hf[key]!r} is not supported (lmforge needs {want})")
        d = int(_req(hf, "gpt2", "n_embd", "hidden_size"))
        kw: dict[str, Any] = dict(
            style="gpt2", vocab_size=int(_req(hf, "gpt2", "vocab_size")),
            n_layer=int(_req(hf, "gpt2", "n_layer", "num_hidden_layers")),
            n_head=int(_req(hf, "gpt2", "n_head", "num_attention_heads")), d_model=d,
            d_ff=int(hf.get("n_inner") or 4 * d),
            max_seq_len=int(_req(hf, "gpt2", "n_positions", "n_ctx", "max_position_embeddings")),
            norm_eps=float(hf.get("layer_norm_epsilon", 1e-5)),
            dropout=float(hf.get("resid_pdrop", 0.0)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", True)))
    elif model_type == "llama":
        act = hf.get("hidden_act", "silu")
        if act != "silu":
            raise _bad("llama", f"hidden_act={act!r} is not supported (lmforge's SwiGLU uses silu)")
        attn_bias, mlp_bias = bool(hf.get("attention_bias", False)), bool(hf.get("mlp_bias", False))
        if attn_bias != mlp_bias:
            raise _bad("llama", f"attention_bias={attn_bias} with mlp_bias={mlp_bias} is not "
                                "supported (lmforge has one bias switch for both)")
        d = int(_req(hf, "llama", "hidden_size"))
        n_head = int(_req(hf, "llama", "num_attention_heads"))
        head_dim = hf.get("head_dim")
        if head_dim is not None and int(head_dim) * n_head != d:
            raise _bad("llama", f"head_dim={head_dim} is not supported: lmforge needs "
                                f"head_dim = hidden_size / num_attention_heads = {d / n_head:g}")
        kw = dict(
            style="llama", vocab_size=int(_req(hf, "llama", "vocab_size")),
            n_layer=int(_req(hf, "llama", "num_hidden_layers")), n_head=n_head,
            n_kv_head=int(hf.get("num_key_value_heads") or n_head), d_model=d,
            d_ff=int(_req(hf, "llama", "intermediate_size")),
            max_seq_len=int(hf.get("max_position_embeddings") or 2048),
            norm_eps=float(hf.get("rms_norm_eps", 1e-6)), rope_theta=_rope_theta(hf),
            dropout=float(hf.get("attention_dropout", 0.0)), bias=attn_bias,
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)))
    else:
        raise _bad(str(model_type), "not a gpt2 or llama config")
    if hf.get("initializer_range") is not None:
        kw["init_std"] = float(hf["initializer_range"])
    try:
        return GPTConfig(**kw)
    except ValueError as e:
        raise _bad(model_type, str(e)) from None


class _Source:
    """Hugging Face tensors taken one at a time, each checked for presence and shape."""

    def __init__(self, state: Mapping[str, torch.Tensor], model_type: str, prefix: str):
        self.state, self.model_type = state, model_type
        # The prefix ("transformer." / "model.") is optional: use it when the file has it.
        self.prefix = prefix if any(k.startswith(prefix) for k in state) else ""
        self.used: set[str] = set()

    def take(self, name: str, shape: tuple[int, ...], prefixed: bool = True) -> torch.Tensor:
        full = self.prefix + name if prefixed else name
        where = f"Hugging Face {self.model_type} checkpoint"
        if full not in self.state:
            raise CheckpointError(f"{where}: missing tensor {full} (expected shape {shape})")
        t = self.state[full]
        if tuple(t.shape) != tuple(shape):
            raise CheckpointError(f"{where}: tensor {full} has shape {tuple(t.shape)}, "
                                  f"expected {shape}")
        self.used.add(full)
        return t

    def finish(self, ignore: Callable[[str], bool]) -> None:
        extra = sorted(n for n in self.state if n not in self.used and not ignore(n))
        if extra:
            raise CheckpointError(
                f"Hugging Face {self.model_type} checkpoint: unexpected tensor {extra[0]} with "
                f"shape {tuple(self.state[extra[0]].shape)} (not used by the model)")


def _load_gpt2(c: GPTConfig, src: _Source) -> dict[str, torch.Tensor]:
    d, ff, V, T = c.d_model, c.d_ff, c.vocab_size, c.max_seq_len
    out = {"wte.weight": src.take("wte.weight", (V, d)),
           "wpe.weight": src.take("wpe.weight", (T, d))}
    for i in range(c.n_layer):
        h, b = f"h.{i}.", f"blocks.{i}."
        for hf_name, ours, shape, transpose in (
                ("ln_1.weight", "norm1.weight", (d,), False),
                ("ln_1.bias", "norm1.bias", (d,), False),
                ("attn.c_attn.weight", "attn.qkv.weight", (d, 3 * d), True),
                ("attn.c_attn.bias", "attn.qkv.bias", (3 * d,), False),
                ("attn.c_proj.weight", "attn.proj.weight", (d, d), True),
                ("attn.c_proj.bias", "attn.proj.bias", (d,), False),
                ("ln_2.weight", "norm2.weight", (d,), False),
                ("ln_2.bias", "norm2.bias", (d,), False),
                ("mlp.c_fc.weight", "mlp.up.weight", (d, ff), True),
                ("mlp.c_fc.bias", "mlp.up.bias", (ff,), False),
                ("mlp.c_proj.weight", "mlp.down.weight", (ff, d), True),
                ("mlp.c_proj.bias", "mlp.down.bias", (d,), False)):
            t = src.take(h + hf_name, shape)
            out[b + ours] = t.t() if transpose else t
    out["norm_f.weight"] = src.take("ln_f.weight", (d,))
    out["norm_f.bias"] = src.take("ln_f.bias", (d,))
    if not c.tie_embeddings:
        out["lm_head.weight"] = src.take("lm_head.weight", (V, d), prefixed=False)
    src.finish(lambda n: n.endswith((".attn.bias", ".attn.masked_bias"))
               or (c.tie_embeddings and n == "lm_head.weight"))
    return out


def _load_llama(c: GPTConfig, src: _Source) -> dict[str, torch.Tensor]:
    d, ff, V = c.d_model, c.d_ff, c.vocab_size
    dq, dkv = c.n_head * c.head_dim, c.n_kv_head * c.head_dim
    out = {"wte.weight": src.take("embed_tokens.weight", (V, d))}
    for i in range(c.n_layer):
        h, b = f"layers.{i}.", f"blocks.{i}."
        out[b + "norm1.weight"] = src.take(h + "input_layernorm.weight", (d,))
        out[b + "norm2.weight"] = src.take(h + "post_attention_layernorm.weight", (d,))
        suffixes = ("weight", "bias") if c.bias else ("weight",)
        for s in suffixes:
            def shp(n: int, s: str = s) -> tuple[int, ...]:
                return (n, d) if s == "weight" else (n,)
            out[b + f"attn.qkv.{s}"] = torch.cat(
                [src.take(h + f"self_attn.q_proj.{s}", shp(dq)),
                 src.take(h + f"self_attn.k_proj.{s}", shp(dkv)),
                 src.take(h + f"self_attn.v_proj.{s}", shp(dkv))])
            out[b + f"mlp.up.{s}"] = torch.cat(
                [src.take(h + f"mlp.gate_proj.{s}", shp(ff)),
                 src.take(h + f"mlp.up_proj.{s}", shp(ff))])
            out[b + f"attn.proj.{s}"] = src.take(
                h + f"self_attn.o_proj.{s}", (d, dq) if s == "weight" else (d,))
            out[b + f"mlp.down.{s}"] = src.take(
                h + f"mlp.down_proj.{s}", (d, ff) if s == "weight" else (d,))
    out["norm_f.weight"] = src.take("norm.weight", (d,))
    if not c.tie_embeddings:
        out["lm_head.weight"] = src.take("lm_head.weight", (V, d), prefixed=False)
    src.finish(lambda n: n.endswith(".rotary_emb.inv_freq")
               or (c.tie_embeddings and n == "lm_head.weight"))
    return out


def load_gpt(hf_config: dict, hf_state: Mapping[str, torch.Tensor]) -> GPT:
    """An lmforge GPT with the weights of a Hugging Face gpt2 or llama checkpoint."""
    cfg = gpt_config_from_hf(hf_config)
    model_type = hf_config["model_type"]
    if model_type == "gpt2":
        state = _load_gpt2(cfg, _Source(hf_state, "gpt2", "transformer."))
    else:
        state = _load_llama(cfg, _Source(hf_state, "llama", "model."))
    model = GPT(cfg)  # fp32: half-precision weights are upcast (run it under autocast)
    return assign_state(model, state, source=f"Hugging Face {model_type} checkpoint")


# ----------------------------------------------------------------------------- export

_NEEDS = {"gpt2": {"pos": "learned", "norm": "layernorm", "mlp": "gelu", "bias": True},
          "llama": {"pos": "rope", "norm": "rmsnorm", "mlp": "swiglu"}}


def _mismatches(c: GPTConfig, target: str) -> list[str]:
    out = [f"{k}={getattr(c, k)!r} ({target} needs {v!r})"
           for k, v in _NEEDS[target].items() if getattr(c, k) != v]
    if target == "gpt2" and c.n_kv_head != c.n_head:
        out.append(f"n_kv_head={c.n_kv_head} (gpt2 has no grouped-query attention: needs "
                   f"n_kv_head = n_head = {c.n_head})")
    if target == "gpt2" and c.n_head * c.head_dim != c.d_model:
        out.append(f"head_dim={c.head_dim} (gpt2 derives the head size: needs n_head * "
                   f"head_dim = d_model = {c.d_model})")
    return out


def hf_target(c: GPTConfig) -> str:
    """The Hugging Face ``model_type`` a GPT config exports to (its style's), or a
    :class:`CheckpointError` naming each field that neither gpt2 nor llama can hold."""
    other = "llama" if c.style == "gpt2" else "gpt2"
    for target in (c.style, other):
        if not _mismatches(c, target):
            return target
    raise CheckpointError(f"cannot export this GPT (style {c.style}) to Hugging Face "
                          f"{c.style}: " + "; ".join(_mismatches(c, c.style)))


def _common_config(c: GPTConfig, target: str) -> dict[str, Any]:
    return {"architectures": [_ARCHITECTURES[target]], "model_type": target,
            "vocab_size": c.vocab_size, "initializer_range": c.init_std,
            "tie_word_embeddings": bool(c.tie_embeddings), "use_cache": True,
            "bos_token_id": None, "eos_token_id": None, "pad_token_id": None}


def _export_gpt2(model: GPT) -> tuple[dict, dict[str, torch.Tensor]]:
    c = model.config
    hf = {**_common_config(c, "gpt2"), "n_positions": c.max_seq_len, "n_ctx": c.max_seq_len,
          "n_embd": c.d_model, "n_layer": c.n_layer, "n_head": c.n_head, "n_inner": c.d_ff,
          "activation_function": "gelu_new", "resid_pdrop": c.dropout,
          "embd_pdrop": c.dropout, "attn_pdrop": c.dropout,
          "layer_norm_epsilon": c.norm_eps, "scale_attn_weights": True,
          "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False}
    sd = model.state_dict()
    out = {"transformer.wte.weight": sd["wte.weight"], "transformer.wpe.weight": sd["wpe.weight"]}
    for i in range(c.n_layer):
        h, b = f"transformer.h.{i}.", f"blocks.{i}."
        for hf_name, ours, transpose in (
                ("ln_1.weight", "norm1.weight", False), ("ln_1.bias", "norm1.bias", False),
                ("attn.c_attn.weight", "attn.qkv.weight", True),
                ("attn.c_attn.bias", "attn.qkv.bias", False),
                ("attn.c_proj.weight", "attn.proj.weight", True),
                ("attn.c_proj.bias", "attn.proj.bias", False),
                ("ln_2.weight", "norm2.weight", False), ("ln_2.bias", "norm2.bias", False),
                ("mlp.c_fc.weight", "mlp.up.weight", True), ("mlp.c_fc.bias", "mlp.up.bias", False),
                ("mlp.c_proj.weight", "mlp.down.weight", True),
                ("mlp.c_proj.bias", "mlp.down.bias", False)):
            t = sd[b + ours]
            out[h + hf_name] = t.t() if transpose else t
    out["transformer.ln_f.weight"] = sd["norm_f.weight"]
    out["transformer.ln_f.bias"] = sd["norm_f.bias"]
    if not c.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    return hf, out


def _export_llama(model: GPT) -> tuple[dict, dict[str, torch.Tensor]]:
    c = model.config
    hf = {**_common_config(c, "llama"), "hidden_size": c.d_model,
          "intermediate_size": c.d_ff, "num_hidden_layers": c.n_layer,
          "num_attention_heads": c.n_head, "num_key_value_heads": c.n_kv_head,
          "head_dim": c.head_dim, "max_position_embeddings": c.max_seq_len,
          "rms_norm_eps": c.norm_eps, "hidden_act": "silu",
          "rope_theta": c.rope_theta,  # transformers 4.x
          "rope_parameters": {"rope_type": "default", "rope_theta": c.rope_theta},  # 5.x
          "attention_bias": bool(c.bias), "mlp_bias": bool(c.bias),
          "attention_dropout": c.dropout, "pretraining_tp": 1}
    sd = model.state_dict()
    dq, dkv = c.n_head * c.head_dim, c.n_kv_head * c.head_dim
    out = {"model.embed_tokens.weight": sd["wte.weight"]}
    for i in range(c.n_layer):
        h, b = f"model.layers.{i}.", f"blocks.{i}."
        out[h + "input_layernorm.weight"] = sd[b + "norm1.weight"]
        out[h + "post_attention_layernorm.weight"] = sd[b + "norm2.weight"]
        for s in ("weight", "bias") if c.bias else ("weight",):
            q, k, v = sd[b + f"attn.qkv.{s}"].split([dq, dkv, dkv])
            gate, up = sd[b + f"mlp.up.{s}"].chunk(2)
            out[h + f"self_attn.q_proj.{s}"] = q
            out[h + f"self_attn.k_proj.{s}"] = k
            out[h + f"self_attn.v_proj.{s}"] = v
            out[h + f"self_attn.o_proj.{s}"] = sd[b + f"attn.proj.{s}"]
            out[h + f"mlp.gate_proj.{s}"] = gate
            out[h + f"mlp.up_proj.{s}"] = up
            out[h + f"mlp.down_proj.{s}"] = sd[b + f"mlp.down.{s}"]
    out["model.norm.weight"] = sd["norm_f.weight"]
    if not c.tie_embeddings:
        out["lm_head.weight"] = sd["lm_head.weight"]
    return hf, out


def export_gpt(model: torch.nn.Module) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(config.json dict, state dict with Hugging Face names)`` for an lmforge GPT.

    Tensors are fresh contiguous CPU copies (safe to save and to modify).
    """
    if not isinstance(model, GPT):
        raise CheckpointError(f"export_gpt needs an lmforge GPT, got {type(model).__name__}")
    target = hf_target(model.config)
    hf, state = (_export_gpt2 if target == "gpt2" else _export_llama)(model)
    dtype = model.wte.weight.dtype
    hf["torch_dtype"] = hf["dtype"] = str(dtype).removeprefix("torch.")
    return hf, {n: t.detach().to("cpu", copy=True).contiguous() for n, t in state.items()}


register_hf(HFConverter(model_types=("gpt2", "llama"), archs=("gpt",), load=load_gpt,
                        export=export_gpt))
