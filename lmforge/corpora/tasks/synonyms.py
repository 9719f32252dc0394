"""The world's synonym sets, for EDA-style augmentation (synonym replacement).

A set holds words the task generators use interchangeably for one meaning: adjectives
of one concept (clean/tidy, 干净/整洁), aspect nouns (staff/employees, 价格/价钱),
intensifiers (very/really/extremely, 非常/特别/十分), downtoners and weak negations
(不太/不怎么), neutral verdicts. Replacing a word by another of its set never changes a
sentiment label, because the label depends on the polarity of the concept and on the
modifier's strength, which the members of a set share. English words are lower-case;
Chinese words are single jieba words (so a jieba-segmented text can be matched word by
word). Every word is in one set at most.
"""

from __future__ import annotations

from ...errors import ConfigError
from ..world.lexicon import LANGS
from .sentiment import (
    ADJECTIVES,
    ASPECTS,
    DOWN_NEG,
    DOWN_POS,
    INTENS,
    NEG_WEAK_ZH,
    NEUTRAL,
    OVERALL_NOUN,
)

# Neutral verdicts that jieba keeps whole (还行 is cut into 还 / 行).
_NEUTRAL_WORDS = {"en": NEUTRAL["en"], "zh": ("一般", "马马虎虎")}
# The film synonyms of the overall verdicts, as single words (这部电影 / 这部影片).
_NOUNS = {"en": OVERALL_NOUN["film"][0], "zh": ("电影", "影片")}


def synonym_sets(lang: str) -> list[tuple[str, ...]]:
    """Sets of interchangeable words in ``lang`` ("en" or "zh"), each of 2+ words."""
    if lang not in LANGS:
        raise ConfigError(f"lang must be one of {', '.join(LANGS)}; got {lang!r}")
    k = 0 if lang == "en" else 1
    sets = [words[k] for words in ADJECTIVES.values()]
    sets += [a.en if lang == "en" else a.zh for aspects in ASPECTS.values() for a in aspects]
    sets += [INTENS[lang], DOWN_NEG[lang], DOWN_POS[lang], _NEUTRAL_WORDS[lang], _NOUNS[lang]]
    if lang == "zh":
        sets.append(NEG_WEAK_ZH)
    return list(dict.fromkeys(s for s in sets if len(s) > 1))
