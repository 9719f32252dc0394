"""Embedding recipes: ``lmforge embed train CONFIG``.

A recipe names the corpus, how Chinese is segmented, the algorithm and its settings::

    run:      {name: w2v-world, out_dir: runs/w2v-world}
    data:     {corpus: world, lang: en, world_sentences: 100000}   # or inputs: [files]
    algorithm: word2vec            # word2vec | glove | fasttext
    word2vec: {vector_size: 100, window: 5, sg: true, negative: 5, epochs: 5}
    glove:    {vector_size: 50, epochs: 25}
    fasttext: {vector_size: 100, min_n: 3, max_n: 6, bucket: 200000}

Training writes ``vectors.bin`` (word2vec binary format, readable by gensim),
``config.yaml`` (the resolved recipe) and ``stats.json`` into the run folder, and, for the
world corpus, the planted-analogy accuracy per section. FastText also writes ``model.bin``
(Facebook's fastText format); :func:`load_vectors` prefers it for a run folder, so that
queries can use out-of-vocabulary words (vectors from their character n-grams).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from ..config import apply_overrides, format_validation_error, load_yaml
from ..errors import ConfigError, DataError
from ..io import atomic_write_text, ensure_writable_dir
from .fasttext import FastText, FastTextConfig
from .glove import GloVe, GloVeConfig
from .keyed_vectors import KeyedVectors
from .vocab import tokenize
from .word2vec import Word2Vec, Word2VecConfig

VECTORS = "vectors.bin"
FASTTEXT_MODEL = "model.bin"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EmbedRun(_Section):
    name: str = "embeddings"
    out_dir: str | None = None
    seed: int = 1

    @property
    def path(self) -> Path:
        return Path(self.out_dir or f"runs/{self.name}")


class EmbedData(_Section):
    corpus: Literal["world", "python-stdlib"] | None = None
    inputs: list[str] = Field(default_factory=list)
    field: str = "text"
    column: str = "text"
    lang: Literal["en", "zh"] = "en"
    zh_mode: Literal["char", "jieba"] = "jieba"
    lowercase: bool = False
    world_sentences: int = Field(100_000, ge=1)


def _dataclass_section(cls: type, value: Any, name: str) -> Any:
    if dataclasses.is_dataclass(value):
        return value
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a mapping")
    allowed = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
    cfg = TypeAdapter(cls).validate_python(value)  # field types: "abc" is no vector_size
    cfg.validate()
    return cfg


class EmbedRecipe(_Section):
    run: EmbedRun = Field(default_factory=EmbedRun)
    data: EmbedData = Field(default_factory=EmbedData)
    algorithm: Literal["word2vec", "glove", "fasttext"] = "word2vec"
    word2vec: Any = Field(default_factory=Word2VecConfig)
    glove: Any = Field(default_factory=GloVeConfig)
    fasttext: Any = Field(default_factory=FastTextConfig)

    @field_validator("word2vec", mode="before")
    @classmethod
    def _w2v(cls, v: Any) -> Any:
        return _dataclass_section(Word2VecConfig, v, "word2vec")

    @field_validator("glove", mode="before")
    @classmethod
    def _glove(cls, v: Any) -> Any:
        return _dataclass_section(GloVeConfig, v, "glove")

    @field_validator("fasttext", mode="before")
    @classmethod
    def _fasttext(cls, v: Any) -> Any:
        return _dataclass_section(FastTextConfig, v, "fasttext")

    def to_dict(self) -> dict:
        sections = ("word2vec", "glove", "fasttext")
        d = self.model_dump(mode="json", exclude=set(sections))
        return {**d, **{s: dataclasses.asdict(getattr(self, s)) for s in sections}}


def load_embed_recipe(path: str | Path | None, overrides: list[str] | None = None
                      ) -> EmbedRecipe:
    """Read and validate an embedding recipe; ``overrides`` are ``a.b=value`` strings."""
    raw = load_yaml(path) if path is not None else {}
    apply_overrides(raw, overrides or [])
    try:
        return EmbedRecipe.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, EmbedRecipe, raw)) from None
    except ConfigError:
        raise


def recipe_sentences(data: EmbedData, seed: int = 0) -> list[list[str]]:
    """Token lists of the recipe's corpus, tokenised for ``data.lang``."""
    if data.corpus == "world":
        from ..corpora import lm_corpus

        texts = [it.text for it in lm_corpus("train", 2 * data.world_sentences, seed=seed)
                 if it.lang == data.lang][: data.world_sentences]
    elif data.corpus == "python-stdlib":
        from ..corpora import iter_stdlib_documents

        texts = [line for _p, text in iter_stdlib_documents() for line in text.splitlines()]
    elif data.inputs:
        from ..data.readers import iter_documents

        texts = [d.text for d in iter_documents(data.inputs, field=data.field,
                                                column=data.column)]
    else:
        raise ConfigError("data: give data.corpus (world, python-stdlib) or data.inputs")
    sents = [tokenize(t, lang=data.lang, zh_mode=data.zh_mode, lowercase=data.lowercase)
             for t in texts]
    sents = [s for s in sents if s]
    if not sents:
        raise DataError("empty corpus: no words to train embeddings on")
    return sents


def train_embeddings(recipe: EmbedRecipe, log=print) -> tuple[KeyedVectors, dict]:
    """Train the recipe's algorithm and write its run folder; return vectors and stats."""
    out = ensure_writable_dir(recipe.run.path)
    atomic_write_text(out / "config.yaml",
                      yaml.safe_dump(recipe.to_dict(), sort_keys=False, allow_unicode=True))
    sents = recipe_sentences(recipe.data, seed=recipe.run.seed)
    log(f"corpus: {len(sents)} sentences, {sum(map(len, sents))} words")
    if recipe.algorithm != "fasttext":  # a stale model.bin would shadow vectors.bin
        (out / FASTTEXT_MODEL).unlink(missing_ok=True)
    kv, stats = _fit(recipe, sents, out)
    kv.save_word2vec_format(out / VECTORS, binary=True)
    if recipe.data.corpus == "world":
        stats["planted_analogies"] = _planted_accuracy(kv, recipe.data.lang)
    atomic_write_text(out / "stats.json", json.dumps(stats, indent=2, ensure_ascii=False))
    return kv, stats


def _fit(recipe: EmbedRecipe, sents: list[list[str]], out: Path) -> tuple[KeyedVectors, dict]:
    """Train ``recipe.algorithm``; FastText also writes its ``model.bin``."""
    if recipe.algorithm == "word2vec":
        model = Word2Vec(recipe.word2vec).fit(sents)
        return model.wv, dict(model.stats)
    if recipe.algorithm == "fasttext":
        from .fasttext_bin import save_facebook_model

        ft = FastText(recipe.fasttext).fit(sents)
        save_facebook_model(ft, out / FASTTEXT_MODEL)
        return ft.wv, dict(ft.stats)
    g = GloVe(recipe.glove).fit(sents)
    return g.wv, {"final_cost": g.history[-1], "vocab_size": len(g.wv),
                  "cooccurrence_nonzeros": len(g.cooc[2])}


def _planted_accuracy(kv: KeyedVectors, lang: str) -> dict:
    from .analogies import planted_analogies
    from .evaluate import evaluate_analogies

    sections = planted_analogies(lang)
    if not sections:
        return {}
    report = evaluate_analogies(kv, sections)
    return {name: sec["accuracy"] for name, sec in report["sections"].items()}


def load_vectors(path: str | Path) -> KeyedVectors:
    """Vectors from an embed run folder (its fastText ``model.bin`` if present, which
    answers out-of-vocabulary words, else ``vectors.bin``), a fastText ``.bin`` model, or
    a word2vec file (``.bin`` binary, else text)."""
    p = Path(path)
    if p.is_dir():
        p = p / FASTTEXT_MODEL if (p / FASTTEXT_MODEL).is_file() else p / VECTORS
    if not p.is_file():
        raise DataError(f"{path}: no word vectors found (expected a word2vec file or a "
                        f"folder with {VECTORS})")
    if _is_fasttext_bin(p):
        from .fasttext_bin import load_facebook_vectors

        return load_facebook_vectors(p)
    return KeyedVectors.load_word2vec_format(p, binary=p.suffix == ".bin")


def _is_fasttext_bin(path: Path) -> bool:
    """Whether ``path`` starts with Facebook fastText's magic number (int32 LE); a file
    encrypted at rest is decrypted in memory to tell (all of it: decryption verifies every
    chunk before it returns a byte)."""
    from ..privacy.crypto import is_encrypted
    from ..privacy.encrypted_io import read_bytes
    from .fasttext_bin import _FB_MAGIC

    if is_encrypted(path):
        head = read_bytes(path)[:4]
    else:
        with open(path, "rb") as f:
            head = f.read(4)
    return head == _FB_MAGIC.to_bytes(4, "little")
