r"""Relation-extraction scores with the TACRED convention.

Each example (an entity pair in a sentence) has a gold relation and a predicted one; the
``negative`` label (``no_relation`` in TACRED, ``Other`` in SemEval) means "no relation".
Only non-negative labels count as claims:

.. math::

    P = \frac{\#\{i: \hat y_i = y_i \ne neg\}}{\#\{i: \hat y_i \ne neg\}}, \qquad
    R = \frac{\#\{i: \hat y_i = y_i \ne neg\}}{\#\{i: y_i \ne neg\}}, \qquad
    F_1 = \frac{2PR}{P + R}.

A correct prediction is the same non-negative relation as the gold one; predicting a
wrong relation for a related pair is both a false positive and a false negative;
predicting ``negative`` for it is a false negative only. This is exactly the micro average
over every relation except ``negative`` (``precision_recall_fscore(..., average="micro",
labels=relations)``), which is how it is computed. A ratio with a zero denominator is
``zero_division`` (TACRED's own scorer instead sets precision to 1.0 when nothing is
predicted). Per relation ``r`` the same formulas hold with ``r`` for "non-negative";
``support`` is its gold count.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

from .classification import (
    MetricOptionError,
    _check_pair,
    _check_zero_division,
    _sorted_labels,
    precision_recall_fscore,
)

__all__ = ["relation_scores"]


def relation_scores(y_true: Sequence[Hashable], y_pred: Sequence[Hashable], *,
                    negative: Hashable = "no_relation", zero_division: float = 0.0) -> dict:
    """``{"precision", "recall", "f1", "per_relation": {rel: {"precision", "recall",
    "f1", "support"}}}`` with the TACRED convention (module docstring)."""
    yt, yp = _check_pair(y_true, y_pred)
    zd = _check_zero_division(zero_division)
    if negative is None or not isinstance(negative, Hashable):
        raise MetricOptionError(f"negative must be a label (str or int), got {negative!r}")
    relations = [r for r in _sorted_labels(yt, yp) if r != negative]
    if not relations:  # every gold and predicted label is the negative one
        return {"precision": zd, "recall": zd, "f1": zd, "per_relation": {}}
    p, r, f, _ = precision_recall_fscore(yt, yp, average="micro", labels=relations,
                                         zero_division=zd)
    per = precision_recall_fscore(yt, yp, average=None, labels=relations, zero_division=zd)
    per_relation = {
        rel: {"precision": float(a), "recall": float(b), "f1": float(c), "support": int(s)}
        for rel, a, b, c, s in zip(relations, *per, strict=True)}
    return {"precision": p, "recall": r, "f1": f, "per_relation": per_relation}
