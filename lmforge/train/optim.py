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

Schedule (``step`` counts optimizer updates from 0)::

    warmup  (step < W):  lr_t = lr * (step + 1) / W
    then progress p = (step - W) / max(1, S - W)  in [0, 1]
    cosine:   lr_t = min_lr + 0.5 (lr - min_lr) (1 + cos(pi p))
    linear:   lr_t = min_lr + (lr - min_lr) (1 - p)
    constant: lr_t = lr
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass

import torch
from torch import nn

from ..config import TrainConfig


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


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`; the fused kernel where the device has one, else
    the multi-tensor (foreach) one."""
    kwargs = dict(lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps)
    groups = param_groups(model, cfg.weight_decay)
    if not groups:
        raise ValueError("the model has no trainable parameters")
    try:
        return torch.optim.AdamW(groups, fused=True, **kwargs)
    except (RuntimeError, TypeError, ValueError) as e:
        warnings.warn(f"fused AdamW is not available here ({e}); using foreach AdamW",
                      stacklevel=2)
        return torch.optim.AdamW(groups, foreach=True, **kwargs)


@dataclass(frozen=True)
class LRSchedule:
    """Learning rate as a pure function of the step (so it needs no saved state)."""

    lr: float
    min_lr: float
    warmup_steps: int
    max_steps: int
    kind: str = "cosine"  # "cosine" | "linear" | "constant"

    @classmethod
    def from_config(cls, cfg: TrainConfig) -> LRSchedule:
        return cls(lr=cfg.lr, min_lr=cfg.min_lr, warmup_steps=cfg.warmup_steps,
                   max_steps=cfg.max_steps, kind=cfg.schedule)

    def __call__(self, step: int) -> float:
        """The learning rate of update number ``step`` (0-based)."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.kind == "constant":
            return self.lr
        span = max(1, self.max_steps - self.warmup_steps)
        progress = min(1.0, max(0.0, (step - self.warmup_steps) / span))
        if self.kind == "cosine":
            return self.min_lr + 0.5 * (self.lr - self.min_lr) * (1 + math.cos(math.pi * progress))
        if self.kind == "linear":
            return self.min_lr + (self.lr - self.min_lr) * (1 - progress)
        raise ValueError(f"unknown schedule {self.kind!r}; allowed: cosine, linear, constant")

    def state_dict(self) -> dict:
        return asdict(self)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
