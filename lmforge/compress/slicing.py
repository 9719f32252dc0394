r"""Physical removal of attention heads and feed-forward neurons (structured pruning).

Removing query head :math:`j` of a layer deletes rows :math:`j d_h .. (j+1) d_h` of
:math:`W_q` (and of its bias) and the same columns of the output projection :math:`W_o`;
removing key/value head :math:`g` deletes its rows of :math:`W_k` and :math:`W_v`. The
head size :math:`d_h` stays, so the model's config records it (``head_dim``) once
:math:`h d_h \ne d`. Removing neuron :math:`j` of a feed-forward layer deletes row
:math:`j` of the input projection (for SwiGLU, of both halves ``[gate; up]``) and column
:math:`j` of the output projection. Biases of the output projections stay. The model
computes exactly what the original computes with those heads' outputs and those neurons'
activations multiplied by 0 (:func:`gates` does that to an unpruned model).

Every layer keeps the same number of heads, of key/value heads and of neurons: the config
has one ``n_head``, ``n_kv_head`` and ``d_ff`` for all layers, and the KV cache and the
serving engine allocate one ``(L, B, h_kv, S, d_h)`` tensor. (Per-layer counts would
remove more where heads matter less, at the price of per-layer config fields and ragged
caches.)

Grouped-query attention (``n_kv_head < n_head``, query head :math:`j` reads key/value head
:math:`\lfloor j / r \rfloor`, :math:`r = h / h_{kv}`): the kept query heads must fill
their groups equally (every kept group keeps the same number :math:`r'` of its query
heads); groups left with no query head lose their key/value head. The result has
:math:`h_{kv}'` = the number of kept groups and :math:`h' = r' h_{kv}'`, and sorted kept
heads keep the rule :math:`\lfloor j' / r' \rfloor`.

Supported models: lmforge's GPT (both styles), BERT/RoBERTa, and a task model
(``arch: task``) whose encoder is one of them (its ``encoder_config`` is updated too), so
``save_pretrained`` writes a ``config.json`` that rebuilds the smaller model alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..models.bert import BertModel
from ..models.gpt import GPT

Keep = dict[int, Sequence[int]]


@dataclass
class LayerParts:
    """The modules of one block that head and neuron pruning touch."""

    attn: nn.Module          # GPT CausalSelfAttention or nn.attention.MultiHeadAttention
    out_proj: nn.Linear      # reads the concatenated heads (B, T, h d_h)
    ffn_in: nn.Linear        # d -> d_ff (SwiGLU: d -> 2 d_ff, [gate; up])
    ffn_out: nn.Linear       # reads the activations (B, T, d_ff)
    gated: bool

    @property
    def n_head(self) -> int:
        return self.attn.n_head

    @property
    def n_kv_head(self) -> int:
        return getattr(self.attn, "n_kv_head", self.attn.n_head)

    @property
    def head_dim(self) -> int:
        return self.attn.head_dim

    @property
    def d_ff(self) -> int:
        return self.ffn_out.in_features


def backbone(model: nn.Module) -> GPT | BertModel:
    """The GPT or BERT inside ``model`` (itself, or a task model's encoder)."""
    if isinstance(model, (GPT, BertModel)):
        return model
    encoder = getattr(model, "encoder", None)
    if isinstance(encoder, (GPT, BertModel)) and isinstance(
            getattr(getattr(model, "config", None), "encoder_config", None), dict):
        return encoder
    raise ConfigError(f"structured pruning supports lmforge GPT and BERT models and task "
                      f"models built on them, got {type(model).__name__}")


def layer_parts(model: nn.Module) -> list[LayerParts]:
    """One :class:`LayerParts` per block of ``model``'s backbone, in order."""
    net = backbone(model)
    if isinstance(net, GPT):
        parts = [LayerParts(b.attn, b.attn.proj, b.mlp.up, b.mlp.down, b.mlp.gated)
                 for b in net.blocks]
    else:
        parts = [LayerParts(layer.attn, layer.attn.out_proj, layer.ff_in, layer.ff_out, False)
                 for layer in net.layers]
    for p in parts:
        linears = [p.out_proj, p.ffn_in, p.ffn_out] + (
            [p.attn.qkv] if isinstance(net, GPT) else
            [p.attn.q_proj, p.attn.k_proj, p.attn.v_proj])
        if any(type(m) is not nn.Linear for m in linears):
            raise ConfigError("structured pruning needs plain nn.Linear layers; merge LoRA "
                              "adapters and prune before quantising or factorising")
    return parts


@contextlib.contextmanager
def gates(model: nn.Module, heads: Tensor, neurons: Tensor) -> Iterator[None]:
    """Inside the block, head ``j`` of layer ``l`` is multiplied by ``heads[l, j]`` before
    the output projection and neuron ``i`` by ``neurons[l, i]`` before the feed-forward
    output projection (forward pre-hooks; the model is unchanged afterwards). Gates that
    require grad receive ``dL/dgate``."""
    parts = layer_parts(model)
    handles = []
    try:
        for i, p in enumerate(parts):
            per_channel = heads[i].repeat_interleave(p.head_dim)  # (h d_h,)
            handles.append(p.out_proj.register_forward_pre_hook(_scale_input(per_channel)))
            handles.append(p.ffn_out.register_forward_pre_hook(_scale_input(neurons[i])))
        yield
    finally:
        for h in handles:
            h.remove()


def _scale_input(scale: Tensor):
    def hook(module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        return (x * scale.to(x.dtype), *args[1:])
    return hook


def _check_keep(keep: Keep, n_layer: int, size: int, what: str) -> list[list[int]]:
    """Sorted kept indices per layer (a layer left out keeps all); one count for all."""
    bad = [k for k in keep if not isinstance(k, int) or not 0 <= k < n_layer]
    if bad:
        raise ConfigError(f"keep names layer {bad[0]!r}; layers are 0..{n_layer - 1}")
    out = []
    for layer in range(n_layer):
        idx = sorted(int(i) for i in keep.get(layer, range(size)))
        if not idx or len(set(idx)) != len(idx) or idx[0] < 0 or idx[-1] >= size:
            raise ConfigError(f"layer {layer}: the kept {what} must be 1 or more distinct "
                              f"indices in 0..{size - 1}, got {list(keep.get(layer, []))}")
        out.append(idx)
    counts = {len(i) for i in out}
    if len(counts) != 1:
        raise ConfigError(f"every layer must keep the same number of {what} (one config "
                          f"and one KV cache for all layers), got {sorted(counts)}")
    return out


def _rows(unit: int, indices: Sequence[int], offset: int = 0) -> list[int]:
    """Rows ``offset + i*unit .. offset + (i+1)*unit`` for each index ``i``."""
    return [offset + i * unit + r for i in indices for r in range(unit)]


@torch.no_grad()
def _slice(lin: nn.Linear, rows: Sequence[int] | None = None,
           cols: Sequence[int] | None = None) -> None:
    """Keep ``rows`` (outputs) and ``cols`` (inputs) of ``lin``, in place."""
    weight, bias = lin.weight, lin.bias
    if rows is not None:
        index = torch.tensor(rows, dtype=torch.long, device=weight.device)
        weight = weight.index_select(0, index)
        if bias is not None:
            lin.bias = nn.Parameter(bias.index_select(0, index),
                                    requires_grad=bias.requires_grad)
    if cols is not None:
        weight = weight.index_select(1, torch.tensor(cols, dtype=torch.long,
                                                     device=weight.device))
    lin.weight = nn.Parameter(weight.clone(), requires_grad=lin.weight.requires_grad)
    lin.out_features, lin.in_features = weight.shape


def _update_config(model: nn.Module, **fields: int) -> None:
    """Set ``fields`` in the backbone's config (and a task model's ``encoder_config``)."""
    net = backbone(model)
    net.config = dataclasses.replace(net.config, **fields)
    if net is not model:
        model.config = dataclasses.replace(
            model.config, encoder_config={**model.config.encoder_config, **fields})


def prune_heads(model: nn.Module, keep: Keep) -> nn.Module:
    """Keep only the query heads ``keep[layer]`` (a layer left out keeps all), removing
    their weights and, under GQA, the key/value heads no kept query reads (module
    docstring). Updates the config; returns ``model`` (changed in place)."""
    parts = layer_parts(model)
    fused = isinstance(backbone(model), GPT)  # GPT's one qkv projection, [q; k; v]
    h, h_kv, d_h = parts[0].n_head, parts[0].n_kv_head, parts[0].head_dim
    rep = h // h_kv
    kept = _check_keep(keep, len(parts), h, "heads")
    groups_per_layer = []
    for layer, heads in enumerate(kept):
        groups = sorted({j // rep for j in heads})
        per_group = {sum(j // rep == g for j in heads) for g in groups}
        if len(per_group) != 1:
            raise ConfigError(f"layer {layer}: with n_kv_head={h_kv}, every key/value group "
                              "kept must keep the same number of its query heads")
        groups_per_layer.append(groups)
    if len({len(g) for g in groups_per_layer}) != 1:
        raise ConfigError("every layer must keep the same number of key/value heads")
    for p, heads, groups in zip(parts, kept, groups_per_layer, strict=True):
        if fused:
            _slice(p.attn.qkv, _rows(d_h, heads) + _rows(d_h, groups, h * d_h)
                   + _rows(d_h, groups, (h + h_kv) * d_h))
            p.attn.n_kv_head = len(groups)
        else:
            for lin in (p.attn.q_proj, p.attn.k_proj, p.attn.v_proj):
                _slice(lin, _rows(d_h, heads))
        _slice(p.out_proj, cols=_rows(d_h, heads))
        p.attn.n_head = len(heads)
    fields = {"n_head": len(kept[0]), "head_dim": d_h}
    if fused:
        fields["n_kv_head"] = len(groups_per_layer[0])
    _update_config(model, **fields)
    return model


def prune_ffn(model: nn.Module, keep: Keep) -> nn.Module:
    """Keep only the feed-forward neurons ``keep[layer]`` (a layer left out keeps all).
    Updates ``d_ff`` in the config; returns ``model`` (changed in place)."""
    parts = layer_parts(model)
    d_ff = parts[0].d_ff
    kept = _check_keep(keep, len(parts), d_ff, "neurons")
    for p, neurons in zip(parts, kept, strict=True):
        rows = neurons + [d_ff + j for j in neurons] if p.gated else neurons
        _slice(p.ffn_in, rows)
        _slice(p.ffn_out, cols=neurons)
    _update_config(model, d_ff=len(kept[0]))
    return model


__all__ = ["LayerParts", "backbone", "layer_parts", "gates", "prune_heads", "prune_ffn"]
