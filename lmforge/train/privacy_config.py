"""``train.privacy``: differentially private training (DP-SGD through Opacus).

Give exactly one of ``target_epsilon`` (Opacus finds the noise multiplier that spends it
by ``max_steps``) or ``noise_multiplier`` (the accountant reports what it spends). The
mechanism and the accounting are in :mod:`lmforge.privacy.dp`; the options the trainer
cannot combine with it are refused by :func:`privacy_conflicts`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pydantic import Field, model_validator

from ..validation import Section

if TYPE_CHECKING:
    from .config import TrainConfig


class PrivacyConfig(Section):
    target_epsilon: float | None = Field(
        None, gt=0, description="the (epsilon, delta)-DP budget spent by max_steps; Opacus "
        "finds the noise multiplier (give this or noise_multiplier)")
    delta: float = Field(1e-5, gt=0, lt=1, description="the delta of (epsilon, delta)-DP; "
                         "keep it below 1/N (N: training examples)")
    max_grad_norm: float = Field(1.0, gt=0, description="C: each example's gradient is "
                                 "clipped to this L2 norm")
    noise_multiplier: float | None = Field(
        None, gt=0, description="sigma: Gaussian noise of std sigma x C on the summed "
        "clipped gradients (give this or target_epsilon)")
    accountant: Literal["prv", "rdp"] = Field(
        "prv", description="the privacy accountant: prv (privacy random variables, "
        "tighter) or rdp (Renyi DP)")

    @model_validator(mode="after")
    def _one_noise_source(self) -> PrivacyConfig:
        if (self.target_epsilon is None) == (self.noise_multiplier is None):
            raise ValueError("give exactly one of train.privacy.target_epsilon or "
                             "train.privacy.noise_multiplier")
        return self


def privacy_conflicts(cfg: TrainConfig) -> str | None:
    """Why ``cfg`` cannot train with its ``privacy`` section (None when it can).

    Poisson sampling draws a whole batch per update (no gradient accumulation); the
    per-example clip replaces ``grad_clip``; Opacus' hooks need eager fp32 modules in one
    process and a ``torch.optim`` optimizer."""
    if cfg.privacy is None:
        return None
    if cfg.grad_accum != 1:
        return ("train.grad_accum must be 1 with train.privacy (Poisson sampling draws each "
                "update's batch whole; raise train.batch_size instead)")
    if "grad_clip" in cfg.model_fields_set and cfg.grad_clip is not None:
        return ("train.grad_clip clips the batch gradient; with train.privacy each example "
                "is clipped to train.privacy.max_grad_norm: remove train.grad_clip")
    if cfg.distributed != "none":
        return f"train.privacy runs in one process (got train.distributed={cfg.distributed})"
    if cfg.compile:
        return "train.compile cannot trace Opacus' per-sample gradient hooks: set it false"
    if cfg.precision == "bf16":
        return ("train.privacy trains in fp32 (Opacus' per-sample gradients under bf16 "
                "autocast are not supported here): set train.precision to fp32 or auto")
    if cfg.optimizer != "adamw":
        return f"train.privacy needs optimizer adamw (got {cfg.optimizer})"
    return None


__all__ = ["PrivacyConfig", "privacy_conflicts"]
