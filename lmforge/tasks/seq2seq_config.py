"""Recipes of the generation tasks (text in, text out): YAML validated by pydantic.

A generation recipe names its ``task`` at the top; ``lmforge finetune`` reads it through
:func:`lmforge.tasks.config.load_finetune_recipe` like any other recipe::

    task:      translate, summarize or answer (generative QA over retrieved passages)
    run:       name, output folder, seed
    data:      a built-in world set (``world: translation`` with ``langs: [source,
               target]``; ``world: summarization`` or ``world: qa`` with the languages to
               include) or the user's files (translation: TSV, JSONL or line-aligned text
               pairs; summarisation: JSONL ``{"document", "summary"}``; answer: SQuAD JSON)
    retrieval: answer only: the passages each question is read with (k, search mode,
               passage size, the collection)
    tokenizer: the tokenizer trained for a model built from scratch (both languages)
    model:     an encoder-decoder built from scratch: ``arch`` transformer or
               seq2seq_rnn, plus that architecture's config fields
    backbone:  or a pretrained encoder-decoder (T5): a folder, or a pretraining recipe
               run first into ``<run>/backbone``
    decode:    beams, length penalty, no-repeat n-grams, output length
    metric:    the validation score that picks the best checkpoint (translate: bleu,
               chrf, exact_match; summarize: rouge1, rouge2, rougeL; answer: f1, exact;
               auto: bleu / rougeL / f1)
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
from .config import PretrainFields

GENERATION_TASKS = ("translate", "summarize", "answer")
TASK_METRICS = {"translate": ("bleu", "chrf", "exact_match"),
                "summarize": ("rougeL", "rouge1", "rouge2"),
                "answer": ("f1", "exact")}  # the first is the one ``auto`` picks
TASK_WORLD = {"translate": "translation", "summarize": "summarization", "answer": "qa"}
SCRATCH_ARCHS = ("transformer", "seq2seq_rnn")


class Seq2SeqDataConfig(Section):
    world: Literal["translation", "summarization", "qa"] | None = Field(
        None, description="a built-in world set (instead of files)")
    world_sizes: dict[str, int] = Field(default_factory=dict,
                                        description="split sizes of the world set")
    langs: list[Literal["en", "zh", "de"]] = Field(
        default_factory=lambda: ["en", "zh"], min_length=1, max_length=2,
        description="translate: [source, target]; summarize: the languages of the texts")
    train: str | None = Field(None, description="training pairs: .tsv, .jsonl, or the "
                              "source side of a text-file pair (with train_tgt); "
                              "summarize: .jsonl with document and summary; answer: "
                              "SQuAD v1.1/v2.0 JSON")
    train_tgt: str | None = Field(None, description="the target lines of a text-file pair")
    val: str | None = Field(None, description="validation pairs; default: a share of train")
    val_tgt: str | None = None
    test: list[str] = Field(default_factory=list, description="files evaluated at the end")
    test_tgt: list[str] = Field(default_factory=list, description="their target files, "
                                "for text-file pairs")
    format: Literal["auto", "tsv", "jsonl", "text"] = "auto"
    val_fraction: float = Field(0.02, gt=0, lt=1)
    max_length: int = Field(128, ge=8, description="tokens per source and per target "
                            "(longer ones are cut in training)")
    val_decode: int = Field(300, ge=1, description="validation pairs translated for the "
                            "selection metric at each evaluation")
    counterfactual: int = Field(0, ge=0, description="answer: extra copies of each "
                                "answerable training question whose answer is swapped, in "
                                "the passages and the target, for another answer of the same "
                                "fact and language (the answer must be read, not recalled)")

    @model_validator(mode="after")
    def _one_source(self) -> Seq2SeqDataConfig:
        if (self.world is None) == (self.train is None):
            raise ValueError("give exactly one of data.world (a built-in set) or data.train "
                             "(your file)")
        if len(set(self.langs)) != len(self.langs):
            raise ValueError(f"data.langs needs different languages, got {self.langs}")
        if self.test_tgt and len(self.test_tgt) != len(self.test):
            raise ValueError("data.test_tgt needs one target file per data.test file")
        return self


class Seq2SeqBackboneConfig(PretrainFields):
    path: str | None = Field(None, description="a pretrained encoder-decoder folder (lmforge "
                             "run or model, or a Hugging Face T5 folder)")

    @model_validator(mode="after")
    def _one(self) -> Seq2SeqBackboneConfig:
        if (self.path is None) == (self.pretrain is None):
            raise ValueError("give exactly one of backbone.path or backbone.pretrain")
        return self


class RetrievalConfig(Section):
    """How the generative QA task (``answer``) finds the passages it reads."""

    k: int = Field(3, ge=1, description="passages retrieved per question")
    mode: Literal["bm25", "dense", "hybrid"] = Field(
        "bm25", description="bm25 (SQLite FTS5), dense (sentence embeddings) or hybrid "
        "(reciprocal rank fusion)")
    encoder: str = Field("minilm", description="dense and hybrid: the sentence encoder "
                         "(minilm or a model folder)")
    max_words: int = Field(64, ge=8, description="words per passage")
    overlap: int = Field(16, ge=0, description="words shared by consecutive windows of a "
                         "long paragraph")
    docs: list[str] = Field(default_factory=list, description="the collection (.jsonl "
                            "documents or folders of .txt); default: the world's pages, or "
                            "the contexts of the SQuAD files")

    @model_validator(mode="after")
    def _overlap(self) -> RetrievalConfig:
        if self.overlap >= self.max_words:
            raise ValueError(f"retrieval.overlap={self.overlap} must be below "
                             f"retrieval.max_words={self.max_words}")
        return self


class DecodeConfig(Section):
    beams: int = Field(4, ge=1, description="beam size (1: greedy)")
    alpha: float = Field(0.6, ge=0, description="GNMT length penalty exponent")
    no_repeat_ngram_size: int = Field(0, ge=0, description="never repeat an n-gram (0: off)")
    max_new_tokens: int = Field(128, ge=1)
    batch_size: int = Field(64, ge=1)
    val_beams: int = Field(1, ge=1, description="beam size while validating (speed)")


class Seq2SeqRecipe(ModelRecipeMixin, Section):
    task: Literal["translate", "summarize", "answer"]
    run: RunConfig = Field(default_factory=RunConfig)
    data: Seq2SeqDataConfig
    retrieval: RetrievalConfig = Field(default_factory=RetrievalConfig)
    tokenizer: TokenizerConfig = Field(
        default_factory=lambda: TokenizerConfig(kind="bpe", vocab_size=2048))
    model: Any = Field(None, description="an encoder-decoder from scratch: arch plus its "
                       "config fields")
    backbone: Seq2SeqBackboneConfig | None = None
    decode: DecodeConfig = Field(default_factory=DecodeConfig)
    metric: Literal["auto", "bleu", "chrf", "exact_match", "rouge1", "rouge2", "rougeL",
                    "f1", "exact"] = "auto"
    label_smoothing: float = Field(0.1, ge=0, lt=1)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(
        max_steps=1500, batch_size=32, lr=1e-3, min_lr=1e-4, warmup_steps=100,
        eval_every=500, ckpt_every=500, keep_last=1))

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, v: Any) -> Any:
        return scratch_model(v, SCRATCH_ARCHS, "; for T5 give backbone.path or "
                             "backbone.pretrain")

    @model_validator(mode="after")
    def _consistent(self) -> Seq2SeqRecipe:
        if (self.model is None) == (self.backbone is None):
            raise ValueError("give exactly one of model (an encoder-decoder from scratch) "
                             "or backbone (a pretrained one)")
        d = self.data
        if self.task == "translate" and len(d.langs) != 2:
            raise ValueError(f"translate: data.langs must be [source, target], got {d.langs}")
        if self.task != "answer" and d.counterfactual:
            raise ValueError("data.counterfactual is for the answer task only")
        if self.task == "answer" and "de" in d.langs:
            raise ValueError("answer: the QA metrics cover en (SQuAD) and zh (CMRC 2018); "
                             "data.langs cannot hold de")
        if d.world is not None and d.world != TASK_WORLD[self.task]:
            raise ValueError(f"data.world={d.world} is not a {self.task} set (use "
                             f"{TASK_WORLD[self.task]})")
        if self.metric != "auto" and self.metric not in TASK_METRICS[self.task]:
            raise ValueError(f"metric={self.metric} is not a {self.task} metric; allowed: "
                             f"auto, {', '.join(TASK_METRICS[self.task])}")
        return self

    @property
    def selection_metric(self) -> str:
        """``metric``, with ``auto`` resolved: BLEU for translation, ROUGE-L for summaries,
        F1 for answers."""
        return self.metric if self.metric != "auto" else TASK_METRICS[self.task][0]

    @property
    def arch(self) -> str | None:
        from ..models import arch_of

        return arch_of(self.model) if self.model is not None else None


def build_seq2seq_recipe(raw: dict) -> Seq2SeqRecipe:
    return validate_recipe(Seq2SeqRecipe, raw)
