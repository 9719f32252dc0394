r"""Training objectives: what loss a batch gives.

An objective is any callable ``objective(model, batch) -> (loss, metrics, n_tokens)``:

- ``loss``: a 0-d fp32 tensor, the **mean** loss over the ``n_tokens`` units of the batch
  (tokens for language modelling, examples for classification);
- ``metrics``: extra numbers to log (floats or 0-d tensors, averaged like the loss);
- ``n_tokens``: how many units the mean is over (an ``int`` or a 0-d tensor). The trainer
  weights micro-batches (gradient accumulation) and evaluation batches by it, so the
  combined loss is the mean over all units, not a mean of means.

An objective may name its unit in ``unit`` (default ``"tok"``; ``"ex"`` for examples):
the progress bar shows the rate as ``tok_s`` or ``ex_s`` and ``metrics.jsonl`` as
``tok_per_s`` or ``ex_per_s``, so a classifier's 180 examples a second never reads as
180 tokens a second.

An objective that carries state from one batch to the next (truncated BPTT carries the
recurrent state) also has ``state_dict() -> dict`` (tensors and plain values) and
``load_state_dict(state)``: the trainer saves that state in every checkpoint and restores
it on resume, so the resumed run continues exactly.

The trainer knows nothing else about the objective, so MLM, span corruption, seq2seq or
classification heads plug in as new objectives (with a matching batch source).

Causal language modelling: for tokens :math:`x_1..x_T` and model logits :math:`z_t`,

.. math::

    \mathcal{L} = -\frac{1}{N}\sum_{t} \log \mathrm{softmax}(z_t)_{x_{t+1}},
    \qquad \mathrm{PPL} = \exp(\mathcal{L})

over the :math:`N` target positions whose label is not ``ignore_index``.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

from ..nn.losses import token_cross_entropy

Metrics = dict[str, "float | torch.Tensor"]


@runtime_checkable
class Objective(Protocol):
    """``unit`` (optional, ``"tok"`` when absent): what ``n_tokens`` counts."""

    def __call__(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, Metrics,
                                                              int | torch.Tensor]: ...


class CausalLMObjective:
    """Next-token cross-entropy. A batch is ``{"input_ids": (B, T), "labels": (B, T)}``
    where ``labels[b, t]`` is the token after ``input_ids[b, t]`` (or ``ignore_index``).
    A ``(x, y)`` tuple is accepted too. The logits are cast to fp32 before the loss, so
    under bf16 autocast the softmax and log still run in full precision."""

    name = "causal_lm"

    def __init__(self, ignore_index: int = -100):
        self.ignore_index = ignore_index

    def __call__(self, model: nn.Module, batch: Any):
        if isinstance(batch, dict):
            x, y = batch["input_ids"], batch["labels"]
        else:
            x, y = batch
        logits = model(x)  # (B, T, V)
        loss, n_tokens = token_cross_entropy(logits, y, self.ignore_index)
        return loss, {}, n_tokens

    def __repr__(self) -> str:
        return f"CausalLMObjective(ignore_index={self.ignore_index})"
