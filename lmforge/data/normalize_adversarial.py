"""Normalisation defences against adversarial text: look-alike letters, invisible
characters and mixed-script words (the ``homoglyphs``, ``invisible`` and ``mixed_scripts``
steps of :func:`lmforge.data.clean.clean_text`).

**The look-alike table** :data:`LOOKALIKES` maps a character to the ASCII letter it
imitates. Its Cyrillic and Greek rows are the entries of Unicode's ``confusables.txt``
(UTS #39, as shipped in the ``confusable-homoglyphs`` 3.3.1 package) whose prototype is one
ASCII letter, with one change: Unicode's skeletons map capital I to ``l`` (they are
confusable with each other), and the table folds the capital look-alikes of I (Greek
Ι, Cyrillic І and Ӏ) to ``I`` so that case survives. Entries whose prototype is a digit
(Cyrillic З, б) are left out: a letter is never folded into a digit. Besides, the table
holds the full-width Latin letters (U+FF21-U+FF3A, U+FF41-U+FF5A, ``ａ`` -> ``a``; the
full-width digits and punctuation that Chinese uses are not touched), the Mathematical Alphanumeric Symbols
U+1D400-U+1D7FF whose NFKC form is an ASCII letter or digit (``𝐚`` -> ``a``), and a few
IPA/Latin-extended look-alikes (``ı ȷ ɑ ɡ ɩ``).

Three steps, each a function of the text alone:

- :func:`fold_homoglyphs` -- (a) the *symbols* of the table (full-width, mathematical,
  Latin-extended look-alikes) are folded everywhere; (b) the Cyrillic and Greek
  look-alikes are folded when the text holds no *genuine* Cyrillic or Greek word, i.e. no
  word with a Cyrillic/Greek letter that has no Latin look-alike (``д``, ``ж``, ``λ``,
  ``π``...). Russian or Greek prose always has such letters, so it is left alone, while
  an English or Chinese text whose Cyrillic/Greek letters are all look-alikes
  (``gооd``, ``ѕо``) is read as disguised Latin. Known false positive: a text whose only
  Greek/Cyrillic words are made of look-alikes (``ΚΑΙ``, ``сор``, ``α-test``) is folded.
- :func:`fold_mixed_scripts` -- per word (a run of letters and digits), whatever the rest
  of the text: a word holding an ASCII letter and Cyrillic/Greek letters that all have a
  look-alike is folded to Latin (``pаsswоrd`` -> ``password``, also beside genuine Russian
  words). A word without an ASCII letter, or with a Cyrillic/Greek letter that has no
  look-alike, is left as it is; Chinese characters never change.
- :func:`remove_invisible` -- removes the zero-width and invisible characters (U+200B
  zero-width space, U+2060 word joiner, U+FEFF BOM, U+00AD soft hyphen, U+180E, U+034F
  combining grapheme joiner, the invisible operators U+2061-U+2064, the Hangul fillers
  U+115F, U+1160, U+3164, U+FFA0) and the bidi controls (U+200E, U+200F, U+061C,
  U+202A-U+202E, U+2066-U+2069). The zero-width joiner U+200D and non-joiner U+200C are
  removed unless both neighbours are characters of scripts that use them (not white
  space, not Latin/Greek/Cyrillic/CJK letters, not ASCII), so emoji sequences (👨‍👩‍👧)
  and Persian or Indic spellings keep them. Tag characters U+E0000-U+E007F (which can
  smuggle invisible ASCII) are removed unless they form a flag sequence (🏴 + tags +
  cancel tag, e.g. 🏴󠁧󠁢󠁳󠁣󠁴󠁿).

Each step is linear in the text and does nothing to ASCII text, which takes a fast path.
"""

from __future__ import annotations

import functools
import re
import unicodedata

__all__ = ["LOOKALIKES", "fold_homoglyphs", "fold_mixed_scripts", "remove_invisible",
           "is_cyrillic_or_greek", "defend"]

# Cyrillic and Greek look-alikes (Unicode confusables.txt, prototype one ASCII letter).
_SCRIPT_PAIRS = (
    # Greek
    "ΑA ΒB ΕE ΖZ ΗH ΙI ΚK ΜM ΝN ΟO ΡP ΤT ΥY ΧX αa γy ιi νv οo ρp σo υu ϒY ϜF ϱp ϲc ϳj "
    "ϹC ϺM ͿJ ᴦr ιi "
    # Cyrillic
    "ЅS ІI ЈJ АA ВB ЕE КK МM НH ОO РP СC ТT УY ХX Ьb аa гr еe оo рp сc уy хx ѕs іi "
    "јj ѡw ѴV ѵv ҮY үy һh ҽe ӀI ӏl ԁd ԌG ԛq ԜW ԝw ꙇi")
# Symbols that imitate Latin letters and are letters of no script's running text.
_SYMBOL_PAIRS = "ıi ȷj ɑa ɡg ɩi"


@functools.lru_cache(maxsize=1)
def _tables() -> tuple[dict[int, str], dict[int, str]]:
    """``(script, symbol)`` look-alike tables: code point -> ASCII letter or digit."""
    script = {ord(p[0]): p[1] for p in _SCRIPT_PAIRS.split()}
    symbol = {ord(p[0]): p[1] for p in _SYMBOL_PAIRS.split()}
    for c in (*range(0xFF21, 0xFF3B), *range(0xFF41, 0xFF5B)):
        symbol[c] = chr(c - 0xFEE0)
    for c in range(0x1D400, 0x1D800):
        folded = unicodedata.normalize("NFKC", chr(c))
        if len(folded) == 1 and folded.isascii() and folded.isalnum():
            symbol[c] = folded
    return script, symbol


def _lookalikes() -> dict[str, str]:
    script, symbol = _tables()
    return {chr(c): a for c, a in (script | symbol).items()}


#: Every look-alike character -> the ASCII letter or digit it imitates.
LOOKALIKES: dict[str, str] = _lookalikes()

_WORD = re.compile(r"[^\W_]+")
_ASCII_LETTER = re.compile(r"[A-Za-z]")


def is_cyrillic_or_greek(ch: str) -> bool:
    """Is ``ch`` a Cyrillic or Greek letter (by its Unicode name)?"""
    return ch.isalpha() and unicodedata.name(ch, "").startswith(("CYRILLIC", "GREEK"))


def _genuine(word: str) -> bool:
    """Does ``word`` hold a Cyrillic/Greek letter with no Latin look-alike?"""
    script = _tables()[0]
    return any(ord(ch) not in script and is_cyrillic_or_greek(ch) for ch in word)


def fold_homoglyphs(text: str, context: str | None = None) -> str:
    """Symbol look-alikes -> ASCII everywhere; Cyrillic/Greek look-alikes -> ASCII when no
    word of ``context`` (default: ``text``; e.g. the sentence of a token) is genuinely
    Cyrillic or Greek (see the module docstring)."""
    if text.isascii():
        return text
    script, symbol = _tables()
    text = text.translate(symbol)
    if any(_genuine(m.group()) for m in _WORD.finditer(text if context is None else context)):
        return text
    return text.translate(script)


def _fold_word(m: re.Match) -> str:
    word = m.group()
    if not _ASCII_LETTER.search(word) or _genuine(word):
        return word
    return word.translate(_tables()[0])


def fold_mixed_scripts(text: str) -> str:
    """Fold each word that mixes ASCII letters with Cyrillic/Greek look-alikes to Latin."""
    if text.isascii():
        return text
    return _WORD.sub(_fold_word, text)


_INVISIBLE = re.compile(
    "[\u00ad\u034f\u115f\u1160\u180e\u200b\u2060-\u2064\ufeff\u3164\uffa0"
    "\u200e\u200f\u061c\u202a-\u202e\u2066-\u2069]+")
_JOINERS = re.compile("[\u200c\u200d]+")
# Scripts that never need a joiner: ASCII, Latin-1/Extended, Greek, Cyrillic, CJK.
_NO_JOINER = re.compile("[\\s\x00-\x7f\u00c0-\u024f\u0370-\u052f\u3040-\u30ff"
                        "\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uff00-\uffef]")
_TAGS = re.compile("\U0001f3f4[\U000e0020-\U000e007e]+\U000e007f|([\U000e0000-\U000e007f]+)")


def _joiner(m: re.Match) -> str:
    s = m.string
    before = s[m.start() - 1] if m.start() > 0 else " "
    after = s[m.end()] if m.end() < len(s) else " "
    return "" if _NO_JOINER.match(before) or _NO_JOINER.match(after) else m.group()


def remove_invisible(text: str) -> str:
    """Remove zero-width, invisible and bidi control characters (joiners and tag
    characters only where no emoji or script needs them; see the module docstring)."""
    if text.isascii():
        return text
    text = _INVISIBLE.sub("", text)
    text = _JOINERS.sub(_joiner, text)
    return _TAGS.sub(lambda m: "" if m.group(1) else m.group(), text)


def defend(text: str, context: str | None = None) -> str:
    """All three defences in :func:`~lmforge.data.clean.clean_text`'s order:
    :func:`remove_invisible`, :func:`fold_homoglyphs` (deciding on ``context``, default
    ``text``) and :func:`fold_mixed_scripts`."""
    return fold_mixed_scripts(fold_homoglyphs(remove_invisible(text), context))
