r"""EDA: easy data augmentation (Wei and Zou 2019) for classification and NER data, in
English and Chinese.

**Operations.** A text has ``l`` words (punctuation does not count). Each augmented copy
applies one operation with its strength ``α`` (``alpha_sr``, ``alpha_ri``, ``alpha_rs``,
``alpha_rd``, each ``alpha`` unless given; 0 switches the operation off)::

    SR  synonym replacement  n = max(1, floor(α·l)) distinct non-stop words that have
                             synonyms, taken in random order, are replaced (every
                             occurrence) by one random synonym each
    RI  random insertion     n = max(1, floor(α·l)) times: a random synonym of a random
                             non-stop word is inserted at a random place next to a word
    RS  random swap          n = max(1, floor(α·l)) times: two distinct random words swap
    RD  random deletion      every word is deleted with probability p = α; when no word
                             is left, one random word is kept

``n`` is floored, as the paper's reference code does (``eda.py``:
``max(1, int(alpha * num_words))``), not rounded. **Copies:** with ``k`` operations
switched on, each makes ``floor(n_aug / k) + 1`` copies; the pooled copies are shuffled
and the first ``n_aug`` kept, so the operations share the copies evenly up to that trim
(as ``eda.py`` with all four on; it always divides by 4, so switching operations off
gives it fewer than ``n_aug`` copies, lmforge still ``n_aug``). The original is kept as
copy 0. The paper's defaults are ``α = 0.1`` and 9 copies; it recommends
``(α, n_aug)`` = (0.05, 16) for 500 examples, (0.05, 8) for 2,000 and (0.1, 4) for
more, lmforge's default.

Every copy is kept, as in ``eda.py``, even one equal to its original (a sentence without
synonyms in the source, one word to swap); :func:`augment_file` counts them.

**Differences from eda.py, on purpose.** Case and punctuation are kept (``eda.py``
lower-cases and keeps only ``a-z``); punctuation is never replaced, inserted, swapped or
deleted. RI draws a random synonym (``eda.py`` takes the first) of a random non-stop word
that has synonyms (``eda.py`` draws any word and gives up after 10 tries) and may insert
at either end (``eda.py`` never appends). RS draws two distinct positions (``eda.py``
gives up after 3 equal draws). All randomness comes from the ``random.Random`` passed in,
and candidates are taken in first-occurrence order (never a ``set``'s), so the output
depends on the seed alone.

**Words.** English: words (letters and digits, with inner ``'`` or ``-``) and single
punctuation marks; Chinese: jieba words (:func:`lmforge.tokenize.zh.jieba_words`).
``lang=None`` detects the language (a CJK ideograph means ``zh``). Words that were
neighbours in the input keep the text between them; new neighbours are joined by one
space in English (none before ``, . ; : ! ? ) ] } %`` or after ``( [ {``) and by nothing
in Chinese (a space between two ASCII letters or digits). Stop words
(:data:`EN_STOP_WORDS`, :data:`ZH_STOP_WORDS`, negations included) are never replaced
or used as an insertion source.

**Records.** Classification records ``{"text", "label", ...}`` become copies with the
same fields, the new ``text`` and ``"augmented": k`` (0 = the original). NER records
``{"text", "tokens", "tags", ["spans"], ["offsets"], ["columns"], ...}``: only words
tagged ``O`` are replaced, inserted next to, swapped or deleted; every maximal run of
entity tokens is one block that is never changed or split (so entity strings stay
verbatim). In Chinese the ``O`` tokens (characters) are grouped into jieba words, cut
only at token boundaries. The copies' ``tokens``, ``tags``, ``offsets`` and ``spans``
(``{"start", "end", ...}`` in characters, ``end`` exclusive, in their original order)
are recomputed so that they slice the new text exactly; per-token ``columns`` (CoNLL
POS/chunk) travel with their tokens and new tokens get ``-X-``; ``doc_start`` stays on the
original only.

**Synonyms.** Anything with ``synonyms(word) -> list[str]`` (:class:`SynonymSource`):
:class:`SynonymFile` (hand-written sets), :class:`VectorSynonyms` (nearest neighbours in
word vectors above a cosine floor), :class:`WorldSynonyms` (the built-in world's sets, the
default). A word not found is looked up lower-cased and the synonym's first letter
upper-cased to match.
"""

from __future__ import annotations

import json
import math
import os
import random
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from ..errors import ConfigError, DataError
from ..io import atomic_open
from .readers import _json_type, iter_lines, parse_json_line

if TYPE_CHECKING:
    from ..embeddings.keyed_vectors import KeyedVectors

__all__ = ["EN_STOP_WORDS", "ZH_STOP_WORDS", "LANGS", "TASKS", "SynonymSource", "SynonymSets",
           "SynonymFile", "VectorSynonyms", "WorldSynonyms", "augment_text", "augment_record",
           "augment_file"]

LANGS = ("en", "zh")
TASKS = ("classify", "ner")

EN_STOP_WORDS = frozenset("""
a about above after again against all am an and any are as at be because been before being
below between both but by can could did do does doing down during each few for from further
had has have having he her here hers herself him himself his how i if in into is it its
itself just me more most my myself no nor not now of off on once only or other our ours
ourselves out over own same she should so some such than that the their theirs them
themselves then there these they this those through to too under until up very was we were
what when where which while who whom why will with would you your yours yourself
yourselves
""".split())
ZH_STOP_WORDS = frozenset("""
的 地 得 了 着 过 是 在 和 与 及 或 也 都 就 而 并 很 又 还 被 把 给 从 向 对 于 这 那 之 其
吗 呢 吧 啊 呀 我 你 他 她 它 我们 你们 他们 她们 它们 自己 一个 有 没有 不 没 别 但 但是
因为 所以 如果 就是 以及 等
""".split())
_STOP = {"en": EN_STOP_WORDS, "zh": ZH_STOP_WORDS}

_EN_TOKEN = re.compile(r"\w+(?:['’-]\w+)*|[^\w\s]")
_NO_SPACE_BEFORE = frozenset(",.;:!?)]}%")
_NO_SPACE_AFTER = frozenset("([{")
_SET_SEP = re.compile(r"[\s,，、]+")
_NEW_COLUMN = "-X-"  # CoNLL's placeholder for a middle column (POS, chunk) of a new token


# ----------------------------------------------------------------------------- synonyms


@runtime_checkable
class SynonymSource(Protocol):
    """Where synonyms come from: ``synonyms(word)`` lists the words that may replace
    ``word`` (empty when none is known)."""

    def synonyms(self, word: str) -> list[str]: ...


class SynonymSets:
    """Synonym sets: a word's synonyms are the other words of every set that holds it
    (the union), in first-seen order. ``sets`` is an iterable of word lists, or a mapping
    ``word -> synonyms`` (each item read as the set ``{word, *synonyms}``)."""

    def __init__(self, sets: Iterable[Iterable[str]] | Mapping[str, Iterable[str]]):
        groups = ([[k, *v] for k, v in sets.items()] if isinstance(sets, Mapping)
                  else sets)
        index: dict[str, dict[str, None]] = {}
        for group in groups:
            if isinstance(group, str):
                raise ConfigError(f"a synonym set must be a list of words, got the string "
                                  f"{group!r}")
            words = list(dict.fromkeys(group))
            for w in words:
                index.setdefault(w, {}).update((v, None) for v in words if v != w)
        self._index = {w: list(syns) for w, syns in index.items()}

    def synonyms(self, word: str) -> list[str]:
        return list(self._index.get(word, ()))

    def __len__(self) -> int:
        """The number of words that have synonyms."""
        return sum(1 for syns in self._index.values() if syns)


class SynonymFile(SynonymSets):
    """Synonym sets from a UTF-8 text file: one set per line, words separated by
    whitespace or commas (``,``, ``，`` or ``、``); a word may be in several sets.
    Blank lines and lines starting with ``#`` are skipped; a line with fewer than two
    distinct words, or with control characters, is a :class:`DataError` naming the file
    and line."""

    def __init__(self, path: str | os.PathLike):
        p = Path(path)
        sets = []
        for n, line in enumerate(iter_lines(p), 1):
            body = line.strip()
            if not body or body.startswith("#"):
                continue
            if any(not ch.isprintable() and not ch.isspace() for ch in body):
                raise DataError(f"{p}:line {n}: garbled line (control characters); expected "
                                "words separated by spaces or commas")
            words = list(dict.fromkeys(w for w in _SET_SEP.split(body) if w))
            if len(words) < 2:
                raise DataError(f"{p}:line {n}: a synonym set needs at least 2 different "
                                f"words, got {body[:60]!r}")
            sets.append(words)
        if not sets:
            raise DataError(f"{p}: no synonym sets (expected one set per line, e.g. "
                            "'happy glad joyful')")
        super().__init__(sets)
        self.path = p


class VectorSynonyms:
    """Synonyms as nearest neighbours in word vectors: the ``topn`` most cosine-similar
    words (:meth:`KeyedVectors.most_similar`) with ``cos >= min_similarity``.

    ``vectors`` is a :class:`~lmforge.embeddings.keyed_vectors.KeyedVectors` or the path
    of a word2vec file (``.bin`` binary, else text, the convention of
    ``lmforge.embeddings.recipe.load_vectors``, which also reads run folders and fastText
    models and may be passed in). Neighbours are similar words, not always synonyms
    (antonyms such as good/bad are often close); the floor keeps only close ones."""

    def __init__(self, vectors: KeyedVectors | str | os.PathLike, topn: int = 10,
                 min_similarity: float = 0.6):
        from ..embeddings.keyed_vectors import KeyedVectors

        if isinstance(topn, bool) or not isinstance(topn, int) or topn < 1:
            raise ConfigError(f"topn must be an integer >= 1, got {topn!r}")
        if (isinstance(min_similarity, bool) or not isinstance(min_similarity, int | float)
                or not -1.0 <= min_similarity <= 1.0):
            raise ConfigError(f"min_similarity must be a number in [-1, 1], got "
                              f"{min_similarity!r}")
        if isinstance(vectors, str | os.PathLike):
            p = Path(vectors)
            vectors = KeyedVectors.load_word2vec_format(p, binary=p.suffix == ".bin")
        elif not isinstance(vectors, KeyedVectors):
            raise ConfigError(f"vectors must be KeyedVectors or a word2vec file path, got "
                              f"{type(vectors).__name__}")
        self.vectors, self.topn, self.min_similarity = vectors, topn, float(min_similarity)
        self._cache: dict[str, list[str]] = {}

    def synonyms(self, word: str) -> list[str]:
        if word not in self._cache:
            near = (self.vectors.most_similar(word, topn=self.topn)
                    if word in self.vectors else [])
            self._cache[word] = [w for w, cos in near if cos >= self.min_similarity]
        return list(self._cache[word])


class WorldSynonyms(SynonymSets):
    """The built-in world's synonym sets in ``lang``
    (``lmforge.corpora.tasks.synonym_sets``)."""

    def __init__(self, lang: str):
        from ..corpora.tasks import synonym_sets

        super().__init__(synonym_sets(_check_lang(lang)))
        self.lang = lang


@lru_cache(maxsize=len(LANGS))
def _world_synonyms(lang: str) -> WorldSynonyms:
    return WorldSynonyms(lang)


class _Lookup:
    """Synonyms of a word for augmentation, memoised: the word itself (in any case)
    excluded; a word not found is tried lower-cased, its synonyms then capitalised."""

    def __init__(self, source: SynonymSource, lang: str):
        if not isinstance(source, SynonymSource):
            raise ConfigError(f"synonyms must have a synonyms(word) method, got "
                              f"{type(source).__name__}")
        self.source, self.stop = source, _STOP[lang]
        self._cache: dict[str, list[str]] = {}

    def usable(self, word: str) -> bool:
        """Not a stop word, and has synonyms."""
        return word.lower() not in self.stop and bool(self(word))

    def __call__(self, word: str) -> list[str]:
        if word not in self._cache:
            found = self.source.synonyms(word)
            lower = word.lower()
            if not found and lower != word:
                found = [s[:1].upper() + s[1:] for s in self.source.synonyms(lower)]
            self._cache[word] = list(dict.fromkeys(
                s.strip() for s in found if s.strip() and s.strip().casefold() != word.casefold()))
        return self._cache[word]


# ----------------------------------------------------------------------------- units

_WORD, _PUNCT, _FIXED = "word", "punct", "fixed"


@dataclass(frozen=True)
class _Unit:
    """What the operations move: an editable word, a punctuation mark, or (NER) a fixed
    block of entity tokens. ``pos`` is the place in the input (None: inserted) and
    ``gap`` the input text before it, kept while its input neighbour stays before it.
    NER units carry their tokens (at ``offsets`` in ``text``), tags, CoNLL columns and
    the spans ``(start, end, k)`` inside them, offsets relative to ``text``."""

    text: str
    kind: str
    pos: int | None = None
    gap: str = ""
    tokens: tuple[str, ...] = ()
    offsets: tuple[tuple[int, int], ...] = ()
    tags: tuple[str, ...] = ()
    columns: tuple[Any, ...] = ()
    spans: tuple[tuple[int, int, int], ...] = ()


def _kind(text: str) -> str:
    return _WORD if any(ch.isalnum() for ch in text) else _PUNCT


def _detect_lang(text: str) -> str:
    from ..corpora.world import detect_lang

    return detect_lang(text)


def _text_pieces(text: str, lang: str) -> list[tuple[int, int]]:
    """``(start, end)`` of the words and punctuation marks of ``text``."""
    if lang == "en":
        return [m.span() for m in _EN_TOKEN.finditer(text)]
    from ..tokenize.zh import jieba_words

    out, pos = [], 0
    for w in jieba_words(text):
        out += [(pos + m.start(), pos + m.end()) for m in re.finditer(r"\S+", w)]
        pos += len(w)
    return out


def _text_units(text: str, lang: str) -> list[_Unit]:
    units, prev = [], 0
    for s, e in _text_pieces(text, lang):
        units.append(_Unit(text[s:e], _kind(text[s:e]), len(units), text[prev:s]))
        prev = e
    return units


class _NewUnit:
    """Makes the unit of a new word (a synonym); for NER its tokens are its characters
    (character-level records) or its whitespace-separated parts, all tagged ``O``."""

    def __init__(self, char_level: bool = False, width: int | None = None):
        self.char_level, self.width = char_level, width

    def __call__(self, text: str, like: _Unit | None = None) -> _Unit:
        pieces = [m.span() for m in re.finditer(r"\S" if self.char_level else r"\S+", text)]
        toks = tuple(text[a:b] for a, b in pieces)
        cols = () if self.width is None else tuple([_NEW_COLUMN] * self.width for _ in toks)
        unit = _Unit(text, _kind(text), tokens=toks, offsets=tuple(pieces),
                     tags=("O",) * len(toks), columns=cols)
        return unit if like is None else replace(unit, pos=like.pos, gap=like.gap)


def _separator(prev: str, nxt: str, lang: str) -> str:
    if lang == "zh":
        return " " if prev[-1:].isascii() and prev[-1:].isalnum() and nxt[:1].isascii() \
            and nxt[:1].isalnum() else ""
    return "" if nxt in _NO_SPACE_BEFORE or prev in _NO_SPACE_AFTER else " "


def _render(units: list[_Unit], lang: str) -> tuple[str, list[int]]:
    """The text of ``units`` and each unit's start in it."""
    parts: list[str] = []
    starts: list[int] = []
    n = 0
    for i, u in enumerate(units):
        if i:
            prev = units[i - 1]
            adjacent = u.pos is not None and prev.pos is not None and u.pos == prev.pos + 1
            sep = u.gap if adjacent else _separator(prev.text, u.text, lang)
            parts.append(sep)
            n += len(sep)
        starts.append(n)
        parts.append(u.text)
        n += len(u.text)
    return "".join(parts), starts


# ----------------------------------------------------------------------------- operations


def _sr(units: list[_Unit], n: int, rng: random.Random, syn: _Lookup, new: _NewUnit
        ) -> list[_Unit]:
    """Synonym replacement: up to ``n`` distinct non-stop words with synonyms, in random
    order, each replaced everywhere by one random synonym."""
    words = list(dict.fromkeys(u.text for u in units
                               if u.kind == _WORD and u.text.lower() not in syn.stop))
    rng.shuffle(words)
    out, done = list(units), 0
    for w in words:
        if done >= n:
            break
        if choices := syn(w):
            s = rng.choice(choices)
            out = [new(s, u) if u.kind == _WORD and u.text == w else o
                   for o, u in zip(out, units, strict=True)]
            done += 1
    return out


def _ri(units: list[_Unit], n: int, rng: random.Random, syn: _Lookup, new: _NewUnit
        ) -> list[_Unit]:
    """Random insertion, ``n`` times: a random synonym of a random non-stop word (with
    synonyms) of the current sentence, at a random slot next to a word."""
    out = list(units)
    for _ in range(n):
        sources = [u.text for u in out if u.kind == _WORD and syn.usable(u.text)]
        if not sources:
            break
        s = rng.choice(syn(rng.choice(sources)))
        slots = [i for i in range(len(out) + 1)
                 if (i > 0 and out[i - 1].kind == _WORD) or (i < len(out) and out[i].kind == _WORD)]
        out.insert(rng.choice(slots), new(s))
    return out


def _rs(units: list[_Unit], n: int, rng: random.Random) -> list[_Unit]:
    """Random swap, ``n`` times: two distinct random words trade places."""
    out = list(units)
    words = [i for i, u in enumerate(out) if u.kind == _WORD]
    if len(words) >= 2:
        for _ in range(n):
            i, j = rng.sample(words, 2)
            out[i], out[j] = out[j], out[i]
    return out


def _rd(units: list[_Unit], p: float, rng: random.Random) -> list[_Unit]:
    """Random deletion: each word goes with probability ``p``; one random word stays when
    nothing else (no word, no entity) would."""
    keep = [u.kind != _WORD or rng.random() >= p for u in units]
    if not any(k and u.kind != _PUNCT for k, u in zip(keep, units, strict=True)):
        words = [i for i, u in enumerate(units) if u.kind == _WORD]
        if words:
            keep[rng.choice(words)] = True
    return [u for k, u in zip(keep, units, strict=True) if k]


_OPS = ("sr", "ri", "rs", "rd")


@dataclass(frozen=True)
class _Plan:
    n_aug: int
    alphas: tuple[float, float, float, float]  # sr, ri, rs, rd


def only_ops(ops: Iterable[str]) -> dict[str, float]:
    """The ``alpha_<op>=0`` keywords that switch off every operation not in ``ops`` (a
    subset of ``sr``, ``ri``, ``rs``, ``rd``), for :func:`augment_text`,
    :func:`augment_record` and :func:`augment_file`."""
    ops = [ops] if isinstance(ops, str) else list(ops)
    bad = [op for op in ops if op not in _OPS]
    if bad or not ops:
        got = ", ".join(map(str, bad)) or "none"
        raise ConfigError(f"EDA operations are {', '.join(_OPS)}; got {got}")
    return {f"alpha_{op}": 0.0 for op in _OPS if op not in ops}


def _check_alpha(name: str, value: Any) -> float:
    if (isinstance(value, bool) or not isinstance(value, int | float)
            or not math.isfinite(value) or not 0.0 <= value <= 1.0):
        raise ConfigError(f"{name} must be a number in [0, 1], got {value!r}")
    return float(value)


def _plan(n_aug: Any, alpha: Any, alpha_sr: Any, alpha_ri: Any, alpha_rs: Any,
          alpha_rd: Any) -> _Plan:
    if isinstance(n_aug, bool) or not isinstance(n_aug, int | np.integer) or n_aug < 0:
        raise ConfigError(f"n_aug must be an integer >= 0, got {n_aug!r}")
    a = _check_alpha("alpha", alpha)
    each = tuple(a if v is None else _check_alpha(f"alpha_{op}", v)
                 for op, v in zip(_OPS, (alpha_sr, alpha_ri, alpha_rs, alpha_rd), strict=True))
    return _Plan(int(n_aug), each)


def _augment_units(units: list[_Unit], plan: _Plan, rng: random.Random, syn: _Lookup,
                   new: _NewUnit) -> list[tuple[str, list[_Unit]]]:
    """``(operation, units)`` of each augmented copy (see the module docstring)."""
    if plan.n_aug == 0 or not any(plan.alphas):
        return []
    n_words = sum(u.kind == _WORD for u in units)
    on = [(op, a) for op, a in zip(_OPS, plan.alphas, strict=True) if a > 0]
    copies = []
    for op, a in on:
        n = max(1, int(a * n_words))  # eda.py: max(1, int(alpha * num_words))
        for _ in range(plan.n_aug // len(on) + 1):
            if op == "sr":
                copy = _sr(units, n, rng, syn, new)
            elif op == "ri":
                copy = _ri(units, n, rng, syn, new)
            elif op == "rs":
                copy = _rs(units, n, rng)
            else:
                copy = _rd(units, a, rng)
            copies.append((op, copy))
    rng.shuffle(copies)
    return copies[:plan.n_aug]


def _as_rng(rng: Any) -> random.Random:
    if isinstance(rng, random.Random):
        return rng
    if isinstance(rng, np.random.Generator):
        return random.Random(int(rng.integers(2**63)))
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return random.Random(int(rng))
    raise ConfigError(f"rng must be a random.Random, a numpy Generator or an integer seed, "
                      f"got {type(rng).__name__}")


def _check_lang(lang: Any) -> str:
    if lang not in LANGS:
        raise ConfigError(f"lang must be one of {', '.join(LANGS)} (or None to detect), "
                          f"got {lang!r}")
    return lang


# ----------------------------------------------------------------------------- records


def _field(rec: dict, name: str, kind: type, what: str) -> Any:
    if name not in rec:
        keys = ", ".join(map(str, rec)) or "none"
        raise DataError(f"field {name!r} is missing (fields: {keys})")
    value = rec[name]
    if not isinstance(value, kind):
        raise DataError(f"field {name!r} is {_json_type(value)}, expected {what}")
    return value


def _task_of(rec: dict) -> str:
    return "ner" if "tokens" in rec or "tags" in rec else "classify"


def _token_offsets(rec: dict, text: str, tokens: list[str]) -> list[tuple[int, int]]:
    """Where each token is in ``text``: the record's ``offsets`` if it has them (checked),
    else found in order with only whitespace between tokens."""
    if "offsets" in rec:
        offs = _field(rec, "offsets", list, "an array of [start, end] pairs")
        if len(offs) != len(tokens):
            raise DataError(f"{len(tokens)} tokens but {len(offs)} offsets")
        out, prev = [], 0
        for k, (tok, o) in enumerate(zip(tokens, offs, strict=True)):
            if not (isinstance(o, list) and len(o) == 2
                    and all(isinstance(x, int) and not isinstance(x, bool) for x in o)
                    and prev <= o[0] and text[o[0]:o[1]] == tok):
                raise DataError(f"offsets[{k}] = {o!r} does not give token {k} {tok!r} in "
                                "order in the text")
            out.append((o[0], o[1]))
            prev = o[1]
        return out
    out, pos = [], 0
    for k, tok in enumerate(tokens):
        at = text.find(tok, pos)
        if at < 0 or text[pos:at].strip():
            raise DataError(f"token {k} {tok!r} is not next in the text at character {pos} "
                            f"({text[pos:pos + 20]!r})")
        out.append((at, at + len(tok)))
        pos = at + len(tok)
    if text[pos:].strip():
        raise DataError(f"the text goes on after the last token: {text[pos:pos + 20]!r}")
    return out


def _zh_words(tokens: list[str]) -> list[int]:
    """Cut points (token counts) of jieba's words over the concatenated ``tokens``, kept
    only where they fall on a token boundary."""
    from ..tokenize.zh import jieba_words

    ends: dict[int, int] = {}
    n = 0
    for k, tok in enumerate(tokens, 1):
        n += len(tok)
        ends[n] = k
    cuts, n = [], 0
    for w in jieba_words("".join(tokens)):
        n += len(w)
        if n in ends:
            cuts.append(ends[n])
    return cuts


@dataclass
class _Ner:
    units: list[_Unit]
    spans: list[dict] | None
    has_offsets: bool
    width: int | None  # middle CoNLL columns per token (None: no "columns")
    char_level: bool


def _parse_ner(rec: dict, text: str, lang: str) -> _Ner:
    tokens = _field(rec, "tokens", list, "an array of strings")
    tags = _field(rec, "tags", list, "an array of strings")
    for k, tok in enumerate(tokens):
        if not isinstance(tok, str) or not tok.strip():
            raise DataError(f"tokens[{k}] is {tok!r}, expected a non-blank string")
    if len(tags) != len(tokens):
        raise DataError(f"{len(tokens)} tokens but {len(tags)} tags")
    for k, tag in enumerate(tags):
        if not isinstance(tag, str) or not tag:
            raise DataError(f"tags[{k}] is {tag!r}, expected a tag such as O or B-PER")
    columns, width = None, None
    if "columns" in rec:
        columns = _field(rec, "columns", list, "an array of one list per token")
        if len(columns) != len(tokens) or not all(isinstance(c, list) for c in columns):
            raise DataError("'columns' must hold one list per token")
        width = len(columns[0]) if columns else 0
    offs = _token_offsets(rec, text, tokens)
    # Runs: maximal stretches of O tokens or of entity tokens.
    runs: list[tuple[int, int, bool]] = []
    for k, tag in enumerate(tags):
        ent = tag != "O"
        if runs and runs[-1][2] == ent:
            runs[-1] = (runs[-1][0], k + 1, ent)
        else:
            runs.append((k, k + 1, ent))
    run_of = [r for r, (a, b, _) in enumerate(runs) for _ in range(a, b)]
    # Spans must lie inside one entity run (else augmentation could cut them).
    spans = rec.get("spans")
    inside: dict[int, list[tuple[int, int, int]]] = {}
    if spans is not None:
        if not isinstance(spans, list):
            raise DataError(f"field 'spans' is {_json_type(spans)}, expected an array")
        first = {s: k for k, (s, _) in enumerate(offs)}
        last = {e: k for k, (_, e) in enumerate(offs)}
        for j, sp in enumerate(spans):
            ok = (isinstance(sp, dict) and all(
                isinstance(sp.get(x), int) and not isinstance(sp.get(x), bool)
                for x in ("start", "end")))
            if not ok:
                raise DataError(f"spans[{j}] is {sp!r}, expected an object with integer "
                                "'start' and 'end'")
            a, b = first.get(sp["start"]), last.get(sp["end"])
            if a is None or b is None or a > b or any(tags[k] == "O" for k in range(a, b + 1)):
                raise DataError(f"spans[{j}] ({sp['start']}, {sp['end']}, "
                                f"{sp.get('label')!r}) does not cover entity-tagged tokens "
                                "exactly")
            base = offs[runs[run_of[a]][0]][0]
            inside.setdefault(run_of[a], []).append((sp["start"] - base, sp["end"] - base, j))
    units: list[_Unit] = []
    prev = 0
    for r, (a, b, ent) in enumerate(runs):
        if ent:
            cuts = [b]
        elif lang == "zh":
            cuts = [a + c for c in _zh_words(tokens[a:b])]
        else:
            cuts = list(range(a + 1, b + 1))
        for lo, hi in zip([a, *cuts[:-1]], cuts, strict=True):
            s, e = offs[lo][0], offs[hi - 1][1]
            units.append(_Unit(
                text[s:e], _FIXED if ent else _kind(text[s:e]), len(units), text[prev:s],
                tuple(tokens[lo:hi]), tuple((x - s, y - s) for x, y in offs[lo:hi]),
                tuple(tags[lo:hi]),
                tuple(columns[lo:hi]) if columns is not None else (),
                tuple(inside.get(r, ())) if ent else ()))
            prev = e
    return _Ner(units, spans, "offsets" in rec, width,
                lang == "zh" and all(len(t) == 1 for t in tokens))


def _ner_copy(rec: dict, ner: _Ner, units: list[_Unit], lang: str, k: int) -> dict:
    text, starts = _render(units, lang)
    out = {key: v for key, v in rec.items() if key != "doc_start"}
    tokens, tags, offsets, columns = [], [], [], []
    spans: list[dict | None] = [None] * len(ner.spans or ())
    for u, start in zip(units, starts, strict=True):
        tokens += u.tokens
        tags += u.tags
        columns += u.columns
        offsets += ([start + a, start + b] for a, b in u.offsets)
        for a, b, j in u.spans:
            spans[j] = {**ner.spans[j], "start": start + a, "end": start + b}
    out.update(text=text, tokens=tokens, tags=tags)
    if ner.has_offsets:
        out["offsets"] = offsets
    if ner.width is not None:
        out["columns"] = columns
    if ner.spans is not None:
        out["spans"] = spans
    out["augmented"] = k
    return out


def _augment_parsed(rec: dict, lang: str, parsed: list[_Unit] | _Ner, plan: _Plan,
                    rng: random.Random, syn: _Lookup) -> tuple[list[dict], list[str]]:
    """The original and its copies, and the operation of each copy."""
    original = {**rec, "augmented": 0}
    if isinstance(parsed, _Ner):
        new = _NewUnit(parsed.char_level, parsed.width)
        copies = _augment_units(parsed.units, plan, rng, syn, new)
        recs = [_ner_copy(rec, parsed, units, lang, k)
                for k, (_, units) in enumerate(copies, 1)]
    else:
        copies = _augment_units(parsed, plan, rng, syn, _NewUnit())
        recs = [{**rec, "text": _render(units, lang)[0], "augmented": k}
                for k, (_, units) in enumerate(copies, 1)]
    return [original, *recs], [op for op, _ in copies]


def _parse(rec: Any, task: str | None, lang: str | None) -> tuple[str, list[_Unit] | _Ner]:
    """``(lang, parsed)`` of a record; a bad record raises :class:`DataError`."""
    if not isinstance(rec, dict):
        raise DataError(f"expected a JSON object, got {_json_type(rec)}")
    task = _task_of(rec) if task is None else task
    text = _field(rec, "text", str, "a string")
    lang = _detect_lang(text) if lang is None else lang
    parsed = _parse_ner(rec, text, lang) if task == "ner" else _text_units(text, lang)
    return lang, parsed


def _check_task(task: Any) -> str | None:
    if task is not None and task not in TASKS:
        raise ConfigError(f"task must be one of {', '.join(TASKS)} (or None to detect), "
                          f"got {task!r}")
    return task


def _lookup_for(synonyms: SynonymSource | None, lang: str) -> _Lookup:
    return _Lookup(_world_synonyms(lang) if synonyms is None else synonyms, lang)


# ----------------------------------------------------------------------------- public API


def augment_text(text: str, *, n_aug: int = 4, alpha: float = 0.1,
                 rng: random.Random | np.random.Generator | int,
                 synonyms: SynonymSource | None = None, lang: str | None = None,
                 alpha_sr: float | None = None, alpha_ri: float | None = None,
                 alpha_rs: float | None = None, alpha_rd: float | None = None) -> list[str]:
    """``[text, copy_1, ..., copy_m]``: the text and its EDA copies (``m = n_aug`` unless
    every operation is off), so item ``k`` is copy ``k`` as in records' ``augmented``.

    ``synonyms=None`` uses the built-in world's sets; ``lang=None`` detects it; an
    integer ``rng`` is a seed. See the module docstring for the operations."""
    plan = _plan(n_aug, alpha, alpha_sr, alpha_ri, alpha_rs, alpha_rd)
    rng = _as_rng(rng)
    if not isinstance(text, str):
        raise DataError(f"text must be a string, got {type(text).__name__}")
    lang = _detect_lang(text) if lang is None else _check_lang(lang)
    copies = _augment_units(_text_units(text, lang), plan, rng, _lookup_for(synonyms, lang),
                            _NewUnit())
    return [text] + [_render(units, lang)[0] for _, units in copies]


def augment_record(record: dict, *, n_aug: int = 4, alpha: float = 0.1,
                   rng: random.Random | np.random.Generator | int,
                   synonyms: SynonymSource | None = None, lang: str | None = None,
                   task: str | None = None, alpha_sr: float | None = None,
                   alpha_ri: float | None = None, alpha_rs: float | None = None,
                   alpha_rd: float | None = None) -> list[dict]:
    """The record (``"augmented": 0``) and its EDA copies (``"augmented": 1..m``), every
    other field kept. ``task`` is ``"classify"``, ``"ner"`` or None (``ner`` when the
    record has ``tokens`` or ``tags``). A bad record raises :class:`DataError`."""
    plan = _plan(n_aug, alpha, alpha_sr, alpha_ri, alpha_rs, alpha_rd)
    rng = _as_rng(rng)
    task, lang = _check_task(task), None if lang is None else _check_lang(lang)
    lang, parsed = _parse(record, task, lang)
    return _augment_parsed(record, lang, parsed, plan, rng, _lookup_for(synonyms, lang))[0]


def _read_records(path: Path) -> Iterable[tuple[int, Any]]:
    for n, line in enumerate(iter_lines(path), 1):
        if not line.strip():
            continue
        yield n, parse_json_line(path, n, line)


def augment_file(in_path: str | os.PathLike, out_path: str | os.PathLike, *, n_aug: int = 4,
                 alpha: float = 0.1, lang: str | None = None,
                 synonyms: SynonymSource | None = None, seed: int = 0,
                 task: str | None = None, alpha_sr: float | None = None,
                 alpha_ri: float | None = None, alpha_rs: float | None = None,
                 alpha_rd: float | None = None, show_progress: bool = False) -> dict:
    """Augment a JSONL file of classification or NER records into ``out_path`` (written
    atomically): each record, then its copies. ``task=None`` decides from the first
    record (``ner`` when it has ``tokens`` or ``tags``); ``lang=None`` detects each
    record's language; ``synonyms=None`` uses the world's sets; one
    ``random.Random(seed)`` drives the whole file.

    Returns the stats ``{"records", "written", "augmented", "unchanged", "ops", "langs",
    "task"}``: input records, lines written, copies, copies whose text equals their
    original's (no synonym found, nothing to swap), copies per operation, records per
    language. A bad line raises :class:`DataError` naming the file and line; bad
    options raise :class:`ConfigError`."""
    plan = _plan(n_aug, alpha, alpha_sr, alpha_ri, alpha_rs, alpha_rd)
    task = _check_task(task)
    lang = None if lang is None else _check_lang(lang)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer, got {seed!r}")
    src, rng = Path(in_path), random.Random(seed)
    lookups: dict[str, _Lookup] = {}
    ops: Counter = Counter()
    langs: Counter = Counter()
    n_in = n_out = unchanged = 0
    lines: Iterable[tuple[int, Any]] = _read_records(src)
    if show_progress:
        from tqdm.auto import tqdm

        lines = tqdm(lines, desc="augment", unit=" records", dynamic_ncols=True)
    with atomic_open(out_path) as f:
        for n, rec in lines:
            try:
                if task is None and isinstance(rec, dict):
                    task = _task_of(rec)
                rec_lang, parsed = _parse(rec, task, lang)
            except DataError as e:
                raise DataError(f"{src}:line {n}: {e}") from None
            if rec_lang not in lookups:
                lookups[rec_lang] = _lookup_for(synonyms, rec_lang)
            out, used = _augment_parsed(rec, rec_lang, parsed, plan, rng, lookups[rec_lang])
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out
                            ).encode("utf-8"))
            n_in += 1
            n_out += len(out)
            unchanged += sum(r["text"] == rec["text"] for r in out[1:])
            ops.update(used)
            langs[rec_lang] += 1
        if n_in == 0:
            raise DataError(f"{src}: no records (expected one JSON object per line with a "
                            "'text' field)")
    return {"records": n_in, "written": n_out, "augmented": n_out - n_in,
            "unchanged": unchanged, "ops": {op: ops[op] for op in _OPS},
            "langs": dict(langs), "task": task}

