"""Text cleaning: HTML, Unicode normalisation, full-width forms, control characters, spaces.

:func:`clean_text` applies these steps, in this order, each one switchable:

1. ``strip_html`` -- drop ``<script>``/``<style>``/``<noscript>``/``<template>`` elements
   with their contents and ``<!-- comments -->``; replace block-level tags (``<p>``,
   ``<br>``, ``<div>``, ``<li>``, ``<h1>``...) by a newline, table cells by a space and
   every other tag by nothing; then unescape entities with :func:`html.unescape`
   (``&lt;`` -> ``<``, ``&#20320;`` -> ``你``). Entities are unescaped *after* the tags
   are removed, so an escaped ``&lt;b&gt;`` survives as the text ``<b>``. Only things that
   look like tags are removed: ``<`` must be followed by a letter, ``/``, ``!`` or ``?``,
   so ``a < b`` and ``1<2`` are left alone.
2. ``nfkc`` -- Unicode NFKC (:func:`unicodedata.normalize`). Besides composing accents it
   maps compatibility forms to their plain equivalents: full-width ASCII U+FF01-U+FF5E
   (``ＡＢＣ１２３！，`` -> ``ABC123!,``), the ideographic space U+3000 -> ``" "``, the
   full-width signs U+FFE0-U+FFE6 (``￥`` -> ``¥``), half-width katakana -> full-width,
   ligatures (``ﬁ`` -> ``fi``), circled and super-script digits (``①²`` -> ``12``) and
   ``…`` -> ``...``. Chinese characters, and Chinese punctuation that has no compatibility
   mapping (``。、“”《》——``), are unchanged.
3. ``fullwidth`` -- full-width ASCII U+FF01-U+FF5E -> U+0021-U+007E and U+3000 -> space.
   NFKC already does this; the explicit step makes it happen with ``nfkc=False`` too.
4. ``control`` -- ``"\\r\\n"`` and ``"\\r"`` become ``"\\n"``; the line-breaking control
   characters ``\\x0b \\x0c \\x1c \\x1d \\x1e \\x85`` become ``"\\n"`` and ``\\x1f``
   a space, so no words are glued together; then every other character of category
   ``Cc`` (controls such as ``\\x00``), ``Cf`` (format: zero-width space U+200B, BOM
   U+FEFF, soft hyphen U+00AD, bidi marks) or ``Cs`` (lone surrogates) is removed --
   except ``"\\n"``, ``"\\t"``, the zero-width joiner U+200D (it glues emoji sequences such
   as 👨‍👩‍👧 and must stay for them to survive), the zero-width non-joiner U+200C
   (spelling in Persian and Indic scripts) and the tag characters U+E0020-U+E007F (flag
   emoji such as 🏴󠁧󠁢󠁳󠁣󠁴󠁿).
5. the adversarial defences, off by default (:mod:`lmforge.data.normalize_adversarial`
   states their rules): ``invisible`` removes zero-width, invisible and bidi control
   characters (the joiners too, unless an emoji or a script needs them); ``homoglyphs``
   folds look-alike letters (full-width, mathematical, Cyrillic and Greek) to ASCII where
   the text holds no genuine Cyrillic or Greek word; ``mixed_scripts`` folds each word that
   mixes ASCII letters with Cyrillic/Greek look-alikes to Latin.
6. ``whitespace`` -- a run of white space that contains a line break becomes one
   ``"\\n"`` (or a space with ``newlines=False``); any other run (spaces, tabs,
   non-breaking spaces) becomes one space; the ends are stripped. Spaces between Chinese
   characters are kept (as one space): removing them is segmentation, not cleaning.

The regular expressions are linear-time (no nested quantifiers over the same characters),
so adversarial input cannot make cleaning slow.
"""

from __future__ import annotations

import functools
import html
import re
import sys
import unicodedata

from .normalize_adversarial import fold_homoglyphs, fold_mixed_scripts, remove_invisible

__all__ = ["clean_text", "strip_html", "KEEP_FORMAT_CHARS", "CLEAN_OPTIONS", "DEFENCES"]

#: The switches of :func:`clean_text` (the ``clean:`` mapping of a data config).
CLEAN_OPTIONS = ("nfkc", "fullwidth", "strip_html", "control", "whitespace", "newlines",
                 "invisible", "homoglyphs", "mixed_scripts")
#: :func:`clean_text` options that apply the adversarial defences and nothing else (text
#: without look-alikes or invisible characters passes unchanged).
DEFENCES = {"nfkc": False, "fullwidth": False, "strip_html": False, "control": False,
            "whitespace": False, "invisible": True, "homoglyphs": True, "mixed_scripts": True}

# ------------------------------------------------------------------------------ HTML

_RAW_ELEMENTS = re.compile(
    r"<(script|style|noscript|template)\b(?:[^>\"']|\"[^\"]*\"|'[^']*')*>.*?(?:</\1\s*>|\Z)",
    re.IGNORECASE | re.DOTALL)
_COMMENT = re.compile(r"<!--.*?(?:-->|\Z)", re.DOTALL)
_ATTRS = r"(?:[^>\"']|\"[^\"]*\"|'[^']*')*"
_BLOCK_TAG = re.compile(
    r"</?(?:p|br|div|li|ul|ol|h[1-6]|tr|table|thead|tbody|tfoot|section|article|header|"
    r"footer|blockquote|pre|hr|title|dd|dt|dl|nav|aside|main|figure|figcaption|form|"
    r"address|caption|details|summary|option)\b" + _ATTRS + ">",
    re.IGNORECASE)
_CELL_TAG = re.compile(r"</?(?:td|th)\b" + _ATTRS + ">", re.IGNORECASE)
_ANY_TAG = re.compile(r"</?[A-Za-z][A-Za-z0-9:_-]*(?:[\s/]" + _ATTRS + ")?>"
                      r"|<![^>]*>|<\?[^>]*>")


def strip_html(text: str) -> str:
    """Remove HTML tags (and script/style contents), then unescape entities."""
    if "<" in text:
        text = _RAW_ELEMENTS.sub("", text)
        text = _COMMENT.sub("", text)
        text = _BLOCK_TAG.sub("\n", text)
        text = _CELL_TAG.sub(" ", text)
        text = _ANY_TAG.sub("", text)
    if "&" in text:
        text = html.unescape(text)
    return text


# ------------------------------------------------------------------------------ full width

_FULLWIDTH = re.compile("[\uff01-\uff5e\u3000]")
_FULLWIDTH_TABLE = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}

# ------------------------------------------------------------------------------ controls

#: Format characters (category Cf) that :func:`clean_text` keeps.
KEEP_FORMAT_CHARS = frozenset({0x200C, 0x200D, *range(0xE0020, 0xE0080)})
_CTRL_NEWLINE = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85]")


@functools.lru_cache(maxsize=1)
def _control_re() -> re.Pattern:
    """A character class of every Cc/Cf/Cs code point to remove (built once, ~0.1 s)."""
    keep = KEEP_FORMAT_CHARS | {0x09, 0x0A}
    drop = [c for c in range(sys.maxunicode + 1)
            if c not in keep and unicodedata.category(chr(c)) in ("Cc", "Cf", "Cs")]
    ranges = []
    start = prev = drop[0]
    for c in drop[1:]:
        if c != prev + 1:
            ranges.append((start, prev))
            start = c
        prev = c
    ranges.append((start, prev))
    parts = "".join(re.escape(chr(a)) if a == b else f"{re.escape(chr(a))}-{re.escape(chr(b))}"
                    for a, b in ranges)
    return re.compile(f"[{parts}]+")


# ------------------------------------------------------------------------------ white space

def _collapse_whitespace(text: str, newlines: bool) -> str:
    # str.split() splits on exactly the characters that regex \s matches (str.isspace), and
    # str.splitlines() on exactly the line breaks: \n \r \x0b \x0c \x1c-\x1e \x85 \u2028
    # \u2029. Both run in C, several times faster than the equivalent re.sub calls.
    if not newlines:
        return " ".join(text.split())
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def clean_text(text: str, *, nfkc: bool = True, fullwidth: bool = True,
               strip_html: bool = True, control: bool = True, whitespace: bool = True,
               newlines: bool = True, invisible: bool = False, homoglyphs: bool = False,
               mixed_scripts: bool = False) -> str:
    """Clean one document (see the module docstring for the exact rules).

    >>> clean_text("<p>ＡＢＣ１２３&lt;&gt;</p>\\x00  你好，　世界")
    'ABC123<>\\n你好, 世界'
    """
    if strip_html:
        text = _strip_html(text)
    if nfkc and not text.isascii():
        text = unicodedata.normalize("NFKC", text)
    if fullwidth and _FULLWIDTH.search(text):
        text = text.translate(_FULLWIDTH_TABLE)
    if control:
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")
        # isprintable() is False for every Cc/Cf/Cs character (and for white space other
        # than " "), so printable text -- nearly all of it -- skips the regular expressions.
        if not text.isprintable():
            text = _CTRL_NEWLINE.sub("\n", text).replace("\x1f", " ")
            text = _control_re().sub("", text)
    if invisible:
        text = remove_invisible(text)
    if homoglyphs:
        text = fold_homoglyphs(text)
    if mixed_scripts:
        text = fold_mixed_scripts(text)
    if whitespace:
        text = _collapse_whitespace(text, newlines)
    return text


_strip_html = strip_html
