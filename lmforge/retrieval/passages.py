"""Splitting a document into passages: paragraphs packed into windows of at most N words.

A *word* is a run of non-space characters, except that every CJK ideograph is a word of
its own (Chinese has no spaces; one ideograph is one BERT token, about as an English word
is 1.3). Paragraphs are blocks separated by blank lines. They are packed greedily, in
order, into passages of at most ``max_words`` words; a paragraph longer than that is cut
into windows of ``max_words`` words that start every ``max_words - overlap`` words, so a
sentence of at most ``overlap`` words cut at one window's end is whole in the next. The
last window ends at the paragraph's end.

Every passage is a slice of the document from its first word to its last, so the text
shown with a hit is the document's own.
"""

from __future__ import annotations

import re

from ..errors import ConfigError

__all__ = ["CJK", "HAS_CJK", "check_passage_options", "split_passages"]

CJK = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"  # ideographs, a regex class
HAS_CJK = re.compile(f"[{CJK}]")  # .search(text): does text hold an ideograph?
_WORD = re.compile(rf"[{CJK}]|[^\s{CJK}]+")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n\s*")


def check_passage_options(max_words: int, overlap: int) -> None:
    """Raise :class:`ConfigError` unless ``max_words >= 1`` and ``0 <= overlap < max_words``."""
    if isinstance(max_words, bool) or not isinstance(max_words, int) or max_words < 1:
        raise ConfigError(f"max_words must be an integer >= 1 (got {max_words!r})")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap < max_words:
        raise ConfigError(f"overlap must be an integer in [0, max_words) = [0, {max_words}) "
                          f"(got {overlap!r})")


def split_passages(text: str, max_words: int = 128, overlap: int = 32) -> list[str]:
    """The passages of ``text`` (see the module docstring), in document order."""
    check_passage_options(max_words, overlap)
    spans: list[tuple[int, int]] = []  # (start, end) character offsets of the passages
    cur: list[int] = []  # [start, end, words] of the passage being packed
    pos = 0
    for para_end in [m.start() for m in _BLANK_LINE.finditer(text)] + [len(text)]:
        words = [m.span() for m in _WORD.finditer(text, pos, para_end)]
        pos = para_end
        if not words:
            continue
        if cur and cur[2] + len(words) <= max_words:  # the paragraph joins the passage
            cur[1], cur[2] = words[-1][1], cur[2] + len(words)
            continue
        if cur:
            spans.append((cur[0], cur[1]))
        if len(words) <= max_words:
            cur = [words[0][0], words[-1][1], len(words)]
            continue
        cur = []
        start = 0
        while True:  # windows of max_words words, one every max_words - overlap
            end = min(start + max_words, len(words))
            spans.append((words[start][0], words[end - 1][1]))
            if end == len(words):
                break
            start += max_words - overlap
    if cur:
        spans.append((cur[0], cur[1]))
    return [text[a:b] for a, b in spans]
