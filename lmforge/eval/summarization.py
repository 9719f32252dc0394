r"""Summarisation metrics: ROUGE-1, ROUGE-2 and ROUGE-L F1 (computed by rouge-score), and
the lead-k baseline.

rouge-score (Google's reimplementation of Lin's ROUGE-1.5.5) computes every number;
lmforge only chooses the tokenizer and averages, and the tests check the results against
rouge-score's own scorer. One reference per prediction. Scores are on a 0..100 scale.

ROUGE
-----
With :math:`T_h` and :math:`T_r` the token sequences of a prediction and its reference,
:math:`G_n(T)` the multiset of n-grams of :math:`T` and :math:`\mathrm{LCS}` the length of
the longest common (not necessarily contiguous) subsequence:

.. math::

    \text{ROUGE-}n:\; P = \frac{|G_n(T_h) \cap G_n(T_r)|}{|G_n(T_h)|}, \quad
    R = \frac{|G_n(T_h) \cap G_n(T_r)|}{|G_n(T_r)|}; \qquad
    \text{ROUGE-L}:\; P = \frac{\mathrm{LCS}(T_h, T_r)}{|T_h|}, \quad
    R = \frac{\mathrm{LCS}(T_h, T_r)}{|T_r|}

and :math:`F_1 = 2PR / (P + R)` (0 when :math:`P + R = 0`; an empty side scores 0). The
intersection of multisets counts an n-gram as often as the smaller count. ROUGE-L here is
the sentence-level ``rougeL`` (the texts as one sequence), not the summary-level
``rougeLsum``.

**Corpus score.** :func:`rouge_scores` reports the **plain mean of the per-pair F1**
(times 100). rouge-score's ``BootstrapAggregator`` reports as ``mid`` the median of
bootstrap means instead, which is close to, but not, the mean; with ``interval=True`` its
2.5th and 97.5th percentiles are returned as the 95% confidence interval of the mean
(``n_samples`` resamples, drawn from numpy's global generator seeded with ``seed`` for the
call and restored after it, so the interval is reproducible).

Tokenization
------------
* **English** (``lang="en"``): rouge-score's default tokenizer with its Porter stemmer
  (``RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)``): lowercase, every
  character other than ``a-z0-9`` becomes a space, split on spaces, words longer than 3
  letters stemmed (``hired`` and ``hires`` both read ``hire``). Reported as
  ``"tokenization": "words+porter"``.
* **Chinese** (``lang="zh"``): rouge-score's default tokenizer deletes every non-ASCII
  character, so a Chinese text would have no tokens at all. :class:`ChineseCharTokenizer`
  is passed to ``RougeScorer(..., tokenizer=...)`` instead: every Han character
  (U+4E00..U+9FFF, U+3400..U+4DBF, U+F900..U+FAFF and the numeral ``〇``, U+3007) is one
  token; in the rest, lowercased, each run of ``a-z0-9`` is one token (no stemming);
  punctuation, spaces and other symbols are dropped. ROUGE-1 is then the character
  overlap, ROUGE-2 the character-bigram overlap, ROUGE-L the character LCS. Reported as
  ``"tokenization": "chars"``.

A language is given by its tag's primary subtag (``zh-CN`` is Chinese); other languages
are refused (the Porter stemmer and the ASCII-only tokenizer are for English).

Lead-k
------
:func:`lead_k` is the classic news baseline: the first ``k`` sentences of the document.
:func:`split_sentences` ends an English sentence at a run of ``.``, ``!`` or ``?``
followed by whitespace or the end of the text (so ``3.5`` is not split), a Chinese one
right after a run of ``。``, ``！``, ``？``, ``!`` or ``?`` (a closing quote or bracket
after the mark stays in the sentence); text after the last mark is a last sentence.

rouge-score is the ``generation`` extra: ``pip install 'lmforge[generation]'``.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import LmforgeError
from .classification import MetricInputError, MetricOptionError
from .translation import paired_texts

__all__ = ["ROUGE_TYPES", "ChineseCharTokenizer", "lead_k", "pair_scores", "rouge_language",
           "rouge_scores", "split_sentences"]

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
TOKENIZATION = {"en": "words+porter", "zh": "chars"}
_CHAR_TOKEN = re.compile(r"[\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]|[a-z0-9]+")
_CLOSERS = "\"'\u201d\u2019\u300d\u300f\uff09)\u3011"  # " ' ” ’ 」 』 ） ) 】
_SENTENCE = {
    "en": re.compile(rf"\S.*?(?:[.!?]+[{_CLOSERS}]*(?=\s|$)|$)", re.S),
    "zh": re.compile(rf"\S.*?(?:[\u3002\uff01\uff1f!?]+[{_CLOSERS}]*|$)", re.S),
}


class ChineseCharTokenizer:
    """A rouge-score tokenizer for Chinese: each Han character a token, each lowercased
    ``a-z0-9`` run a token, everything else dropped (see the module docstring)."""

    def tokenize(self, text: str) -> list[str]:
        return _CHAR_TOKEN.findall(text.lower())


def rouge_language(lang: str) -> str:
    """``"en"`` or ``"zh"``, the primary subtag of ``lang``; another language raises
    :class:`~lmforge.eval.classification.MetricOptionError`."""
    primary = re.split("[-_]", lang.strip())[0].lower() if isinstance(lang, str) else ""
    if primary not in TOKENIZATION:
        raise MetricOptionError(f"lang={lang!r} has no ROUGE tokenization here; expected "
                                "'en' (words, Porter stemmer) or 'zh' (characters)")
    return primary


@functools.lru_cache(maxsize=2)
def _scorer(lang: str) -> Any:
    """rouge-score's ``RougeScorer`` for ``lang`` (imported lazily, built once)."""
    try:
        from rouge_score.rouge_scorer import RougeScorer
    except ImportError:
        raise LmforgeError("ROUGE needs rouge-score: pip install 'lmforge[generation]'"
                           ) from None
    if lang == "zh":
        return RougeScorer(list(ROUGE_TYPES), tokenizer=ChineseCharTokenizer())
    return RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def _raw_scores(predictions: Any, references: Any, lang: str) -> list[dict[str, Any]]:
    """rouge-score's ``{type: Score(precision, recall, fmeasure)}`` (0..1) of each pair."""
    preds, refs = paired_texts(predictions, references, "predictions")
    scorer = _scorer(rouge_language(lang))
    return [scorer.score(ref, pred) for pred, ref in zip(preds, refs, strict=True)]


def pair_scores(predictions: Sequence[str], references: Sequence[str], *,
                lang: str) -> list[dict[str, dict[str, float]]]:
    """``{"rouge1" | "rouge2" | "rougeL": {"precision", "recall", "f1"}}`` (0..100) of
    each prediction against its reference. Precision is over the prediction's tokens
    (the share of them the reference has), recall over the reference's."""
    return [{t: {"precision": 100 * s[t].precision, "recall": 100 * s[t].recall,
                 "f1": 100 * s[t].fmeasure} for t in ROUGE_TYPES}
            for s in _raw_scores(predictions, references, lang)]


def rouge_scores(predictions: Sequence[str], references: Sequence[str], *, lang: str,
                 interval: bool = False, n_samples: int = 1000,
                 seed: int = 0) -> dict[str, Any]:
    """ROUGE-1, ROUGE-2 and ROUGE-L F1 of ``predictions`` against one reference each, in
    ``lang`` (``en``: words, Porter stemmer; ``zh``: characters).

    Returns ``{"rouge1", "rouge2", "rougeL"}`` (the plain mean of the per-pair F1, 0..100),
    ``"n"`` (pairs), ``"lang"``, ``"tokenization"`` (``"words+porter"`` or ``"chars"``)
    and ``"aggregation": "mean"``; with ``interval`` also ``"interval"``: ``{type: [low,
    high]}``, the 95% bootstrap interval of rouge-score's ``BootstrapAggregator``
    (``n_samples`` resamples, seeded by ``seed``).
    """
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
        raise MetricOptionError(f"n_samples must be an integer >= 1, got {n_samples!r}")
    raw = _raw_scores(predictions, references, lang)
    code = rouge_language(lang)
    out: dict[str, Any] = {t: 100 * sum(s[t].fmeasure for s in raw) / len(raw)
                           for t in ROUGE_TYPES}
    out.update({"n": len(raw), "lang": code, "tokenization": TOKENIZATION[code],
                "aggregation": "mean"})
    if interval:
        from rouge_score.scoring import BootstrapAggregator

        agg = BootstrapAggregator(confidence_interval=0.95, n_samples=n_samples)
        for s in raw:
            agg.add_scores(s)
        state = np.random.get_state()
        np.random.seed(seed)
        try:
            result = agg.aggregate()
        finally:
            np.random.set_state(state)
        out["interval"] = {t: [100 * float(result[t].low.fmeasure),
                               100 * float(result[t].high.fmeasure)] for t in ROUGE_TYPES}
    return out


def _sentence_spans(text: str, lang: str) -> list[tuple[int, int]]:
    if not isinstance(text, str):
        raise MetricInputError(f"the document must be a string, got {type(text).__name__}")
    return [m.span() for m in _SENTENCE[rouge_language(lang)].finditer(text)]


def split_sentences(text: str, lang: str) -> list[str]:
    """The sentences of ``text``, stripped (the rule is in the module docstring; an
    abbreviation such as ``Dr.`` before a space ends an English sentence too)."""
    return [text[s:e].strip() for s, e in _sentence_spans(text, lang)]


def lead_k(document: str, k: int, lang: str) -> str:
    """The first ``k >= 1`` sentences of ``document`` (all of it when it has fewer), the
    text from the first one's start to the k-th one's end, stripped: the lead-k baseline
    summary."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise MetricOptionError(f"k must be an integer >= 1, got {k!r}")
    spans = _sentence_spans(document, lang)
    return document[spans[0][0]:spans[min(k, len(spans)) - 1][1]].strip() if spans else ""
