r"""Classification metrics: accuracy, precision / recall / F-beta, confusion matrices.

Written with numpy because these definitions are what lmforge teaches; the numbers equal
scikit-learn's (``accuracy_score``, ``precision_recall_fscore_support``,
``confusion_matrix``, ``classification_report``), which the tests check.

For a label :math:`c`, count over the examples: :math:`TP_c` (true :math:`c`, predicted
:math:`c`), :math:`FP_c` (predicted :math:`c`, true something else) and :math:`FN_c`
(true :math:`c`, predicted something else). Then

.. math::

    P_c = \frac{TP_c}{TP_c + FP_c} \quad (\text{over the predicted } c), \qquad
    R_c = \frac{TP_c}{TP_c + FN_c} \quad (\text{over the true } c),

    F_{\beta,c} = \frac{(1+\beta^2)\,P_c R_c}{\beta^2 P_c + R_c}
               = \frac{(1+\beta^2)\,TP_c}{(1+\beta^2)\,TP_c + \beta^2 FN_c + FP_c}.

Recall divides by the number of *true* examples of :math:`c` (its support), never by the
number predicted (a common slip in tutorials). :math:`\beta > 1` weighs recall more;
:math:`\beta = 0` gives :math:`P`, :math:`\beta = \infty` gives :math:`R`. A ratio with a
zero denominator is ``zero_division`` (0, 1 or NaN); F's denominator is zero only when the
label is neither true nor predicted anywhere.

Averages over the labels :math:`L` (all labels seen in ``y_true`` or ``y_pred``, or the
given ``labels``):

- ``binary``: the scores of ``pos_label`` alone (the data may hold at most two labels);
- ``micro``: sum :math:`TP, FP, FN` over :math:`L` first, then divide; with every label in
  :math:`L`, micro P = micro R = micro F = accuracy;
- ``macro``: the unweighted mean of the per-label scores;
- ``weighted``: their mean weighted by support (the count of true examples); when every
  support is zero, the unweighted mean;
- ``None``: the per-label scores.

NaN scores (``zero_division=nan``) are left out of the averages.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ..errors import ConfigError, DataError

__all__ = ["MetricInputError", "MetricOptionError", "PRF", "accuracy",
           "precision_recall_fscore", "confusion_matrix", "classification_report",
           "plot_confusion", "confusion_json"]

_AVERAGES = ("binary", "micro", "macro", "weighted", None)


class MetricInputError(DataError, ValueError):
    """``y_true``/``y_pred`` cannot be scored: different lengths, empty, unhashable or
    unorderable labels. Also a ``ValueError`` for library callers."""


class MetricOptionError(ConfigError, ValueError):
    """A metric option (``average``, ``labels``, ``zero_division``, ``beta``, ...) has a
    value it does not allow. Also a ``ValueError`` for library callers."""


class PRF(NamedTuple):
    """Precision, recall, F-beta and support. Floats (support ``None``) for an average;
    arrays over the labels for ``average=None``."""

    precision: Any
    recall: Any
    fscore: Any
    support: Any


def _as_list(y: Any, name: str) -> list:
    """``y`` as a list of hashable labels (numpy arrays and tensors via ``tolist``)."""
    if isinstance(y, (str, bytes)):
        raise MetricInputError(f"{name} must be a sequence of labels, not a string")
    try:
        seq = y.tolist() if hasattr(y, "tolist") else list(y)
    except TypeError:
        raise MetricInputError(f"{name} must be a sequence of labels, got "
                               f"{type(y).__name__}") from None
    for i, label in enumerate(seq):
        if not isinstance(label, Hashable) or isinstance(label, tuple):
            raise MetricInputError(f"{name}[{i}] is {label!r}; a label must be a str or an "
                                   "int")
    return seq


def _check_pair(y_true: Any, y_pred: Any) -> tuple[list, list]:
    yt, yp = _as_list(y_true, "y_true"), _as_list(y_pred, "y_pred")
    if len(yt) != len(yp):
        raise MetricInputError(f"y_true has {len(yt)} labels but y_pred has {len(yp)}")
    if not yt:
        raise MetricInputError("y_true and y_pred are empty: there is nothing to score")
    return yt, yp


def _sorted_labels(*seqs: list) -> list:
    try:
        return sorted(set().union(*seqs))
    except TypeError:
        raise MetricInputError("the labels mix types that cannot be ordered (e.g. str and "
                               "int); use one type") from None


def _check_labels(labels: Any) -> list:
    out = _as_list(labels, "labels")
    if not out:
        raise MetricOptionError("labels is empty; give at least one label or None")
    if len(set(out)) != len(out):
        raise MetricOptionError(f"labels has duplicates: {out!r}")
    return out


def _check_zero_division(zero_division: Any) -> float:
    if (isinstance(zero_division, (int, float)) and not isinstance(zero_division, bool)
            and (zero_division in (0, 1) or math.isnan(zero_division))):
        return float(zero_division)
    raise MetricOptionError(f"zero_division must be 0.0, 1.0 or nan, got {zero_division!r}")


def _counts(yt: list, yp: list, labels: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(TP, predicted, true)`` counts per label (examples of other labels are skipped)."""
    k = len(labels)
    index = {label: i for i, label in enumerate(labels)}
    t = np.fromiter((index.get(v, k) for v in yt), dtype=np.int64, count=len(yt))
    p = np.fromiter((index.get(v, k) for v in yp), dtype=np.int64, count=len(yp))
    true = np.bincount(t, minlength=k + 1)[:k]
    pred = np.bincount(p, minlength=k + 1)[:k]
    tp = np.bincount(t[t == p], minlength=k + 1)[:k]
    return tp, pred, true


def _divide(num: np.ndarray, den: np.ndarray, zero_division: float) -> np.ndarray:
    """``num / den`` element-wise, ``zero_division`` where ``den == 0``."""
    out = np.full(num.shape, zero_division, dtype=np.float64)
    np.divide(num, den, out=out, where=den != 0, casting="unsafe")
    return out


def _nanaverage(a: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Mean of the non-NaN values (weighted; unweighted when those weights sum to 0)."""
    keep = ~np.isnan(a)
    if not keep.any():
        return float("nan")
    if weights is None or weights[keep].sum() == 0:
        return float(np.mean(a[keep]))
    return float(np.average(a[keep], weights=weights[keep]))


def accuracy(y_true: Sequence[Hashable], y_pred: Sequence[Hashable]) -> float:
    """The fraction of examples whose prediction equals the true label."""
    yt, yp = _check_pair(y_true, y_pred)
    return float(np.mean([a == b for a, b in zip(yt, yp, strict=True)]))


def precision_recall_fscore(y_true: Sequence[Hashable], y_pred: Sequence[Hashable], *,
                            average: str | None = "macro", labels: Sequence[Hashable] | None = None,
                            pos_label: Hashable = 1, beta: float = 1.0,
                            zero_division: float = 0.0) -> PRF:
    """Precision, recall and F-beta (see the module docstring for the definitions).

    ``labels``: the labels to score, in this order (default: every label in either
    sequence, sorted); given labels that never occur score ``zero_division``.
    ``pos_label``: the positive label for ``average="binary"``.
    Equals ``sklearn.metrics.precision_recall_fscore_support``, whose return shape it
    keeps: support is ``None`` for an average, an array for ``average=None``.
    """
    yt, yp = _check_pair(y_true, y_pred)
    if average not in _AVERAGES:
        raise MetricOptionError(f"average must be one of binary, micro, macro, weighted or "
                                f"None; got {average!r}")
    if (isinstance(beta, bool) or not isinstance(beta, (int, float)) or math.isnan(beta)
            or beta < 0):
        raise MetricOptionError(f"beta must be a number >= 0, got {beta!r}")
    zd = _check_zero_division(zero_division)
    present = _sorted_labels(yt, yp)
    if average == "binary":
        if len(present) > 2:
            raise MetricInputError(f"average='binary' needs at most 2 classes; the data has "
                                   f"{len(present)}; use micro, macro or weighted")
        if pos_label not in present and len(present) == 2:
            raise MetricOptionError(f"pos_label={pos_label!r} is not one of the labels "
                                    f"{present!r}")
        labels = [pos_label]
    labels = present if labels is None else _check_labels(labels)
    tp, pred, true = _counts(yt, yp, labels)
    if average == "micro":
        tp, pred, true = tp.sum(keepdims=True), pred.sum(keepdims=True), true.sum(keepdims=True)
    precision = _divide(tp, pred, zd)
    recall = _divide(tp, true, zd)
    if math.isinf(beta):
        fscore = recall
    elif beta == 0:
        fscore = precision
    else:
        b2 = beta ** 2
        fscore = _divide((1 + b2) * tp.astype(np.float64),
                         b2 * true.astype(np.float64) + pred.astype(np.float64), zd)
    if average is None:
        return PRF(precision, recall, fscore, true)
    weights = true if average == "weighted" else None
    return PRF(_nanaverage(precision, weights), _nanaverage(recall, weights),
               _nanaverage(fscore, weights), None)


def confusion_matrix(y_true: Sequence[Hashable], y_pred: Sequence[Hashable],
                     labels: Sequence[Hashable] | None = None) -> np.ndarray:
    """``C[i, j]``: the number of examples with true label ``labels[i]`` predicted as
    ``labels[j]`` (rows true, columns predicted; int64). Examples whose true or predicted
    label is not in ``labels`` are left out. Default labels: all, sorted."""
    yt, yp = _check_pair(y_true, y_pred)
    if labels is None:
        labels = _sorted_labels(yt, yp)
    else:
        labels = _check_labels(labels)
        if not set(labels) & set(yt):
            raise MetricOptionError("none of the given labels occurs in y_true")
    k = len(labels)
    index = {label: i for i, label in enumerate(labels)}
    t = np.array([index.get(v, k) for v in yt])
    p = np.array([index.get(v, k) for v in yp])
    keep = (t < k) & (p < k)
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (t[keep], p[keep]), 1)
    return cm


def classification_report(y_true: Sequence[Hashable], y_pred: Sequence[Hashable],
                          labels: Sequence[Hashable] | None = None,
                          zero_division: float = 0.0) -> dict:
    """Per-label ``{"precision", "recall", "f1-score", "support"}`` (keyed by ``str(label)``)
    plus ``"macro avg"`` and ``"weighted avg"``, and ``"accuracy"`` (a float) or, when
    ``labels`` leaves out a label that occurs, ``"micro avg"``: the shape and numbers of
    ``sklearn.metrics.classification_report(..., output_dict=True)`` (floats throughout)."""
    yt, yp = _check_pair(y_true, y_pred)
    present = _sorted_labels(yt, yp)
    chosen = present if labels is None else _check_labels(labels)
    micro_is_accuracy = set(chosen) >= set(present)
    per = precision_recall_fscore(yt, yp, average=None, labels=chosen,
                                  zero_division=zero_division)
    report: dict[str, Any] = {
        str(label): {"precision": float(p), "recall": float(r), "f1-score": float(f),
                     "support": float(s)}
        for label, p, r, f, s in zip(chosen, *per, strict=True)}
    total = float(per.support.sum())
    for average in ("micro", "macro", "weighted"):
        p, r, f, _ = precision_recall_fscore(yt, yp, average=average, labels=chosen,
                                             zero_division=zero_division)
        if average == "micro" and micro_is_accuracy:
            report["accuracy"] = p
        else:
            report[f"{average} avg"] = {"precision": p, "recall": r, "f1-score": f,
                                        "support": total}
    return report


def _check_matrix(matrix: Any, labels: Sequence) -> np.ndarray:
    m = np.asarray(matrix)
    if m.ndim != 2 or m.shape[0] != m.shape[1] or m.shape[0] != len(labels):
        raise MetricInputError(f"a confusion matrix over {len(labels)} labels must be "
                               f"{len(labels)}x{len(labels)}; got shape {m.shape}")
    return m


def _json_label(label: Any) -> Any:
    if hasattr(label, "item"):
        label = label.item()
    return label if isinstance(label, (str, int, float, bool)) else str(label)


def confusion_json(matrix: Any, labels: Sequence[Hashable]) -> dict:
    """``{"labels": [...], "matrix": [[...]]}`` with rows true and columns predicted."""
    m = _check_matrix(matrix, labels)
    cast = int if np.issubdtype(m.dtype, np.integer) else float
    return {"labels": [_json_label(label) for label in labels],
            "matrix": [[cast(v) for v in row] for row in m]}


def plot_confusion(matrix: Any, labels: Sequence[Hashable], path: str | Path, *,
                   title: str | None = None, normalize: bool = False) -> Path:
    """Write the confusion matrix as a PNG heatmap and return its path: atomically, and
    encrypted when a key is active (:func:`lmforge.train.plots.save_figure`).

    Rows are true labels, columns predicted. ``normalize=True`` shows each row as
    fractions of its true count (a row with no examples stays 0), i.e. per-label recall
    on the diagonal. Labels and title may be Chinese: they are drawn with a CJK font from
    :mod:`lmforge.viz.fonts`.
    """
    from matplotlib.figure import Figure  # no pyplot: no global state, no GUI backend

    from ..train.plots import save_figure
    from ..viz.fonts import readable_labels

    m = _check_matrix(matrix, labels).astype(np.float64)
    k = len(labels)
    if normalize:
        rows = m.sum(axis=1, keepdims=True)
        m = np.divide(m, rows, out=np.zeros_like(m), where=rows != 0)
    font = readable_labels([str(label) for label in labels] + [title or "confusion matrix"])
    names, heading = font.labels[:-1], font.labels[-1]
    fp = font.fontproperties()
    side = min(16.0, max(4.0, 0.55 * k + 2.5))
    fig = Figure(figsize=(side + 1.0, side), dpi=110, layout="constrained")
    ax = fig.add_subplot(1, 1, 1)
    vmax = 1.0 if normalize else max(float(m.max()), 1.0)
    image = ax.imshow(m, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    if k <= 30:
        size = max(5.0, min(10.0, 180.0 / k))
        for i in range(k):
            for j in range(k):
                text = f"{m[i, j]:.2f}" if normalize else f"{m[i, j]:g}"
                ax.text(j, i, text, ha="center", va="center", fontsize=size,
                        color="white" if m[i, j] > vmax / 2 else "black")
    ax.set_xticks(range(k), names, rotation=45, ha="right", fontproperties=fp)
    ax.set_yticks(range(k), names, fontproperties=fp)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(heading, fontproperties=fp)
    fig.colorbar(image, ax=ax, shrink=0.8, label="fraction of the row" if normalize else "count")
    save_figure(fig, path)
    return Path(path)
