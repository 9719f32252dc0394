"""Pattern recognizers with validation: e-mail, URL, IPv4/IPv6, the mainland resident ID,
bank cards, passports and dates of birth.

Each recognizer is ``f(text) -> list[PiiSpan]``. Base scores (before context):

========== ======================================= ===============================
type       found by                                 score
========== ======================================= ===============================
EMAIL      RFC 5322 dot-atom local part @ domain   0.95
URL        ``scheme://`` or ``www.`` host           0.85 (a bare host: 0.6)
IP         dotted quad / colon-hex, then            0.9 (0.3 after a version label)
           :mod:`ipaddress` must parse it
ID_CN      18 (or 15) digits, ``6-8-4`` groups      valid check char, province, birth
           allowed                                  date: 0.95; 15 digits: 0.55;
                                                    failed check: 0.05
BANK_CARD  16-19 digits, groups of 4 allowed        Luhn and a known IIN: 0.85; Luhn
                                                    only: 0.6; 18 digits shaped like a
                                                    resident ID: 0.1; failed Luhn: 0.05
PASSPORT   CN ``[EG]\\d{8}``, ``E[A-Z]\\d{7}``;       0.45, 0.95 with a label (护照,
           generic ``[A-Z]{1,2}\\d{6,8}``            passport); generic 0.3, 0.8 with
                                                    the label at most 20 characters
                                                    before it
DOB        a date (ISO, slashes, 年月日, "March    0.2; 0.9 after a birth label,
           7, 1990", "7 March 1990")                 unless a time follows or a time
                                                    label is closer than the birth one
========== ======================================= ===============================

A context label (``CONTEXT``) adds 0.35 (capped at 1); a negative label (an order,
tracking, invoice or transaction number, a version) up to 16 characters before the span
and closer to it than any context label subtracts 0.6.
"""

from __future__ import annotations

import ipaddress
import re

from ..checksums import id18_parts_valid, luhn_valid, valid_id15, valid_id18
from .context import has_context, nearest_label_before
from .spans import PiiSpan, clip

CONTEXT = {
    "EMAIL": ("邮箱", "电子邮件", "email", "e-mail", "mail"),
    "PHONE": ("电话", "手机", "手机号", "联系方式", "致电", "拨打", "座机", "phone", "tel",
              "mobile", "call", "cell", "fax", "传真"),
    "ID_CN": ("身份证", "身份证号", "证件号", "公民身份号码", "id card", "resident id",
              "id number", "id no"),
    "BANK_CARD": ("银行卡", "卡号", "卡", "账号", "储蓄卡", "信用卡", "card", "account", "visa",
                  "mastercard", "unionpay", "银联"),
    "PASSPORT": ("护照", "护照号", "passport"),
    "DATE_OF_BIRTH": ("出生", "出生于", "出生日期", "生日", "生于", "born", "birth",
                      "birthday", "dob", "date of birth", "d.o.b."),
    "IP": ("ip", "ip地址", "地址", "address", "host", "server", "服务器", "登录"),
}
NEGATIVE = ("订单", "订单号", "单号", "流水号", "运单", "快递单号", "交易号", "发票", "工单",
            "编号", "编码", "商品", "型号", "order", "tracking", "invoice", "transaction", "ticket", "serial",
            "sku", "ref", "reference", "version", "版本", "build", "timestamp", "时间戳",
            "epoch", "unix")
BOOST = 0.35
PENALTY = 0.6

_NOT_ALNUM_BEFORE = r"(?<![0-9A-Za-z])"
_NOT_ALNUM_AFTER = r"(?![0-9A-Za-z])"


def score_with_context(text: str, start: int, end: int, kind: str, base: float) -> float:
    """``base`` raised by a ``kind`` label near the span, lowered by a negative label
    within 16 characters before it that is closer than any ``kind`` label."""
    score = base
    words = CONTEXT.get(kind, ())
    if has_context(text, start, end, words):
        score += BOOST
    bad = nearest_label_before(text, start, NEGATIVE, before=16)
    good = nearest_label_before(text, start, words) if words else None
    if bad is not None and (good is None or bad < good):
        score -= PENALTY
    return clip(score)


_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
                    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}"
                    r"(?![A-Za-z0-9-])")


def email(text: str) -> list[PiiSpan]:
    return [PiiSpan(m.start(), m.end(), "EMAIL", 0.95, "email") for m in _EMAIL.finditer(text)]


_URL = re.compile(r"(?:(?:https?|ftp)://|www\.)[^\s<>\"'，。；：！？、）》」】]+", re.IGNORECASE)
_BARE_URL = re.compile(r"(?<![A-Za-z0-9_.@/-])(?:[a-z0-9-]+\.)+(?:com|org|net|edu|gov|cn|io|co|uk|de|jp"
                       r"|info|biz|me|example)(?:\.[a-z]{2})?/[^\s<>\"'，。；：！？、）》」】]*",
                       re.IGNORECASE)
_TRAILING = ".,;:!?)]}'\""


def url(text: str) -> list[PiiSpan]:
    """``scheme://`` or ``www.`` URLs (0.85) and bare ``host.tld/path`` ones (0.6)."""
    out: list[PiiSpan] = []
    for pattern, score in ((_URL, 0.85), (_BARE_URL, 0.6)):
        for m in pattern.finditer(text):
            end = m.end()
            while end > m.start() and text[end - 1] in _TRAILING:
                end -= 1
            span = PiiSpan(m.start(), end, "URL", score, "url")
            if not any(span.overlaps(s) for s in out):
                out.append(span)
    return out


_IPV4 = re.compile(_NOT_ALNUM_BEFORE + r"(?<!\.)(?:\d{1,3}\.){3}\d{1,3}(?!\.?\d)" + _NOT_ALNUM_AFTER)
_IPV6 = re.compile(r"(?<![0-9A-Fa-f:])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}"
                   r"(?:(?<=:)(?:\d{1,3}\.){3}\d{1,3})?(?![0-9A-Za-z:])")
_VERSION = ("version", "版本", "v", "build", "ver", "release")


def ip(text: str) -> list[PiiSpan]:
    out = []
    for m in _IPV4.finditer(text):
        try:
            ipaddress.IPv4Address(m.group())
        except ValueError:
            continue
        base = 0.3 if has_context(text, m.start(), m.end(), _VERSION, before=12, after=0) else 0.9
        out.append(PiiSpan(m.start(), m.end(), "IP", base, "ipv4"))
    for m in _IPV6.finditer(text):
        s = m.group()
        if s.count(":") < 3 and "::" not in s:
            continue
        try:
            ipaddress.IPv6Address(s)
        except ValueError:
            continue
        out.append(PiiSpan(m.start(), m.end(), "IP", 0.9, "ipv6"))
    return out


_ID = re.compile(_NOT_ALNUM_BEFORE + r"(?:\d{6}[ -]?\d{8}[ -]?\d{3}[\dXx]|\d{15})" + _NOT_ALNUM_AFTER)


def digits_of(s: str) -> str:
    return s.replace(" ", "").replace("-", "")


def id_cn(text: str) -> list[PiiSpan]:
    out = []
    for m in _ID.finditer(text):
        number = digits_of(m.group())
        if len(number) == 18:
            base = 0.95 if valid_id18(number) else 0.05
        else:
            base = 0.55 if valid_id15(number) else 0.05
        score = score_with_context(text, m.start(), m.end(), "ID_CN", base)
        out.append(PiiSpan(m.start(), m.end(), "ID_CN", score, "id_cn"))
    return out


_CARD = re.compile(_NOT_ALNUM_BEFORE + r"(?:\d{4}(?:[ -]\d{4}){3}(?:[ -]?\d{1,3})?|\d{16,19})"
                   + _NOT_ALNUM_AFTER)
# issuer identification numbers of the large networks: Visa 4, Mastercard 51-55 and
# 2221-2720, UnionPay 62 and 81, JCB 3528-3589, Discover 6011/644-649/65, Maestro 50/56-69
_IIN = re.compile(r"4|5[0-9]|2(?:22[1-9]|2[3-9]\d|[3-6]\d\d|7[01]\d|720)|62|81|35(?:2[89]|[3-8]\d)"
                  r"|6011|64[4-9]|6[5-9]")


def bank_card(text: str) -> list[PiiSpan]:
    out = []
    for m in _CARD.finditer(text):
        number = digits_of(m.group())
        if not 16 <= len(number) <= 19:
            continue
        if not luhn_valid(number):
            base = 0.05
        elif len(number) == 18 and id18_parts_valid(number):
            base = 0.1  # a resident ID with a mistyped check character, more likely
        else:
            base = 0.85 if _IIN.match(number) else 0.6
        score = score_with_context(text, m.start(), m.end(), "BANK_CARD", base)
        out.append(PiiSpan(m.start(), m.end(), "BANK_CARD", score, "bank_card"))
    return out


_PASSPORT_CN = re.compile(_NOT_ALNUM_BEFORE + r"(?:[EG]\d{8}|E[A-HJ-NP-Z]\d{7})" + _NOT_ALNUM_AFTER)
_PASSPORT_ANY = re.compile(_NOT_ALNUM_BEFORE + r"[A-Z]{1,2}\d{6,8}" + _NOT_ALNUM_AFTER)


def passport(text: str) -> list[PiiSpan]:
    out, seen = [], set()
    for m in _PASSPORT_CN.finditer(text):
        seen.add(m.start())
        score = score_with_context(text, m.start(), m.end(), "PASSPORT", 0.45)
        out.append(PiiSpan(m.start(), m.end(), "PASSPORT", score, "passport_cn"))
    for m in _PASSPORT_ANY.finditer(text):
        if m.start() not in seen:  # a generic passport number needs its label close by
            labelled = has_context(text, m.start(), m.end(), CONTEXT["PASSPORT"], before=20,
                                   after=0)
            score = 0.8 if labelled else 0.3
            if has_context(text, m.start(), m.end(), NEGATIVE, before=16, after=0):
                score -= PENALTY
            out.append(PiiSpan(m.start(), m.end(), "PASSPORT", clip(score), "passport"))
    return out


_MONTHS = ("January|February|March|April|May|June|July|August|September|October|November|"
           "December|Jan|Feb|Mar|Apr|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec")
_DATE = re.compile(
    _NOT_ALNUM_BEFORE + r"(?:(?:19|20)\d\d[-/.](?:0?[1-9]|1[0-2])[-/.](?:0?[1-9]|[12]\d|3[01])"
    r"|(?:19|20)\d\d年(?:0?[1-9]|1[0-2])月(?:0?[1-9]|[12]\d|3[01])[日号]"
    r"|(?:0?[1-9]|[12]\d|3[01])[/.](?:0?[1-9]|1[0-2])[/.](?:19|20)\d\d"
    rf"|(?:{_MONTHS})\.? (?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?,? (?:19|20)\d\d"
    rf"|(?:0?[1-9]|[12]\d|3[01])(?:st|nd|rd|th)? (?:{_MONTHS})\.?,? (?:19|20)\d\d)"
    r"(?![0-9A-Za-z:])")


_CLOCK = re.compile(r"[ T]?\d{1,2}:\d{2}")  # a date followed by a time is a timestamp
_WHEN = ("时间", "日志", "time", "logged", "updated", "created", "timestamp")


def date_of_birth(text: str) -> list[PiiSpan]:
    """Dates after a birth label (生于, born, DOB, ...) that are not timestamps and have no
    other time label (时间, logged, ...) between the birth label and them."""
    out = []
    for m in _DATE.finditer(text):
        birth = nearest_label_before(text, m.start(), CONTEXT["DATE_OF_BIRTH"], before=20)
        other = nearest_label_before(text, m.start(), _WHEN, before=20)
        born = (birth is not None and (other is None or birth <= other)
                and not _CLOCK.match(text, m.end()))
        out.append(PiiSpan(m.start(), m.end(), "DATE_OF_BIRTH", 0.9 if born else 0.2, "dob"))
    return out
