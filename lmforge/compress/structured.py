r"""Structured pruning: score attention heads and feed-forward neurons, remove the least
important (Michel et al. 2019, "Are Sixteen Heads Really Better than One?"; Molchanov et
al. 2017 for the Taylor criterion).

**Head importance.** A gate :math:`\xi_h = 1` multiplies the output of head :math:`h`
before the output projection, :math:`\mathrm{Attn}(x) = \sum_h \xi_h A_h W_o^h`
(:func:`lmforge.compress.slicing.gates`: forward pre-hooks, the model itself does not
change). The importance is the expected absolute sensitivity of the loss to the gate::

    I_h = E_x |dL(x) / dξ_h|

with the expectation over the given batches (one gradient per batch, as in the authors'
code; a batch of one example gives their per-example form). As Michel et al. do, the
scores of each layer are divided by their L2 norm over the heads of that layer
(:math:`\hat I_{l,h} = I_{l,h} / \lVert I_{l,\cdot} \rVert_2`). Since every layer keeps
the same number of heads (see below), this common factor per layer does not change which
heads are kept; it makes the scores comparable across layers (what pruning different
numbers of heads per layer would need).

**Neuron importance** (first-order Taylor). With :math:`a_{tj}` the activation of
feed-forward neuron :math:`j` at token :math:`t` after the nonlinearity (for SwiGLU the
product :math:`\mathrm{SiLU}(x W_{gate}) \odot x W_{up}`), removing the neuron changes
the loss of a batch by about :math:`-\sum_t a_{tj}\, \partial L / \partial a_{tj}`, so::

    I_j = E_batches |Σ_t a_tj ∂L/∂a_tj| = E_batches |dL / dξ_j|

where :math:`\xi_j = 1` gates neuron :math:`j` before the output projection: the same
gate mechanism as for heads. (The absolute value of the sum over the batch's tokens, as in
Molchanov et al.; not normalised.)

**Choice.** Every layer loses the same number of heads and of neurons (one ``n_head`` and
one ``d_ff`` in the config, one KV-cache shape; see :mod:`lmforge.compress.slicing`):
the least important of each layer go. ``fraction`` ``f`` of ``n`` units removes
``floor(f n + 1/2)`` of them (round half up), always keeping at least one. Under
grouped-query attention whole key/value groups are pruned: a group's importance is the
sum of its query heads', ``f`` applies to the ``n_kv_head`` groups, and a removed group
takes its key/value head and its ``n_head / n_kv_head`` query heads with it. This keeps
``n_head`` divisible by ``n_kv_head``, shrinks the KV cache in proportion, and for
ordinary multi-head attention (groups of one) it is exactly head pruning. (The
alternative, removing the same number of query heads from every group, is finer-grained
but keeps the whole KV cache; :func:`~lmforge.compress.slicing.prune_heads` accepts
either.)
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from .prune import check_sparsity
from .slicing import gates, layer_parts, prune_ffn, prune_heads

LossFn = Callable[[nn.Module, Any], Tensor]


@dataclass
class Importance:
    """Scores of one pass over the batches: ``heads`` (L, h) and ``neurons`` (L, d_ff),
    the raw :math:`E|dL/dξ|`; :meth:`normalized_heads` divides each layer by its L2 norm."""

    heads: Tensor
    neurons: Tensor
    n_batches: int

    def normalized_heads(self) -> Tensor:
        return self.heads / (self.heads.norm(dim=1, keepdim=True) + 1e-20)


def importance(model: nn.Module, batches: Iterable[Any], loss_fn: LossFn) -> Importance:
    """Head and neuron importance of ``model`` (module docstring) over ``batches``;
    ``loss_fn(model, batch)`` returns the scalar loss. Runs in eval mode (no dropout);
    no parameter receives a gradient."""
    parts = layer_parts(model)
    param = next(model.parameters())
    head_gate = torch.ones(len(parts), parts[0].n_head, device=param.device, requires_grad=True)
    neuron_gate = torch.ones(len(parts), parts[0].d_ff, device=param.device,
                             requires_grad=True)
    heads = torch.zeros(head_gate.shape, device=param.device, dtype=torch.float64)
    neurons = torch.zeros(neuron_gate.shape, device=param.device, dtype=torch.float64)
    n = 0
    was_training = model.training
    model.eval()
    try:
        with gates(model, head_gate, neuron_gate):
            for batch in batches:
                loss = loss_fn(model, batch)
                if not isinstance(loss, Tensor) or loss.dim() != 0:
                    raise ConfigError("loss_fn(model, batch) must return a scalar tensor")
                g_heads, g_neurons = torch.autograd.grad(loss, [head_gate, neuron_gate])
                heads += g_heads.abs()
                neurons += g_neurons.abs()
                n += 1
    finally:
        model.train(was_training)
    if n == 0:
        raise ConfigError("importance needs at least one batch")
    return Importance(heads=(heads / n).float(), neurons=(neurons / n).float(), n_batches=n)


def _n_removed(fraction: float, n: int) -> int:
    """Units removed out of ``n``: round half up, leaving at least one."""
    return min(n - 1, math.floor(fraction * n + 0.5))


def _top(scores: Tensor, n_keep: int) -> list[int]:
    """Indices of the ``n_keep`` highest scores (ties: the lower index), sorted."""
    order = sorted(range(scores.numel()), key=lambda i: (-float(scores[i]), i))
    return sorted(order[:n_keep])


def choose_heads(scores: Tensor, fraction: float, n_kv_head: int | None = None
                 ) -> dict[int, list[int]]:
    """Query heads to keep per layer from ``scores`` (L, h): the ``fraction`` least
    important key/value groups of every layer go (groups of one without GQA)."""
    fraction = check_sparsity(fraction, "head_fraction")
    n_layer, h = scores.shape
    n_kv = n_kv_head or h
    rep = h // n_kv
    group_scores = scores.reshape(n_layer, n_kv, rep).sum(-1)  # (L, h_kv)
    n_keep = n_kv - _n_removed(fraction, n_kv)
    return {layer: [g * rep + r for g in _top(group_scores[layer], n_keep) for r in range(rep)]
            for layer in range(n_layer)}


def kept_width(n: int, fraction: float, multiple: int = 1) -> int:
    """Units kept of ``n`` when ``fraction`` go, rounded to the nearest multiple of
    ``multiple`` (at least one multiple, at most ``n``): matrix kernels block their
    work in multiples of 16 to 64, so an odd width such as 538 can run slower than 512."""
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ConfigError(f"multiple must be an integer >= 1, got {multiple!r}")
    keep = n - _n_removed(fraction, n)
    if multiple == 1 or n < multiple:
        return keep
    return min(n, max(multiple, multiple * math.floor(keep / multiple + 0.5)))


def choose_neurons(scores: Tensor, fraction: float, multiple: int = 1
                   ) -> dict[int, list[int]]:
    """Neurons to keep per layer from ``scores`` (L, d_ff): the ``fraction`` least
    important of every layer go (the kept count rounded by :func:`kept_width`)."""
    fraction = check_sparsity(fraction, "ffn_fraction")
    n_layer, d_ff = scores.shape
    n_keep = kept_width(d_ff, fraction, multiple)
    return {layer: _top(scores[layer], n_keep) for layer in range(n_layer)}


@dataclass
class StructuredPruneReport:
    """What :func:`structured_prune` removed."""

    heads_kept: dict[int, list[int]]     # original query-head indices per layer
    neurons_kept: dict[int, list[int]]   # original neuron indices per layer
    n_head: tuple[int, int]              # (before, after)
    n_kv_head: tuple[int, int]
    d_ff: tuple[int, int]
    params_before: int
    params_after: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def structured_prune(model: nn.Module, head_fraction: float, ffn_fraction: float,
                     batches: Iterable[Any], loss_fn: LossFn,
                     ffn_multiple: int = 1) -> StructuredPruneReport:
    """Score heads and neurons on ``batches`` (:func:`importance`), keep the most
    important of every layer (:func:`choose_heads`, :func:`choose_neurons`) and remove
    the rest from ``model`` in place (its config follows). Fractions are in [0, 1); the
    kept FFN width is rounded to a multiple of ``ffn_multiple``."""
    check_sparsity(head_fraction, "head_fraction")
    check_sparsity(ffn_fraction, "ffn_fraction")
    parts = layer_parts(model)
    before = (parts[0].n_head, parts[0].n_kv_head, parts[0].d_ff)
    params_before = _count(model)
    scores = importance(model, batches, loss_fn)
    heads = choose_heads(scores.normalized_heads(), head_fraction, before[1])
    neurons = choose_neurons(scores.neurons, ffn_fraction, ffn_multiple)
    prune_heads(model, heads)
    prune_ffn(model, neurons)
    p = layer_parts(model)[0]
    return StructuredPruneReport(
        heads_kept=heads, neurons_kept=neurons, n_head=(before[0], p.n_head),
        n_kv_head=(before[1], p.n_kv_head), d_ff=(before[2], p.d_ff),
        params_before=params_before, params_after=_count(model))


__all__ = ["Importance", "importance", "choose_heads", "choose_neurons",
           "structured_prune", "StructuredPruneReport"]
