"""Chat fine-tuning recipes (``task: chat``): YAML validated by pydantic, read by
``lmforge finetune`` like the other recipes
(:func:`lmforge.tasks.config.load_finetune_recipe`)::

    task:      chat
    run:       name, output folder, seed
    data:      the world's dialogues (``world: dialogue``, with languages and split sizes)
               or chat JSONL files (train, val, test); max_length; packing
    template:  a chat template file (default: lmforge's ChatML)
    tokenizer: the tokenizer trained for a model built from scratch (the template's
               special tokens are added to it)
    model:     a GPT from scratch: ``arch: gpt`` plus GPTConfig fields
    backbone:  or a pretrained GPT folder (its tokenizer must have the template's tokens)
    finetune:  strategy full or lora (LoRA needs a backbone), LoRA settings
    decode:    max_new_tokens and batch size of the evaluation replies
    train:     the trainer's options (:class:`~lmforge.train.config.TrainConfig`)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config import (
    ModelRecipeMixin,
    RunConfig,
    TokenizerConfig,
    scratch_model,
    validate_recipe,
)
from ..train.config import TrainConfig
from ..validation import Section


class ChatDataConfig(Section):
    world: Literal["dialogue"] | None = Field(None, description="the world's dialogues "
                                              "(instead of files)")
    world_sizes: dict[str, int] = Field(default_factory=dict,
                                        description="split sizes of the world set")
    langs: list[Literal["en", "zh"]] = Field(default_factory=lambda: ["en", "zh"],
                                             min_length=1, max_length=2)
    train: str | None = Field(None, description="chat JSONL: {\"messages\": [...]} per line")
    val: str | None = Field(None, description="chat JSONL; default: a share of train")
    test: list[str] = Field(default_factory=list, description="chat JSONL files evaluated "
                            "at the end (loss on the assistant's tokens)")
    val_fraction: float = Field(0.05, gt=0, lt=1)
    max_length: int = Field(256, ge=8, description="tokens per conversation (longer ones "
                            "keep their first tokens)")
    packing: bool = Field(False, description="concatenate conversations into full blocks "
                          "of max_length tokens (no padding)")
    val_dialogues: int = Field(100, ge=1, description="validation dialogues answered for "
                               "the selection metric at each evaluation")

    @model_validator(mode="after")
    def _one_source(self) -> ChatDataConfig:
        if (self.world is None) == (self.train is None):
            raise ValueError("give exactly one of data.world (a built-in set) or data.train "
                             "(your chat JSONL)")
        return self


class ChatBackboneConfig(Section):
    path: str = Field(description="a pretrained GPT: an lmforge run or model folder")


class ChatLoraConfig(Section):
    r: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | str = Field("all-linear", description="module names, a "
                                            "regular expression, or all-linear")


class ChatFinetuneConfig(Section):
    strategy: Literal["full", "lora"] = "full"
    lora: ChatLoraConfig = Field(default_factory=ChatLoraConfig)


class ChatDecodeConfig(Section):
    max_new_tokens: int = Field(48, ge=1, description="longest evaluation reply")
    batch_size: int = Field(64, ge=1)


class ChatRecipe(ModelRecipeMixin, Section):
    task: Literal["chat"]
    run: RunConfig = Field(default_factory=RunConfig)
    data: ChatDataConfig
    template: str | None = Field(None, description="a chat template file (.jinja); "
                                 "default: lmforge's ChatML")
    tokenizer: TokenizerConfig = Field(
        default_factory=lambda: TokenizerConfig(kind="bpe", vocab_size=2048))
    model: Any = Field(None, description="a GPT from scratch: arch gpt plus GPTConfig fields")
    backbone: ChatBackboneConfig | None = None
    finetune: ChatFinetuneConfig = Field(default_factory=ChatFinetuneConfig)
    decode: ChatDecodeConfig = Field(default_factory=ChatDecodeConfig)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(
        max_steps=2000, batch_size=16, lr=1e-3, min_lr=1e-4, warmup_steps=100,
        eval_every=500, ckpt_every=500, keep_last=1))

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, v: Any) -> Any:
        return scratch_model(v, ("gpt",), "; a chat model is a decoder (GPT)")

    @model_validator(mode="after")
    def _consistent(self) -> ChatRecipe:
        if (self.model is None) == (self.backbone is None):
            raise ValueError("give exactly one of model (a GPT from scratch) or backbone (a "
                             "pretrained one)")
        if self.finetune.strategy == "lora" and self.backbone is None:
            raise ValueError("finetune.strategy=lora needs a pretrained backbone "
                             "(backbone.path)")
        return self


def build_chat_recipe(raw: dict) -> ChatRecipe:
    return validate_recipe(ChatRecipe, raw)
