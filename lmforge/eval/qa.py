r"""Extractive question answering metrics: exact match and F1 of answer strings, in English
the official SQuAD v1.1/v2.0 way, in Chinese the CMRC 2018 way.

A question has a list of gold answers (several annotators) or none (SQuAD v2.0's
unanswerable questions, where the right prediction is the empty string ``""``). Each
metric is taken against every gold answer and the **maximum** kept; per data set, EM and
F1 are means over the questions, on a 0..100 scale.

English (SQuAD)
---------------
:func:`normalize_answer` lowercases, deletes every ASCII punctuation character
(``string.punctuation``; curly quotes and other Unicode punctuation stay), replaces the
whole words ``a``, ``an``, ``the`` by a space and joins the remaining whitespace-separated
tokens by single spaces: ``"The Eiffel-Tower!"`` -> ``"eiffeltower"``. Then

.. math::  \mathrm{EM}(p, g) = [\,n(p) = n(g)\,], \qquad
           P = \frac{|T_p \cap T_g|}{|T_p|}, \quad R = \frac{|T_p \cap T_g|}{|T_g|}, \quad
           F_1 = \frac{2PR}{P + R}

with :math:`T` the *bag* (multiset) of whitespace tokens of the normalized string, so a
token repeated in both counts as often as the smaller count. If :math:`T_p` or
:math:`T_g` is empty, :math:`F_1 = [T_p = T_g]` (1 only when both are empty); no common
token gives 0. This is the v2.0 script (``evaluate-v2.0.py``); v1.1's script agrees on
every pair except a gold answer that normalizes to nothing (v1.1: F1 0).

No answer: gold answers that normalize to ``""`` are dropped; a question left with none
is scored against ``""`` alone, so a prediction scores 1 (EM and F1) exactly when it
normalizes to ``""`` -- ``""`` itself, but also ``"the"`` or ``"!!"``. A question counts
as *HasAns* when its ``answers`` list is not empty, else *NoAns* (v2.0's rule).

Chinese (CMRC 2018)
-------------------
As the CMRC 2018 evaluation script (v5) does:

* :func:`cmrc_normalize` (for EM): lowercase, strip the outer whitespace, delete the
  characters of :data:`CMRC_PUNCTUATION`. Inner whitespace stays (``"2018 年"`` and
  ``"2018年"`` differ for EM) and so does ASCII punctuation outside the list (``.``, ``,``,
  ``!``, ``?``, ``(``...): only the list counts, as in the script.
* :func:`cmrc_tokens` (for F1), the script's ``mixed_segmentation(s, rm_punc=True)``:
  lowercase and strip, then read the characters in order: a character of the list is
  deleted (it does **not** end a run: ``"e-mail"`` reads ``"email"``); a Han character
  (U+4E00..U+9FA5, the script's range) is one token; every other character joins a run,
  which becomes word tokens when a Han character or the end comes. The script splits a
  run with NLTK's ``word_tokenize``; lmforge does not depend on NLTK and splits it with
  one rule instead: a token is a maximal run of word characters (``\w``: letters,
  digits) in which one ``.``, ``,`` or ``'`` may join two parts (``3.14``, ``1,000``,
  ``o'neil``, ``v1.2``), or any other non-space character alone (``$``, ``%``, ``(``,
  ``.`` at the end). This gives NLTK's tokens for words, numbers, decimals and
  punctuation (a test checks); it differs on contractions (``can't``: NLTK ``ca n't``),
  abbreviations inside a run (``u.s. army``: NLTK ``u.s.`` ``army``, here ``u.s`` ``.``
  ``army``),
  ``...`` (NLTK one token, here three) and double quotes (NLTK rewrites them as
  ``\`\``/``''``).
* F1 from the **longest common substring** (contiguous, in tokens) :math:`l` of the
  prediction's and the gold answer's tokens: :math:`P = l / |T_p|`, :math:`R = l /
  |T_g|`, :math:`F_1 = 2PR/(P+R)`, 0 when :math:`l = 0`. ``"北京市"`` vs ``"北京"``:
  :math:`l = 2`, :math:`P = 2/3`, :math:`R = 1`, :math:`F_1 = 0.8`.
* EM: :math:`[\,\mathrm{cmrc\_normalize}(p) = \mathrm{cmrc\_normalize}(g)\,]`.

CMRC 2018 has no unanswerable questions; lmforge scores them as SQuAD v2.0 does: gold
answers that normalize to ``""`` are dropped, a question left with none is scored against
``""``, and F1 of two empty token lists is 1 (the script would give 0).

No-answer thresholds (SQuAD v2.0)
---------------------------------
Given a no-answer probability :math:`q_i` per question, the v2.0 script answers ``""``
where :math:`q_i > \theta` (``na_prob_thresh``, default 1.0: never) and scores that as 1
on a NoAns and 0 on a HasAns question. :func:`best_threshold` is its
``find_best_thresh``: start from :math:`\theta` below every :math:`q_i` (all questions
answered ``""``: the score is the number of NoAns questions), walk the questions by
increasing :math:`q_i` (ties in the order given), answering each in turn (a HasAns
question adds its score, a NoAns question with a non-empty prediction subtracts 1), and
keep the best running total and the :math:`q_i` where it was reached (0.0 if never
better than the start). As in the script, a tie of :math:`q_i` values is walked one
question at a time, so the best total may fall inside a tie, where no single threshold
gives it; the numbers stay comparable with published ones.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from ..errors import ConfigError, DataError

__all__ = ["normalize_answer", "squad_exact", "squad_f1", "CMRC_PUNCTUATION",
           "cmrc_normalize", "cmrc_tokens", "longest_common_substring", "cmrc_exact",
           "cmrc_f1", "question_scores", "best_threshold", "qa_language", "qa_scores"]

# ----------------------------------------------------------------------------- English

_PUNCT = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """SQuAD's normalization: lowercase, drop ASCII punctuation, drop the articles a, an,
    the (whole words), collapse whitespace (``"The  Eiffel Tower!"`` -> ``"eiffel
    tower"``)."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCT)
    return " ".join(_ARTICLES.sub(" ", s).split())


def squad_exact(prediction: str, gold: str) -> int:
    """1 if both strings normalize to the same text, else 0."""
    return int(normalize_answer(prediction) == normalize_answer(gold))


def _f1(common: int, n_pred: int, n_gold: int) -> float:
    if common == 0:
        return 0.0
    precision, recall = common / n_pred, common / n_gold
    return 2 * precision * recall / (precision + recall)


def squad_f1(prediction: str, gold: str) -> float:
    """Bag-of-tokens F1 of the normalized strings; 1 if both are empty, 0 if one is."""
    pred, gold_t = normalize_answer(prediction).split(), normalize_answer(gold).split()
    if not pred or not gold_t:
        return float(pred == gold_t)
    common = sum((Counter(pred) & Counter(gold_t)).values())
    return _f1(common, len(pred), len(gold_t))


# ----------------------------------------------------------------------------- Chinese

#: The CMRC 2018 script's ``sp_char`` list, in its order. Its ``"……"`` is two characters
#: and the script compares single characters with the list, so it never matches: a
#: ``…`` is not removed (lmforge keeps the script's behaviour).
CMRC_PUNCTUATION: tuple[str, ...] = (
    "-", ":", "_", "*", "^", "/", "\\", "~", "`", "+", "=",
    "，", "。", "：", "？", "！", "“", "”", "；", "’", "《", "》", "……", "·", "、",
    "「", "」", "（", "）", "－", "～", "『", "』")
_CMRC_PUNCT = frozenset(c for c in CMRC_PUNCTUATION if len(c) == 1)
_HAN = re.compile("[\u4e00-\u9fa5]")
_RUN_TOKEN = re.compile(r"\w+(?:[.,']\w+)*|\S")


def cmrc_normalize(s: str) -> str:
    """CMRC's ``remove_punctuation``: lowercase, strip, delete :data:`CMRC_PUNCTUATION`."""
    return "".join(ch for ch in s.lower().strip() if ch not in _CMRC_PUNCT)


def cmrc_tokens(s: str) -> list[str]:
    """CMRC's ``mixed_segmentation(s, rm_punc=True)``: one token per Han character, word
    tokens for the runs between them (see the module docstring for the exact rule)."""
    out: list[str] = []
    run: list[str] = []
    for ch in s.lower().strip():
        if ch in _CMRC_PUNCT:
            continue
        if _HAN.match(ch):
            out.extend(_RUN_TOKEN.findall("".join(run)))
            run = []
            out.append(ch)
        else:
            run.append(ch)
    out.extend(_RUN_TOKEN.findall("".join(run)))
    return out


def longest_common_substring(a: Sequence[str], b: Sequence[str]) -> int:
    """The length of the longest run of consecutive items that ``a`` and ``b`` share
    (dynamic programming, :math:`O(|a||b|)` time, :math:`O(|b|)` memory)."""
    best = 0
    prev = [0] * (len(b) + 1)  # prev[j]: common run ending at a[i-1] and b[j-1]
    for x in a:
        cur = [0] * (len(b) + 1)
        for j, y in enumerate(b, 1):
            if x == y:
                cur[j] = prev[j - 1] + 1
                best = max(best, cur[j])
        prev = cur
    return best


def cmrc_exact(prediction: str, gold: str) -> int:
    """1 if :func:`cmrc_normalize` gives the same string for both, else 0."""
    return int(cmrc_normalize(prediction) == cmrc_normalize(gold))


def cmrc_f1(prediction: str, gold: str) -> float:
    """Longest-common-substring F1 over :func:`cmrc_tokens`; 1 if both are empty."""
    pred, gold_t = cmrc_tokens(prediction), cmrc_tokens(gold)
    if not pred or not gold_t:
        return float(pred == gold_t)
    return _f1(longest_common_substring(pred, gold_t), len(pred), len(gold_t))


# ----------------------------------------------------------------------------- one question

# language -> (normalize, exact, f1)
_METRICS: dict[str, tuple[Callable[[str], str], Callable[[str, str], int],
                          Callable[[str, str], float]]] = {
    "en": (normalize_answer, squad_exact, squad_f1),
    "zh": (cmrc_normalize, cmrc_exact, cmrc_f1),
}


def qa_language(lang: str) -> str:
    """``"en"`` or ``"zh"`` from a language tag (its primary subtag: ``zh-CN`` is zh);
    another language has no metric here: :class:`ConfigError`."""
    primary = re.split("[-_]", lang.strip())[0].lower() if isinstance(lang, str) else ""
    if primary not in _METRICS:
        raise ConfigError(f"lang={lang!r} has no QA metric; expected 'en' (SQuAD: text "
                          "with spaces between words) or 'zh' (CMRC 2018)")
    return primary


def question_scores(prediction: str, answers: Sequence[str], lang: str = "en"
                    ) -> tuple[int, float]:
    """``(EM, F1)`` of one prediction: the maxima over the gold ``answers`` that do not
    normalize to ``""``; with none left, against ``""`` (a no-answer question)."""
    norm, exact, f1 = _METRICS[qa_language(lang)]
    golds = [a for a in answers if norm(a)] or [""]
    return max(exact(prediction, g) for g in golds), max(f1(prediction, g) for g in golds)


def best_threshold(scores: Mapping[str, float], na_probs: Mapping[str, float],
                   has_answer: Mapping[str, bool], predictions: Mapping[str, str]
                   ) -> tuple[float, float]:
    """``(best score 0..100, threshold)``: the v2.0 script's ``find_best_thresh`` (module
    docstring). ``scores`` are the raw per-question scores (EM or F1, 0..1) without any
    threshold; a question missing from ``predictions`` counts as answered ``""``."""
    if not scores:
        raise DataError("best_threshold: no questions to score")
    current = best = sum(not v for v in has_answer.values())
    thresh = 0.0
    for qid in sorted(scores, key=lambda k: na_probs[k]):
        if has_answer[qid]:
            current += scores[qid]
        elif predictions.get(qid, ""):
            current -= 1
        if current > best:
            best, thresh = current, na_probs[qid]
    return 100.0 * best / len(scores), thresh


# ----------------------------------------------------------------------------- data sets


def _record_language(rec: dict, lang: str | None) -> str:
    if lang is not None:
        return qa_language(lang)
    if rec.get("lang") is not None:
        try:
            return qa_language(rec["lang"])
        except ConfigError as e:
            raise DataError(f"record {rec.get('id')!r}: {e}") from None
    return "zh" if _HAN.search(rec["context"]) else "en"


def _mean(values: list[float]) -> float:
    return 100.0 * sum(values) / len(values)


def qa_scores(predictions: Mapping[str, str], records: Sequence[dict], *,
              lang: str | None = None, na_probs: Mapping[str, float] | None = None,
              na_prob_thresh: float = 1.0) -> dict:
    """EM and F1 (0..100) of ``predictions`` (``{id: answer text}``) against SQuAD
    records (:func:`lmforge.data.squad.read_squad`: ``id``, ``context``, ``answers``).

    The metric per record: ``lang`` when given (``"en"``: SQuAD, ``"zh"``: CMRC 2018),
    else the record's ``lang`` field, else ``"zh"`` when its context holds a Han
    character and ``"en"`` otherwise. A record without a prediction scores 0 and is
    counted in ``missing`` (as the v1.1 and CMRC scripts do; v2.0's leaves it out); a
    prediction for an id not in ``records`` is a :class:`DataError`.

    With ``na_probs`` (``{id: no-answer probability}``, one per record) a question with
    probability above ``na_prob_thresh`` is answered ``""``, and ``best_exact``,
    ``best_exact_thresh``, ``best_f1``, ``best_f1_thresh`` report
    :func:`best_threshold`.

    Returns ``exact``, ``f1``, ``total``, ``missing``, and ``HasAns_exact``,
    ``HasAns_f1``, ``HasAns_total`` (questions with gold answers) and the same with
    ``NoAns_`` (questions without), each split present only when it has questions.
    """
    if not records:
        raise DataError("qa_scores: no records to score")
    ids = [r["id"] for r in records]
    known = set(ids)
    extra = [k for k in predictions if k not in known]
    if extra:
        raise DataError(f"{len(extra)} prediction(s) for ids not in the data, e.g. "
                        f"{extra[0]!r}; predictions must be for the records scored")
    bad = next((k for k, v in predictions.items() if not isinstance(v, str)), None)
    if bad is not None:
        raise DataError(f"prediction for {bad!r} is {type(predictions[bad]).__name__}, "
                        "expected a string ('' for no answer)")
    if na_probs is not None:
        lacking = [k for k in ids if not isinstance(na_probs.get(k), (int, float))]
        if lacking:
            raise DataError(f"na_probs has no no-answer probability (a number) for "
                            f"{len(lacking)} question(s), e.g. {lacking[0]!r}")
    exact_raw, f1_raw, has_answer = {}, {}, {}
    for rec in records:
        qid = rec["id"]
        golds = [a["text"] for a in rec["answers"]]
        has_answer[qid] = bool(golds)
        exact_raw[qid], f1_raw[qid] = (
            question_scores(predictions[qid], golds, _record_language(rec, lang))
            if qid in predictions else (0, 0.0))

    def thresholded(raw: dict) -> dict:
        if na_probs is None:
            return raw
        return {k: float(not has_answer[k]) if na_probs[k] > na_prob_thresh else v
                for k, v in raw.items()}

    exact, f1 = thresholded(exact_raw), thresholded(f1_raw)
    out: dict = {"exact": _mean(list(exact.values())), "f1": _mean(list(f1.values())),
                 "total": len(ids), "missing": sum(k not in predictions for k in ids)}
    for prefix, want in (("HasAns", True), ("NoAns", False)):
        split = [k for k in ids if has_answer[k] is want]
        if split:
            out[f"{prefix}_exact"] = _mean([exact[k] for k in split])
            out[f"{prefix}_f1"] = _mean([f1[k] for k in split])
            out[f"{prefix}_total"] = len(split)
    if na_probs is not None:
        out["best_exact"], out["best_exact_thresh"] = best_threshold(
            exact_raw, na_probs, has_answer, predictions)
        out["best_f1"], out["best_f1_thresh"] = best_threshold(
            f1_raw, na_probs, has_answer, predictions)
    return out
