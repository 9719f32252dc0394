"""Realistic stand-ins: ``fake_value(type, value, rng)`` keeps the format of ``value``
(length, separators, script) and makes a new one that validates.

* ID_CN: a province code from the list, a birth date between 1950 and 2005, a sequence
  number and the GB 11643 check character (15-digit IDs stay 15 digits);
* BANK_CARD: the issuer's first six digits kept, the rest random, the Luhn check digit;
* PHONE: the country code, a mainland mobile's ``1[3-9]x`` or the area code kept, the
  rest random until libphonenumber calls it valid;
* EMAIL, URL: reserved example domains (RFC 2606); IP: documentation ranges (RFC 5737,
  RFC 3849); PASSPORT: the letter prefix kept; DATE_OF_BIRTH: a new date in the same
  layout; ADDRESS and PERSON: built from name and street lists, in the script of the
  original.
"""

from __future__ import annotations

import random
import re

from ..checksums import PROVINCES, id_check_char, luhn_check_digit
from .addresses import PROVINCES as PROVINCE_NAMES
from .names import ZH_SURNAMES, en_name_lists

_ZH_GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰萍红建文辉力宇浩然晨阳欣怡子轩梓涵"
_ZH_ROADS = ("人民路", "中山路", "解放大道", "建设路", "和平街", "长江路", "青年路", "文化街", "新华路",
             "光明巷")
_ZH_DISTRICTS = ("东城区", "西湖区", "南山区", "天河区", "武侯区", "鼓楼区", "江北区", "高新区")
_EN_STREETS = ("Maple", "Oak", "Cedar", "Pine", "Elm", "Washington", "Lake", "Hill", "Park",
               "Church")
_EN_TYPES = ("Street", "Avenue", "Road", "Lane", "Drive")


def _digits(value: str, rng: random.Random, keep: int = 0) -> str:
    """``value`` with every digit after the first ``keep`` digits replaced at random."""
    seen, out = 0, []
    for ch in value:
        if ch.isdigit():
            seen += 1
            out.append(ch if seen <= keep else str(rng.randrange(10)))
        else:
            out.append(ch)
    return "".join(out)


def _regroup(template: str, digits: str) -> str:
    """``digits`` laid out with the separators of ``template``."""
    it = iter(digits)
    return "".join(next(it) if ch.isdigit() or ch in "Xx" else ch for ch in template)


def fake_id(value: str, rng: random.Random) -> str:
    n = re.sub(r"[^\dXx]", "", value)
    province = rng.choice(sorted(PROVINCES - {71, 81, 82}))
    born = f"{rng.randrange(1950, 2006)}{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}"
    first17 = f"{province}{rng.randrange(1, 100):02d}{rng.randrange(1, 30):02d}{born}{rng.randrange(1000):03d}"
    new = first17 + id_check_char(first17)
    if len(n) == 15:
        new = new[:6] + new[8:17]
    return _regroup(value, new)


def fake_card(value: str, rng: random.Random) -> str:
    n = re.sub(r"\D", "", value)
    body = n[:6] + "".join(str(rng.randrange(10)) for _ in range(len(n) - 7))
    return _regroup(value, body + luhn_check_digit(body))


def fake_phone(value: str, rng: random.Random) -> str:
    import phonenumbers as pn

    digits = re.sub(r"\D", "", value)
    keep = 3 if re.search(r"(?:^|\D)1[3-9]\d", value) and len(digits) in (11, 13, 15) else 4
    if value.startswith("+") or value.startswith("00"):
        keep += 2
    candidate = value
    for _ in range(200):
        candidate = _digits(value, rng, keep=min(keep, len(digits) - 4))
        try:
            number = pn.parse(candidate, "CN" if not value.startswith("+") else None)
            if pn.is_valid_number(number) and candidate != value:
                return candidate
        except pn.NumberParseException:
            pass
    return candidate


def fake_dob(value: str, rng: random.Random) -> str:
    year = rng.randrange(1950, 2006)
    month, day = rng.randrange(1, 13), rng.randrange(1, 29)
    months = ("January February March April May June July August September October November "
              "December").split()
    text = re.sub(r"(?:19|20)\d\d", str(year), value, count=1)
    if re.search(r"[A-Za-z]", text):
        text = re.sub(r"[A-Z][a-z]+\.?", months[month - 1], text, count=1)
        return re.sub(r"(?<!\d)\d{1,2}(?!\d)", str(day), text, count=1)
    groups = [m for m in re.finditer(r"(?<!\d)\d{1,2}(?!\d)", text)]
    iso = re.match(r"\s*(?:19|20)\d\d", value) is not None
    order = (month, day) if iso else (day, month)
    for m, v in zip(reversed(groups), reversed(order), strict=False):
        width = len(m.group())
        text = text[:m.start()] + str(v).zfill(width) + text[m.end():]
    return text


def fake_person(value: str, rng: random.Random) -> str:
    if re.search(r"[\u4e00-\u9fff]", value):
        given = len(value) - 1 if len(value) <= 3 else 2
        return rng.choice(sorted(ZH_SURNAMES)) + "".join(rng.choice(_ZH_GIVEN) for _ in range(given))
    first, last = en_name_lists()
    parts = value.split()
    if len(parts) == 1:  # a surname after a title, or a lone first name
        return rng.choice(sorted(last if value in last else first))
    return " ".join([rng.choice(sorted(first))] + [rng.choice(sorted(last)) for _ in parts[1:]])


def fake_address(value: str, rng: random.Random) -> str:
    number = rng.randrange(1, 300)
    if re.search(r"[\u4e00-\u9fff]", value):
        province = rng.choice(PROVINCE_NAMES[4:26])  # the provinces proper
        return f"{province}省{rng.choice(_ZH_DISTRICTS)}{rng.choice(_ZH_ROADS)}{number}号"
    return f"{number} {rng.choice(_EN_STREETS)} {rng.choice(_EN_TYPES)}"


def fake_value(kind: str, value: str, rng: random.Random) -> str:
    """A replacement for ``value`` (an entity of ``kind``) drawn with ``rng``."""
    if kind == "ID_CN":
        return fake_id(value, rng)
    if kind == "BANK_CARD":
        return fake_card(value, rng)
    if kind == "PHONE":
        return fake_phone(value, rng)
    if kind == "DATE_OF_BIRTH":
        return fake_dob(value, rng)
    if kind == "PERSON":
        return fake_person(value, rng)
    if kind == "ADDRESS":
        return fake_address(value, rng)
    if kind == "EMAIL":
        first, _ = en_name_lists()
        return f"{rng.choice(sorted(first)).lower()}{rng.randrange(100)}@example.com"
    if kind == "URL":
        return f"https://example.org/{rng.getrandbits(32):08x}"
    if kind == "IP":
        if ":" in value:
            return f"2001:db8::{rng.getrandbits(16):x}:{rng.getrandbits(16):x}"
        return f"{rng.choice(('192.0.2', '198.51.100', '203.0.113'))}.{rng.randrange(1, 255)}"
    if kind == "PASSPORT":
        letters = re.match(r"[A-Z]*", value).group()
        return letters + "".join(str(rng.randrange(10)) for _ in value[len(letters):])
    raise ValueError(f"no fake for {kind}")
