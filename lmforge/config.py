"""Recipes: YAML files validated by pydantic.

A recipe has one section per stage of a run::

    run:       name, output folder, seed
    data:      where the text comes from and how it becomes token shards
    tokenizer: train one (kind, vocab size, special tokens) or load one (path)
    model:     ``arch`` plus that architecture's config dataclass fields
    train:     objective, optimiser, schedule, precision, evaluation, checkpoints
    sample:    prompts and decoding settings for the samples written after training

Every section forbids unknown keys. A bad field becomes a one-line :class:`ConfigError`
naming the field and what is allowed. Any field can be overridden from the command line
with ``--set section.field=value``; the value is parsed as YAML (``3e-4``, ``true``,
``[a, b]``).

This module knows the registries (models, tasks); nothing below it imports it back. The
``train:`` section, :class:`~lmforge.train.config.TrainConfig`, lives next to the trainer
(and is re-exported here); the strict section base and the one-line errors are in
:mod:`lmforge.validation`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)

from . import validation
from .errors import ConfigError
from .paths import plain_name
from .train.config import TrainConfig  # the train: section, re-exported here
from .validation import Section as _Section


class RunConfig(_Section):
    name: str = "run"
    out_dir: str | None = Field(None, description="run folder; default runs/<name>")
    seed: int = 1337

    @field_validator("name")
    @classmethod
    def _plain(cls, v: str) -> str:  # runs/<name> stays in runs/ (out_dir is any folder)
        return plain_name(v, ConfigError, "run.name")

    @property
    def path(self) -> Path:
        return Path(self.out_dir or f"runs/{self.name}")


class DataConfig(_Section):
    corpus: Literal["world", "python-stdlib"] | None = Field(
        None, description="a built-in corpus instead of (or besides) input files")
    inputs: list[str] = Field(default_factory=list, description="files, folders or globs")
    prepared: str | None = Field(None, description="an existing `lmforge data prepare` folder")
    field: str = Field("text", description="JSONL field holding the text")
    column: str = Field("text", description="CSV column holding the text")
    clean: bool | dict[str, bool] = Field(
        True, description="clean_text: true, false, or a mapping of its options (e.g. "
        "{invisible: true, homoglyphs: true, mixed_scripts: true})")
    dedup: bool = True
    val_fraction: float = Field(0.05, gt=0.0, lt=1.0)
    world_train_sentences: int = Field(200_000, ge=1)
    world_eval_sentences: int = Field(1000, ge=1)
    src_lang: Literal["en", "zh"] = Field("en", description="translation: source language")
    tgt_lang: Literal["en", "zh"] = Field("zh", description="translation: target language")

    @model_validator(mode="after")
    def _langs_differ(self) -> DataConfig:
        if self.src_lang == self.tgt_lang:
            raise ValueError(f"src_lang and tgt_lang must differ (both {self.src_lang!r})")
        return self


class TokenizerConfig(_Section):
    kind: Literal["char", "bpe", "wordpiece"] = "bpe"
    vocab_size: int = Field(4096, ge=1)
    min_frequency: int = Field(2, ge=1)
    special_tokens: list[str] = Field(default_factory=list,
                                      description="user-defined extra special tokens")
    path: str | None = Field(None, description="load tokenizer.json or a HF folder instead")


class SampleConfig(_Section):
    prompts: list[str] = Field(default_factory=list)
    max_new_tokens: int = Field(64, ge=1)
    temperature: float = Field(0.8, ge=0)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)


class Recipe(_Section):
    run: RunConfig = Field(default_factory=RunConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: Any = Field(default_factory=lambda: {"arch": "gpt"}, validate_default=True)
    train: TrainConfig = Field(default_factory=TrainConfig)
    sample: SampleConfig = Field(default_factory=SampleConfig)

    @field_validator("model", mode="before")
    @classmethod
    def _model(cls, v: Any) -> Any:
        from .models import model_config_class

        if dataclasses.is_dataclass(v):
            return v
        if not isinstance(v, dict):
            raise ValueError("must be a mapping with an 'arch' key")
        v = dict(v)
        arch = v.pop("arch", "gpt")
        cfg_cls = model_config_class(arch)
        return TypeAdapter(cfg_cls).validate_python(v)

    @model_validator(mode="after")
    def _objective_fits_arch(self) -> Recipe:
        from .train.tasks import check_objective

        check_objective(self.train.objective, self.arch, nsp=self.train.nsp)
        return self

    @property
    def arch(self) -> str:
        from .models import arch_of

        return arch_of(self.model)

    def to_dict(self) -> dict:
        d = self.model_dump(mode="json", exclude={"model"})
        return {**d, "model": {"arch": self.arch, **dataclasses.asdict(self.model)}}

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


# ----------------------------------------------------------------------------- errors

def format_validation_error(err: ValidationError, root: type | None = None,
                            raw: dict | None = None) -> str:
    """Turn a pydantic error into one line: ``field: problem (allowed: ...)``.

    The generic formatting is :func:`lmforge.validation.format_validation_error`; this
    adds what only a recipe knows: the fields allowed in its ``model:`` section depend on
    the ``arch`` of the ``raw`` recipe.
    """

    def allowed_at(parent: tuple) -> list[str] | None:
        if parent[:1] != ("model",):
            return None
        if raw is None:  # a validated Recipe.model is a dataclass, not a pydantic section
            return [] if root is Recipe else None
        from .models import model_config_class

        arch = (raw.get("model") or {}).get("arch", "gpt")
        return ["arch"] + [f.name for f in dataclasses.fields(model_config_class(arch))]

    return validation.format_validation_error(err, root, allowed_at)


# ----------------------------------------------------------------------------- loading

def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.lr=3e-4"`` -> ``(["train", "lr"], 0.0003)``; the value is parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. --set train.lr=3e-4")
    key, value = text.split("=", 1)
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set {text!r}: empty key")
    try:
        parsed = yaml.safe_load(value) if value.strip() else ""
    except yaml.YAMLError:
        parsed = value
    # YAML reads 3e-4 as a string (no dot); accept it as a float.
    if isinstance(parsed, str):
        try:
            parsed = float(parsed) if any(c in parsed for c in "eE.") else parsed
        except ValueError:
            pass
    return path, parsed


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Set each ``a.b.c=value`` override into the nested dict ``raw`` (in place)."""
    for text in overrides:
        path, value = parse_override(text)
        node = raw
        for p in path[:-1]:
            nxt = node.get(p)
            if nxt is None:
                nxt = node[p] = {}
            if not isinstance(nxt, dict):
                raise ConfigError(f"--set {text!r}: {p} is not a section")
            node = nxt
        node[path[-1]] = value
    return raw


def load_yaml(path: str | Path) -> dict:
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"recipe {p} is a folder, not a YAML file")
    if not p.is_file():
        raise ConfigError(f"recipe {p} not found")
    from .privacy.encrypted_io import read_text

    try:
        raw = yaml.safe_load(read_text(p)) or {}  # a run's config.yaml may be encrypted
    except UnicodeDecodeError as e:
        raise ConfigError(f"recipe {p} is not valid UTF-8 (byte {e.start})") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {p} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {p} must be a mapping of sections")
    return raw


def build_recipe(raw: dict) -> Recipe:
    """Validate a raw dict into a :class:`Recipe`, raising a one-line ConfigError."""
    try:
        return Recipe.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, Recipe, raw)) from None


def load_recipe(path: str | Path | None, overrides: list[str] | None = None) -> Recipe:
    """Load a recipe YAML (or the defaults when ``path`` is None) and apply overrides."""
    raw = load_yaml(path) if path is not None else {}
    apply_overrides(raw, overrides or [])
    return build_recipe(raw)


def validate_recipe(cls: type[BaseModel], raw: dict) -> Any:
    """``cls.model_validate(raw)`` for any recipe class, with a one-line ConfigError."""
    try:
        return cls.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, cls, raw)) from None


def scratch_model(value: Any, archs: Sequence[str], hint: str = "") -> Any:
    """A recipe's ``model:`` section for a model built from scratch: None, a config
    dataclass, or ``{"arch": one of archs, ...fields}`` validated as that architecture's
    config (``hint`` ends the error for another arch)."""
    from .models import model_config_class

    if value is None or dataclasses.is_dataclass(value):
        return value
    if not isinstance(value, dict):
        raise ValueError("must be a mapping with an 'arch' key")
    value = dict(value)
    arch = value.pop("arch", None)
    if arch not in archs:
        raise ValueError(f"model.arch must be one of {', '.join(archs)} (got {arch!r}){hint}")
    return TypeAdapter(model_config_class(arch)).validate_python(value)


class ModelRecipeMixin:
    """``to_dict`` / ``to_yaml`` of a recipe whose ``model`` is a config dataclass or
    None: the dump with ``model: {arch, ...fields}``."""

    def to_dict(self) -> dict:
        from .models import arch_of

        d = self.model_dump(mode="json", exclude={"model"})  # type: ignore[attr-defined]
        model = self.model  # type: ignore[attr-defined]
        if model is not None:
            d["model"] = {"arch": arch_of(model), **dataclasses.asdict(model)}
        return d

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def build_section(cls: type[BaseModel], name: str, **values: Any) -> BaseModel:
    """Validate one section (e.g. CLI flags) with the same one-line errors as a recipe."""
    try:
        return cls.model_validate(values)
    except ValidationError as e:
        msg = format_validation_error(e, cls)
        raise ConfigError(msg.replace("config error: ", f"config error: {name}.", 1)) from None


RECIPE_DIR = Path(__file__).parent / "configs"


def builtin_recipes(folder: Path = RECIPE_DIR) -> list[str]:
    """Names of the recipes shipped with lmforge (``lmforge/configs/*.yaml``; embedding
    recipes are in ``lmforge/configs/embed/``)."""
    return sorted(p.stem for p in folder.glob("*.yaml"))


def resolve_recipe_path(name_or_path: str, folder: Path = RECIPE_DIR) -> Path:
    """A recipe path, or the name of a built-in recipe (``gpt-world``)."""
    p = Path(name_or_path)
    if p.is_file():
        return p
    if p.is_dir():
        raise ConfigError(f"recipe {p} is a folder, not a YAML file")
    builtin = folder / f"{name_or_path}.yaml"
    if p.suffix == "" and builtin.is_file():
        return builtin
    raise ConfigError(f"recipe {name_or_path} not found (built-in recipes: "
                      f"{', '.join(builtin_recipes(folder)) or 'none'})")
