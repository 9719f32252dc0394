"""The trainer's options: :class:`TrainConfig`, a recipe's ``train:`` section.

It lives next to the :class:`~lmforge.train.Trainer` that reads it, so that the trainer,
the optimiser and the batch sources need nothing from the recipe layer
(:mod:`lmforge.config` imports it from here and re-exports it). Like every section it
forbids unknown keys and validates assignments (:class:`lmforge.validation.Section`).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..validation import Section
from .privacy_config import PrivacyConfig, privacy_conflicts


class TrainConfig(Section):
    objective: Literal["causal_lm", "mlm", "span_corruption", "translation"] = Field(
        "causal_lm", description="the task; see lmforge.train.tasks")
    max_steps: int = Field(1000, ge=1)
    batch_size: int = Field(32, ge=1)
    block_size: int = Field(128, ge=2)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(1e-4, ge=0)
    warmup_steps: int = Field(100, ge=0)
    schedule: Literal["cosine", "linear", "wsd", "constant"] = "cosine"
    decay_fraction: float = Field(0.2, gt=0, le=1, description="wsd: share of max_steps "
                                  "spent decaying to min_lr at the end")
    weight_decay: float = Field(0.1, ge=0)
    optimizer: Literal["adamw", "muon"] = Field(
        "adamw", description="muon: Muon for hidden matrices, AdamW for the rest")
    muon_momentum: float = Field(0.95, ge=0, lt=1, description="muon: momentum (Nesterov)")
    muon_ns_steps: int = Field(5, ge=1, le=10, description="muon: Newton-Schulz iterations "
                               "per update (each costs three matrix products per matrix)")
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    eps: float = Field(1e-8, gt=0)
    grad_clip: float | None = Field(1.0, gt=0)
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    compile: bool = False
    distributed: Literal["none", "ddp", "fsdp", "tp", "pp"] = Field(
        "none", description="how a torchrun launch splits the work: ddp or fsdp (data "
        "parallel; the global batch is batch_size x grad_accum x world_size), tp (tensor "
        "parallel), pp (pipeline parallel); none: one process")
    dist_timeout: float = Field(600.0, gt=0, description="seconds a collective waits for "
                                "the other ranks before the job ends with an error")
    pp_microbatches: int = Field(4, ge=1, description="pp: micro-batches per batch "
                                 "(batch_size must be divisible by it)")
    pp_schedule: Literal["gpipe", "1f1b"] = Field("1f1b", description="pp: the schedule")
    threads: int | None = Field(None, ge=1)
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(200, ge=1)
    eval_batches: int = Field(20, ge=1)
    ckpt_every: int = Field(500, ge=1)
    keep_last: int = Field(2, ge=1)
    early_stop_patience: int | None = Field(None, ge=1,
                                            description="evaluations without improvement")
    early_stop_min_delta: float = Field(0.0, ge=0)
    best_metric: str = Field("val_loss", description="the evaluation metric that picks the "
                             "best checkpoint and drives early stopping (e.g. val_f1_macro)")
    best_mode: Literal["auto", "min", "max"] = Field(
        "auto", description="lower or higher best_metric is better; auto: min for names "
        "containing loss or ppl, else max")
    # objective options (ignored by the objectives that do not use them)
    mlm_probability: float = Field(0.15, gt=0, lt=1, description="mlm: share of tokens chosen")
    whole_word_mask: bool = Field(False, description="mlm: mask whole WordPiece words")
    whole_word_zh: Literal["jieba", "char"] = Field(
        "jieba", description="mlm whole-word masking of Chinese: jieba words "
        "(Chinese-BERT-wwm) or single characters")
    nsp: bool = Field(False, description="mlm: add next-sentence prediction (BERT only)")
    noise_density: float = Field(0.15, gt=0, lt=1, description="span_corruption: noise share")
    mean_span_length: float = Field(3.0, ge=1, description="span_corruption: mean span")
    n_sentinels: int = Field(100, ge=1, description="span_corruption: sentinel ids added "
                                                    "after the tokenizer's vocabulary")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="translation: smoothing")
    privacy: PrivacyConfig | None = Field(None, description="DP-SGD through Opacus "
                                          "(lmforge.privacy.dp); None: ordinary training")

    @model_validator(mode="after")
    def _muon_runs_in_one_process(self) -> TrainConfig:
        if self.optimizer == "muon" and self.distributed != "none":
            raise ValueError(f"optimizer=muon cannot run with distributed={self.distributed}"
                             " yet (its orthogonalised update needs whole matrices); use "
                             "optimizer=adamw")
        return self

    @model_validator(mode="after")
    def _privacy_fits(self) -> TrainConfig:
        problem = privacy_conflicts(self)
        if problem is not None:
            raise ValueError(problem)
        return self
