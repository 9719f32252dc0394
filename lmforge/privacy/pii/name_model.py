"""A learned person-name recognizer: a small network scoring name candidates.

The rules of :mod:`.names` find a name by its label, title or jieba's ``nr`` tag, and miss
one in a new phrasing ("旅客刘丹丹", "（黄晨收）", "Aarush Shetty will present"). This model
judges every candidate by the name's own shape and its immediate surroundings.

**Candidates.** Chinese: a surname of :data:`.names.ZH_SURNAMES` (or a compound one)
followed by one or two Han characters. English: a run of capitalised words, without
leading non-names ("Contact", "Thanks"), as :mod:`.names` cuts it.

**Shape statistics** (log-likelihood ratios, computed once from package data, no names
of the evaluation's sources):

- Chinese: for a character ``c``, ``log P_given(c) − log P_text(c)``, where ``P_given`` is
  the frequency of ``c`` among the given-name characters of jieba's dictionary words
  tagged ``nr`` (surname + one or two characters; not the quarter :func:`held_out_name`
  keeps for training) and ``P_text`` its frequency in
  jieba's dictionary weighted by word frequency (add-one smoothing over the characters
  seen); likewise the surname character against ``P_text``.
- English: a character trigram model of names ``P_name(w)`` (Faker's first and last names
  of :data:`EN_NAME_LOCALES`, not the held-out quarter) against one of English words ``P_word(w)`` (wordfreq's
  30,000 most frequent), both with add-``k`` smoothing over ``^^w$``; the feature is
  ``(log P_name(w) − log P_word(w)) / (len(w) + 1)``.

**Features** (:func:`zh_features`, :func:`en_features`) are these ratios, jieba's
segmentation (is the candidate a word, a ``nr`` word, does a word cross its edges and how
frequent is it; how frequent a word its surname and first given character make: 项目将,
周末请), what stands before and after (punctuation, a function character, a
label or title, a lower-case word) and, in English, the rule recognizer's name lists,
wordfreq's Zipf frequencies and cue words. A candidate's score is the probability of a
one-hidden-layer network over the standardised features (:func:`probabilities`), fitted
by :mod:`.name_training` and shipped in ``name_model.json``.
"""

from __future__ import annotations

import functools
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ...extras import require_extra
from .context import has_context
from .names import (
    _EN_RUN,
    _STOP,
    EN_CUES,
    EN_CUES_AFTER,
    EN_LABELS,
    EN_TITLES,
    ZH_COMPOUND,
    ZH_LABELS,
    ZH_SURNAMES,
    ZH_TITLES,
    _apposition,
    _common_phrase,
    _name_words,
    _sentence_start,
    _zipf,
    en_name_lists,
    jieba_words,
    rule_names,
)
from .spans import PiiSpan

MODEL_FILE = Path(__file__).with_name("name_model.json")
# Latin-script Faker locales whose names train the English shape model (not en_GB or
# en_IN, the sources of the evaluation's names).
EN_NAME_LOCALES = ("en_US", "en_PK", "en_NG", "en_KE", "en_TH", "de_DE", "fr_FR", "es_ES",
                   "it_IT", "nl_NL", "pl_PL", "sv_SE", "da_DK", "fi_FI", "pt_BR", "tr_TR",
                   "id_ID", "cs_CZ", "ro_RO", "hu_HU")
_HAN = re.compile(r"[\u4e00-\u9fff]")
_HAN_WORD = re.compile(r"[\u4e00-\u9fff]+")
_PUNCT = set("，。、；：:;,.!?！？（）()【】[]「」“”\"'《》<>—-~～/\\|·…\n\t ")
_TITLED_BEFORE = re.compile(rf"(?:{EN_TITLES})\s*$")


# ----------------------------------------------------------------------------- statistics

def dictionary_names() -> Iterator[tuple[str, int, int]]:
    """``(word, frequency, surname length or 0)`` of every word of jieba's dictionary; the
    surname length is that of a word tagged ``nr`` that is a surname and one or two Han
    characters (a person's name), else 0."""
    import jieba

    with open(Path(jieba.__file__).with_name("dict.txt"), encoding="utf-8") as f:
        for line in f:
            word, freq, flag = line.split()
            n = 2 if word[:2] in ZH_COMPOUND else (1 if word[:1] in ZH_SURNAMES else 0)
            name = flag == "nr" and 1 <= len(word) - n <= 2 and _HAN_WORD.fullmatch(word)
            yield word, int(freq), n if n and name else 0


@functools.lru_cache(maxsize=1)
def zh_char_stats() -> tuple[dict[str, float], dict[str, float], dict[str, float], float]:
    """(given-name LLR per character, surname LLR per character or compound, text
    log-probability per character, log-probability of an unseen character)."""
    given, surnames, text = Counter(), Counter(), Counter()
    for word, freq, n in dictionary_names():
        for c in word:
            text[c] += freq
        if n and not held_out_name(word):
            surnames[word[:n]] += 1
            given.update(word[n:])
    total = sum(text.values()) + len(text)
    log_text = {c: math.log((k + 1) / total) for c, k in text.items()}
    unseen = math.log(1 / total)

    def llr(counts: Counter) -> dict[str, float]:
        n = sum(counts.values()) + len(counts)
        return {c: math.log((k + 1) / n) - sum(log_text.get(x, unseen) for x in c)
                for c, k in counts.items()}

    return llr(given), llr(surnames), log_text, unseen


class _Trigrams:
    """A character trigram model of words with add-``k`` smoothing over 27 symbols."""

    def __init__(self, words, k: float = 0.1):
        self.k, self.tri, self.bi = k, Counter(), Counter()
        for w in words:
            s = "^^" + w.lower() + "$"
            for i in range(2, len(s)):
                self.tri[s[i - 2:i + 1]] += 1
                self.bi[s[i - 2:i]] += 1

    def logp(self, word: str) -> float:
        s = "^^" + word.lower() + "$"
        return sum(math.log((self.tri[s[i - 2:i + 1]] + self.k) / (self.bi[s[i - 2:i]] + 27 * self.k))
                   for i in range(2, len(s)))


@functools.lru_cache(maxsize=1)
def en_shape_models() -> tuple[_Trigrams, _Trigrams]:
    """(names, English words): the trigram models of the module docstring."""
    import importlib

    require_extra("faker", "privacy", "English name recognition")
    wordfreq = require_extra("wordfreq", "privacy", "English name recognition")
    names = set()
    for loc in EN_NAME_LOCALES:
        p = importlib.import_module(f"faker.providers.person.{loc}").Provider
        for attr in ("first_names", "first_names_male", "first_names_female", "last_names"):
            names.update(n for n in getattr(p, attr, ())
                         if re.fullmatch(r"[A-Za-z]+", n) and not held_out_name(n))
    words = [w for w in wordfreq.top_n_list("en", 30000) if re.fullmatch(r"[a-z]+", w)]
    return _Trigrams(sorted(names)), _Trigrams(words)


def held_out_name(word: str) -> bool:
    """A quarter of the name lists, kept out of the statistics for training
    (:mod:`.name_training`)."""
    return zlib.crc32(word.encode()) % 4 == 0


@functools.lru_cache(maxsize=1 << 16)
def en_shape(word: str) -> float:
    """Per-character log-likelihood ratio of ``word`` being a name rather than a word."""
    names, words = en_shape_models()
    core = re.sub(r"[^A-Za-z]", "", word)
    return (names.logp(core) - words.logp(core)) / (len(core) + 1)


# ----------------------------------------------------------------------------- features

ZH_FEATURES = ("surname", "surname_word_freq", "surname_not_noun", "given1", "given2",
               "one_given", "other_word", "is_nr", "starts_word",
               "ends_word", "span_freq", "cross_end_freq", "cross_start_freq", "prev_punct",
               "prev_stop", "prev_label", "next_punct", "next_stop", "next_title",
               "given_stop", "last_char_freq", "next_char_freq", "prev_char_freq",
               "next_given", "prev_surname", "head_word_freq")
EN_FEATURES = ("first", "last", "one_word", "three_words", "sentence_start", "labelled",
               "titled", "cue_before", "cue_after", "apposition", "common_phrase",
               "min_zipf", "max_zipf", "shape_mean", "shape_min", "next_lower", "prev_lower",
               "prev_punct")


def zh_candidates(text: str) -> list[tuple[int, int, int]]:
    """(start, surname length, given length) of every Chinese candidate."""
    out = []
    for i in range(len(text)):
        n = 2 if text[i:i + 2] in ZH_COMPOUND else (1 if text[i] in ZH_SURNAMES else 0)
        for g in (1, 2):
            if n and i + n + g <= len(text) and all(_HAN.fullmatch(c) for c in text[i + n:i + n + g]):
                out.append((i, n, g))
    return out


def zh_features(text: str, words: list[tuple[int, str, str]], cand: tuple[int, int, int]
                ) -> list[float]:
    given_llr, surname_llr, log_text, unseen = zh_char_stats()
    i, n, g = cand
    end = i + n + g
    span = text[i:end]
    starts = {s: (w, f) for s, w, f in words}
    freq = _jieba_freq()

    def crossing(pos: int) -> float:
        w = next((w for s, w, _ in words if s < pos < s + len(w)), None)
        return math.log1p(freq.get(w, 0)) if w else 0.0

    default_given, default_surname = _floors()
    prev, nxt = text[i - 1:i], text[end:end + 1]
    word = starts.get(i)
    return [surname_llr.get(span[:n], default_surname),
            math.log1p(freq.get(span[:n], 0)) / 10,
            float(word is not None and word[0] == span[:n] and not word[1].startswith("n")),
            given_llr.get(span[n], default_given),
            given_llr.get(span[n + 1], default_given) if g == 2 else 0.0,
            float(g == 1),
            float(word is not None and word[0] == span and not word[1].startswith("nr")),
            float(word is not None and word[0] == span and word[1].startswith("nr")),
            float(i in starts),
            float(end in starts or end == len(text)),
            math.log1p(freq.get(span, 0)),
            crossing(end),
            crossing(i),
            float(not prev or prev in _PUNCT or not _HAN.fullmatch(prev)),
            float(bool(prev) and prev in _STOP),
            float(has_context(text, i, i, ZH_LABELS + ZH_TITLES, before=4, after=0)),
            float(not nxt or nxt in _PUNCT or not _HAN.fullmatch(nxt)),
            float(bool(nxt) and nxt in _STOP),
            float(any(text.startswith(t, end) for t in ZH_TITLES)),
            float(any(c in _STOP for c in span[n:])),
            math.log1p(freq.get(span[-1], 0)) / 10,
            math.log1p(freq.get(nxt, 0)) / 10 if nxt else 0.0,
            math.log1p(freq.get(prev, 0)) / 10 if prev else 0.0,
            given_llr.get(nxt, default_given) if nxt else default_given,
            float(bool(prev) and prev in ZH_SURNAMES),
            math.log1p(freq.get(span[:n + 1], 0)) / 10 if g == 2 else 0.0]


@functools.lru_cache(maxsize=1)
def _floors() -> tuple[float, float]:
    """The lowest given-name and surname ratios: those of a character never seen there."""
    given_llr, surname_llr, _, _ = zh_char_stats()
    return min(given_llr.values()), min(surname_llr.values())


@functools.lru_cache(maxsize=1)
def _jieba_freq() -> dict[str, int]:
    import jieba

    jieba.initialize()
    return jieba.dt.FREQ


def en_candidates(text: str) -> list[tuple[int, int, list[str]]]:
    """(start, end, words) of every English candidate."""
    first, _ = en_name_lists()
    out = []
    for m in _EN_RUN.finditer(text):
        words = _name_words(m.group().split(" "), first)
        if words:
            out.append((m.end() - len(" ".join(words)), m.end(), words))
    return out


def en_features(text: str, cand: tuple[int, int, list[str]]) -> list[float]:
    first, last = en_name_lists()
    start, end, words = cand
    zipfs = [_zipf(w) for w in words]
    shapes = [en_shape(w) for w in words]
    after = re.match(r"\s*([A-Za-z]+)", text[end:])
    before = re.search(r"([A-Za-z]+)\s*$", text[:start])
    return [float(words[0] in first),
            float(len(words) > 1 and words[-1] in last),
            float(len(words) == 1),
            float(len(words) == 3),
            float(_sentence_start(text, start)),
            float(has_context(text, start, end, EN_LABELS, before=14, after=0)),
            float(_TITLED_BEFORE.search(text[:start]) is not None),
            float(has_context(text, start, end, EN_CUES, before=12, after=0)),
            float(has_context(text, end, end, EN_CUES_AFTER, before=0, after=10)),
            float(_apposition(text, start, end)),
            float(_common_phrase(words, first, last)),
            min(zipfs) / 8, max(zipfs) / 8,
            sum(shapes) / len(shapes), min(shapes),
            float(after is not None and after.group(1).islower()),
            float(before is not None and before.group(1).islower()),
            float(text[:start].rstrip()[-1:] in (":", ",", "(", ";"))]


# ----------------------------------------------------------------------------- model

def probabilities(net: dict, xs: list[list[float]]) -> np.ndarray:
    """``σ(w₂·tanh(W₁ z + b₁) + b₂)`` for each row ``x`` of ``xs``, ``z = (x − μ) / σ``."""
    z = (np.asarray(xs, dtype=np.float64) - net["mean"]) / net["std"]
    h = np.tanh(z @ np.asarray(net["w1"]).T + net["b1"])
    return 1.0 / (1.0 + np.exp(-(h @ np.asarray(net["w2"]) + net["b2"])))


@functools.lru_cache(maxsize=1)
def load_model(path: str = str(MODEL_FILE)) -> dict:
    """The fitted networks: ``{"zh": {"features", "mean", "std", "w1", "b1", "w2", "b2"},
    "en": {...}}``."""
    model = json.loads(Path(path).read_text(encoding="utf-8"))
    for lang, names in (("zh", ZH_FEATURES), ("en", EN_FEATURES)):
        if tuple(model[lang]["features"]) != names:
            raise ValueError(f"{path}: the {lang} features differ from the code's; "
                             "refit with python -m lmforge.privacy.pii.name_training")
    return model


def learned_names(text: str, model: dict | None = None,
                  words: list[tuple[int, str, str]] | None = None) -> list[PiiSpan]:
    """Every candidate of ``text`` with the model's probability as its score (``words``:
    jieba's words of ``text`` when the caller has them)."""
    model = model or load_model()
    out = []
    cands = zh_candidates(text)
    if cands:
        words = jieba_words(text) if words is None else words
        ps = probabilities(model["zh"], [zh_features(text, words, c) for c in cands])
        out += [PiiSpan(i, i + n + g, "PERSON", float(p), "name_zh_model")
                for (i, n, g), p in zip(cands, ps, strict=True)]
    cands = en_candidates(text)
    if cands:
        ps = probabilities(model["en"], [en_features(text, c) for c in cands])
        out += [PiiSpan(s, e, "PERSON", float(p), "name_en_model")
                for (s, e, _), p in zip(cands, ps, strict=True)]
    return out


def person(text: str) -> list[PiiSpan]:
    """The PERSON recognizer: the rules of :mod:`.names` and this model, on one jieba
    segmentation; overlapping candidates are left to the analyzer (the higher score wins)."""
    words = jieba_words(text) if _HAN.search(text) else None
    return rule_names(text, words) + learned_names(text, words=words)
