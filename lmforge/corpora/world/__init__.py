"""A bilingual (Chinese/English) world, with German for translation: a stochastic
grammar with known entropy.

The world is a fixed cast of entities (20 people with a gender, a job, a home city and a
favourite food; 24 cities in 12 countries; animals, objects, foods, places, activities)
and 27 constructions (statements, facts, questions, opinions with negation, numbers,
times and dates). Each derivation renders to one English and one Chinese sentence, and
to one German sentence where its construction has a German template (all 27 do).

**Probability.** A derivation is a sequence of uniform choices (construction, then each
slot's value from its pool), so ::

    P(sentence) = prod over the choices along its unique derivation of 1/(number of options)
    surprisal(sentence) = -log2 P(sentence)          (bits)
    H = E[surprisal]                                  (the entropy, exact: World.entropy_bits)

The derivation -> string map is injective in each language, so a string's probability is
its derivation's and :func:`surprisal_bits` recovers it by parsing.

**Language-model corpus.** Each item is one sentence in one language, the language chosen
with probability 1/2, so an item's exact surprisal is ``1 + derivation bits``
(:func:`lm_surprisal_bits`); English and Chinese strings never coincide. For any model
``Q``, the expected NLL on held-out items ``E[-log2 Q(x)]`` is a cross-entropy, at least
the entropy ``H_lm = 1 + H`` (Gibbs' inequality), with equality only when ``Q = P``.
Comparing a model's bits/sentence with the items' true bits therefore measures how far it
is from optimal.

**German and parallel data.** ``LANGS = ("en", "zh")`` are the LM corpus's languages
and stay so: the LM corpus, its entropy and every en/zh stream are as they were.
``MT_LANGS = ("en", "zh", "de")`` are the languages a construction may render in.
``World.sentences(split, n, seed, langs=("en", "de"))`` draws derivations uniformly over
the ``K`` constructions that have all of ``langs`` (``P(d) = 1/K * prod_i 1/|pool_i|``,
``Sentence.bits`` with that ``K``); since every construction has German, ``K = 27`` and
the draw is the default one, derivation for derivation, so EN-ZH and EN-DE pairs come
from the same sentences. ``parse``/``accepts``/``parse_all`` take ``"de"``; the German
rendering is injective like the others. German follows its own grammar (gender, case,
adjective endings, verb-second and verb-final order): see :mod:`.german` and
:mod:`.constructions`.

Usage::

    from lmforge.corpora import lm_corpus, accepts, lm_surprisal_bits
    items = lm_corpus("train", 1000, seed=0)      # [WorldText(text, lang, bits, sentence)]
    accepts(items[0].text, items[0].lang)         # True
    lm_surprisal_bits(items[0].text) == items[0].bits

    from lmforge.corpora.world import sentences
    pairs = [(s.render("en"), s.render("de")) for s in sentences("train", 1000,
                                                                  langs=("en", "de"))]
"""

from __future__ import annotations

import functools
import json
import math
import random
import statistics
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError
from .constructions import CONSTRUCTIONS, DE_TEMPLATES, TEMPLATE_WORDS
from .german import de_number
from .grammar import Construction, Grammar, Mention, Segment, Sentence
from .lexicon import LANGS, MT_LANGS, Domain, build_domains, zh_number

SPLITS = ("train", "val", "test")
LANG_BITS = 1.0  # -log2(1/2): the language of an LM item is a fair coin


@dataclass(frozen=True)
class WorldText:
    """One item of the LM corpus: ``text`` in ``lang``, exact surprisal ``bits``.

    ``bits = 1 + sentence.bits``: one bit for the language, plus the derivation's bits.
    """

    text: str
    lang: str
    bits: float
    sentence: Sentence

    @property
    def derivation_bits(self) -> float:
        return self.sentence.bits

    def to_json(self) -> dict:
        return {"text": self.text, "lang": self.lang, "bits": self.bits}


def detect_lang(text: str) -> str:
    """``zh`` if ``text`` contains a CJK ideograph, else ``en``."""
    for ch in text:
        if "\u4e00" <= ch <= "\u9fff":
            return "zh"
    return "en"


def _check_lang(lang: str) -> None:
    if lang not in MT_LANGS:
        raise ConfigError(f"lang must be one of {', '.join(MT_LANGS)}; got {lang!r}")


def _check_langs(langs: tuple[str, ...]) -> tuple[str, ...]:
    langs = (langs,) if isinstance(langs, str) else tuple(langs)
    if not langs:
        raise ConfigError(f"langs must name at least one of {', '.join(MT_LANGS)}")
    for lang in langs:
        _check_lang(lang)
    return langs


def _rng(seed: int, split: str) -> random.Random:
    if split not in SPLITS:
        raise ConfigError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    # A string seed is hashed with SHA-512: deterministic across runs and platforms,
    # and the three splits get unrelated streams.
    return random.Random(f"lmforge-world:{int(seed)}:{split}")


class World:
    """The world's grammar: sample, render, parse and score sentences.

    ``sample(rng)`` draws a :class:`Sentence` (a derivation; ``.render(lang)`` gives
    each of its languages, ``.bits`` its exact surprisal). ``parse(text, lang)`` inverts
    rendering. Module-level functions use one shared instance (:func:`default_world`).

    ``langs`` (in :meth:`sentences`, :meth:`entropy_bits`) restricts the draw to the
    constructions with a template in every one of those languages (:meth:`grammar_for`);
    parsing in ``lang`` uses the grammar of ``(lang,)``. For ``en`` and ``zh`` (and any
    set whose constructions are all of them) that is the whole grammar.
    """

    def __init__(self) -> None:
        self.domains: dict[str, Domain] = build_domains()
        unknown = set(DE_TEMPLATES) - {c[0] for c in CONSTRUCTIONS}
        if unknown:
            raise ValueError(f"German templates for unknown constructions: {sorted(unknown)}")
        self.grammar = Grammar(self.domains, [
            Construction(name, cat, slots, {"en": en, "zh": zh} | (
                {"de": DE_TEMPLATES[name]} if name in DE_TEMPLATES else {}), self.domains)
            for name, cat, slots, en, zh in CONSTRUCTIONS])
        self.constructions = self.grammar.constructions
        self._grammars: dict[tuple[str, ...], Grammar] = {}

    def grammar_for(self, langs: tuple[str, ...] = LANGS) -> Grammar:
        """The grammar of the constructions that render in all of ``langs``, chosen
        uniformly: ``K`` is their number and a derivation's bits are
        ``log2(K * prod |pool_i|)`` (the whole grammar when every construction has them).
        """
        key = tuple(sorted(set(_check_langs(langs))))
        if key not in self._grammars:
            try:
                self._grammars[key] = self.grammar.restrict(key)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        return self._grammars[key]

    # ------------------------------------------------------------------ generation
    def sample(self, rng: random.Random) -> Sentence:
        """One derivation drawn from the grammar's distribution."""
        return self.grammar.sample(rng)

    def sentences(self, split: str, n: int, seed: int = 0,
                  langs: tuple[str, ...] = LANGS) -> list[Sentence]:
        """``n`` derivations of ``split`` (deterministic in ``(seed, split)``), each
        renderable in every one of ``langs`` (e.g. ``("en", "de")`` for EN-DE pairs).

        The construction is uniform over the ``K`` constructions that have all of
        ``langs`` (:meth:`grammar_for`), so ``P(d) = 1/K * prod_i 1/|pool_i|``; when
        that is every construction, the sample is the default one, draw for draw.
        """
        rng = _rng(seed, split)
        sample = self.grammar_for(langs).sample
        return [sample(rng) for _ in range(n)]

    def iter_lm(self, split: str, seed: int = 0) -> Iterator[WorldText]:
        """Endless LM items of ``split``: a fair-coin language, then a derivation."""
        rng = _rng(seed, split)
        sample = self.grammar.sample
        rand = rng.random
        while True:
            lang = "zh" if rand() < 0.5 else "en"
            s = sample(rng)
            yield WorldText(s.construction.render(s.values, lang), lang, LANG_BITS + s.bits, s)

    def lm_corpus(self, split: str, n: int, seed: int = 0) -> list[WorldText]:
        """The first ``n`` LM items of ``split``; a prefix of a longer corpus."""
        it = self.iter_lm(split, seed)
        return [next(it) for _ in range(n)]

    # ------------------------------------------------------------------ parsing
    def parse(self, text: str, lang: str) -> Sentence | None:
        """The unique derivation of ``text`` in ``lang``, or None if ungrammatical."""
        return self.grammar_for((lang,)).parse(text, lang)

    def parse_all(self, text: str, lang: str) -> list[Sentence]:
        """All derivations of ``text`` (exhaustive search; injectivity means <= 1)."""
        return self.grammar_for((lang,)).parse_all(text, lang)

    def accepts(self, sentence: str, lang: str) -> bool:
        """Whether the grammar generates exactly ``sentence`` in ``lang``."""
        return self.parse(sentence, lang) is not None

    def surprisal_bits(self, sentence: str, lang: str) -> float | None:
        """Exact ``-log2 P(sentence | lang)``, or None if not grammatical."""
        s = self.parse(sentence, lang)
        return None if s is None else s.bits

    def accepts_any(self, text: str) -> bool:
        """Whether ``text`` is a grammatical sentence in its detected LM language (en/zh)."""
        return self.parse(text, detect_lang(text)) is not None

    def lm_surprisal_bits(self, text: str) -> float | None:
        """Exact surprisal of ``text`` as an LM corpus item: 1 language bit + derivation."""
        s = self.parse(text, detect_lang(text))
        return None if s is None else LANG_BITS + s.bits

    # ------------------------------------------------------------------ facts
    def entropy_bits(self, langs: tuple[str, ...] = LANGS) -> float:
        """Exact entropy ``H = E[-log2 P]`` of a sentence of :meth:`sentences` (``langs``)."""
        return self.grammar_for(langs).entropy_bits()

    def lm_entropy_bits(self) -> float:
        """Exact entropy of an LM corpus item: ``1 + H``."""
        return LANG_BITS + self.entropy_bits()

    def vocabulary(self, lang: str) -> set[str]:
        """The content words (names, nouns, verbs, adjectives...) of ``lang``.

        The lexicon's word lists (each entry once, e.g. "play chess", "下棋", "Schach
        spielen"; German nouns, adjectives and jobs in their base form) plus the content
        words written in the templates ("bought", "见到", "kaufte"...).
        """
        _check_lang(lang)
        words = {w for d in self.domains.values() if d.lexical for w in d.words(lang)}
        return words | set(TEMPLATE_WORDS[lang])

    def stats(self, n: int = 20000, seed: int = 0) -> dict:
        """Summary statistics, measured on ``n`` sentences of the test split."""
        sents = self.sentences("test", n, seed)
        bits = [s.bits for s in sents]
        en = [s.render("en") for s in sents]
        zh = [s.render("zh") for s in sents]
        per: dict[str, list[float]] = {}
        for s in sents:
            per.setdefault(s.name, []).append(s.bits)
        h = self.entropy_bits()
        return {
            "n": n,
            "constructions": len(self.constructions),
            "entropy_bits": h,
            "lm_entropy_bits": h + LANG_BITS,
            "mean_bits": statistics.fmean(bits),
            "median_bits": statistics.median(bits),
            "min_bits": min(bits),
            "max_bits": max(bits),
            "mean_lm_bits": statistics.fmean(bits) + LANG_BITS,
            "content_words": {lang: len(self.vocabulary(lang)) for lang in LANGS},
            "mean_words_en": statistics.fmean(len(t.split()) for t in en),
            "mean_chars_zh": statistics.fmean(len(t) for t in zh),
            "max_words_en": max(len(t.split()) for t in en),
            "max_chars_zh": max(len(t) for t in zh),
            "construction_entropy_bits": {
                c.name: math.log2(len(self.constructions))
                + self.grammar.construction_entropy(c) for c in self.constructions},
            "construction_mean_bits": {k: statistics.fmean(v) for k, v in per.items()},
        }

    def examples(self, seed: int = 0) -> dict[str, Sentence]:
        """One sentence per construction (for documentation)."""
        rng = random.Random(f"lmforge-world-examples:{seed}")
        return {c.name: Sentence(c, vals, self.grammar.bits_of(c, vals))
                for c in self.constructions for vals in [c.sample_values(rng)]}


@functools.lru_cache(maxsize=1)
def default_world() -> World:
    """The shared :class:`World` (built once, on first use)."""
    return World()


# ----------------------------------------------------------------------------- module API

def lm_corpus(split: str, n: int, seed: int = 0) -> list[WorldText]:
    """``n`` LM items of ``split`` ("train", "val" or "test"), deterministic in the seed.

    Each item is one sentence in one language (a fair coin); ``item.bits`` is its exact
    surprisal ``1 + derivation bits``. The splits are unrelated random streams.
    """
    return default_world().lm_corpus(split, n, seed)


def iter_lm_corpus(split: str, seed: int = 0) -> Iterator[WorldText]:
    """The endless stream whose first ``n`` items are ``lm_corpus(split, n, seed)``."""
    return default_world().iter_lm(split, seed)


def sentences(split: str, n: int, seed: int = 0,
              langs: tuple[str, ...] = LANGS) -> list[Sentence]:
    """``n`` derivations of ``split``, each renderable in all of ``langs`` (default en, zh;
    see :meth:`World.sentences`)."""
    return default_world().sentences(split, n, seed, langs)


def accepts(sentence: str, lang: str) -> bool:
    """Whether the world's grammar generates exactly ``sentence`` in ``lang`` (en, zh, de)."""
    return default_world().accepts(sentence, lang)


def accepts_any(text: str) -> bool:
    """Whether ``text`` is grammatical in its detected language (Chinese if it has CJK)."""
    return default_world().accepts_any(text)


def surprisal_bits(sentence: str, lang: str) -> float | None:
    """Exact ``-log2 P(sentence | lang)`` (derivation bits), or None if not grammatical."""
    return default_world().surprisal_bits(sentence, lang)


def lm_surprisal_bits(text: str) -> float | None:
    """Exact surprisal of ``text`` as an LM corpus item (``1 +`` derivation bits), or None."""
    return default_world().lm_surprisal_bits(text)


def parse(text: str, lang: str) -> Sentence | None:
    """The derivation (structured meaning) of ``text`` in ``lang``, or None."""
    return default_world().parse(text, lang)


def entropy_bits() -> float:
    """Exact entropy ``H`` of a sentence in one language, in bits."""
    return default_world().entropy_bits()


def lm_entropy_bits() -> float:
    """Exact entropy of an LM corpus item, ``1 + H`` bits."""
    return default_world().lm_entropy_bits()


def stats(n: int = 20000, seed: int = 0) -> dict:
    """Summary statistics of the world (see :meth:`World.stats`)."""
    return default_world().stats(n, seed)


def write_lm_corpus(out_dir: str | Path, n_train: int, n_val: int, n_test: int,
                    seed: int = 0) -> dict[str, Path]:
    """Write ``train.txt``, ``val.txt``, ``test.txt`` (one sentence per line, UTF-8) and
    ``val.jsonl``/``test.jsonl`` (``{"text", "lang", "bits"}`` per line), atomically.

    Returns the written paths by name.
    """
    from ...io import atomic_write_text

    for name, n in (("n_train", n_train), ("n_val", n_val), ("n_test", n_test)):
        if n < 0:
            raise ConfigError(f"{name} must be >= 0; got {n}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    w = default_world()
    for split, n in (("train", n_train), ("val", n_val), ("test", n_test)):
        items = w.lm_corpus(split, n, seed)
        p = out / f"{split}.txt"
        atomic_write_text(p, "".join(it.text + "\n" for it in items))
        paths[f"{split}.txt"] = p
        if split != "train":
            pj = out / f"{split}.jsonl"
            atomic_write_text(pj, "".join(json.dumps(it.to_json(), ensure_ascii=False) + "\n"
                                          for it in items))
            paths[f"{split}.jsonl"] = pj
    return paths


__all__ = [
    "LANGS", "MT_LANGS", "SPLITS", "Construction", "Domain", "Grammar", "Mention", "Segment",
    "Sentence", "World", "WorldText", "accepts", "accepts_any", "de_number", "default_world",
    "detect_lang", "entropy_bits", "iter_lm_corpus", "lm_corpus", "lm_entropy_bits",
    "lm_surprisal_bits", "parse", "sentences", "stats", "surprisal_bits", "write_lm_corpus",
    "zh_number",
]
