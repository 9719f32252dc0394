"""Summarisation: short documents about one event, each with a one- or two-sentence
reference summary of its key facts, in the same language.

**Documents.** Each item is a document of 4-10 sentences about one event of the world's
cast (:mod:`.entities`), of one of six **kinds**:

* ``career``: a person takes a job (who, employer, role, month) -- "Redwood Systems hired
  Anna as an engineer in March 2019.";
* ``trip``: a person travels to a city for an event (who, city, month, event, days);
* ``festival``: a city's festival (city, festival, month, visitors);
* ``match``: one club beats another (clubs, score, city, month; the scorer of the winning
  goal, a second summary sentence);
* ``opening``: a company announces a new site (company, site, city, jobs; the month of
  the announcement, a second sentence);
* ``results``: an organisation's profit rises or falls (who, direction, percent, year).

Every summary sentence is one **statement** of key facts. A document states each
statement once, in one **form** (one or two sentences, kept together), and mixes it with
**filler** sentences (1-9) that state no key fact: background from the relation set's fact
base and the QA profiles (birthplace, home, friends, seats, founding years, a city's food),
and details with other names, years and numbers (fans, photos, staff, ticket sales), so a
reader meets plausible wrong answers. The statements keep the summary's order, the
fillers fall at random places among them: a key sentence opens about a fifth of the
documents, so lead-1 is far from the ceiling.

**Summary style (learnable).** A kind's summary is one fixed template filled with the key
facts (``"{O} hired {P} as {a} {role} in {D}."``, Chinese ``"{O}于{D}聘用{P}担任{role}。"``)
in every split. A document states a fact either in the summary's own wording (the
**copy** form) or in one of 3 or 4 **paraphrases** with other verbs and structures ("Anna
joined Redwood Systems as an engineer in March 2019.", "Anna began a new job in March
2019. She is now an engineer at Redwood Systems."). In ``train``, ``val``, ``test`` and
``test_unseen`` each statement takes the copy form with probability ``COPY`` = 1/2, else
a paraphrase drawn uniformly, so training shows every paraphrase with its summary-style
rewrite.

**Splits.** ``train``, ``val``, ``test``: seen entities; ``test_unseen``: unseen people,
cities and organisations only (names to copy that training never showed; countries are
shared); ``abstractive``: seen entities, every statement in a paraphrase, never the copy
form, so the summary's wording differs from the document's and a model must rewrite.
What generalises: ``test_unseen`` tests copying new names; ``abstractive`` tests
rewriting, not new wordings -- all its paraphrases occur in training, where the copy form
is also available. No document occurs twice in the set.

**Ceiling.** The key facts are a function of the document (each is stated once, by a
statement whose forms no filler shares), and the summary is a deterministic function of
the kind and the key facts. A model that outputs the reference scores ROUGE-1/2/L 100, and
a perfect model can on every split, ``abstractive`` and ``test_unseen`` included. The card
records baselines per split and language when rouge-score is installed
(:mod:`lmforge.eval.summarization`; on the first ``BASELINE_ITEMS`` items of each split):
lead-1, lead-3, and ``key_sentences``, the document's key-fact sentences -- what an
extractive model that picks exactly them gets, 100 only where every statement is in the
copy form, so far below 100 on ``abstractive``.

**Records**: ``{"id", "document", "summary", "lang", "kind", "key_facts"}``.
``key_facts`` are the values the summary states, in its order, as strings of the item's
language (``["Anna", "Redwood Systems", "engineer", "March 2019"]``, ``["安娜", "红杉系统",
"工程师", "二〇一九年三月"]``): each occurs verbatim in the summary, and all but the
direction of a ``results`` item (rose/fell, 增长/下降, which paraphrases put in other
words) in the document too. Dates are ``March 2019`` / ``二〇一九年三月``, years
``2019`` / ``二〇一九年``, counts digits / Chinese numerals, percents ``12%`` / ``百分之十二``,
scores ``3-1`` / ``3比1``.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Callable
from dataclasses import dataclass

from ..world.lexicon import ACTIVITIES, DAYS, MONTHS
from .common import (
    PARTITION,
    MakeUnit,
    TaskSet,
    base_card,
    count,
    distribution,
    draw_split,
    fill,
    number_records,
    percent,
    zh_int,
    zh_year,
)
from .entities import Entity, cast
from .qa import PRONOUNS, ROLES, profiles, surface_values
from .relations import fact_base, surface

NAME = "summarization"
SPLITS = ("train", "val", "test", "test_unseen", "abstractive")
SIZES = {"train": 4000, "val": 500, "test": 1000, "test_unseen": 1000, "abstractive": 1000}
ABSTRACTIVE = "abstractive"
COPY = 0.5  # the chance a statement takes the summary's wording (not in ``abstractive``)
SENTENCES = (4, 10)  # a document's length in sentences
BASELINE_ITEMS = 300  # the card's baselines are measured on this many items per split
Pair = tuple[str, str]  # (English, Chinese)
Value = Entity | Pair


@dataclass(frozen=True)
class Statement:
    """One summary sentence and the forms a document may state its facts in.

    ``summary`` is also the copy form; ``forms`` are the paraphrases (one or two
    sentences each, the same number in both languages); ``facts`` the slots whose values
    are key facts, in the summary's order."""

    summary: Pair
    forms: tuple[Pair, ...]
    facts: tuple[str, ...]


@dataclass(frozen=True)
class Kind:
    """A document kind: ``draw(rng, unseen, seed)`` gives a value for every slot of its
    statements and fillers."""

    statements: tuple[Statement, ...]
    fillers: tuple[Pair, ...]
    draw: Callable[[random.Random, bool, int], dict[str, Value]]


# ----------------------------------------------------------------------------- values

def _date(rng: random.Random) -> Pair:
    """A month of 2010-2023: ``("March 2019", "二〇一九年三月")``."""
    year, month = rng.randint(2010, 2023), rng.randrange(12)
    return f"{MONTHS[month][0]} {year}", zh_year(year) + zh_int(month + 1, liang=False) + "月"


def _year(rng: random.Random, low: int = 1995, high: int = 2023) -> Pair:
    y = rng.randint(low, high)
    return str(y), zh_year(y)


def _count(rng: random.Random, low: int, high: int) -> Pair:
    n = rng.randint(low, high)
    return count(n, "en"), count(n, "zh")


def _percent(rng: random.Random, low: int, high: int) -> Pair:
    n = rng.randint(low, high)
    return percent(n, "en"), percent(n, "zh", digits=False)


def _pick(rng: random.Random, kind: str, unseen: bool, *exclude: Entity,
          sub: str | tuple[str, ...] | None = None) -> Entity:
    """An entity of ``kind`` on one side of the partition (of the sorts ``sub``), not one
    of ``exclude``."""
    subs = (sub,) if isinstance(sub, str) else sub
    return rng.choice([e for e in cast().pool(kind, unseen) if e not in exclude
                       and (subs is None or e.sub in subs)])


def _person(rng: random.Random, unseen: bool, seed: int) -> dict[str, Value]:
    """A person ``P`` with the fact base's birthplace ``B``, home ``L`` and friend ``F``,
    and the subject pronoun ``S`` (``s`` in lower case)."""
    p, facts = _pick(rng, "PER", unseen), fact_base(seed)
    he = PRONOUNS[p.sub]
    return {"P": p, "B": facts.born[p.en], "L": facts.lives[p.en],
            "F": facts.friends[p.en][0], "S": (he[0], he[3]), "s": (he[0].lower(), he[3])}


def _org(o: Entity, seed: int) -> dict[str, Value]:
    """An organisation ``O``, its seat ``Cs`` and founding year ``Yf`` (the QA profiles)."""
    return {"O": o, "Cs": cast().city(o.home), "Yf": profiles(seed)[o.en]["founded"]}


def _city(c: Entity, seed: int) -> dict[str, Value]:
    """A city ``C``, its country ``K`` and the food it is famous for (the QA profiles)."""
    return {"C": c, "K": cast().country(c.home), "food": profiles(seed)[c.en]["food"]}


EMPLOYERS = tuple(ROLES)
EVENTS = (("conference", "会议"), ("wedding", "婚礼"), ("trade fair", "博览会"),
          ("training course", "培训课程"), ("marathon", "马拉松比赛"), ("concert", "音乐会"))
WEATHER = (("sunny", "晴朗"), ("rainy", "多雨"), ("cold", "寒冷"), ("windy", "多风"))
FESTIVALS = (("flower festival", "花节"), ("lantern festival", "灯笼节"),
             ("music festival", "音乐节"), ("food festival", "美食节"),
             ("film festival", "电影节"), ("kite festival", "风筝节"))
SITES = (("office", "办公室"), ("factory", "工厂"), ("research centre", "研发中心"),
         ("warehouse", "仓库"), ("data centre", "数据中心"))
UP = {"dir": ("rose", "增长"), "more": ("more", "多"), "go": ("grew", "提高"),
      "updown": ("up", "上升")}
DOWN = {"dir": ("fell", "下降"), "more": ("less", "少"), "go": ("dropped", "减少"),
        "updown": ("down", "下滑")}


def _career(rng: random.Random, unseen: bool, seed: int) -> dict[str, Value]:
    v = _person(rng, unseen, seed)
    o = _pick(rng, "ORG", unseen, sub=EMPLOYERS)
    return {**v, **_org(o, seed), "role": rng.choice(ROLES[o.sub]), "D": _date(rng),
            "O2": _pick(rng, "ORG", unseen, o, sub=EMPLOYERS),
            "C2": _pick(rng, "CITY", unseen), "Q": _pick(rng, "PER", unseen, v["P"], v["F"]),
            "N": _count(rng, 2, 15), "M": _count(rng, 3, 40), "Y2": _year(rng),
            "H": tuple(rng.choice(ACTIVITIES)[:2])}


def _trip(rng: random.Random, unseen: bool, seed: int) -> dict[str, Value]:
    v = _person(rng, unseen, seed)
    c = _pick(rng, "CITY", unseen, v["B"], v["L"])
    return {**v, **_city(c, seed), "D": _date(rng), "E": rng.choice(EVENTS),
            "N": _count(rng, 2, 21), "M": _count(rng, 20, 400), "Y2": _year(rng),
            "C2": _pick(rng, "CITY", unseen, c, v["L"]),
            "Q": _pick(rng, "PER", unseen, v["P"], v["F"]),
            "hotel": _pick(rng, "ORG", unseen, sub="hotel"), "W": rng.choice(WEATHER)}


def _festival(rng: random.Random, unseen: bool, seed: int) -> dict[str, Value]:
    c = _pick(rng, "CITY", unseen)
    return {**_city(c, seed), "fest": rng.choice(FESTIVALS), "D": _date(rng),
            "N": _count(rng, 2000, 90000), "M": _count(rng, 2, 10), "M2": _count(rng, 20, 300),
            "Y0": _year(rng, 1950, 2005), "P": _pick(rng, "PER", unseen),
            "C2": _pick(rng, "CITY", unseen, c),
            "O": _pick(rng, "ORG", unseen, sub=("company", "bank"))}


def _match(rng: random.Random, unseen: bool, seed: int) -> dict[str, Value]:
    a, b = rng.sample(cast().pool("ORG", unseen, "club"), 2)
    x = rng.randint(1, 5)
    y = rng.randint(0, x - 1)
    p = _pick(rng, "PER", unseen)
    q = _pick(rng, "PER", unseen, p)
    return {"A": a, "B": b, "C": cast().city(a.home), "score": (f"{x}-{y}", f"{x}比{y}"),
            "D": _date(rng), "P": p, "Q": q, "P2": _pick(rng, "PER", unseen, p, q),
            "M": _count(rng, 2000, 60000), "M2": _count(rng, 2, 48), "M3": _count(rng, 2, 12),
            "Y0": _year(rng)}


def _opening(rng: random.Random, unseen: bool, seed: int) -> dict[str, Value]:
    o = _pick(rng, "ORG", unseen, sub="company")
    v = _org(o, seed)
    c = _pick(rng, "CITY", unseen, v["Cs"])
    return {**v, **_city(c, seed), "site": rng.choice(SITES), "N": _count(rng, 50, 3000),
            "D": _date(rng), "M": _count(rng, 6, 30), "pct": _percent(rng, 1, 9),
            "P": _pick(rng, "PER", unseen), "C2": _pick(rng, "CITY", unseen, c, v["Cs"]),
            "O2": _pick(rng, "ORG", unseen, o)}


def _results(rng: random.Random, unseen: bool, seed: int) -> dict[str, Value]:
    o = _pick(rng, "ORG", unseen, sub=("company", "bank"))
    v = _org(o, seed)
    return {**v, **(UP if rng.random() < 0.5 else DOWN), "Y": _year(rng, 2010, 2023),
            "pct": _percent(rng, 2, 45), "pct2": _percent(rng, 10, 60),
            "P": _pick(rng, "PER", unseen), "Q": _pick(rng, "PER", unseen),
            "Y0": _year(rng, 1990, 2009), "C2": _pick(rng, "CITY", unseen, v["Cs"]),
            "M": _count(rng, 1000, 90000), "M2": _count(rng, 20, 900),
            "O2": _pick(rng, "ORG", unseen, o, sub=("bank", "university")),
            "day": tuple(rng.choice(DAYS)[:2])}


# ----------------------------------------------------------------------------- kinds

KINDS: dict[str, Kind] = {
    "career": Kind(
        (Statement(
            ("{O} hired {P} as {a} {role} in {D}.", "{O}于{D}聘用{P}担任{role}。"),
            (("{P} joined {O} as {a} {role} in {D}.", "{P}于{D}加入{O},担任{role}。"),
             ("In {D}, {P} started work at {O} as {a} {role}.", "{D},{P}开始在{O}担任{role}。"),
             ("{P} began a new job in {D}. {S} is now {a} {role} at {O}.",
              "{P}{D}开始了一份新工作。{S}现在是{O}的{role}。"),
             ("{O} offered {P} a post as {a} {role}, and {s} started in {D}.",
              "{O}向{P}提供了{role}的职位,{s}于{D}入职。")),
            ("P", "O", "role", "D")),),
        (("{P} was born in {B}.", "{P}出生在{B}。"),
         ("{P} lives in {L}.", "{P}住在{L}。"),
         ("Before that, {P} worked at {O2} for {N} years.", "此前,{P}在{O2}工作了{N}年。"),
         ("{P} went to university in {C2}.", "{P}在{C2}上的大学。"),
         ("{P} is a close friend of {F}.", "{P}是{F}的好朋友。"),
         ("{O} is based in {Cs}.", "{O}的总部位于{Cs}。"),
         ("{O} was founded in {Yf}.", "{O}成立于{Yf}。"),
         ("{P} likes to {H} at weekends.", "{P}周末喜欢{H}。"),
         ("{P} met {Q} at a meeting in {C2} in {Y2}.", "{P}{Y2}在{C2}的一次会议上见到了{Q}。"),
         ("The team {P} joined has {M} members.", "{P}加入的团队有{M}名成员。")),
        _career),
    "trip": Kind(
        (Statement(
            ("{P} travelled to {C} in {D} for a {E} and stayed {N} days.",
             "{P}{D}前往{C}参加{E},停留了{N}天。"),
            (("In {D}, {P} spent {N} days in {C}, where {s} attended a {E}.",
              "{D},{P}在{C}待了{N}天,{s}在那里参加了{E}。"),
             ("{P} went to {C} for a {E} in {D}. The trip lasted {N} days.",
              "{P}{D}去{C}参加了{E}。这次旅行持续了{N}天。"),
             ("A {E} took {P} to {C} in {D}. {S} was away for {N} days.",
              "{D},{P}因为{E}来到{C}。{S}在外面待了{N}天。"),
             ("{P} flew to {C} in {D} to attend a {E} and came back {N} days later.",
              "{P}{D}飞往{C}出席{E},{N}天后返回。")),
            ("P", "C", "D", "E", "N")),),
        (("{P} was born in {B}.", "{P}出生在{B}。"),
         ("{P} lives in {L}.", "{P}住在{L}。"),
         ("{C} is a city in {K}.", "{C}是{K}的一座城市。"),
         ("{C} is famous for its {food}.", "{C}以{food}闻名。"),
         ("{P} booked a room at {hotel}.", "{P}在{hotel}订了一个房间。"),
         ("{P} travelled with {F}.", "{P}和{F}一起出行。"),
         ("The weather in {C} was {W} most of the time.", "{C}的天气大多{W}。"),
         ("{P} sent {Q} a postcard from {C}.", "{P}从{C}给{Q}寄了一张明信片。"),
         ("{P} had visited {C2} in {Y2}.", "{P}{Y2}曾去过{C2}。"),
         ("{P} took {M} photos during the trip.", "{P}在旅途中拍了{M}张照片。")),
        _trip),
    "festival": Kind(
        (Statement(
            ("The {fest} in {C} drew {N} visitors in {D}.", "{C}{fest}{D}吸引了{N}名游客。"),
            (("{N} visitors came to the {fest} in {C} in {D}.",
              "{D},{N}名游客来到{C}参加{fest}。"),
             ("{C} held its {fest} in {D}. The organisers counted {N} visitors.",
              "{C}{D}举办了{fest}。主办方统计共有{N}名游客。"),
             ("In {D}, the {fest} in {C} welcomed {N} visitors.",
              "{D}的{C}{fest}迎来了{N}名游客。"),
             ("Visitors to the {fest} in {C} numbered {N} when it took place in {D}.",
              "{C}{fest}于{D}举行,到场游客达{N}人。")),
            ("fest", "C", "N", "D")),),
        (("{C} is a city in {K}.", "{C}是{K}的一座城市。"),
         ("{C} is famous for its {food}.", "{C}以{food}闻名。"),
         ("The festival lasted {M} days.", "节日持续了{M}天。"),
         ("{O} sponsored the festival.", "{O}赞助了这次节日。"),
         ("{P} opened the festival with a short speech.", "{P}致辞宣布节日开幕。"),
         ("There were {M2} stalls along the river.", "河边有{M2}个摊位。"),
         ("The first {fest} in {C} was held in {Y0}.", "{C}第一届{fest}于{Y0}举办。"),
         ("Many hotels in {C} were full that week.", "那一周{C}的很多酒店都住满了。"),
         ("{P} from {C2} won a prize at the festival.", "来自{C2}的{P}在节日上获了奖。")),
        _festival),
    "match": Kind(
        (Statement(
            ("{A} beat {B} {score} in {C} in {D}.", "{A}{D}在{C}以{score}战胜{B}。"),
            (("{A} won {score} against {B} in {C} in {D}.", "{D},{A}在{C}以{score}击败了{B}。"),
             ("In {D}, {B} lost {score} to {A} in {C}.", "{D},{B}在{C}负于{A},比分为{score}。"),
             ("{A} and {B} met in {C} in {D}. The home side won {score}.",
              "{A}和{B}{D}在{C}交手。主队以{score}获胜。"),
             ("{A} defeated {B} in {D}, winning {score} at home in {C}.",
              "{A}{D}主场迎战{B},在{C}以{score}取胜。")),
            ("A", "B", "score", "C", "D")),
         Statement(
            ("{P} scored the winning goal.", "{P}打进了制胜球。"),
            (("The winning goal came from {P}.", "制胜球来自{P}。"),
             ("{P} scored the goal that decided the match.", "{P}的进球决定了比赛。"),
             ("It was {P} who found the net for the winner.", "正是{P}攻入了致胜一球。")),
            ("P",))),
        (("{A} plays its home games in {C}.", "{A}的主场在{C}。"),
         ("About {M} fans watched the match.", "约有{M}名球迷观看了比赛。"),
         ("It rained for most of the first half.", "上半场大部分时间都在下雨。"),
         ("{B} had won the previous meeting in {Y0}.", "{B}赢得了{Y0}的上一次交手。"),
         ("{Q} was the referee.", "{Q}担任本场比赛的裁判。"),
         ("{P2} of {B} was shown a yellow card.", "{B}的{P2}吃到了一张黄牌。"),
         ("Tickets for the match sold out in {M2} hours.", "比赛门票在{M2}小时内售罄。"),
         ("The coach of {B} said the team had played well.", "{B}的教练说球队踢得不错。"),
         ("{P} has played for {A} for {M3} seasons.", "{P}已经为{A}效力了{M3}个赛季。")),
        _match),
    "opening": Kind(
        (Statement(
            ("{O} will open a new {site} in {C} with {N} jobs.",
             "{O}将在{C}开设新{site},提供{N}个工作岗位。"),
            (("{O} plans to build a new {site} in {C}, creating {N} jobs.",
              "{O}计划在{C}设立{site},创造{N}个就业机会。"),
             ("A new {site} of {O} is coming to {C}. It will employ {N} people.",
              "{O}的新{site}即将落户{C}。它将雇用{N}人。"),
             ("{C} will gain {N} jobs when {O} sets up its new {site} there.",
              "{O}在{C}的{site}建成后,当地将新增{N}个职位。")),
            ("O", "site", "C", "N")),
         Statement(
            ("The company announced the plan in {D}.", "该公司于{D}宣布了这一计划。"),
            (("The news was made public in {D}.", "这一消息在{D}公布。"),
             ("{O} made the announcement in {D}.", "{O}在{D}发布了这一消息。"),
             ("The plan was first reported in {D}.", "这项计划最早见报于{D}。")),
            ("D",))),
        (("{O} is based in {Cs}.", "{O}的总部位于{Cs}。"),
         ("{O} was founded in {Yf}.", "{O}成立于{Yf}。"),
         ("{C} is a city in {K}.", "{C}是{K}的一座城市。"),
         ("The mayor of {C} welcomed the news.", "{C}市长对这一消息表示欢迎。"),
         ("Building work will take about {M} months.", "建设工作大约需要{M}个月。"),
         ("{P}, a spokesperson for {O}, said the site was chosen for its transport links.",
          "{O}的发言人{P}说,选择这个地点是因为交通便利。"),
         ("{O} also works closely with {O2}.", "{O}还与{O2}合作密切。"),
         ("Shares in {O} went up by {pct} on the day.", "{O}的股价当天上涨了{pct}。"),
         ("Last year {O} opened a shop in {C2}.", "{O}去年在{C2}开了一家门店。"),
         ("{C} is famous for its {food}.", "{C}以{food}闻名。")),
        _opening),
    "results": Kind(
        (Statement(
            ("Profit at {O} {dir} by {pct} in {Y}.", "{O}{Y}的利润{dir}了{pct}。"),
            (("{O} made {pct} {more} profit in {Y} than the year before.",
              "{O}{Y}的利润比上一年{more}了{pct}。"),
             ("In {Y}, the profit of {O} {go} by {pct}.", "{Y},{O}的利润{go}了{pct}。"),
             ("{O} reported its results for {Y}. Its profit was {updown} {pct}.",
              "{O}公布了{Y}的业绩。其利润{updown}了{pct}。")),
            ("O", "dir", "pct", "Y")),),
        (("{O} is based in {Cs}.", "{O}的总部位于{Cs}。"),
         ("{O} was founded in {Yf}.", "{O}成立于{Yf}。"),
         ("{O} opened a new branch in {C2} that year.", "{O}当年在{C2}开设了一家新分支机构。"),
         ("{P} has led {O} since {Y0}.", "{P}自{Y0}起领导{O}。"),
         ("The board met in {Cs} on {day}.", "董事会{day}在{Cs}开会。"),
         ("{O} now has {M} customers.", "{O}现在有{M}名客户。"),
         ("{O} plans to hire {M2} people next year.", "{O}计划明年招聘{M2}人。"),
         ("{Q}, an analyst at {O2}, commented on the results.",
          "{O2}的分析师{Q}对这份业绩发表了评论。"),
         ("{O} paid {pct2} of its profit to its shareholders.", "{O}将利润的{pct2}分给了股东。")),
        _results),
}

# ----------------------------------------------------------------------------- items

def _sentences(template: Pair) -> int:
    """How many sentences a template holds (its Chinese side's full stops)."""
    return template[1].count("。")


def _maker(seed: int, abstractive: bool) -> MakeUnit:
    def make(rng: random.Random, lang: str, unseen: bool) -> list[tuple[dict, str]]:
        """One item: a kind, its values, a form per statement (the copy form with
        probability ``COPY``, never in ``abstractive``), and fillers to make 4-10
        sentences (at least one), at random places among the statements, which keep the
        summary's order. The unit's label is the key-fact sentences (the
        ``key_sentences`` baseline)."""
        name = rng.choice(tuple(KINDS))
        kind = KINDS[name]
        values = kind.draw(rng, unseen, seed)
        forms = [s.summary if not abstractive and rng.random() < COPY else rng.choice(s.forms)
                 for s in kind.statements]
        n = max(1, rng.randint(*SENTENCES) - sum(map(_sentences, forms)))
        fillers = iter(rng.sample(kind.fillers, n))
        keys = iter(forms)
        slots = [True] * len(forms) + [False] * n
        rng.shuffle(slots)
        blocks = [(next(keys), True) if key else (next(fillers), False) for key in slots]
        strings = surface_values(values, lang)
        sep = "" if lang == "zh" else " "

        def text(templates: list[Pair]) -> str:
            return sep.join(fill(surface(t, lang), strings)[0] for t in templates)

        rec = {"text": text([b for b, _ in blocks]),
               "summary": text([s.summary for s in kind.statements]), "lang": lang,
               "kind": name,
               "key_facts": [strings[f] for s in kind.statements for f in s.facts]}
        return [(rec, text([b for b, key in blocks if key]))]

    return make


# ----------------------------------------------------------------------------- the set

def _length(text: str, lang: str) -> int:
    """Words (English: split on spaces) or characters (Chinese: letters and digits, so
    not punctuation)."""
    return len(text.split()) if lang == "en" else sum(ch.isalnum() for ch in text)


def _lengths(records: list[dict]) -> dict[str, dict]:
    """Average document length in sentences (full stops: no template has another dot)
    and in units, and summary length, by language."""
    out = {}
    for lang in sorted({r["lang"] for r in records}):
        mine = [r for r in records if r["lang"] == lang]
        sentences = [r["document"].count("。" if lang == "zh" else ".") for r in mine]
        out[lang] = {"unit": "chars" if lang == "zh" else "words",
                     "document_sentences": sum(sentences) / len(mine),
                     "document": sum(_length(r["document"], lang) for r in mine) / len(mine),
                     "summary": sum(_length(r["summary"], lang) for r in mine) / len(mine)}
    return out


def _baselines(splits: dict[str, list[dict]], extracts: dict[str, list[str]]) -> dict | str:
    """ROUGE F1 of lead-1, lead-3 and the key-fact sentences against the summaries, on
    the first ``BASELINE_ITEMS`` items of each split (a random sample: splits are
    shuffled), by split and language; a note when rouge-score is not installed."""
    if importlib.util.find_spec("rouge_score") is None:
        return ("not computed: rouge-score is not installed (pip install "
                "'lmforge[generation]')")
    from ...eval.summarization import ROUGE_TYPES, lead_k, rouge_scores

    out: dict[str, dict] = {}
    for split, records in splits.items():
        records = records[:BASELINE_ITEMS]
        systems = {"lead1": [lead_k(r["document"], 1, r["lang"]) for r in records],
                   "lead3": [lead_k(r["document"], 3, r["lang"]) for r in records],
                   "key_sentences": extracts[split][:BASELINE_ITEMS]}
        out[split] = {system: {} for system in systems}
        for lang in sorted({r["lang"] for r in records}):
            summaries = [r["summary"] for r in records if r["lang"] == lang]
            for system, outputs in systems.items():
                mine = [o for o, r in zip(outputs, records, strict=True) if r["lang"] == lang]
                scores = rouge_scores(mine, summaries, lang=lang)
                out[split][system][lang] = {t: round(scores[t], 2) for t in ROUGE_TYPES}
    return out


def render(seed: int, sizes: dict[str, int], langs: tuple[str, ...]) -> TaskSet:
    """The summarisation set (see the module docstring); ``sizes`` are resolved
    (evaluation splits first, so the size of ``train`` never changes what they hold)."""
    used: set[str] = set()
    splits: dict[str, list[dict]] = {}
    extracts: dict[str, list[str]] = {}
    for split, n in sizes.items():
        units = draw_split(NAME, seed, split, n, langs, _maker(seed, split == ABSTRACTIVE),
                           used)
        records, extracts[split] = number_records(NAME, split, units)
        splits[split] = [{("document" if k == "text" else k): v for k, v in r.items()}
                         for r in records]
    card = base_card(
        NAME, description="bilingual documents of 4-10 sentences about one event (six "
        "kinds), each with a one- or two-sentence summary of its key facts in a fixed style",
        labels=tuple(KINDS), metric="ROUGE-1/2/L F1, mean over items (rouge-score; English "
        "words with the Porter stemmer, Chinese characters)", seed=seed, langs=langs,
        splits=splits, unseen={k: v for k, v in cast().unseen_names().items()
                               if k in ("PER", "CITY", "ORG")},
        partition=PARTITION + "; abstractive uses seen entities")
    card.update({
        "record": ["id", "document", "summary", "lang", "kind", "key_facts"],
        "kind_distribution": {s: distribution((r["kind"] for r in recs), tuple(KINDS))
                              for s, recs in splits.items()},
        "lengths": {s: _lengths(recs) for s, recs in splits.items()},
        "copy_share": {s: 0.0 if s == ABSTRACTIVE else COPY for s in splits},
        "forms": {k: [1 + len(s.forms) for s in kind.statements] for k, kind in KINDS.items()},
        "summary_style": {k: [s.summary[0] for s in kind.statements]
                          for k, kind in KINDS.items()},
        "ceiling": {s: {"rouge1": 100.0, "rouge2": 100.0, "rougeL": 100.0} for s in splits},
        "ceiling_reason": "the summary is a deterministic function of the kind and the key "
                          "facts, and the key facts of the document (each stated once, in "
                          "wording no filler uses): a model that outputs the reference "
                          "scores 100, on every split",
        "baselines": _baselines(splits, extracts),
        "baselines_note": f"ROUGE F1 (0..100) against the summary on the first "
                          f"{BASELINE_ITEMS} items of each split, by language: lead1/lead3 "
                          "the first 1/3 sentences; key_sentences the key-fact sentences, "
                          "what an extractive model that finds them gets",
    })
    return TaskSet(NAME, splits, card)
