"""Phone numbers: mainland mobiles and landlines by pattern, everything else through
Google's libphonenumber (the ``phonenumbers`` package).

* **Mainland mobile**: 11 digits ``1[3-9]x xxxx xxxx``, optionally after ``+86``, ``0086``
  or ``(+86)``, with spaces or hyphens between the 3-4-4 groups.
* **Mainland landline**: a trunk ``0``, an area code (``10``, ``2x`` or three digits from
  ``3``-``9``) and a 7-8 digit local number, the area code optionally in brackets; or the
  same after ``+86`` without the trunk ``0``.
* **International**: :class:`phonenumbers.PhoneNumberMatcher` with leniency ``VALID``
  finds E.164 numbers (``+44 20 7946 0958``) and national numbers of the document's
  region (US by default: ``(415) 555-0132``).

Every candidate must be a valid number by libphonenumber's metadata. Scores: a mobile
0.85, a landline 0.7, another number 0.75, plus 0.35 with a label (电话, phone, ...), minus
0.6 after an order or tracking label.
"""

from __future__ import annotations

import re

from ...extras import require_extra
from .patterns import score_with_context
from .spans import PiiSpan

_B = r"(?<![0-9A-Za-z+])"
_E = r"(?![0-9A-Za-z])"
_MOBILE = re.compile(_B + r"(?:(?:\+|00)86[ -]?|\(\+?86\)[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}" + _E)
_AREA = r"(?:10|2\d|[3-9]\d\d)"
_DOTTED_QUAD = re.compile(r"(?:\d{1,3}\.){3}\d{1,3}")  # an IPv4 address, not a number
_LANDLINE = re.compile(_B + r"(?:(?:\+|00)86[ -]?\(?" + _AREA + r"\)?|\(0" + _AREA + r"\)|0"
                       + _AREA + r")[ -]?\d{3,4}[ -]?\d{4}" + _E)


def _phonenumbers():
    return require_extra("phonenumbers", "privacy", "phone recognition")


def _valid(number: str, region: str) -> bool:
    pn = _phonenumbers()
    try:
        return pn.is_valid_number(pn.parse(number, region))
    except pn.NumberParseException:
        return False


def _cn(text: str, pattern: re.Pattern, base: float, name: str) -> list[PiiSpan]:
    out = []
    for m in pattern.finditer(text):
        digits = re.sub(r"[^\d+]", "", m.group())
        if digits.startswith("0086"):
            digits = "+" + digits[2:]
        if _valid(digits, "CN"):
            score = score_with_context(text, m.start(), m.end(), "PHONE", base)
            out.append(PiiSpan(m.start(), m.end(), "PHONE", score, name))
    return out


def phone(text: str, region: str = "US") -> list[PiiSpan]:
    """Every phone number of ``text``; ``region`` is the country of national-format numbers
    that carry no ``+`` prefix (mainland ones are always looked for)."""
    pn = _phonenumbers()
    out = _cn(text, _MOBILE, 0.85, "phone_cn_mobile") + _cn(text, _LANDLINE, 0.7, "phone_cn_landline")
    for match in pn.PhoneNumberMatcher(text, region, leniency=pn.Leniency.VALID):
        span = PiiSpan(match.start, match.end, "PHONE", 0.0)
        if any(span.overlaps(s) for s in out) or _DOTTED_QUAD.fullmatch(match.raw_string):
            continue
        score = score_with_context(text, match.start, match.end, "PHONE", 0.75)
        out.append(PiiSpan(match.start, match.end, "PHONE", score, "phone_intl"))
    return out
