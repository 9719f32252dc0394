r"""Pooled-embedding text classifier: a fixed embedding of each text + logistic regression.

Two kinds of ``source``:

* **word vectors** (an lmforge :class:`~lmforge.embeddings.KeyedVectors`): the text's
  tokens :math:`T` (:func:`lmforge.embeddings.tokenize`: for a text with a CJK ideograph
  jieba words, ``zh_mode="jieba"``, or characters, ``"char"``; English words otherwise;
  tokenise as the vectors were trained) are averaged over those that have a vector,

  .. math:: e = \frac{1}{|T_v|} \sum_{w \in T_v} v_w, \qquad T_v = \{w \in T : v_w
            \text{ exists}\},

  and :math:`e = 0` when no token has one. Out-of-vocabulary words are skipped, except
  with FastText vectors (:class:`~lmforge.embeddings.FastTextKeyedVectors`), which build
  a vector for an unseen word from its character n-grams. Only ``pooling="mean"`` applies.
* **a sentence encoder** (a folder :class:`~lmforge.embeddings.SentenceEncoder` loads: any
  lmforge or Hugging Face BERT-family encoder; ``None`` means the packaged
  all-MiniLM-L6-v2): the final hidden states pooled by ``mean``, ``cls`` or ``max`` and
  L2-normalised (:func:`lmforge.embeddings.embed_text`).

The classifier on top is the logistic-regression head of
:mod:`lmforge.tasks.classical_linear`. Saving stores the word vectors in the folder
(``words.json``, ``vectors.safetensors``), so the folder is self-contained; an encoder is
stored by its path (``null`` for the packaged model) and can be replaced at load time.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError
from .classical_io import (
    WEIGHTS,
    model_from_settings,
    read_arrays,
    read_head,
    read_meta,
    read_strings,
    write_folder,
)
from .classical_linear import LinearTextClassifier, check_C, check_class_weight, has_cjk

WORDS, VECTORS = "words.json", "vectors.safetensors"
ZH_MODES = ("jieba", "char")


class EmbeddingClassifier(LinearTextClassifier):
    """Averaged word vectors or a pooled sentence encoder + ``LogisticRegression``.

    ``source``: a ``KeyedVectors`` (or ``FastTextKeyedVectors``), an encoder folder, or
    None for the packaged all-MiniLM-L6-v2. ``pooling``: ``"mean"`` (word vectors and
    encoders), ``"cls"`` or ``"max"`` (encoders). ``zh_mode`` and ``lowercase``: how word
    vectors' tokens are found. ``C``, ``class_weight``: as :class:`TfidfClassifier`.
    """

    classifier = "logreg"

    def __init__(self, source: Any = None, pooling: str = "mean", C: float = 1.0,
                 zh_mode: str = "jieba", lowercase: bool = False, batch_size: int = 32,
                 class_weight: None | str | dict[str, float] = None):
        from ..embeddings.contextual import POOLINGS
        from ..embeddings.keyed_vectors import KeyedVectors

        if isinstance(source, KeyedVectors):
            if pooling != "mean":
                raise ConfigError(f"pooling={pooling!r} needs an encoder; word vectors are "
                                  "averaged (pooling='mean')")
        elif isinstance(source, str | os.PathLike):
            source = Path(source).expanduser()
        elif source is not None:
            raise ConfigError("source must be KeyedVectors, an encoder folder or None (the "
                              f"packaged all-MiniLM-L6-v2), got {type(source).__name__}")
        if pooling not in POOLINGS:
            raise ConfigError(f"pooling must be one of {', '.join(POOLINGS)} "
                              f"(got {pooling!r})")
        if zh_mode not in ZH_MODES:
            raise ConfigError(f"zh_mode must be one of {', '.join(ZH_MODES)} (got {zh_mode!r})")
        if not isinstance(lowercase, bool):
            raise ConfigError(f"lowercase must be true or false, got {lowercase!r}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.source, self.pooling, self.C = source, pooling, check_C(C)
        self.zh_mode, self.lowercase, self.batch_size = zh_mode, lowercase, batch_size
        self.class_weight = check_class_weight(class_weight)
        self._head = None

    @property
    def settings(self) -> dict[str, Any]:
        """The constructor arguments except ``source`` (JSON-ready)."""
        return {"pooling": self.pooling, "C": self.C, "zh_mode": self.zh_mode,
                "lowercase": self.lowercase, "batch_size": self.batch_size,
                "class_weight": self.class_weight}

    def _uses_word_vectors(self) -> bool:
        return not (self.source is None or isinstance(self.source, Path))

    def embed(self, texts: list[str]) -> np.ndarray:
        """The features: one float64 row per text, (n, d)."""
        if not self._uses_word_vectors():
            from ..embeddings.contextual import embed_text

            return embed_text(texts, self.source, pooling=self.pooling,
                              batch_size=self.batch_size).astype(np.float64)
        from ..embeddings.vocab import tokenize

        kv = self.source
        has_vector = getattr(kv, "has_vector", kv.__contains__)  # FastText: OOV from n-grams
        out = np.zeros((len(texts), kv.vector_size), dtype=np.float64)
        for i, text in enumerate(texts):
            words = tokenize(text, "zh" if has_cjk(text) else "en", self.zh_mode,
                             self.lowercase)
            vecs = [kv.get_vector(w) for w in words if has_vector(w)]
            if vecs:
                out[i] = np.mean(np.asarray(vecs, dtype=np.float64), axis=0)
        return out

    def _fit_features(self, texts: list[str]) -> np.ndarray:
        return self.embed(texts)

    def _features(self, texts: list[str]) -> np.ndarray:
        return self.embed(texts)

    def save(self, folder: str | Path) -> Path:
        """Write ``classical.json`` and ``classical.safetensors`` (coef, intercept) and,
        for word vectors, ``words.json`` + ``vectors.safetensors``, atomically."""
        from ..embeddings.fasttext import FastTextKeyedVectors

        head = self._fitted()
        arrays: dict[str, dict[str, np.ndarray]] = {
            WEIGHTS: {"coef": head.coef, "intercept": head.intercept}}
        json_files: dict[str, Any] = {}
        if not self._uses_word_vectors():
            source: dict[str, Any] = {"kind": "encoder", "path": None if self.source is None
                                      else str(self.source.resolve())}
        else:
            kv = self.source
            arrays[VECTORS] = {"vectors": kv.vectors}
            json_files[WORDS] = kv.index_to_key
            source = {"kind": "word_vectors", "fasttext": None}
            if isinstance(kv, FastTextKeyedVectors):
                arrays[VECTORS].update(vectors_vocab=kv.vectors_vocab,
                                       ngram_vectors=kv.ngram_vectors,
                                       bucket_rows=kv.bucket_rows.astype(np.int64))
                source["fasttext"] = {"min_n": kv.min_n, "max_n": kv.max_n}
        return write_folder(folder, {"model": "embedding-logreg", "labels": head.labels,
                                     "settings": self.settings, "source": source},
                            arrays, json_files)

    @classmethod
    def load(cls, folder: str | Path, source: Any = None) -> EmbeddingClassifier:
        """A classifier saved by :meth:`save`. ``source`` (KeyedVectors or an encoder
        folder) replaces the saved one, e.g. an encoder that has moved."""
        folder = Path(folder)
        meta = read_meta(folder)
        if meta["model"] != "embedding-logreg":
            raise CheckpointError(f"{folder} holds a {meta['model']} model, not an embedding "
                                  "one; use load_classifier(folder)")
        if source is None:
            source = _saved_source(folder, meta)
        model = model_from_settings(cls, folder, meta, source=source)
        arrays = read_arrays(folder, WEIGHTS, meta, {"coef": 2, "intercept": 1})
        model._head = read_head(folder, meta, arrays)
        return model


def _saved_source(folder: Path, meta: dict[str, Any]) -> Any:
    """The encoder path or the word vectors that ``meta["source"]`` describes."""
    from ..embeddings.fasttext import FastTextKeyedVectors
    from ..embeddings.keyed_vectors import KeyedVectors
    from ..embeddings.vocab import EmbeddingError

    src, where = meta.get("source"), f"{folder / 'classical.json'} is corrupt"
    if not isinstance(src, dict) or src.get("kind") not in ("encoder", "word_vectors"):
        raise CheckpointError(f"{where}: 'source' must be an object with kind 'encoder' or "
                              "'word_vectors'")
    if src["kind"] == "encoder":
        path = src.get("path")
        if path is not None and not isinstance(path, str):
            raise CheckpointError(f"{where}: source path must be a string or null")
        return path
    ft = src.get("fasttext")
    want = {"vectors": 2} if ft is None else {"vectors": 2, "vectors_vocab": 2,
                                              "ngram_vectors": 2, "bucket_rows": 1}
    words = read_strings(folder, WORDS)
    arrays = read_arrays(folder, VECTORS, meta, want)
    try:
        if ft is None:
            return KeyedVectors(words, arrays["vectors"])
        if not isinstance(ft, dict) or not all(isinstance(ft.get(k), int)
                                               for k in ("min_n", "max_n")):
            raise CheckpointError(f"{where}: source.fasttext needs integer min_n and max_n")
        rows = arrays["bucket_rows"]
        if rows.dtype.kind != "i" or rows.max(initial=-1) >= len(arrays["ngram_vectors"]):
            raise CheckpointError(f"{folder / VECTORS} is corrupt: bucket_rows must be "
                                  "integer rows of ngram_vectors (or -1)")
        return FastTextKeyedVectors(words, arrays["vectors"], arrays["vectors_vocab"],
                                    arrays["ngram_vectors"], rows.astype(np.int32),
                                    ft["min_n"], ft["max_n"])
    except EmbeddingError as e:
        raise CheckpointError(f"{folder / VECTORS} does not fit {folder / WORDS}: {e}") from None
