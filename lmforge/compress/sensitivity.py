r"""Per-layer sensitivity: how much compressing one layer alone costs in quality.

For each selected layer ``l`` the model is scored with only that layer compressed::

    Δ_l = score(model with layer l compressed) - score(model)

(for a score where lower is better, such as bits per sentence; with
``higher_is_better=True`` the sign flips, so ``Δ_l > 0`` always means worse). The layers
come back sorted worst first: the ones to keep in higher precision (``skip=`` of
:func:`lmforge.compress.int4.quantize_int4`) or to compress less. The layer is swapped in
place and put back afterwards, so the model is unchanged (and no copy of it is made).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from .select import named_layers


def layer_sensitivity(model: nn.Module, quantize_layer: Callable[[nn.Linear], nn.Module],
                      score: Callable[[nn.Module], float],
                      include: Sequence[str] | None = None, skip: Sequence[str] = (),
                      higher_is_better: bool = False) -> list[dict]:
    """One row per ``nn.Linear`` of ``model`` (chosen by the name patterns ``include`` /
    ``skip``, :mod:`lmforge.compress.select`), worst first:
    ``{"layer", "params", "score", "delta"}``, ``delta`` = the quality lost (see the
    module doc) against ``score(model)`` unchanged.

    ``quantize_layer(linear)`` returns the compressed stand-in (any module: e.g.
    ``lambda lin: Int4Linear.from_linear(lin, 32)``); ``score(model)`` evaluates the
    model (e.g. mean bits per sentence on held-out text)."""
    was_training = model.training
    model.eval()
    sign = -1.0 if higher_is_better else 1.0
    rows = []
    try:
        with torch.no_grad():
            base = float(score(model))
            for name, layer in named_layers(model, nn.Linear, include, skip):
                model.set_submodule(name, quantize_layer(layer))
                try:
                    value = float(score(model))
                finally:
                    model.set_submodule(name, layer)
                rows.append({"layer": name, "params": layer.weight.numel(), "score": value,
                             "delta": sign * (value - base)})
    finally:
        model.train(was_training)
    rows.sort(key=lambda row: row["delta"], reverse=True)
    return rows


def sensitivity_table(rows: list[dict]) -> str:
    """The rows of :func:`layer_sensitivity` as an aligned text table, worst first."""
    width = max([len("layer"), *(len(r["layer"]) for r in rows)])
    lines = [f"{'layer':<{width}} {'params':>10} {'score':>10} {'delta':>10}"]
    lines.append("-" * len(lines[0]))
    lines += [f"{r['layer']:<{width}} {r['params']:>10,} {r['score']:>10.4g} "
              f"{r['delta']:>+10.3g}" for r in rows]
    return "\n".join(lines)
