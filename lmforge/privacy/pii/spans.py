"""What a PII recognizer reports, and how overlapping reports are resolved.

A :class:`PiiSpan` is a half-open character range ``text[start:end]`` with an entity type,
a confidence score in [0, 1] and the recognizer that found it. Scores follow Presidio's
convention: a pattern alone gives a base score, a valid checksum or a context word raises
it, a failed checksum or a negative context word lowers it, and the analyzer keeps spans
at or above a threshold (0.5 by default).
"""

from __future__ import annotations

from dataclasses import dataclass

PII_TYPES = ("EMAIL", "PHONE", "ID_CN", "BANK_CARD", "PASSPORT", "IP", "URL",
             "DATE_OF_BIRTH", "ADDRESS", "PERSON")


@dataclass(frozen=True)
class PiiSpan:
    """``text[start:end]`` is an entity of ``type`` found by ``recognizer`` with ``score``."""

    start: int
    end: int
    type: str
    score: float
    recognizer: str = ""

    def overlaps(self, other: PiiSpan) -> bool:
        return self.start < other.end and other.start < self.end


def clip(score: float) -> float:
    return min(1.0, max(0.0, score))


def resolve_overlaps(spans: list[PiiSpan]) -> list[PiiSpan]:
    """Greedy non-overlapping selection: the highest score first, the longer span on a
    tie; the result is sorted by position."""
    chosen: list[PiiSpan] = []
    for s in sorted(spans, key=lambda s: (-s.score, -(s.end - s.start), s.start)):
        if not any(s.overlaps(c) for c in chosen):
            chosen.append(s)
    return sorted(chosen, key=lambda s: s.start)
