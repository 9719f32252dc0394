r"""Classical text-classification baselines: TF-IDF or pooled embeddings + a linear model.

The baselines every neural classifier should beat, with scikit-learn's ``fit`` /
``predict`` / ``predict_proba`` / ``score`` surface:

* :class:`TfidfClassifier`: TF-IDF n-gram features + logistic regression or a linear SVM;
* :class:`~lmforge.tasks.classical_embedding.EmbeddingClassifier`: averaged word vectors
  or a sentence encoder's pooled output + logistic regression;
* :func:`cross_validate`: stratified k-fold accuracy and macro-F1.

TF-IDF (scikit-learn's ``TfidfVectorizer``, ``smooth_idf``, ``norm="l2"``): for a term
:math:`t` (an n-gram of tokens) counted :math:`c_{t,d}` times in text :math:`d`, among
:math:`n` training texts of which :math:`\mathrm{df}(t)` contain it,

.. math::

    \mathrm{tf}_{t,d} = c_{t,d}\ \text{or, with sublinear\_tf, } 1 + \ln c_{t,d},\qquad
    \mathrm{idf}(t) = \ln\frac{1 + n}{1 + \mathrm{df}(t)} + 1,\qquad
    x_d = \frac{\mathrm{tf}_{\cdot,d} \odot \mathrm{idf}}
               {\lVert \mathrm{tf}_{\cdot,d} \odot \mathrm{idf} \rVert_2}.

The linear head, its probabilities and the saved-folder format are described in
:mod:`lmforge.tasks.classical_linear` and :mod:`lmforge.tasks.classical_io`. Saved models
hold only JSON and safetensors (nothing is unpickled), so a folder from anyone is safe to
load. scikit-learn is the optional ``tasks`` extra (``pip install 'lmforge[tasks]'``).

>>> clf = TfidfClassifier(analyzer="auto").fit(texts, labels)        # doctest: +SKIP
>>> clf.predict(["今天的足球比赛很精彩", "The new phone runs fast"])   # doctest: +SKIP
>>> clf.save("runs/tfidf"); TfidfClassifier.load("runs/tfidf")       # doctest: +SKIP
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CheckpointError, ConfigError, DataError
from .classical_embedding import EmbeddingClassifier
from .classical_io import (
    META,
    WEIGHTS,
    model_from_settings,
    read_arrays,
    read_head,
    read_meta,
    read_strings,
    write_folder,
)
from .classical_linear import (
    CLASSIFIERS,
    LinearTextClassifier,
    check_C,
    check_class_weight,
    check_texts,
    check_training,
    has_cjk,
    require_sklearn,
)

__all__ = ["ANALYZERS", "EmbeddingClassifier", "TfidfClassifier", "auto_tokens",
           "cross_validate", "jieba_tokens", "load_classifier"]

ANALYZERS = ("word", "char", "jieba", "auto")
VOCAB = "vocabulary.json"
_SKLEARN_TOKEN = re.compile(r"(?u)\b\w\w+\b")  # scikit-learn's default token_pattern
_WORD_CHAR = re.compile(r"\w")


def jieba_tokens(text: str) -> list[str]:
    """jieba's words of ``text`` that hold a letter, digit or ideograph (spaces and
    punctuation dropped; one-character words kept, as Chinese needs)."""
    from ..tokenize.zh import jieba_words

    return [w for w in jieba_words(text) if _WORD_CHAR.search(w)]


def auto_tokens(text: str) -> list[str]:
    """:func:`jieba_tokens` for a text with a CJK ideograph; otherwise scikit-learn's word
    tokens (runs of two or more word characters), so English is tokenised exactly as by
    ``analyzer="word"``."""
    return jieba_tokens(text) if has_cjk(text) else _SKLEARN_TOKEN.findall(text)


_TOKENIZERS: dict[str, Callable[[str], list[str]]] = {"jieba": jieba_tokens,
                                                      "auto": auto_tokens}


class TfidfClassifier(LinearTextClassifier):
    """TF-IDF n-grams + ``LogisticRegression`` (``"logreg"``) or ``LinearSVC``
    (``"linear_svm"``).

    ``analyzer`` (texts are lowercased first):

    * ``"word"``: scikit-learn's word tokens (runs of 2+ word characters) — for English and
      other space-separated text; a Chinese sentence would be one token;
    * ``"char"``: character n-grams over the whole text (spaces and punctuation included);
      for Chinese, ``ngram_range=(1, 2)`` gives characters and character pairs;
    * ``"jieba"``: jieba's word segmentation (:func:`jieba_tokens`) for every text;
    * ``"auto"``: per text, jieba words when it holds a CJK ideograph, otherwise the
      ``"word"`` tokens (:func:`auto_tokens`) — the default, right for mixed zh/en data.

    ``ngram_range=(lo, hi)`` joins lo..hi consecutive tokens (or characters) into terms;
    ``max_features`` keeps the most frequent terms. ``predict_proba`` of ``"linear_svm"``
    is the softmax of its margins, **not calibrated** (see
    :mod:`lmforge.tasks.classical_linear`). ``C`` is the inverse L2 strength,
    ``class_weight`` None, ``"balanced"`` or ``{label: weight}``, ``seed`` LinearSVC's
    random state.
    """

    def __init__(self, analyzer: str = "auto", ngram_range: tuple[int, int] = (1, 2),
                 classifier: str = "logreg", C: float = 1.0, max_features: int | None = None,
                 sublinear_tf: bool = True, class_weight: None | str | dict[str, float] = None,
                 seed: int = 0):
        if analyzer not in ANALYZERS:
            raise ConfigError(f"analyzer must be one of {', '.join(ANALYZERS)} "
                              f"(got {analyzer!r})")
        if classifier not in CLASSIFIERS:
            raise ConfigError(f"classifier must be one of {', '.join(CLASSIFIERS)} "
                              f"(got {classifier!r})")
        if (not isinstance(ngram_range, tuple | list) or len(ngram_range) != 2
                or not all(isinstance(n, int) and not isinstance(n, bool) for n in ngram_range)
                or not 1 <= ngram_range[0] <= ngram_range[1]):
            raise ConfigError(f"ngram_range must be two integers (lo, hi) with 1 <= lo <= hi, "
                              f"got {ngram_range!r}")
        if max_features is not None and (isinstance(max_features, bool) or not isinstance(
                max_features, int) or max_features < 1):
            raise ConfigError(f"max_features must be None or an integer >= 1, "
                              f"got {max_features!r}")
        if not isinstance(sublinear_tf, bool):
            raise ConfigError(f"sublinear_tf must be true or false, got {sublinear_tf!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ConfigError(f"seed must be an integer, got {seed!r}")
        self.analyzer, self.classifier = analyzer, classifier
        self.ngram_range = (ngram_range[0], ngram_range[1])
        self.C, self.max_features, self.sublinear_tf = check_C(C), max_features, sublinear_tf
        self.class_weight, self.seed = check_class_weight(class_weight), seed
        self._vec: Any = None
        self._head = None

    @property
    def settings(self) -> dict[str, Any]:
        """The constructor arguments (JSON-ready)."""
        return {"analyzer": self.analyzer, "ngram_range": list(self.ngram_range),
                "classifier": self.classifier, "C": self.C, "max_features": self.max_features,
                "sublinear_tf": self.sublinear_tf, "class_weight": self.class_weight,
                "seed": self.seed}

    def _new_vectorizer(self, vocabulary: list[str] | None = None) -> Any:
        from sklearn.feature_extraction.text import TfidfVectorizer

        if self.analyzer in _TOKENIZERS:
            kw: dict[str, Any] = {"tokenizer": _TOKENIZERS[self.analyzer],
                                  "token_pattern": None}
        else:
            kw = {"analyzer": self.analyzer}
        return TfidfVectorizer(ngram_range=self.ngram_range, sublinear_tf=self.sublinear_tf,
                               max_features=self.max_features, vocabulary=vocabulary, **kw)

    def _fit_features(self, texts: list[str]) -> Any:
        vec = self._new_vectorizer()
        try:
            X = vec.fit_transform(texts)
        except ValueError as e:
            if "empty vocabulary" not in str(e):
                raise
            raise DataError(f"no terms found in the {len(texts)} texts (empty vocabulary) with "
                            f"analyzer={self.analyzer!r}: are they empty or punctuation only?"
                            ) from None
        self._vec = vec
        return X

    def _features(self, texts: list[str]) -> Any:
        return self._vec.transform(texts)

    def transform(self, texts: Sequence[str]) -> Any:
        """The TF-IDF matrix (n, V), a scipy sparse matrix; column j is ``vocabulary[j]``."""
        self._fitted()
        return self._features(check_texts(texts))

    @property
    def vocabulary(self) -> list[str]:
        """The terms in column order (n-grams joined by one space; characters for char)."""
        self._fitted()
        return [str(t) for t in self._vec.get_feature_names_out()]

    def save(self, folder: str | Path) -> Path:
        """Write ``classical.json``, ``vocabulary.json`` and ``classical.safetensors``
        (idf, coef, intercept) into ``folder``, atomically (see
        :mod:`lmforge.tasks.classical_io`)."""
        head = self._fitted()
        return write_folder(folder, {"model": f"tfidf-{self.classifier}", "labels": head.labels,
                                     "settings": self.settings},
                            {WEIGHTS: {"idf": np.asarray(self._vec.idf_, dtype=np.float64),
                                       "coef": head.coef, "intercept": head.intercept}},
                            {VOCAB: self.vocabulary})

    @classmethod
    def load(cls, folder: str | Path) -> TfidfClassifier:
        """A classifier saved by :meth:`save`; it predicts exactly as the saved one did."""
        folder = Path(folder)
        meta = read_meta(folder)
        if not meta["model"].startswith("tfidf-"):
            raise CheckpointError(f"{folder} holds a {meta['model']} model, not a TF-IDF one; "
                                  "use load_classifier(folder)")
        model = model_from_settings(cls, folder, meta)
        if meta["model"] != f"tfidf-{model.classifier}":
            raise CheckpointError(f"{folder / META} is corrupt: model {meta['model']!r} but "
                                  f"classifier {model.classifier!r}")
        require_sklearn(cls.__name__)
        vocab = read_strings(folder, VOCAB)
        arrays = read_arrays(folder, WEIGHTS, meta, {"idf": 1, "coef": 2, "intercept": 1})
        head = read_head(folder, meta, arrays)
        if arrays["idf"].shape != (len(vocab),) or head.coef.shape[1] != len(vocab):
            raise CheckpointError(f"{folder / WEIGHTS} does not fit {folder / VOCAB}: "
                                  f"{len(vocab)} terms, idf {arrays['idf'].shape}, "
                                  f"coef {head.coef.shape}")
        vec = model._new_vectorizer(vocabulary=vocab)
        vec.idf_ = arrays["idf"].astype(np.float64)
        model._vec, model._head = vec, head
        return model


def load_classifier(folder: str | Path, **kwargs: Any) -> TfidfClassifier | EmbeddingClassifier:
    """The classifier saved in ``folder``, whichever kind ``classical.json`` names.
    ``kwargs`` go to :meth:`EmbeddingClassifier.load` (``source=``)."""
    meta = read_meta(folder)
    if meta["model"].startswith("tfidf-"):
        return TfidfClassifier.load(folder)
    return EmbeddingClassifier.load(folder, **kwargs)


def cross_validate(model_factory: Callable[[], Any], texts: Sequence[str],
                   labels: Sequence[str], k: int = 5, seed: int = 0) -> dict[str, Any]:
    """Stratified k-fold cross-validation of a fresh ``model_factory()`` per fold.

    Folds are scikit-learn's ``StratifiedKFold(k, shuffle=True, random_state=seed)``. Per
    fold: accuracy and macro-F1 (the unweighted mean of the per-class F1 on the held-out
    fold). Returns ``{"k", "accuracy": [per fold], "f1_macro": [per fold],
    "accuracy_mean", "accuracy_std", "f1_macro_mean", "f1_macro_std"}`` (std over folds,
    population form, ``ddof=0``).

    >>> cross_validate(lambda: TfidfClassifier(), texts, labels, k=5)   # doctest: +SKIP
    """
    require_sklearn("cross_validate")
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import StratifiedKFold

    texts, labels = check_training(texts, labels)
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"k must be an integer >= 2, got {k!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    label, count = min(Counter(labels).items(), key=lambda kv: kv[1])
    if count < k:
        raise DataError(f"label {label!r} has {count} text(s); k={k} stratified folds need at "
                        f"least {k} of every label")
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    acc, f1 = [], []
    for train, test in folds.split(np.zeros(len(labels)), labels):
        model = model_factory()
        model.fit([texts[i] for i in train], [labels[i] for i in train])
        gold = [labels[i] for i in test]
        pred = model.predict([texts[i] for i in test])
        acc.append(float(accuracy_score(gold, pred)))
        f1.append(float(f1_score(gold, pred, average="macro")))
    return {"k": k, "accuracy": acc, "f1_macro": f1,
            "accuracy_mean": float(np.mean(acc)), "accuracy_std": float(np.std(acc)),
            "f1_macro_mean": float(np.mean(f1)), "f1_macro_std": float(np.std(f1))}
