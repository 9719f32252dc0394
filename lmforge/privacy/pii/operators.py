"""What replaces a PII span: ``mask``, ``redact``, ``hash`` or ``fake``.

* ``mask``: the type in brackets, ``[PHONE]``;
* ``redact``: nothing (the span is deleted);
* ``hash``: ``<TYPE>_<h>`` with ``h`` the first 16 hex digits of
  ``HMAC-SHA256(salt, TYPE ‖ 0 ‖ normalise(value))``. ``normalise`` drops separators of
  digit types and lower-cases e-mails, so ``138-0013-8000`` and ``13800138000`` get the
  same pseudonym under one salt, and nothing links pseudonyms across salts. Without the
  salt an attacker could hash every phone number (10¹¹ of them) and invert the table; the
  salt is a secret.
* ``fake``: a realistic value of the same format that passes its checksum
  (:mod:`.fake`), drawn from a generator seeded by the same HMAC, so the same value gets
  the same fake within a salt.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import re
from collections.abc import Sequence

from ...errors import ConfigError
from .fake import fake_value
from .spans import PiiSpan

OPERATORS = ("mask", "redact", "hash", "fake")
_DIGIT_TYPES = ("PHONE", "ID_CN", "BANK_CARD")


def normalise(kind: str, value: str) -> str:
    if kind in _DIGIT_TYPES:
        return re.sub(r"[^\dXx+]", "", value).upper()
    if kind in ("EMAIL", "URL"):
        return value.lower()
    return " ".join(value.split())


def pseudonym_digest(kind: str, value: str, salt: bytes) -> bytes:
    """``HMAC-SHA256(salt, kind ‖ 0 ‖ normalise(value))``."""
    message = kind.encode() + b"\0" + normalise(kind, value).encode()
    return hmac.new(salt, message, hashlib.sha256).digest()


def replacement(kind: str, value: str, operator: str, salt: bytes) -> str:
    if operator == "mask":
        return f"[{kind}]"
    if operator == "redact":
        return ""
    digest = pseudonym_digest(kind, value, salt)
    if operator == "hash":
        return f"{kind}_{digest[:8].hex()}"
    if operator == "fake":
        return fake_value(kind, value, random.Random(int.from_bytes(digest[:8], "big")))
    raise ConfigError(f"unknown operator {operator!r}: choose from {', '.join(OPERATORS)}")


def anonymize(text: str, spans: Sequence[PiiSpan], operator: str = "mask",
              salt: bytes = b"") -> str:
    """``text`` with every (non-overlapping) span replaced by ``operator``."""
    if operator not in OPERATORS:
        raise ConfigError(f"unknown operator {operator!r}: choose from {', '.join(OPERATORS)}")
    if operator in ("hash", "fake") and not salt:
        raise ConfigError(f"the {operator} operator needs a salt")
    out, pos = [], 0
    for s in sorted(spans, key=lambda s: s.start):
        if s.start < pos:
            raise ValueError("anonymize needs non-overlapping spans (see resolve_overlaps)")
        out.append(text[pos:s.start])
        out.append(replacement(s.type, text[s.start:s.end], operator, salt))
        pos = s.end
    out.append(text[pos:])
    return "".join(out)
