"""Check digits of the identifiers the PII recognizers look for.

**Mainland resident ID** (GB 11643-1999): 17 digits ``a_1 … a_17`` and a check character.
With weights ``W_i = 2^(18−i) mod 11`` (7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2) the check value
is ``(12 − Σ a_i W_i mod 11) mod 11``, written ``X`` when it is 10 (ISO 7064 MOD 11-2).
Digits 1-6 are the address code (the first two a province: 11-15, 21-23, 31-37, 41-46,
50-54, 61-65, or 71, 81, 82 for Taiwan, Hong Kong and Macao), 7-14 the birth date
``YYYYMMDD``, 15-17 a sequence number (odd for men). The legacy 15-digit form has a
two-digit year (19YY) and no check character; :func:`upgrade_id15` gives its 18-digit form.

**Luhn** (ISO/IEC 7812, bank cards): from the right, double every second digit, subtract 9
from doubles above 9; the number is valid when the sum is a multiple of 10.
"""

from __future__ import annotations

import datetime as dt

ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))
PROVINCES = frozenset({11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34, 35, 36, 37, 41, 42, 43,
                       44, 45, 46, 50, 51, 52, 53, 54, 61, 62, 63, 64, 65, 71, 81, 82})


def id_check_char(first17: str) -> str:
    """The GB 11643 check character of 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def _birth_date(text: str) -> dt.date | None:
    try:
        return dt.date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return None


def id18_parts_valid(number: str, today: dt.date | None = None) -> bool:
    """Province code and birth date of an 18-character ID are plausible (between 1900
    and ``today``)."""
    born = _birth_date(number[6:14])
    today = today or dt.date.today()
    return (int(number[:2]) in PROVINCES and born is not None
            and dt.date(1900, 1, 1) <= born <= today)


def valid_id18(number: str, today: dt.date | None = None) -> bool:
    """An 18-character resident ID with a correct check character, province and birth date."""
    n = number.upper()
    return (len(n) == 18 and n[:17].isdigit() and (n[17].isdigit() or n[17] == "X")
            and id_check_char(n[:17]) == n[17] and id18_parts_valid(n, today))


def upgrade_id15(number: str) -> str:
    """The 18-digit form of a legacy 15-digit ID: ``19`` inserted before the year, plus the
    check character."""
    first17 = number[:6] + "19" + number[6:]
    return first17 + id_check_char(first17)


def valid_id15(number: str, today: dt.date | None = None) -> bool:
    """A legacy 15-digit ID whose province and birth date (19YYMMDD) are plausible."""
    return len(number) == 15 and number.isdigit() and id18_parts_valid(
        upgrade_id15(number), today)


def luhn_valid(number: str) -> bool:
    """The Luhn check of a digit string (separators removed by the caller)."""
    if not number.isdigit() or len(number) < 2:
        return False
    total = 0
    for i, ch in enumerate(reversed(number)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def luhn_check_digit(body: str) -> str:
    """The digit that makes ``body + digit`` pass the Luhn check (exactly one does)."""
    return next(d for d in "0123456789" if luhn_valid(body + d))


def valid_bank_card(number: str) -> bool:
    """16-19 digits that pass the Luhn check."""
    return 16 <= len(number) <= 19 and luhn_valid(number)
