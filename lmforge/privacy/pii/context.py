"""Context words: a label near a candidate raises (or, for a negative label, lowers) its
score, as Presidio's ``LemmaContextAwareEnhancer`` does.

The window is the ``before`` characters to the left of the span (and ``after`` to its
right); matching is case-insensitive. Chinese labels are matched as substrings, English
ones as whole words.
"""

from __future__ import annotations

import functools
import re

WINDOW_BEFORE = 24
WINDOW_AFTER = 8


@functools.cache
def _pattern(words: tuple[str, ...]) -> re.Pattern:
    parts = []
    for w in words:
        esc = re.escape(w)
        parts.append(esc if not w.isascii() else rf"(?<![A-Za-z]){esc}(?![A-Za-z])")
    return re.compile("|".join(parts), re.IGNORECASE)


def has_context(text: str, start: int, end: int, words: tuple[str, ...],
                before: int = WINDOW_BEFORE, after: int = WINDOW_AFTER) -> bool:
    """True when one of ``words`` occurs in the window around ``text[start:end]``."""
    if not words:
        return False
    window = text[max(0, start - before):start] + " \n " + text[end:end + after]
    return _pattern(words).search(window) is not None


def nearest_label_before(text: str, start: int, words: tuple[str, ...],
                         before: int = WINDOW_BEFORE) -> int | None:
    """Distance from the end of the last of ``words`` before ``start`` (None: none)."""
    window = text[max(0, start - before):start]
    last = None
    for m in _pattern(words).finditer(window):
        last = m
    return None if last is None else len(window) - last.end()
