"""Code-completion recipes (``task: code``), read by ``lmforge finetune``::

    task:      code
    run:       name, output folder, seed
    data:      the standard library or your .py files (folders, files, glob patterns), the
               split by file (val and test shares), max_chars, fim_rate and spm_rate
    tokenizer: trained on the training files (with the FIM sentinels when fim_rate > 0)
    model:     a GPT from scratch: ``arch: gpt`` plus GPTConfig fields; its max_seq_len
               is the training context
    evaluate:  the held-out metrics (lines, function bodies, n-gram baseline)
    train:     the trainer's options (:class:`~lmforge.train.config.TrainConfig`)
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..config import ModelRecipeMixin, RunConfig, TokenizerConfig, scratch_model, validate_recipe
from ..train.config import TrainConfig
from ..validation import Section


class CodeDataConfig(Section):
    files: list[str] = Field(default_factory=list, description="folders, .py files or glob "
                             "patterns of your code; empty: the Python standard library")
    max_chars: int = Field(300_000, ge=1, description="leave out files longer than this")
    val_fraction: float = Field(0.05, gt=0, lt=1, description="share of files in val")
    test_fraction: float = Field(0.1, gt=0, lt=1, description="share of files in test")
    fim_rate: float = Field(0.5, ge=0, le=1, description="probability of rearranging a "
                            "training context for fill-in-the-middle (0: plain LM)")
    spm_rate: float = Field(0.5, ge=0, le=1, description="share of FIM contexts in SPM order "
                            "(the rest PSM)")

    @model_validator(mode="after")
    def _room_for_train(self) -> CodeDataConfig:
        if self.val_fraction + self.test_fraction >= 1:
            raise ValueError(f"data.val_fraction + data.test_fraction = "
                             f"{self.val_fraction + self.test_fraction:g} leaves no training "
                             "files; keep the sum below 1")
        return self


class CodeEvaluateConfig(Section):
    lines: int = Field(400, ge=0, description="test lines for next-line exact match (0: skip)")
    line_max_new_tokens: int = Field(48, ge=2)
    bodies: int = Field(200, ge=0, description="test functions whose body is generated "
                        "(0: skip)")
    max_body_lines: int = Field(10, ge=1, description="longest true body, in lines")
    docstring: bool = Field(True, description="give the docstring and generate the rest of "
                            "the body (false: the model writes the docstring too)")
    body_max_new_tokens: int = Field(160, ge=2)
    body_beams: int = Field(1, ge=1, description="beam search with this many beams for the "
                            "bodies, a beam ending where the body does (1: greedy only; "
                            "above 1 the greedy figures are reported beside)")
    no_repeat_ngram_size: int = Field(0, ge=0, description="decoding (greedy and beams) "
                                      "never repeats an n-gram of this many tokens, prompt "
                                      "included "
                                      "(0: off; against the loops of small models)")
    ngram_order: int = Field(4, ge=0, description="order of the Kneser-Ney baseline "
                             "(0: skip it)")
    seed: int = 0
    batch_size: int = Field(32, ge=1)


class CodeRecipe(ModelRecipeMixin, Section):
    task: Literal["code"]
    run: RunConfig = Field(default_factory=RunConfig)
    data: CodeDataConfig = Field(default_factory=CodeDataConfig)
    tokenizer: TokenizerConfig = Field(
        default_factory=lambda: TokenizerConfig(kind="bpe", vocab_size=4096))
    model: Any = Field(description="a GPT from scratch: arch gpt plus GPTConfig fields")
    evaluate: CodeEvaluateConfig = Field(default_factory=CodeEvaluateConfig)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(
        max_steps=2000, batch_size=8, lr=1e-3, min_lr=1e-4, warmup_steps=100,
        eval_every=250, ckpt_every=250, keep_last=1))

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, v: Any) -> Any:
        if v is None:
            raise ValueError("give the GPT to train: arch gpt plus GPTConfig fields")
        return scratch_model(v, ("gpt",), "; code completion needs a decoder (GPT)")

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer(cls, v: TokenizerConfig) -> TokenizerConfig:
        if v.kind == "wordpiece":
            raise ValueError("tokenizer.kind=wordpiece drops whitespace, which code needs: "
                             "use bpe or char")
        if v.path is not None:
            raise ValueError("tokenizer.path: a code model's tokenizer is trained on its "
                             "training files; leave the path out")
        return v

    @model_validator(mode="after")
    def _fits(self) -> CodeRecipe:
        ctx = self.model.max_seq_len
        for name in ("line_max_new_tokens", "body_max_new_tokens"):
            v = getattr(self.evaluate, name)
            if v > ctx - 8:
                raise ValueError(f"evaluate.{name}={v} leaves no room for the prompt in "
                                 f"model.max_seq_len={ctx} positions (at most {ctx - 8})")
        return self


def build_code_recipe(raw: dict) -> CodeRecipe:
    return validate_recipe(CodeRecipe, raw)
