"""NER: 1-2 sentences with gold PER, LOC, ORG, TIME and NUM spans, tokens and IOB2 tags.

**Entities.** PER: people; LOC: cities and countries; ORG: companies, banks,
universities, hospitals, restaurants, hotels, clubs; TIME: weekdays, dates, years,
months and clock times, each one span however many words ("Monday morning",
"March 3, 2019", "3:30 pm", 星期一上午, 二〇一九年三月三日, 下午三点半; a Chinese day
followed by a clock time is one span: 星期一下午三点); NUM: counts and percentages in
digits or words (320, 1,200, forty-five, 45%, 三百二十, 两, 百分之四十五, 45%), without
the unit or classifier that follows (名, yuan).

**Tokens.** English: maximal runs of ASCII letters and digits, and every other
non-space character alone (``3:30`` -> ``3 : 30``, ``45%`` -> ``45 %``). Chinese: every
character that is not whitespace. ``offsets[i]`` is the ``[start, end)`` of token ``i``
in ``text``; every span starts and ends on token boundaries, so the IOB2 tags (``B-X``
on a span's first token, ``I-X`` inside, ``O`` elsewhere) and the spans are two views of
one annotation (:func:`bio_tags`, :func:`spans_from_tags`).

**Ceiling 1.0.** The literal words of the templates are never entity words, no entity
name contains another entity's name, and time and number expressions are rendered by
one fixed grammar, so the tags are a function of the text.
"""

from __future__ import annotations

import random
import re

from ..world.lexicon import DAYS, MONTHS, PARTS
from .common import (
    PARTITION,
    TaskSet,
    base_card,
    distribution,
    draw_split,
    en_words,
    fill,
    number_records,
    percent,
    zh_int,
    zh_year,
)
from .entities import cast

NAME = "ner"
TYPES = ("PER", "LOC", "ORG", "TIME", "NUM")
TAGS = ("O", *(f"{p}-{t}" for t in TYPES for p in "BI"))

# Slot -> entity type. PER2/CITY2/ORG2 are distinct from PER/CITY/ORG; UNI and HOSP are
# a university and a hospital. TD: a day or date; TC: a clock time; TY: a year or month;
# TDC (Chinese): a day and a clock time; NC: a count, NS a small one; NP: a percentage.
SLOT_TYPES = {"PER": "PER", "PER2": "PER", "CITY": "LOC", "CITY2": "LOC", "COUNTRY": "LOC",
              "ORG": "ORG", "ORG2": "ORG", "UNI": "ORG", "HOSP": "ORG", "TD": "TIME",
              "TC": "TIME", "TY": "TIME", "TDC": "TIME", "NC": "NUM", "NS": "NUM",
              "NP": "NUM"}

TEMPLATES: list[tuple[str, str]] = [
    ("{PER} joined {ORG} in {CITY} in {TY}.", "{PER}{TY}在{CITY}加入了{ORG}。"),
    ("{PER} and {PER2} met in {CITY} on {TD}.", "{PER}和{PER2}{TD}在{CITY}见面。"),
    ("{ORG} hired {NC} engineers in {COUNTRY} last year.", "{ORG}去年在{COUNTRY}招聘了{NC}名工程师。"),
    ("Sales at {ORG} rose by {NP} in {TY}.", "{ORG}{TY}的销售额增长了{NP}。"),
    ("{PER} flew from {CITY} to {CITY2} at {TC} on {TD}.", "{PER}{TDC}从{CITY}飞往{CITY2}。"),
    ("{PER} works as a nurse at {HOSP} in {CITY}.", "{PER}在{CITY}的{HOSP}当护士。"),
    ("{PER} has lived in {CITY}, {COUNTRY}, since {TY}.", "{PER}从{TY}起住在{COUNTRY}{CITY}。"),
    ("{ORG} will open {NC} new shops in {CITY} by {TY}.", "{ORG}将在{TY}前在{CITY}开设{NC}家新店。"),
    ("The meeting between {ORG} and {ORG2} starts at {TC}.", "{ORG}和{ORG2}的会议{TC}开始。"),
    ("{PER} paid {NC} yuan for a ticket to {CITY}.", "{PER}花{NC}元买了一张去{CITY}的票。"),
    ("{PER} arrived in {CITY} on {TD}. {SUBJ} will stay for {NS} days.",
     "{PER}{TD}到达{CITY}。{SUBJ}将停留{NS}天。"),
    ("About {NP} of the staff at {ORG} live in {CITY}.", "{ORG}约{NP}的员工住在{CITY}。"),
    ("{PER} called {PER2} from {CITY} at {TC}.", "{PER}{TC}从{CITY}给{PER2}打了电话。"),
    ("The train from {CITY} to {CITY2} takes {NS} hours.", "从{CITY}到{CITY2}的火车需要{NS}个小时。"),
    ("{PER} studied at {UNI} for {NS} years before moving to {COUNTRY}.",
     "{PER}在{UNI}学习了{NS}年,后来搬到了{COUNTRY}。"),
    ("{HOSP} treated {NC} patients on {TD}. {PER} led the team.",
     "{HOSP}{TD}治疗了{NC}名病人。{PER}带领了这个团队。"),
]

# ----------------------------------------------------------------------------- values
_AM_PM = {"morning": "am", "afternoon": "pm", "evening": "pm"}
_MINUTES = (("", ""), (":15", "十五分"), (":30", "半"), (":45", "四十五分"))


def _date(rng: random.Random, lang: str, year: bool) -> str:
    m, d, y = rng.randrange(12), rng.randint(1, 28), rng.randint(1990, 2024)
    if lang == "en":
        return f"{MONTHS[m][0]} {d}" + (f", {y}" if year else "")
    return (zh_year(y) if year else "") + f"{zh_int(m + 1, False)}月{zh_int(d, False)}日"


def _day(rng: random.Random, lang: str) -> str:
    """A weekday, a weekday and a part of the day, a date, or a date with its year."""
    r = rng.random()
    day, part = rng.choice(DAYS), rng.choice(PARTS)
    if r < 0.3:
        return day[0] if lang == "en" else day[1]
    if r < 0.55:
        return f"{day[0]} {part[0]}" if lang == "en" else day[1] + part[2]
    return _date(rng, lang, year=r < 0.75)


def _clock(rng: random.Random, lang: str) -> str:
    part = rng.choice(PARTS)
    hour = rng.choice(part[3])
    en_min, zh_min = rng.choice(_MINUTES)
    if lang == "en":
        return f"{hour}{en_min} {_AM_PM[part[0]]}"
    return f"{part[2]}{zh_int(hour)}点{zh_min}"


def _year_or_month(rng: random.Random, lang: str) -> str:
    if rng.random() < 0.5:
        y = rng.randint(1990, 2024)
        return str(y) if lang == "en" else zh_year(y)
    m = rng.randrange(12)
    return MONTHS[m][0] if lang == "en" else f"{zh_int(m + 1, False)}月"


def _count(rng: random.Random, lang: str, small: bool = False) -> str:
    """Digits (with a thousands comma in English), or words: forty-five, 三百二十;
    ``small``: 2-30."""
    n = rng.randint(*((2, 30) if small else rng.choice(((2, 99), (100, 999), (1000, 9999)))))
    if lang == "en":
        return en_words(n) if n < 100 and rng.random() < 0.5 else f"{n:,}"
    return str(n) if rng.random() < 0.4 else zh_int(n)


def _values(rng: random.Random, lang: str, unseen: bool) -> dict[str, str]:
    c = cast()
    people = rng.sample(c.pool("PER", unseen), 2)
    cities = rng.sample(c.pool("CITY", unseen), 2)
    orgs = rng.sample(c.pool("ORG", unseen), 2)
    subj = {"en": {"F": "She", "M": "He"}, "zh": {"F": "她", "M": "他"}}[lang][people[0].sub]
    return {
        "PER": people[0].name(lang), "PER2": people[1].name(lang),
        "CITY": cities[0].name(lang), "CITY2": cities[1].name(lang),
        "COUNTRY": rng.choice(c.countries).name(lang),
        "ORG": orgs[0].name(lang), "ORG2": orgs[1].name(lang),
        "UNI": rng.choice(c.pool("ORG", unseen, "university")).name(lang),
        "HOSP": rng.choice(c.pool("ORG", unseen, "hospital")).name(lang),
        "TD": _day(rng, lang), "TC": _clock(rng, lang), "TY": _year_or_month(rng, lang),
        "TDC": _day(rng, lang) + _clock(rng, lang) if lang == "zh" else "",
        "NC": _count(rng, lang), "NS": _count(rng, lang, small=True),
        "NP": percent(rng.randint(2, 95), lang, digits=rng.random() < 0.4),
        "SUBJ": subj,
    }


# ----------------------------------------------------------------------------- tokens

_EN_TOKEN = re.compile(r"[A-Za-z0-9]+|[^\sA-Za-z0-9]")
_ZH_TOKEN = re.compile(r"\S")


def tokenize(text: str, lang: str) -> tuple[list[str], list[list[int]]]:
    """The tokens of ``text`` and their ``[start, end)`` offsets (see the module doc)."""
    pattern = _EN_TOKEN if lang == "en" else _ZH_TOKEN
    matches = list(pattern.finditer(text))
    return [m.group() for m in matches], [[m.start(), m.end()] for m in matches]


def bio_tags(offsets: list[list[int]], spans: list[dict]) -> list[str]:
    """IOB2 tags of the tokens at ``offsets`` for ``spans`` (``{"start", "end", "label"}``);
    a span that does not start and end on token boundaries raises ``ValueError``."""
    tags = ["O"] * len(offsets)
    starts = {s: i for i, (s, _) in enumerate(offsets)}
    ends = {e: i for i, (_, e) in enumerate(offsets)}
    for span in spans:
        if span["start"] not in starts or span["end"] not in ends:
            raise ValueError(f"span {span} does not fall on token boundaries")
        first, last = starts[span["start"]], ends[span["end"]]
        tags[first] = f"B-{span['label']}"
        for i in range(first + 1, last + 1):
            tags[i] = f"I-{span['label']}"
    return tags


def spans_from_tags(text: str, offsets: list[list[int]], tags: list[str]) -> list[dict]:
    """The spans that IOB2 ``tags`` mark (an ``I-X`` that does not continue an ``X``
    opens a new span, as conlleval reads it)."""
    spans: list[dict] = []
    current: dict | None = None
    for (start, end), tag in zip(offsets, tags, strict=True):
        if tag == "O":
            current = None
            continue
        prefix, label = tag.split("-", 1)
        if prefix == "I" and current is not None and current["label"] == label:
            current["end"] = end
        else:
            current = {"start": start, "end": end, "label": label}
            spans.append(current)
    for span in spans:
        span["text"] = text[span["start"]:span["end"]]
    return spans


def _make(rng: random.Random, lang: str, unseen: bool) -> list[tuple[dict, str]]:
    template = rng.choice(TEMPLATES)[0 if lang == "en" else 1]
    text, where = fill(template, _values(rng, lang, unseen))
    spans = sorted(({"start": s, "end": e, "label": SLOT_TYPES[slot], "text": text[s:e]}
                    for slot, (s, e) in where.items() if slot in SLOT_TYPES),
                   key=lambda x: x["start"])
    tokens, offsets = tokenize(text, lang)
    rec = {"text": text, "lang": lang, "tokens": tokens, "offsets": offsets,
           "tags": bio_tags(offsets, spans), "spans": spans}
    return [(rec, "")]


def render(seed: int, sizes: dict[str, int], langs: tuple[str, ...]) -> TaskSet:
    """The NER set (see the module docstring); ``sizes`` are resolved."""
    used: set[str] = set()
    splits = {}
    for split, n in sizes.items():
        splits[split] = number_records(NAME, split, draw_split(
            NAME, seed, split, n, langs, _make, used))[0]
    card = base_card(
        NAME, description="bilingual sentences with gold PER/LOC/ORG/TIME/NUM character "
        "spans; English word tokens (punctuation apart), Chinese character tokens; IOB2",
        labels=TYPES, metric="entity_f1 (seqeval, micro, IOB2)", seed=seed, langs=langs,
        splits=splits, unseen=cast().unseen_names(), partition=PARTITION)
    card.update({
        "tags": list(TAGS),
        "label_distribution": {s: distribution((x["label"] for r in recs for x in r["spans"]),
                                               TYPES) for s, recs in splits.items()},
        "tokens": {s: sum(len(r["tokens"]) for r in recs) for s, recs in splits.items()},
        "noise_rate": {s: 0.0 for s in splits},
        "ceiling": {s: 1.0 for s in splits},
    })
    return TaskSet(NAME, splits, card)

