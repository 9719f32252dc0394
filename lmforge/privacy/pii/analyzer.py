"""Run the recognizers over a text and keep the spans to redact.

``analyze(text)`` runs every recognizer of the requested types, drops spans scored
below ``threshold`` and resolves overlaps (:func:`.spans.resolve_overlaps`: the higher
score wins, so a valid resident ID beats the bank-card reading of the same 18 digits).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ...errors import ConfigError
from . import addresses, name_model, patterns, phones
from .spans import PII_TYPES, PiiSpan, resolve_overlaps

RECOGNIZERS: dict[str, Callable[[str], list[PiiSpan]]] = {
    "EMAIL": patterns.email,
    "PHONE": phones.phone,
    "ID_CN": patterns.id_cn,
    "BANK_CARD": patterns.bank_card,
    "PASSPORT": patterns.passport,
    "IP": patterns.ip,
    "URL": patterns.url,
    "DATE_OF_BIRTH": patterns.date_of_birth,
    "ADDRESS": addresses.address,
    "PERSON": name_model.person,
}
assert tuple(RECOGNIZERS) == PII_TYPES
DEFAULT_THRESHOLD = 0.5


def check_types(types: Iterable[str] | None) -> tuple[str, ...]:
    """The requested types, upper-cased, or every type for None; an unknown one is a
    ConfigError listing the known ones."""
    if types is None:
        return PII_TYPES
    out = tuple(dict.fromkeys(t.strip().upper() for t in types if t.strip()))
    unknown = [t for t in out if t not in RECOGNIZERS]
    if unknown or not out:
        raise ConfigError(f"unknown PII type {', '.join(unknown) or '(none)'}: choose from "
                          f"{', '.join(PII_TYPES)}")
    return out


def analyze(text: str, types: Iterable[str] | None = None,
            threshold: float = DEFAULT_THRESHOLD, all_spans: bool = False) -> list[PiiSpan]:
    """The PII spans of ``text``: non-overlapping, sorted, each scored ≥ ``threshold``.
    ``all_spans=True`` returns every candidate with its score instead (for inspection)."""
    found = [s for t in check_types(types) for s in RECOGNIZERS[t](text)]
    if all_spans:
        return sorted(found, key=lambda s: (s.start, -s.score))
    return resolve_overlaps([s for s in found if s.score >= threshold])
