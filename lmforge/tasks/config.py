"""Fine-tuning recipes: YAML validated by pydantic, like the pretraining recipes.

::

    run:       name, output folder, seed
    data:      a built-in world task set, or the user's files (CSV/TSV/JSONL, CoNLL, OpenNRE,
               SQuAD JSON)
    backbone:  the encoder: a folder (lmforge run, HF, "minilm"), a pretraining recipe run
               first, or one trained from scratch (textcnn, bilstm); init pretrained/random
    head:      the task (classify, tag, relate, extract), pooling, linear/CRF head, markers,
               answer decoding
    finetune:  strategy (full, top_k, frozen, lora), LoRA settings, the selection metric,
               class weights, label smoothing
    train:     the trainer's options (:class:`~lmforge.train.config.TrainConfig`)

Built-in recipes live in ``lmforge/configs/finetune/``; any field can be overridden with
``--set section.field=value``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import Field, ValidationError, model_validator

from ..config import RECIPE_DIR, RunConfig, TokenizerConfig, apply_overrides, load_yaml
from ..errors import ConfigError
from ..train.config import TrainConfig
from ..validation import Section, format_validation_error

if TYPE_CHECKING:
    from .seq2seq_config import Seq2SeqRecipe

FINETUNE_DIR = RECIPE_DIR / "finetune"
WORLD_TASKS = ("sentiment", "topic", "ner", "relations", "qa")
TASK_OF_WORLD = {"sentiment": "classify", "topic": "classify", "ner": "tag",
                 "relations": "relate", "qa": "extract"}


class TaskDataConfig(Section):
    world: Literal["sentiment", "topic", "ner", "relations", "qa"] | None = Field(
        None, description="a built-in world task set (instead of files)")
    world_sizes: dict[str, int] = Field(default_factory=dict,
                                        description="split sizes of the world set")
    langs: list[Literal["en", "zh"]] = Field(default_factory=lambda: ["en", "zh"])
    train: str | None = Field(None, description="training file (CSV/TSV/JSONL/CoNLL/"
                              "SQuAD JSON)")
    val: str | None = Field(None, description="validation file; default: a share of train")
    test: list[str] = Field(default_factory=list, description="files evaluated at the end")
    task: Literal["auto", "classify", "tag", "relate", "extract"] = Field(
        "auto", description="for files: auto = tag for CoNLL, relate for OpenNRE JSONL "
        "(records with h and t), extract for SQuAD JSON, else classify")
    format: Literal["auto", "jsonl", "csv", "tsv", "conll", "squad"] = Field(
        "auto", description="auto: by the suffix; a .json file holding an object with a "
        "'data' or 'version' key is SQuAD")
    text_field: str = "text"
    label_field: str = "label"
    text_b_field: str | None = Field(None, description="second text of sentence pairs")
    scheme: Literal["IOB1", "IOB2", "BIOES"] = Field("IOB2", description="tag: the model's "
                                                     "tag scheme")
    on_illegal: Literal["repair", "error"] = "repair"
    subword: Literal["first", "all"] = Field("first", description="tag, training: label a "
                                             "word's first sub-token only, or all of them "
                                             "with the word's tag (softmax head)")
    val_fraction: float = Field(0.1, gt=0, lt=1)
    max_length: int = Field(128, ge=8, description="tokens per input, specials included")
    doc_stride: int = Field(128, ge=0, description="extract: context tokens shared by "
                            "consecutive windows of a long context")
    train_limit: int | None = Field(None, ge=1, description="use only the first N training "
                                    "examples (learning curves)")
    token_dropout: float = Field(0.0, ge=0, lt=1, description="training: share of tokens "
                                 "replaced by [UNK] (word dropout; helps on unseen names)")
    entity_noise: float = Field(0.0, ge=0, lt=1, description="tag, training: share of "
                                "entity sub-tokens replaced by random tokens")
    mention_replace: float = Field(0.0, ge=0, le=1, description="tag, training: share of "
                                   "entities rewritten as 1..n+1 words of random sub-tokens")
    entity_noise_types: list[str] | None = Field(None, description="tag: the entity types "
                                                 "entity_noise and mention_replace apply to "
                                                 "(default: all)")
    group_by_length: bool = Field(False, description="training: draw each batch from "
                                  "examples of similar length (less padding, same "
                                  "distribution of examples)")
    augment: int = Field(0, ge=0, description="EDA copies per training example (0: none)")
    augment_alpha: float = Field(0.1, ge=0, le=1)
    augment_ops: list[Literal["sr", "ri", "rs", "rd"]] = Field(
        ["sr", "ri", "rs", "rd"], min_length=1, description="EDA operations: synonym "
        "replacement, random insertion, swap, deletion")

    @model_validator(mode="after")
    def _one_source(self) -> TaskDataConfig:
        if (self.world is None) == (self.train is None):
            raise ValueError("give exactly one of data.world (a built-in set) or data.train "
                             "(your file)")
        if self.entity_noise > 0 and self.mention_replace > 0:
            raise ValueError("choose one of data.entity_noise (token level) and "
                             "data.mention_replace (whole mentions)")
        return self


class PretrainFields(Section):
    """A backbone pretrained in the recipe (:func:`lmforge.tasks.finetune.pretrain_backbone`)."""

    pretrain: str | None = Field(None, description="a pretraining recipe run first into "
                                 "<run>/backbone (e.g. bert-world, t5-world)")
    pretrain_set: list[str] = Field(default_factory=list,
                                    description="--set overrides of that recipe")
    pretrain_on_task_text: bool = Field(True, description="add the task's training texts "
                                        "to the pretraining data")


class BackboneConfig(PretrainFields):
    path: str | None = Field(None, description="a model folder: lmforge run or model, "
                             "Hugging Face folder, or 'minilm' (the packaged all-MiniLM-L6-v2)")
    encoder: Literal["textcnn", "bilstm"] | None = Field(
        None, description="an encoder trained from scratch instead")
    classical: Literal["tfidf-logreg", "tfidf-svm"] | None = Field(
        None, description="a scikit-learn baseline instead (classify only): TF-IDF + "
        "logistic regression or a linear SVM")
    classical_config: dict[str, Any] = Field(
        default_factory=dict, description="TfidfClassifier options (analyzer, ngram_range, "
        "C, max_features, sublinear_tf, class_weight)")
    encoder_config: dict[str, Any] = Field(default_factory=dict)
    init: Literal["pretrained", "random"] = Field(
        "pretrained", description="random: the same architecture, untrained")
    tokenizer: TokenizerConfig = Field(
        default_factory=lambda: TokenizerConfig(kind="wordpiece", vocab_size=4000),
        description="the tokenizer trained for a from-scratch encoder")

    @model_validator(mode="after")
    def _one_backbone(self) -> BackboneConfig:
        given = [n for n in ("path", "pretrain", "encoder", "classical") if getattr(self, n)]
        if len(given) != 1:
            raise ValueError("give exactly one of backbone.path, backbone.pretrain, "
                             "backbone.encoder or backbone.classical (got "
                             f"{', '.join(given) or 'none'})")
        return self


class HeadConfig(Section):
    pooling: Literal["cls", "pooler", "mean", "max", "attention", "last"] = Field(
        "cls", description="classify: last for a decoder (GPT) backbone")
    attention_dim: int | None = Field(None, ge=1, description="pooling=attention: the "
                                      "scorer's hidden size (default: the model's width)")
    head: Literal["linear", "crf"] = Field("linear", description="tag: softmax or CRF")
    dropout: float = Field(0.1, ge=0, lt=1)
    constrained: bool = Field(True, description="tag: decode legal tag sequences only")
    typed_markers: bool = Field(True, description="relate: '@ * person * Anna @' markers")
    no_relation: str = Field("no_relation", description="relate: the negative label")
    threshold: float | None = Field(None, gt=0, lt=1, description="relate: predict "
                                    "no_relation when the best other relation's probability "
                                    "is below this")
    max_answer_length: int = Field(30, ge=1, description="extract: the longest answer, in "
                                   "tokens")
    n_best: int = Field(20, ge=1, description="extract: start and end candidates per window")
    version_2_with_negative: Literal["auto"] | bool = Field(
        "auto", description="extract: questions may have no answer (SQuAD v2.0); auto: when "
        "a training question is impossible")
    null_threshold: float = Field(0.0, description="extract, v2: answer '' when the null "
                                  "score exceeds the best span's by more than this")
    tune_null_threshold: bool = Field(True, description="extract, v2: at each evaluation, "
                                      "set null_threshold to the one that maximises F1 on "
                                      "val (each checkpoint keeps its own)")


class LoraSection(Section):
    r: int = Field(8, ge=1)
    alpha: float = Field(16, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] | Literal["default", "all-linear"] = "default"
    use_rslora: bool = False


class FinetuneConfig(Section):
    strategy: Literal["full", "top_k", "frozen", "lora"] = "full"
    top_k: int = Field(2, ge=1, description="top_k: the layers trained (with the head)")
    lora: LoraSection = Field(default_factory=LoraSection)
    metric: str = Field("auto", description="the validation metric that picks the best "
                        "checkpoint (auto: f1_macro, entity_f1, relation_f1 or f1 (extract) "
                        "by task; accuracy, f1_micro, exact, HasAns_f1, ...)")
    class_weights: Literal["none", "balanced"] = "none"
    label_smoothing: float = Field(0.0, ge=0, lt=1)


class FinetuneRecipe(Section):
    run: RunConfig = Field(default_factory=RunConfig)
    data: TaskDataConfig
    backbone: BackboneConfig
    head: HeadConfig = Field(default_factory=HeadConfig)
    finetune: FinetuneConfig = Field(default_factory=FinetuneConfig)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(
        max_steps=600, batch_size=32, lr=5e-4, min_lr=0.0, warmup_steps=50,
        weight_decay=0.01, beta2=0.999, eval_every=100, ckpt_every=200, keep_last=1))

    @model_validator(mode="after")
    def _subword_needs_words(self) -> FinetuneRecipe:
        if self.data.subword == "all" and self.head.head == "crf":
            raise ValueError("data.subword=all labels sub-tokens, but a CRF scores word "
                             "sequences: use head.head=linear or data.subword=first")
        if self.data.subword == "all" and self.data.mention_replace > 0:
            raise ValueError("data.mention_replace rewrites words: use data.subword=first")
        noisy = [f"data.{n}" for n in ("augment", "token_dropout", "entity_noise",
                                        "mention_replace") if getattr(self.data, n)]
        if self.train.privacy is not None and noisy:
            raise ValueError(f"train.privacy samples each training record as it is: "
                             f"{', '.join(noisy)} must be 0 (EDA copies would make one "
                             "record several privacy units)")
        return self

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def builtin_finetune_recipes() -> list[str]:
    return sorted(p.stem for p in FINETUNE_DIR.glob("*.yaml"))


def load_finetune_recipe(name_or_path: str, overrides: list[str] | None = None
                         ) -> FinetuneRecipe | Seq2SeqRecipe:
    """A built-in recipe name (``classify-sentiment``) or a YAML path, plus overrides; a
    recipe with a ``task`` field (``translate``) is a generation recipe
    (:mod:`lmforge.tasks.seq2seq_config`), ``task: chat`` a chat recipe
    (:mod:`lmforge.chat.recipe`), ``task: control`` a controlled-generation recipe
    (:mod:`lmforge.control.recipe`), ``task: code`` a code-completion recipe
    (:mod:`lmforge.code.recipe`), ``task: multitask`` a multi-task recipe
    (:mod:`lmforge.tasks.multitask_config`)."""
    p = Path(name_or_path)
    if not p.is_file():
        builtin = FINETUNE_DIR / f"{name_or_path}.yaml"
        if p.suffix or not builtin.is_file():
            raise ConfigError(f"recipe {name_or_path} not found (built-in fine-tuning "
                              f"recipes: {', '.join(builtin_finetune_recipes())})")
        p = builtin
    raw = load_yaml(p)
    apply_overrides(raw, overrides or [])
    if raw.get("task") == "chat":
        from ..chat.recipe import build_chat_recipe

        return build_chat_recipe(raw)
    if raw.get("task") == "control":
        from ..control.recipe import build_control_recipe

        return build_control_recipe(raw)
    if raw.get("task") == "code":
        from ..code.recipe import build_code_recipe

        return build_code_recipe(raw)
    if raw.get("task") == "multitask":
        from .multitask_config import build_multitask_recipe

        return build_multitask_recipe(raw)
    if raw.get("task") is not None:
        from .seq2seq_config import GENERATION_TASKS, build_seq2seq_recipe

        if raw["task"] not in GENERATION_TASKS:
            raise ConfigError(f"task: {raw['task']!r} is not a generation task "
                              f"({', '.join(GENERATION_TASKS)}, chat, control, code) nor "
                              "multitask; the "
                              "understanding tasks take no task field (it follows from the "
                              "data)")
        return build_seq2seq_recipe(raw)
    return build_finetune_recipe(raw)


def build_finetune_recipe(raw: dict) -> FinetuneRecipe:
    try:
        return FinetuneRecipe.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, FinetuneRecipe)) from None
