"""Planted relations of the world corpus as analogy questions and word classes.

The world generator (:mod:`lmforge.corpora.world`) places every city in a country, gives
nouns a plural and people a gender with pronouns. These facts are the ground truth of
analogy questions "a : b :: c : d" in the Google analogy format::

    : city-country
    Paris France Tokyo Japan

Sections: ``city-country`` (both languages), ``noun-plural`` (English: animal, object
and food nouns), ``name-pronoun`` (English: "Alice she David he", cross-gender pairs
only, so that ``d`` differs from ``b``). Only words that are a single token under the
given tokenizer are used (so "New York" is skipped, and Chinese questions need a word
segmenter that keeps the words whole, e.g. jieba with :func:`world_words` added).
"""

from __future__ import annotations

from collections.abc import Callable

from ..corpora import default_world


def _single(tok: Callable[[str], list[str]] | None, lang: str):
    if tok is None:
        return lambda w: " " not in w and w != ""
    return lambda w: tok(w) == [w]


def planted_analogies(lang: str = "en", tokenizer: Callable[[str], list[str]] | None = None,
                      max_per_section: int | None = None) -> dict[str, list[tuple[str, ...]]]:
    """``{section: [(a, b, c, d), ...]}`` from the world's lexicon."""
    d = default_world().domains
    ok = _single(tokenizer, lang)
    pairs: dict[str, list[tuple[str, str]]] = {}
    city = d["city"]
    pairs["city-country"] = list(zip(city.form(lang, "w"), city.form(lang, "country"),
                                     strict=True))
    if lang == "en":
        pl = []
        for name in ("animal", "object", "food"):
            pl += list(zip(d[name].form("en", "w"), d[name].form("en", "pl"), strict=True))
        pairs["noun-plural"] = [(a, b) for a, b in pl if a != b]
        p = d["person"]
        pairs["name-pronoun"] = list(zip(p.form("en", "w"), p.form("en", "subj"),
                                         strict=True))
    out: dict[str, list[tuple[str, ...]]] = {}
    for sec, ps in pairs.items():
        ps = [(a, b) for a, b in ps if ok(a) and ok(b)]
        qs = [(a, b, c, e) for a, b in ps for c, e in ps if a != c and b != e]
        if max_per_section is not None:
            qs = qs[:: max(1, len(qs) // max_per_section)][:max_per_section]
        if qs:
            out[sec] = qs
    return out


def word_classes(lang: str = "en", tokenizer: Callable[[str], list[str]] | None = None
                 ) -> dict[str, list[str]]:
    """Planted word classes (colours, animals, cities, ...) with single-token words."""
    d = default_world().domains
    ok = _single(tokenizer, lang)
    names = ("color", "animal", "food", "job", "country", "city", "day", "month",
             "season", "place")
    return {n: [w for w in dict.fromkeys(d[n].form(lang, "w")) if ok(w)] for n in names}


def world_words(lang: str = "zh") -> list[str]:
    """All lexical words of the world in ``lang`` (a user dictionary for jieba)."""
    d = default_world().domains
    words: set[str] = set()
    for dom in d.values():
        for (lg, _form), ws in dom.forms.items():
            if lg == lang:
                words.update(w for w in ws if w and " " not in w)
    return sorted(words)


def format_analogies(sections: dict[str, list[tuple[str, ...]]]) -> str:
    """Google analogy file text."""
    lines = []
    for sec, qs in sections.items():
        lines.append(f": {sec}")
        lines += [" ".join(q) for q in qs]
    return "\n".join(lines) + "\n"


__all__ = ["format_analogies", "planted_analogies", "word_classes", "world_words"]
