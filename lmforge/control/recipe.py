"""Controlled-generation recipes (``task: control``), read by ``lmforge finetune``::

    task:      control
    run:       name, output folder, seed
    data:      the world's control set (languages, split sizes), max_length, code_dropout
    tokenizer: trained on the training texts, with one special token per control code
    model:     a GPT from scratch: ``arch: gpt`` plus GPTConfig fields
    evaluate:  how the trained model is measured (samples per code combination, sampling
               temperature and nucleus, beams for forced words, optional classifier runs)
    train:     the trainer's options (:class:`~lmforge.train.config.TrainConfig`)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from ..config import ModelRecipeMixin, RunConfig, TokenizerConfig, scratch_model, validate_recipe
from ..train.config import TrainConfig
from ..validation import Section


class ControlDataConfig(Section):
    world: Literal["control"] = Field("control", description="the world's control set")
    world_sizes: dict[str, int] = Field(default_factory=dict,
                                        description="split sizes of the world set")
    langs: list[Literal["en", "zh"]] = Field(default_factory=lambda: ["en", "zh"],
                                             min_length=1, max_length=2)
    max_length: int = Field(128, ge=8, description="tokens per example (longer ones keep "
                            "their first tokens)")
    code_dropout: float = Field(0.1, ge=0, lt=1, description="probability of leaving each "
                                "code out of a training example")


class ControlEvaluateConfig(Section):
    samples: int = Field(8, ge=1, description="sampled texts per code combination")
    temperature: float = Field(0.8, gt=0)
    top_p: float | None = Field(0.95, gt=0, le=1)
    max_new_tokens: int = Field(96, ge=1)
    forced: int = Field(2, ge=0, description="texts per combination that must contain a "
                        "forced word (constrained beam search; 0: skip)")
    banned: int = Field(1, ge=0, description="sampled texts per combination with a banned "
                        "word (0: skip)")
    num_beams: int = Field(4, ge=1, description="beams of the forced-word search")
    seed: int = 0
    batch_size: int = Field(64, ge=1)
    classifiers: dict[Literal["sentiment", "topic"], str] = Field(
        default_factory=dict, description="classifier runs (lmforge finetune "
        "classify-sentiment / classify-topic) that also judge the generated texts")


class ControlRecipe(ModelRecipeMixin, Section):
    task: Literal["control"]
    run: RunConfig = Field(default_factory=RunConfig)
    data: ControlDataConfig = Field(default_factory=ControlDataConfig)
    tokenizer: TokenizerConfig = Field(
        default_factory=lambda: TokenizerConfig(kind="bpe", vocab_size=2048))
    model: Any = Field(description="a GPT from scratch: arch gpt plus GPTConfig fields")
    evaluate: ControlEvaluateConfig = Field(default_factory=ControlEvaluateConfig)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(
        max_steps=4000, batch_size=32, lr=1e-3, min_lr=1e-4, warmup_steps=100,
        eval_every=500, ckpt_every=500, keep_last=1))

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, v: Any) -> Any:
        if v is None:
            raise ValueError("give the GPT to train: arch gpt plus GPTConfig fields")
        return scratch_model(v, ("gpt",), "; controlled generation needs a decoder (GPT)")


def build_control_recipe(raw: dict) -> ControlRecipe:
    return validate_recipe(ControlRecipe, raw)
