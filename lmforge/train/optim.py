r"""AdamW with decay / no-decay parameter groups, and learning-rate schedules.

AdamW (Loshchilov & Hutter) with decoupled weight decay, for parameter :math:`\theta`,
gradient :math:`g_t`, step :math:`t \ge 1`::

    m_t = beta1 m_{t-1} + (1 - beta1) g_t
    v_t = beta2 v_{t-1} + (1 - beta2) g_t^2
    m^_t = m_t / (1 - beta1^t),   v^_t = v_t / (1 - beta2^t)
    theta_t = theta_{t-1} - lr_t * (m^_t / (sqrt(v^_t) + eps) + wd * theta_{t-1})

Which tensors decay (the GPT-2 / nanoGPT rule): every parameter with ``dim >= 2`` (weight
matrices and embedding tables) decays; 1-D parameters (biases, LayerNorm/RMSNorm gains)
do not, because shrinking them towards zero only fights the normalisation.

``train.optimizer: muon`` updates the hidden weight matrices with Muon (orthogonalised
momentum, :mod:`lmforge.train.muon`) and everything else with the AdamW above, under the
same learning rate and schedule.

Schedule (``step`` counts optimizer updates from 0)::

    warmup  (step < W):  lr_t = lr * (step + 1) / W
    then progress p = (step - W) / max(1, S - W)  in [0, 1]
    cosine:   lr_t = min_lr + 0.5 (lr - min_lr) (1 + cos(pi p))
    linear:   lr_t = min_lr + (lr - min_lr) (1 - p)
    wsd:      lr_t = lr until the last D = ceil(decay_fraction * S) steps, then
              lr_t = min_lr + (lr - min_lr) (S - step) / D      (warmup-stable-decay)
    constant: lr_t = lr

Cosine and linear decay depend on ``S`` from the first step after the warmup; WSD
(Hägele et al. 2024, matching cosine with a 20% decay) only in its last ``D`` steps, so a
run can fix its length late (:mod:`lmforge.train.budget`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..errors import ConfigError
from .config import TrainConfig
from .muon import Muon, MuonAdamW, muon_params


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    """Two AdamW groups: ``dim >= 2`` tensors decay, 1-D tensors (biases, norms) do not.

    Tied parameters (e.g. the GPT-2 embedding and output layer) appear once.
    """
    decay, no_decay, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (decay if p.dim() >= 2 else no_decay).append(p)
    groups = [{"params": decay, "weight_decay": weight_decay, "name": "decay"},
              {"params": no_decay, "weight_decay": 0.0, "name": "no_decay"}]
    return [g for g in groups if g["params"]]


def adamw_over(groups: list[dict], cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over ``groups``: the fused kernel where the device has one, else foreach."""
    kwargs = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError) as e:
        warnings.warn(f"fused AdamW is not available here ({e}); using foreach AdamW",
                      stacklevel=3)
        return torch.optim.AdamW(groups, foreach=True, **kwargs)


def build_optimizer(model: nn.Module, cfg: TrainConfig,
                    ns_dtype: torch.dtype = torch.float32) -> torch.optim.Optimizer | MuonAdamW:
    """``train.optimizer``: AdamW over :func:`param_groups`, or (``muon``)
    :class:`~lmforge.train.muon.Muon` over the hidden matrices and AdamW over the rest,
    its Newton-Schulz products in ``ns_dtype`` (the trainer passes bf16 when it trains
    under bf16 autocast)."""
    if cfg.optimizer == "muon":

        hidden, rest = muon_params(model)
        if not hidden:
            raise ConfigError("train.optimizer: muon needs hidden weight matrices (nn.Linear "
                              f"layers in stacked blocks) and {type(model).__name__} has "
                              "none; allowed: adamw, muon")
        muon = Muon(hidden, lr=cfg.lr, weight_decay=cfg.weight_decay,
                    momentum=cfg.muon_momentum, ns_steps=cfg.muon_ns_steps,
                    ns_dtype=ns_dtype)
        rest_ids = {id(p) for p in rest}
        groups = [{**g, "params": [p for p in g["params"] if id(p) in rest_ids]}
                  for g in param_groups(model, cfg.weight_decay)]
        groups = [g for g in groups if g["params"]]
        return MuonAdamW(muon, adamw_over(groups, cfg) if groups else None)
    groups = param_groups(model, cfg.weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    return adamw_over(groups, cfg)


@dataclass(frozen=True)
class LRSchedule:
    """Learning rate as a pure function of the step (so it needs no saved state)."""

    lr: float
    min_lr: float
    warmup_steps: int
    max_steps: int
    kind: str = "cosine"  # "cosine" | "linear" | "wsd" | "constant"
    decay_fraction: float = 0.2  # wsd only

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> LRSchedule:
        return cls(lr=cfg.lr, min_lr=cfg.min_lr, warmup_steps=cfg.warmup_steps,
                   max_steps=cfg.max_steps, kind=cfg.schedule,
                   decay_fraction=cfg.decay_fraction)

    @property
    def decay_steps(self) -> int:
        """WSD: the number of final steps that decay (``D`` in the module doc)."""
        return max(1, math.ceil(self.decay_fraction * self.max_steps))

    def __call__(self, step: int) -> float:
        """The learning rate of update number ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.lr
        if self.kind == "wsd":
            left = self.max_steps - step
            if left >= self.decay_steps:
                return self.lr
            return self.min_lr + (self.lr - self.min_lr) * max(0, left) / self.decay_steps
        span = max(1, self.max_steps - self.warmup_steps)
        progress = min(1.0, max(0.0, (step - self.warmup_steps) / span))
        if self.kind == "cosine":
            return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))
        if self.kind == "linear":
            return self.min_lr + (self.lr - self.min_lr) * (1 - progress)
        raise ValueError(f"unknown schedule {self.kind!r}; allowed: cosine, linear, wsd, "
                         "constant")

    def state_dict(self) -> dict:
        return asdict(self)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
