"""Postal addresses: Chinese administrative-unit patterns and English street patterns.

**Chinese.** An address is a chain of units ending in a road and a house number::

    [省/自治区/直辖市] [市/州/盟] [区/县/旗] [镇/乡/街道] <road>路|街|大道|巷|弄|胡同 <n>号
    [<n>栋|幢|号楼|座] [<n>单元] [<n>室]

with at least one unit before the road. A regular expression cannot tell where the first
unit starts inside running text ("他搬到了成都市…" would start at 他), so the match starts at
a province or municipality name when one is there, else at the first place name jieba
tags (``ns``), else after lead words (住在, 地址, 寄到, ...).

**English.** ``<number> [N|S|E|W] <Capitalised words> <street type>`` with the usual
street types and abbreviations (Street/St, Avenue/Ave, Road/Rd, ...), then optionally
an apartment or suite, a town, a US state and ZIP code or a UK postcode.

Scores: 0.85 (Chinese, with a province or city unit), 0.7 (Chinese, district only), 0.8
(English), plus 0.35 after an address label (地址, 住址, address, lives at, ship to).
"""

from __future__ import annotations

import re

from .context import has_context
from .spans import PiiSpan, clip

PROVINCES = ("北京", "天津", "上海", "重庆", "河北", "山西", "辽宁", "吉林", "黑龙江", "江苏",
             "浙江", "安徽", "福建", "江西", "山东", "河南", "湖北", "湖南", "广东", "海南",
             "四川", "贵州", "云南", "陕西", "甘肃", "青海", "台湾", "内蒙古", "广西", "西藏",
             "宁夏", "新疆", "香港", "澳门")
# a province-level name followed by its unit (香港中路 is a road, 香港特别行政区 is not)
_PROVINCE = re.compile(f"(?:{'|'.join(PROVINCES)})(?=省|市|自治区|特别行政区|壮族|回族|维吾尔)")
_LEAD = re.compile(r"^(?:家住|住在|住址|地址|位于|寄到|寄往|送到|搬到|来自|现住|居住在|居住|住|在|是|为"
                   r"|于|到|往|[：:\s])+")
_HAN = r"[\u4e00-\u9fff]"
_ZH_ADDRESS = re.compile(
    rf"(?:{_HAN}{{2,7}}?(?:省|自治区|特别行政区))?"
    rf"(?:{_HAN}{{1,7}}?(?:市|州|盟|地区))?"
    rf"(?:{_HAN}{{1,7}}?(?:区|县|旗))?"
    rf"(?:{_HAN}{{1,7}}?(?:镇|乡|街道))?"
    rf"{_HAN}{{1,10}}?(?:路|街|大道|大街|巷|弄|胡同)"
    r"(?:\d{1,5}|[一二三四五六七八九十百]{1,4})[号號]"
    r"(?:院)?(?:\d{1,4}(?:栋|幢|号楼|座))?(?:\d{1,3}单元)?(?:\d{1,5}(?:室|房|号))?")
_UNITS = re.compile(r"省|自治区|市|州|区|县|旗")
_EN_STREET = ("Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|"
              "Place|Pl|Terrace|Close|Crescent|Parkway|Pkwy|Square|Sq|Highway|Hwy|Row|Gardens")
_CAP = r"[A-Z][a-z]+(?:['-][A-Z]?[a-z]+)*"
_EN_ADDRESS = re.compile(
    rf"(?<![\w-])\d{{1,5}}[A-Za-z]?(?:-\d{{1,5}})? (?:[NSEW]\.? )?(?:{_CAP} ){{1,3}}"
    rf"(?:{_EN_STREET})\b\.?"
    r"(?:,? (?:Apt|Apartment|Suite|Ste|Unit|Flat|Floor|Fl|#)\.? ?#?\w{1,6})?"
    rf"(?:, (?:{_CAP} ?){{1,3}}(?=[,\s.;]|$))?"
    r"(?:,? (?:[A-Z]{2} \d{5}(?:-\d{4})?|[A-Z]{1,2}\d[A-Z\d]? \d[A-Z]{2}|\d{5}))?")
CONTEXT = ("地址", "住址", "家住", "收货地址", "寄到", "address", "lives at", "live at",
           "located at", "ship to", "deliver to", "mailing", "residence")


def _first_place(s: str) -> int:
    """Where the address inside the match ``s`` starts: at jieba's first place name
    (``ns``) when it tags one, else after the lead words."""
    from .names import jieba_words

    for start, word, flag in jieba_words(s):
        if flag == "ns" or _UNITS.search(word[-1]):
            return start
    lead = _LEAD.match(s)
    return lead.end() if lead else 0


def _zh(text: str) -> list[PiiSpan]:
    out = []
    for m in _ZH_ADDRESS.finditer(text):
        s = m.group()
        province = _PROVINCE.search(s[:14])
        offset = province.start() if province else _first_place(s)
        start = m.start() + offset
        body = text[start:m.end()]
        road = re.search(r"路|街|大道|巷|弄|胡同", body)
        if road is None or not _UNITS.search(body[:road.start()]):
            continue
        base = 0.85 if province or "市" in body else 0.7
        if has_context(text, start, m.end(), CONTEXT):
            base += 0.35
        out.append(PiiSpan(start, m.end(), "ADDRESS", clip(base), "address_zh"))
    return out


def _en(text: str) -> list[PiiSpan]:
    out = []
    for m in _EN_ADDRESS.finditer(text):
        end = m.end()
        while text[end - 1] in ",. ":
            end -= 1
        base = 0.8 + (0.35 if has_context(text, m.start(), end, CONTEXT) else 0.0)
        out.append(PiiSpan(m.start(), end, "ADDRESS", clip(base), "address_en"))
    return out


def address(text: str) -> list[PiiSpan]:
    return _zh(text) + _en(text)
