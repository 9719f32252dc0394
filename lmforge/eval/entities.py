r"""Entity-level precision, recall and F1 for sequence labelling (NER), as in seqeval.

An entity is a span ``(type, start, end)`` of one sentence (:mod:`lmforge.data.tags`).
A predicted entity is correct only when a gold entity has the same type, start and end;
partial overlaps count as one false positive and one false negative. Per type :math:`c`,

.. math::  P_c = \frac{|G_c \cap \hat G_c|}{|\hat G_c|}, \quad
           R_c = \frac{|G_c \cap \hat G_c|}{|G_c|}, \quad
           F_c = \frac{2 P_c R_c}{P_c + R_c}

with :math:`G_c` the gold and :math:`\hat G_c` the predicted entities of type :math:`c`
over all sentences. ``micro`` sums the counts over the types first (the number CoNLL
papers report), ``macro`` takes the mean over the types, ``weighted`` the mean weighted
by the gold counts. The types are those of any gold or predicted entity. A ratio with a
zero denominator is ``zero_division`` (0 or 1), and ``F = 0`` when ``P + R = 0``.
Numbers equal ``seqeval.metrics`` (a test checks): ``weighted`` with no gold entities is
``(P, R, F) = (z, z, z)`` if nothing was predicted else ``(0, z, 0)``; ``macro`` with no
entity at all is NaN.

How tags become entities:

- ``mode="default"`` reads any tags the conlleval way
  (:func:`lmforge.data.tags.lenient_spans`): ``I-X`` after ``O`` or another type starts an
  entity, so gold ``B-X I-X`` against predicted ``I-X I-X`` scores 1.0. This is
  ``seqeval.metrics.f1_score(y_true, y_pred)``.
- ``mode="strict"`` with ``scheme`` (IOB2, BIOES, IOB1) counts only well-formed entities:
  an entity of the lenient reading counts when its tags are exactly those the scheme
  writes for it (:func:`lmforge.data.tags.repair_tags`), so ``I-X I-X`` above is no entity
  and scores 0.0; a tag of another scheme (``E-X`` in IOB2) is an error. For IOB2 and
  BIOES this is ``seqeval ... mode="strict", scheme=IOB2/IOBES``; for IOB1 it agrees with
  seqeval's ``IOB1`` on legal sequences (on illegal ones seqeval's IOB1 reading has its
  own quirks, e.g. it finds an entity in ``O B-X I-X``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from ..data.tags import (
    Span,
    lenient_spans,
    normalize_scheme,
    repair_tags,
    spans_from_tags,
    split_tag,
    tag_set,
)
from .classification import MetricInputError, MetricOptionError

__all__ = ["entity_scores", "entity_report", "spans_scores", "sentence_spans"]

_MODES = ("default", "strict")
_ENTITY_AVERAGES = ("micro", "macro", "weighted")


def _strict_spans(tags: Sequence[str], scheme: str) -> list[Span]:
    allowed = {split_tag(t)[0] for t in tag_set(["X"], scheme)}
    for i, tag in enumerate(tags):
        try:
            prefix = split_tag(tag)[0]
        except ValueError as e:
            raise ValueError(f"position {i}: {e}") from None
        if prefix not in allowed:
            raise ValueError(f"position {i}: {tag!r} is not an {scheme} tag")
    repaired = repair_tags(tags, scheme)
    return [(kind, a, b) for kind, a, b in spans_from_tags(repaired, scheme)
            if list(tags[a:b]) == repaired[a:b]]


def _check_mode(mode: str, scheme: str | None) -> str | None:
    if mode not in _MODES:
        raise MetricOptionError(f"mode must be 'default' or 'strict', got {mode!r}")
    if mode == "strict":
        if scheme is None:
            raise MetricOptionError("mode='strict' needs scheme= IOB2, BIOES or IOB1")
        return normalize_scheme(scheme)
    if scheme is not None:
        raise MetricOptionError("scheme= applies only with mode='strict' (the default mode "
                                "reads any tags the conlleval way); drop it or pass "
                                "mode='strict'")
    return None


def sentence_spans(sentences: Sequence[Sequence[str]], *, mode: str = "default",
                   scheme: str | None = None, name: str = "tags") -> list[set[Span]]:
    """The entity set of each sentence of tags, read as ``mode``/``scheme`` say (see the
    module docstring). ``name`` is used in error messages."""
    scheme = _check_mode(mode, scheme)
    if isinstance(sentences, (str, bytes)):
        raise MetricInputError(f"{name} must be a list of sentences (lists of tags)")
    out = []
    for i, tags in enumerate(sentences):
        if isinstance(tags, (str, bytes)) or not isinstance(tags, Sequence):
            raise MetricInputError(f"{name}[{i}] must be a list of tags, got "
                                   f"{type(tags).__name__}")
        try:
            spans = lenient_spans(tags) if scheme is None else _strict_spans(tags, scheme)
        except ValueError as e:
            raise MetricInputError(f"{name}[{i}]: {e}") from None
        out.append(set(spans))
    return out


def _pair(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]], mode: str,
          scheme: str | None) -> tuple[list[set[Span]], list[set[Span]]]:
    gold = sentence_spans(y_true, mode=mode, scheme=scheme, name="y_true")
    pred = sentence_spans(y_pred, mode=mode, scheme=scheme, name="y_pred")
    if len(gold) != len(pred):
        raise MetricInputError(f"y_true has {len(gold)} sentences but y_pred has {len(pred)}")
    for i, (a, b) in enumerate(zip(y_true, y_pred, strict=True)):
        if len(a) != len(b):
            raise MetricInputError(f"sentence {i} has {len(a)} tags in y_true but {len(b)} "
                                   "in y_pred")
    if not gold:
        raise MetricInputError("y_true and y_pred are empty: there is nothing to score")
    return gold, pred


def _type_counts(gold: list[set[Span]], pred: list[set[Span]]
                 ) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Sorted types and their (correct, predicted, gold) entity counts."""
    tp: Counter = Counter()
    n_pred: Counter = Counter()
    n_true: Counter = Counter()
    for g, p in zip(gold, pred, strict=True):
        n_true.update(s[0] for s in g)
        n_pred.update(s[0] for s in p)
        tp.update(s[0] for s in g & p)
    types = sorted(set(n_true) | set(n_pred))
    arrays = (np.array([c[t] for t in types], dtype=np.int64) for c in (tp, n_pred, n_true))
    return types, *arrays


def _check_options(average: str, zero_division: float) -> float:
    if average not in _ENTITY_AVERAGES:
        raise MetricOptionError(f"average must be one of micro, macro, weighted; got "
                                f"{average!r}")
    if (isinstance(zero_division, bool) or not isinstance(zero_division, (int, float))
            or zero_division not in (0, 1)):
        raise MetricOptionError(f"zero_division must be 0.0 or 1.0, got {zero_division!r}")
    return float(zero_division)


def _scores(tp: np.ndarray, n_pred: np.ndarray, n_true: np.ndarray, average: str | None,
            zd: float) -> tuple:
    """(P, R, F) averaged as ``average`` says (arrays for None), seqeval's arithmetic."""
    if average == "micro":
        tp, n_pred, n_true = (np.array([x.sum()]) for x in (tp, n_pred, n_true))
    p = np.where(n_pred == 0, zd, tp / np.maximum(n_pred, 1))
    r = np.where(n_true == 0, zd, tp / np.maximum(n_true, 1))
    denom = p + r
    f = 2.0 * p * r / np.where(denom == 0, 1.0, denom)
    if average is None:
        return p, r, f
    if average == "weighted" and n_true.sum() == 0:
        nothing = n_pred.sum() == 0
        return (zd if nothing else 0.0), zd, (zd if nothing else 0.0)
    if len(p) == 0:
        return math.nan, math.nan, math.nan
    weights = n_true if average == "weighted" else None
    return tuple(float(np.average(x, weights=weights)) for x in (p, r, f))


def _as_dict(p: float, r: float, f: float) -> dict:
    return {"precision": float(p), "recall": float(r), "f1": float(f)}


def entity_scores(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]], *,
                  mode: str = "default", scheme: str | None = None, average: str = "micro",
                  zero_division: float = 0.0) -> dict:
    """``{"precision", "recall", "f1"}`` of the predicted entities (module docstring).

    ``y_true``/``y_pred``: one list of tags per sentence, of equal lengths.
    """
    zd = _check_options(average, zero_division)
    gold, pred = _pair(y_true, y_pred, mode, scheme)
    _, tp, n_pred, n_true = _type_counts(gold, pred)
    return _as_dict(*_scores(tp, n_pred, n_true, average, zd))


def entity_report(y_true: Sequence[Sequence[str]], y_pred: Sequence[Sequence[str]], *,
                  mode: str = "default", scheme: str | None = None,
                  zero_division: float = 0.0) -> dict:
    """Per entity type ``{"precision", "recall", "f1-score", "support"}`` (support: gold
    count) and the same for ``"micro avg"``, ``"macro avg"``, ``"weighted avg"`` (support:
    all gold entities): ``seqeval.metrics.classification_report(output_dict=True)``."""
    zd = _check_options("micro", zero_division)
    gold, pred = _pair(y_true, y_pred, mode, scheme)
    types, tp, n_pred, n_true = _type_counts(gold, pred)
    report = {}
    for kind, p, r, f, s in zip(types, *_scores(tp, n_pred, n_true, None, zd), n_true,
                                  strict=True):
        report[kind] = {"precision": float(p), "recall": float(r), "f1-score": float(f),
                        "support": int(s)}
    for average in _ENTITY_AVERAGES:
        p, r, f = _scores(tp, n_pred, n_true, average, zd)
        report[f"{average} avg"] = {"precision": float(p), "recall": float(r),
                                    "f1-score": float(f), "support": int(n_true.sum())}
    return report


def spans_scores(gold: Sequence[Iterable[Span]], pred: Sequence[Iterable[Span]], *,
                 average: str = "micro", zero_division: float = 0.0) -> dict:
    """``{"precision", "recall", "f1"}`` over explicit entity sets, one per example.

    A span is any ``(type, start, end)`` tuple: token or character offsets (for JSONL data
    with character spans), the same definitions and averages as :func:`entity_scores`.
    """
    zd = _check_options(average, zero_division)
    if len(gold) != len(pred):
        raise MetricInputError(f"gold has {len(gold)} examples but pred has {len(pred)}")
    if len(gold) == 0:
        raise MetricInputError("gold and pred are empty: there is nothing to score")
    sets = []
    for name, examples in (("gold", gold), ("pred", pred)):
        out = []
        for i, spans in enumerate(examples):
            items = set()
            for span in spans:
                if not (isinstance(span, tuple) and len(span) == 3
                        and isinstance(span[0], str)):
                    raise MetricInputError(f"{name}[{i}] holds {span!r}; a span is a "
                                           "(type, start, end) tuple")
                items.add(span)
            out.append(items)
        sets.append(out)
    _, tp, n_pred, n_true = _type_counts(*sets)
    return _as_dict(*_scores(tp, n_pred, n_true, average, zd))
