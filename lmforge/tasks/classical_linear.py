r"""The linear head shared by lmforge's classical text classifiers, and their input checks.

A text becomes a feature vector :math:`x \in \mathbb{R}^V` (TF-IDF weights or a pooled
embedding), scored by a linear map

.. math::

    s = W x + b, \qquad W \in \mathbb{R}^{K' \times V},\ b \in \mathbb{R}^{K'},

with :math:`K' = K` classes, except :math:`K' = 1` for two classes (scikit-learn's
convention: one score, for ``labels[1]``). The logits are :math:`z = s` for
:math:`K > 2` and :math:`z = (0, s)` for :math:`K = 2`; then

.. math::

    p_k = \frac{e^{z_k}}{\sum_j e^{z_j}}, \qquad \hat y = \arg\max_k z_k

(for two classes :math:`p(\text{labels}[1]) = \sigma(s)`; ties go to the first label).

* ``logreg``: scikit-learn's ``LogisticRegression`` (lbfgs, ``max_iter=1000``) minimises
  :math:`\tfrac12\lVert W\rVert^2 + C \sum_i -\log p_{y_i}(x_i)`; :math:`p` is its
  ``predict_proba``.
* ``linear_svm``: scikit-learn's ``LinearSVC`` (squared hinge, one-vs-rest) minimises
  :math:`\tfrac12\lVert W\rVert^2 + C \sum_i \sum_k \max(0, 1 - y_{ik} s_k(x_i))^2`.
  Its :math:`p` is the softmax of the margins: a monotone confidence that ranks like the
  scores, **not** a calibrated probability.

scikit-learn only fits :math:`W, b`; the scores and probabilities are computed here with
numpy, so a model loaded from its saved arrays predicts exactly what the fitted one did.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from ..errors import CheckpointError, ConfigError, DataError

CLASSIFIERS = ("logreg", "linear_svm")
_CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")


def has_cjk(text: str) -> bool:
    """Whether ``text`` holds a CJK ideograph (so it is treated as Chinese)."""
    return _CJK.search(text) is not None


def require_sklearn(what: str) -> None:
    """Raise a one-line :class:`ConfigError` naming the ``tasks`` extra when scikit-learn
    is not installed."""
    try:
        import sklearn  # noqa: F401
    except ImportError:
        raise ConfigError(f"{what} needs scikit-learn: pip install 'lmforge[tasks]'") from None


def check_texts(texts: Any) -> list[str]:
    """``texts`` as a list of strings, or a one-line :class:`DataError`."""
    if isinstance(texts, str | bytes) or not isinstance(texts, Sequence):
        raise DataError(f"texts must be a list of strings, got {type(texts).__name__}")
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise DataError(f"texts[{i}] is a {type(t).__name__}, not a string")
    return list(texts)


def check_training(texts: Any, labels: Any, min_classes: int = 2
                   ) -> tuple[list[str], list[str]]:
    """Texts and string labels of equal length, with at least ``min_classes`` classes."""
    texts = check_texts(texts)
    if not texts:
        raise DataError("texts is empty: give labelled texts (at least 2 classes to fit)")
    if isinstance(labels, str | bytes) or not isinstance(labels, Sequence):
        raise DataError(f"labels must be a list of strings, got {type(labels).__name__}")
    if len(labels) != len(texts):
        raise DataError(f"texts has {len(texts)} items but labels has {len(labels)}; "
                        "give one label per text")
    for i, y in enumerate(labels):
        if not isinstance(y, str):
            raise DataError(f"labels[{i}] is a {type(y).__name__} ({y!r}), not a string")
    classes = sorted(set(labels))
    if len(classes) < min_classes:
        raise DataError(f"labels hold one class only ({classes[0]!r}); a classifier needs "
                        "at least 2")
    return texts, list(labels)


def check_C(C: Any) -> float:
    if isinstance(C, bool) or not isinstance(C, int | float) or not np.isfinite(C) or C <= 0:
        raise ConfigError(f"C must be a positive number, got {C!r}")
    return float(C)


def check_class_weight(class_weight: Any) -> None | str | dict[str, float]:
    if class_weight is None or class_weight == "balanced":
        return class_weight
    if isinstance(class_weight, dict) and all(
            isinstance(k, str) and not isinstance(v, bool) and isinstance(v, int | float)
            and v > 0 for k, v in class_weight.items()):
        return {k: float(v) for k, v in class_weight.items()}
    raise ConfigError("class_weight must be None, 'balanced' or a dict {label: positive "
                      f"weight}}, got {class_weight!r}")


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax, shifted by the row maximum so that ``exp`` cannot overflow."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@dataclass
class LinearHead:
    """``labels`` (K, sorted), ``coef`` W (K', V) and ``intercept`` b (K',), float64."""

    labels: list[str]
    coef: np.ndarray
    intercept: np.ndarray

    def __post_init__(self) -> None:
        # One memory layout (C order) for fitted and loaded heads: BLAS rounds a product
        # differently for a Fortran-ordered W (as scikit-learn leaves it), which would
        # make a loaded model differ from the fitted one in the last bits.
        self.coef = np.ascontiguousarray(self.coef, dtype=np.float64)
        self.intercept = np.ascontiguousarray(self.intercept, dtype=np.float64)

    @classmethod
    def fit(cls, X: Any, labels: list[str], classifier: str, C: float,
            class_weight: None | str | dict[str, float] = None, seed: int = 0
            ) -> LinearHead:
        """Fit scikit-learn's LogisticRegression or LinearSVC on features ``X`` (n, V)."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.svm import LinearSVC

        if isinstance(class_weight, dict):
            unknown = sorted(set(class_weight) - set(labels))
            if unknown:
                raise ConfigError(f"class_weight names label {unknown[0]!r}, which is not in "
                                  f"the training labels ({', '.join(sorted(set(labels)))})")
        if classifier == "logreg":
            clf = LogisticRegression(C=C, class_weight=class_weight, max_iter=1000,
                                     random_state=seed)
        else:
            clf = LinearSVC(C=C, class_weight=class_weight, random_state=seed)
        clf.fit(X, np.asarray(labels, dtype=object))
        return cls([str(c) for c in clf.classes_], clf.coef_, np.reshape(clf.intercept_, -1))

    def check(self, where: str) -> None:
        """Raise ``ValueError`` (``where`` in the message) unless the shapes agree."""
        k = 1 if len(self.labels) == 2 else len(self.labels)
        if self.coef.ndim != 2 or self.coef.shape[0] != k or self.intercept.shape != (k,):
            raise ValueError(f"{where}: {len(self.labels)} labels need coef ({k}, V) and "
                             f"intercept ({k},), got {self.coef.shape} and "
                             f"{self.intercept.shape}")

    def logits(self, X: Any) -> np.ndarray:
        """z (n, K): the scores ``X W^T + b``, with a zero column first for two classes."""
        s = np.asarray(X @ self.coef.T) + self.intercept  # (n, K')
        if len(self.labels) == 2:
            return np.column_stack([np.zeros(len(s)), s[:, 0]])
        return s

    def decision_function(self, X: Any) -> np.ndarray:
        """The scores s: (n,) for two classes (positive favours ``labels[1]``), else (n, K)."""
        z = self.logits(X)
        return z[:, 1] if len(self.labels) == 2 else z

    def predict_proba(self, X: Any) -> np.ndarray:
        return softmax(self.logits(X))

    def predict(self, X: Any) -> list[str]:
        return [self.labels[i] for i in np.argmax(self.logits(X), axis=1)]


_C = TypeVar("_C", bound="LinearTextClassifier")


class LinearTextClassifier:
    """``fit`` / ``predict`` / ``predict_proba`` / ``score`` over a features function.

    Subclasses define ``_fit_features(texts)`` (learns the featuriser, returns X) and
    ``_features(texts)`` (X for new texts), and the classifier settings ``classifier``,
    ``C``, ``class_weight`` and ``seed``.
    """

    classifier: str = "logreg"
    C: float = 1.0
    class_weight: None | str | dict[str, float] = None
    seed: int = 0
    _head: LinearHead | None = None

    def _fit_features(self, texts: list[str]) -> Any:
        raise NotImplementedError

    def _features(self, texts: list[str]) -> Any:
        raise NotImplementedError

    @property
    def labels(self) -> list[str]:
        """The class labels, sorted; column ``k`` of :meth:`predict_proba` is ``labels[k]``."""
        return list(self._fitted().labels)

    def _fitted(self) -> LinearHead:
        if self._head is None:
            raise ConfigError(f"this {type(self).__name__} is not fitted; call "
                              "fit(texts, labels) or load(folder) first")
        return self._head

    def fit(self: _C, texts: Sequence[str], labels: Sequence[str]) -> _C:
        """Learn the features and the linear head from ``texts`` and their ``labels``."""
        require_sklearn(type(self).__name__)
        texts, labels = check_training(texts, labels)
        self._head = None  # a failure below must not leave an old head on new features
        X = self._fit_features(texts)
        self._head = LinearHead.fit(X, labels, self.classifier, self.C, self.class_weight,
                                    self.seed)
        return self

    def _apply(self, texts: Sequence[str], fn: str) -> Any:
        head = self._fitted()
        texts = check_texts(texts)
        X = self._features(texts) if texts else np.zeros((0, head.coef.shape[1]))
        if X.shape[1] != head.coef.shape[1]:
            raise CheckpointError(f"the features have {X.shape[1]} dimensions but the "
                                  f"classifier was trained on {head.coef.shape[1]}; is this "
                                  "the source it was trained with?")
        return getattr(head, fn)(X)

    def decision_function(self, texts: Sequence[str]) -> np.ndarray:
        """Scores s = W x + b: (n,) for two classes, else (n, K)."""
        return self._apply(texts, "decision_function")

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        """(n, K) class probabilities (softmax of the logits; see the module docstring)."""
        return self._apply(texts, "predict_proba")

    def predict(self, texts: Sequence[str]) -> list[str]:
        """The most probable label of each text."""
        return self._apply(texts, "predict")

    def score(self, texts: Sequence[str], labels: Sequence[str]) -> float:
        """Accuracy of :meth:`predict` on ``texts`` against ``labels``."""
        texts, labels = check_training(texts, labels, min_classes=1)
        pred = self.predict(texts)
        return float(np.mean([p == y for p, y in zip(pred, labels, strict=True)]))
