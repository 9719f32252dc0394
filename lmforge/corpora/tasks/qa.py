"""Question answering: a bilingual page collection, and questions whose answers are spans
of its pages (SQuAD 2.0), some unanswerable, some needing two pages.

**Pages.** Every person, organisation and city of the cast (:mod:`.entities`, seen and
unseen alike) has one page per language, with the id ``{lang}/{kind}/{English name}``
(``en/person/Anna``, ``zh/organisation/Harbor Bank``, ``zh/city/Lyon``). The English and
the Chinese page of an entity are translations of each other. A page has 3-6
paragraphs (separated by a blank line); its **statements**, one sentence each, are
shuffled over the paragraphs so that no paragraph holds two while one is free, and every
paragraph also holds one or two **filler** sentences that state no fact a question asks
(meetings, talks, concerts, tourists, bridges...). Fillers name other people,
organisations, cities and countries of the same side of the seen/unseen partition, so a
keyword retriever meets distractors, and they carry years and numbers, so a reader
meets plausible wrong answers. A paragraph opens with the entity's name; later
sentences use a pronoun (she/he/it/the city, 她/他/该银行/该市) unless the sentence
before named another entity of the same kind.

**Facts** (:func:`profiles`, drawn from the seed; people's cities, employers and friends
are the relation set's :func:`~.relations.fact_base`):

* person: ``birth_city`` and ``birth_year`` (one statement), ``home_city``,
  ``employer`` and ``role`` (one statement), ``start_year`` (joined the employer; the
  employer is named again), ``friend`` (the closest one), ``hobby``;
* organisation: ``seat`` (city), ``founded`` (year), ``employees``;
* city: ``country``, ``food`` (what it is famous for), ``festival`` (the month of its
  flower festival), ``population``.

The **optional** facts (``start_year``, ``hobby``, ``employees``, ``festival``,
``population``) are stated on a page with probability ``STATED`` = 2/3, the others always.
Each fact is stated on its entity's page only, by one statement (the employer by two:
same value), and on both languages' pages.

**Questions**, each naming its entity (several wordings per fact and language):

* ``single``: a stated fact ("Where was Anna born?", "安娜出生在哪里?"); the answer
  spans are the value's positions in the statements of that fact;
* ``unanswerable`` (about 1/3): the gold page is the entity's, ``is_impossible`` is true
  and ``answers`` empty. Either the fact is **never stated** for any entity of its
  kind (person: favourite colour, siblings, the year they moved to their home city,
  school, spouse; organisation: founder, chief executive, revenue; city: mayor, area,
  founding year), or it is an optional fact this entity's page **does not state**. A
  question-only model can recognise the first source by its wording, not the second:
  the card counts both per split;
* ``multihop`` (about 1/6), about a person: a fact of the entity on the person's page
  names a *bridge* entity, whose page states the answer (``birth_country``: birth city,
  then the city's country; ``home_country``; ``employer_seat``; ``employer_founded``;
  ``friend_home``; ``friend_employer``). ``doc_ids`` are both pages, in order, and the
  answer spans are on the second.

**Splits.** ``train``, ``val`` and ``test`` ask about seen entities, ``test_unseen``
about unseen ones only (whose pages name only unseen entities and countries). Every
split holds its type quotas (unanswerable ``round(n/3)``, multihop ``round(n/6)``, the
rest single), each alternating the languages. No question text occurs twice in the
set, but the collection is closed: a fact of a seen entity may be asked in train and in
test in other wordings, so ``test_unseen`` is the split that measures reading.

**Ceilings.** Every answerable question's answer is the value stated by its fact's
statement on the gold page, and no page states another value, so exact match and F1
are 1.0 on answerable and on unanswerable questions (an unanswerable one is right when
the prediction is empty). Retrieval: the first entity named in each question is its
subject, whose page is the first gold page, so recall@1 of that page is 1.0; the
bridge of a multihop question is named on the first page, so both pages can be found.

**Records** (``{split}.jsonl``)::

    {"id", "question", "lang", "type": "single" | "unanswerable" | "multihop", "fact",
     "entity" (English name), "doc_ids": [page ids], "context_id" (the page the answer
     spans index), "answers": [{"text", "answer_start"}], "is_impossible"}

:func:`render` gives a :class:`QASet` whose ``documents`` are the page records
``{"id", "title", "lang", "kind", "entity", "unseen", "text"}`` (written as
``docs.jsonl``), shared by every split; :func:`to_squad` gives a split in SQuAD v2.0
JSON, one article per context page (its ``title`` is the page id).
"""

from __future__ import annotations

import functools
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from string import Formatter

from ...errors import ConfigError
from ..world.lexicon import ACTIVITIES, DAYS, FOODS, LANGS, MONTHS
from .common import (
    PARTITION,
    UNSEEN_SPLIT,
    TaskSet,
    base_card,
    count,
    distribution,
    fill,
    number_records,
    split_rng,
    zh_int,
    zh_year,
)
from .entities import Entity, cast
from .relations import fact_base, surface

NAME = "qa"
TYPES = ("single", "unanswerable", "multihop")
SHARES = {"unanswerable": 1 / 3, "multihop": 1 / 6}  # of each split; the rest single
STATED = 2 / 3  # the chance that a page states an optional fact
KINDS = {"PER": "person", "ORG": "organisation", "CITY": "city"}
Pair = tuple[str, str]  # (English, Chinese)
Value = Entity | Pair  # a fact's value: an entity, or a string pair

# ----------------------------------------------------------------------------- facts

SINGLE = {"PER": ("birth_city", "birth_year", "home_city", "employer", "role", "start_year",
                  "friend", "hobby"),
          "ORG": ("seat", "founded", "employees"),
          "CITY": ("country", "food", "festival", "population")}
OPTIONAL = ("start_year", "hobby", "employees", "festival", "population")
NEVER = {"PER": ("colour", "siblings", "move_year", "school", "spouse"),
         "ORG": ("founder", "chief", "revenue"),
         "CITY": ("mayor", "area", "city_founded")}
MULTIHOP = {"birth_country": ("birth_city", "country"), "home_country": ("home_city", "country"),
            "employer_seat": ("employer", "seat"), "employer_founded": ("employer", "founded"),
            "friend_home": ("friend", "home_city"), "friend_employer": ("friend", "employer")}

SORTS = {"company": ("company", "公司"), "bank": ("bank", "银行"),
         "university": ("university", "大学"), "hospital": ("hospital", "医院"),
         "restaurant": ("restaurant", "餐厅"), "hotel": ("hotel", "酒店"),
         "club": ("club", "俱乐部")}
ROLES: dict[str, tuple[Pair, ...]] = {
    "company": (("engineer", "工程师"), ("designer", "设计师"), ("programmer", "程序员"),
                ("sales manager", "销售经理")),
    "bank": (("accountant", "会计"), ("analyst", "分析师"), ("cashier", "出纳"),
             ("loan officer", "信贷员")),
    "university": (("professor", "教授"), ("lecturer", "讲师"), ("librarian", "图书管理员"),
                   ("researcher", "研究员")),
    "hospital": (("doctor", "医生"), ("nurse", "护士"), ("surgeon", "外科医生"),
                 ("pharmacist", "药剂师")),
    "restaurant": (("chef", "厨师"), ("waiter", "服务员"), ("pastry chef", "面点师"),
                   ("cashier", "收银员")),
    "hotel": (("receptionist", "前台接待"), ("porter", "行李员"), ("concierge", "礼宾员"),
              ("manager", "经理")),
}
STAFF = {"company": (200, 9000), "bank": (500, 20000), "university": (1000, 12000),
         "hospital": (300, 5000), "restaurant": (12, 80), "hotel": (40, 600), "club": (25, 300)}


def _year(y: int) -> Pair:
    return str(y), zh_year(y)


def _number(n: int) -> Pair:
    return count(n, "en"), count(n, "zh")


@functools.lru_cache(maxsize=8)
def profiles(seed: int = 0) -> dict[str, dict[str, Value]]:
    """The facts the pages state, by entity (English name) and fact name; an optional
    fact a page leaves out is absent. Years and counts are (English, Chinese) pairs:
    ``("1984", "一九八四年")``, ``("3400", "三千四百")``, populations
    ``("1,200,000", "一百二十万")``. A person joins the employer after turning 22 and
    after it was founded."""
    rng = random.Random(f"lmforge-tasks:{NAME}:{int(seed)}:profiles")
    base, c = fact_base(seed), cast()
    out: dict[str, dict[str, Value]] = {}
    founded: dict[str, int] = {}
    for o in c.orgs:
        founded[o.en] = rng.randint(1850, 1990)
        out[o.en] = {"seat": c.city(o.home), "founded": _year(founded[o.en]),
                     "employees": _number(rng.randint(*STAFF[o.sub]))}
    for city in c.cities:
        month, food, people = rng.randrange(12), rng.choice(FOODS), rng.randint(30, 2500)
        out[city.en] = {"country": c.country(city.home), "food": (food[1], food[2]),
                        "festival": (MONTHS[month][0], zh_int(month + 1, liang=False) + "月"),
                        "population": (f"{people * 10000:,}", zh_int(people) + "万")}
    for p in c.people:
        born, employer = rng.randint(1950, 1990), base.works[p.en]
        start = rng.randint(max(born + 22, founded[employer.en] + 1), 2022)
        out[p.en] = {"birth_city": base.born[p.en], "birth_year": _year(born),
                     "home_city": base.lives[p.en], "employer": employer,
                     "role": rng.choice(ROLES[employer.sub]), "start_year": _year(start),
                     "friend": base.friends[p.en][0],
                     "hobby": tuple(rng.choice(ACTIVITIES)[:2])}
    for facts in out.values():
        for fact in OPTIONAL:
            if fact in facts and rng.random() >= STATED:
                del facts[fact]
    return out


# ----------------------------------------------------------------------------- pages

# kind -> statements, each a tuple of (English, Chinese) wordings (one is drawn per
# entity). Slots: the facts; {S} the subject (name or pronoun), {P} its possessive,
# {p} the pronoun's possessive, {a} a/an before {role}.
STATEMENTS: dict[str, tuple[tuple[Pair, ...], ...]] = {
    "PER": (
        (("{S} was born in {birth_city} in {birth_year}.", "{S}{birth_year}出生于{birth_city}。"),
         ("{S} was born in {birth_year} in {birth_city}.", "{S}{birth_year}出生在{birth_city}。")),
        (("{S} lives in {home_city}.", "{S}住在{home_city}。"),
         ("{S} has lived in {home_city} for many years.", "{S}在{home_city}住了很多年。")),
        (("{S} works for {employer} as {a} {role}.", "{S}在{employer}担任{role}。"),
         ("{S} is {a} {role} at {employer}.", "{S}是{employer}的{role}。")),
        (("{S} joined {employer} in {start_year}.", "{S}{start_year}加入了{employer}。"),
         ("{S} has worked at {employer} since {start_year}.",
          "{S}从{start_year}起就在{employer}工作。")),
        (("{P} closest friend is {friend}.", "{S}最好的朋友是{friend}。"),
         ("{S} counts {friend} as {p} closest friend.", "{S}把{friend}当作自己最好的朋友。")),
        (("{P} favourite pastime is to {hobby}.", "{S}最大的爱好是{hobby}。"),
         ("{S} likes to {hobby} in {p} free time.", "{S}业余时间喜欢{hobby}。")),
    ),
    "ORG": (
        (("{S} is based in {seat}.", "{S}的总部位于{seat}。"),
         ("{P} headquarters are in {seat}.", "{S}的总部设在{seat}。")),
        (("{S} was founded in {founded}.", "{S}成立于{founded}。"),
         ("{S} was established in {founded}.", "{S}创建于{founded}。")),
        (("{S} employs {employees} people.", "{S}有{employees}名员工。"),
         ("{S} has a staff of {employees}.", "{S}共有员工{employees}人。")),
    ),
    "CITY": (
        (("{S} lies in {country}.", "{S}位于{country}。"),
         ("{S} is part of {country}.", "{S}属于{country}。")),
        (("{S} is famous for its {food}.", "{S}以{food}闻名。"),
         ("{S} is known all over the country for its {food}.", "{S}的{food}全国闻名。")),
        (("{S} holds a flower festival every {festival}.", "{S}每年{festival}都会举办花节。"),
         ("{P} flower festival takes place in {festival} each year.",
          "{S}的花节在每年{festival}举行。")),
        (("{P} population is about {population}.", "{S}的人口约为{population}。"),
         ("{S} has about {population} inhabitants.", "{S}约有{population}居民。")),
    ),
}

# kind -> fillers. Slots: {Q} another person, {C} another city, {O} another organisation,
# {CLUB}/{CLUB2} two clubs, {K} a country, {Y} a year, {D} a day, {N} 2-30, {T} tourists.
FILLERS: dict[str, tuple[Pair, ...]] = {
    "PER": (
        ("{S} met {Q} at a conference in {C} in {Y}.", "{S}{Y}在{C}的一次会议上见到了{Q}。"),
        ("{S} gave a talk at {O} on {D}.", "{S}{D}在{O}做了一次演讲。"),
        ("{S} spent {N} days in {C} in {Y}.", "{S}{Y}在{C}待了{N}天。"),
        ("{S} wrote a short article about {K}.", "{S}写过一篇关于{K}的短文。"),
        ("{S} once called {Q} from {C}.", "{S}曾经从{C}给{Q}打过电话。"),
        ("{S} read a report about {O} on {D}.", "{S}{D}读了一篇关于{O}的报道。"),
        ("{S} took the train to {C} on {D}.", "{S}{D}坐火车去了{C}。"),
        ("{S} sent {Q} a postcard from {C}.", "{S}从{C}给{Q}寄了一张明信片。"),
    ),
    "ORG": (
        ("{S} sponsored a concert in {C} in {Y}.", "{S}{Y}在{C}赞助了一场音乐会。"),
        ("{S} won a national award in {Y}.", "{S}{Y}获得了一项全国性奖项。"),
        ("{S} works closely with {O}.", "{S}与{O}合作密切。"),
        ("{S} gave {N} scholarships to students in {Y}.", "{S}{Y}向学生发放了{N}份奖学金。"),
        ("{S} invited {Q} to speak at a meeting on {D}.", "{S}{D}邀请{Q}在一次会议上发言。"),
        ("{S} was in the news on {D}.", "{S}{D}上了新闻。"),
        ("{S} opened a new website in {Y}.", "{S}{Y}开通了新网站。"),
    ),
    "CITY": (
        ("{S} has a large park near the river.", "{S}的河边有一座大公园。"),
        ("{S} hosted a match between {CLUB} and {CLUB2} in {Y}.",
         "{S}{Y}举办了一场{CLUB}对{CLUB2}的比赛。"),
        ("{S} welcomed {T} tourists in {Y}.", "{S}{Y}接待了{T}名游客。"),
        ("{S} is twinned with {C}.", "{S}与{C}是友好城市。"),
        ("{S} opened a new train station in {Y}.", "{S}{Y}开通了一座新火车站。"),
        ("{S} has {N} bridges over its river.", "{S}的河上有{N}座桥。"),
        ("{S} hosted a science fair on {D}.", "{S}{D}举办了一场科技展。"),
    ),
}

# kind (or person's gender) -> English subject, possessive, lower-case possessive; Chinese
PRONOUNS = {"F": ("She", "Her", "her", "她"), "M": ("He", "His", "his", "他"),
            "ORG": ("It", "Its", "its", ""), "CITY": ("The city", "The city's", "its", "该市")}

Sentence = tuple[Pair, Mapping[str, Value], bool]  # wordings, slot values, is a statement
Plan = list[list[Sentence]]


@dataclass(frozen=True)
class Page:
    """One page; ``spans[fact]``: the ``(start, end)`` (end exclusive) of the fact's value
    in ``text``, once per statement that names it."""

    id: str
    lang: str
    entity: Entity
    text: str
    spans: dict[str, list[tuple[int, int]]]

    def record(self) -> dict:
        """The page as a line of ``docs.jsonl`` (without its spans)."""
        return {"id": self.id, "title": self.entity.name(self.lang), "lang": self.lang,
                "kind": KINDS[self.entity.kind], "entity": self.entity.en,
                "unseen": self.entity.unseen, "text": self.text}


def page_id(lang: str, e: Entity) -> str:
    """``{lang}/{kind}/{English name}``: ``en/person/Anna``."""
    return f"{lang}/{KINDS[e.kind]}/{e.en}"


def _slots(template: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(template) if name}


def surface_values(values: Mapping[str, Value], lang: str) -> dict[str, str]:
    """Each value as written in ``lang``, and ``a`` (a/an) for a ``role``."""
    out = {k: surface(v, lang) for k, v in values.items()}
    if "role" in out:
        out["a"] = "an" if out["role"][0] in "aeiou" else "a"
    return out


def _forms(e: Entity, lang: str, by_name: bool) -> dict[str, str]:
    """The subject slots: the name, or the pronoun of the entity's kind."""
    subj, poss, low, zh = PRONOUNS[e.sub if e.kind == "PER" else e.kind]
    if lang == "zh":
        return {"S": e.zh if by_name else zh or "该" + SORTS[e.sub][1]}
    if by_name:
        subj, poss = e.en, f"{e.en}'s"
    return {"S": subj, "P": poss, "p": low}


def _filler_values(rng: random.Random, e: Entity) -> dict[str, Value]:
    """Values for every filler slot, from ``e``'s side of the partition, never ``e``."""
    c = cast()

    def other(kind: str) -> Entity:
        return rng.choice([x for x in c.pool(kind, e.unseen) if x != e])

    club, club2 = rng.sample(c.pool("ORG", e.unseen, "club"), 2)
    return {"Q": other("PER"), "C": other("CITY"), "O": other("ORG"), "CLUB": club,
            "CLUB2": club2, "K": rng.choice(c.countries), "Y": _year(rng.randint(1960, 2022)),
            "D": tuple(rng.choice(DAYS)[:2]), "N": _number(rng.randint(2, 30)),
            "T": _number(rng.randint(20, 900) * 100)}


def _plan(rng: random.Random, e: Entity, facts: Mapping[str, Value]) -> Plan:
    """The page's sentences by paragraph: the statements whose facts ``facts`` holds (the
    wordings of a statement name the same facts), one wording each, spread over ``k`` in
    3..min(6, statements + 1) paragraphs (at most one left without), then one filler in
    each paragraph with a statement and two in one without, at random positions."""
    said = [rng.choice(wordings) for wordings in STATEMENTS[e.kind]
            if _slots(wordings[0][0]) - {"S", "P", "p", "a"} <= facts.keys()]
    rng.shuffle(said)
    k = rng.randint(3, min(6, len(said) + 1))
    where = rng.sample(range(k), min(k, len(said))) + [rng.randrange(k) for _ in said[k:]]
    plan: Plan = [[] for _ in range(k)]
    for wording, i in zip(said, where, strict=True):
        plan[i].append((wording, facts, True))
    fillers = iter(rng.sample(FILLERS[e.kind], len(FILLERS[e.kind])))
    for paragraph in plan:
        for _ in range(1 if paragraph else 2):
            sentence = (next(fillers), _filler_values(rng, e), False)
            paragraph.insert(rng.randint(0, len(paragraph)), sentence)
    return plan


def _render(e: Entity, plan: Plan, lang: str) -> Page:
    """The page of ``plan`` in ``lang``, with the spans of its statements' facts."""
    sep = "" if lang == "zh" else " "
    text = ""
    spans: dict[str, list[tuple[int, int]]] = {}
    for i, paragraph in enumerate(plan):
        by_name = True
        for j, (wording, values, statement) in enumerate(paragraph):
            text += sep if j else "\n\n" if i else ""
            sentence, where = fill(surface(wording, lang), {**_forms(e, lang, by_name),
                                                             **surface_values(values, lang)})
            if statement:
                for slot, (start, end) in where.items():
                    if slot in values:
                        spans.setdefault(slot, []).append((len(text) + start, len(text) + end))
            text += sentence
            by_name = any(isinstance(values.get(s), Entity) and values[s].kind == e.kind
                          for s in where)
    return Page(page_id(lang, e), lang, e, text, spans)


def pages(seed: int = 0, langs: Iterable[str] = LANGS) -> dict[str, Page]:
    """Every page in ``langs`` by id: people, organisations, cities, in the cast's order
    (the plan of an entity's pages does not depend on ``langs``)."""
    rng = split_rng(NAME, seed, "pages")
    facts = profiles(seed)
    c = cast()
    plans = [(e, _plan(rng, e, facts[e.en])) for e in (*c.people, *c.orgs, *c.cities)]
    return {p.id: p for p in (_render(e, plan, lang) for lang in langs for e, plan in plans)}


# ----------------------------------------------------------------------------- questions

# fact (or multihop chain) -> (English wordings, Chinese wordings). Slots: {E} the entity,
# {sort} the kind of the person's employer, and the entity's facts.
_W = tuple[str, ...]
QUESTIONS: dict[str, tuple[_W, _W]] = {
    # single facts (unanswerable where the page leaves an optional one out)
    "birth_city": (("Where was {E} born?", "In which city was {E} born?",
                    "What is {E}'s place of birth?", "In what city was {E} born?"),
                   ("{E}出生在哪里?", "{E}是在哪座城市出生的?", "{E}的出生地是哪里?",
                    "{E}出生于哪座城市?")),
    "birth_year": (("When was {E} born?", "In which year was {E} born?",
                    "What year was {E} born in?", "In what year was {E} born?"),
                   ("{E}是哪一年出生的?", "{E}出生于哪一年?", "{E}哪年出生?",
                    "{E}的出生年份是哪一年?")),
    "home_city": (("Where does {E} live?", "In which city does {E} live?",
                   "Which city is {E}'s home?", "Where does {E} live now?"),
                  ("{E}住在哪里?", "{E}住在哪座城市?", "{E}现在住在哪里?", "{E}的家在哪座城市?")),
    "employer": (("Who does {E} work for?", "Which organisation does {E} work for?",
                  "Who employs {E}?", "Who is {E}'s employer?"),
                 ("{E}在哪家机构工作?", "{E}为哪家单位工作?", "{E}的雇主是谁?",
                  "{E}供职于哪家机构?")),
    "role": (("What is {E}'s job at {employer}?", "What does {E} do at {employer}?",
              "What is {E}'s role at {employer}?", "What position does {E} hold at {employer}?"),
             ("{E}在{employer}做什么工作?", "{E}在{employer}担任什么职务?",
              "{E}在{employer}的职位是什么?", "{E}在{employer}是做什么的?")),
    "start_year": (("When did {E} join {employer}?", "In which year did {E} join {employer}?",
                    "Since when has {E} worked at {employer}?",
                    "What year did {E} start working at {employer}?"),
                   ("{E}是哪一年加入{employer}的?", "{E}哪年加入了{employer}?",
                    "{E}从哪一年起在{employer}工作?", "{E}什么时候开始在{employer}工作?")),
    "friend": (("Who is {E}'s closest friend?", "Who is {E}'s best friend?",
                "Which person is {E}'s closest friend?", "Who is the closest friend of {E}?"),
               ("{E}最好的朋友是谁?", "谁是{E}最好的朋友?", "{E}的挚友是谁?",
                "{E}最要好的朋友是谁?")),
    "hobby": (("What does {E} like to do in free time?", "What is {E}'s favourite pastime?",
               "What is {E}'s hobby?", "How does {E} like to spend free time?"),
              ("{E}业余时间喜欢做什么?", "{E}的爱好是什么?", "{E}最大的爱好是什么?",
               "{E}空闲时喜欢做什么?")),
    "seat": (("Where is {E} based?", "In which city is {E} based?",
              "Where are the headquarters of {E}?", "Which city is {E} based in?"),
             ("{E}的总部在哪里?", "{E}总部位于哪座城市?", "{E}的总部设在哪里?",
              "{E}总部在哪座城市?")),
    "founded": (("When was {E} founded?", "In which year was {E} founded?",
                 "When was {E} established?", "What year was {E} founded in?"),
                ("{E}成立于哪一年?", "{E}是哪一年成立的?", "{E}创建于哪一年?",
                 "{E}是什么时候创建的?")),
    "employees": (("How many people does {E} employ?", "How many employees does {E} have?",
                   "How many people work at {E}?", "How large is the staff of {E}?"),
                  ("{E}有多少名员工?", "{E}共有多少员工?", "{E}雇用了多少人?",
                   "有多少人在{E}工作?")),
    "country": (("In which country is {E}?", "Which country is {E} in?",
                 "{E} lies in which country?", "What country is {E} part of?"),
                ("{E}位于哪个国家?", "{E}属于哪个国家?", "{E}是哪个国家的城市?", "{E}在哪个国家?")),
    "food": (("What is {E} famous for?", "Which food is {E} known for?",
              "What food is {E} famous for?", "What is {E} known for?"),
             ("{E}以什么闻名?", "{E}的什么食物最有名?", "{E}以哪种食物闻名?",
              "{E}的什么全国闻名?")),
    "festival": (("When does {E} hold its flower festival?",
                  "In which month is the flower festival of {E}?",
                  "What month is {E}'s flower festival held in?",
                  "When is the flower festival in {E}?"),
                 ("{E}的花节在几月举行?", "{E}每年几月举办花节?", "{E}什么时候举办花节?",
                  "{E}的花节是在哪个月?")),
    "population": (("What is the population of {E}?", "How many people live in {E}?",
                    "How many inhabitants does {E} have?", "What is {E}'s population?"),
                   ("{E}的人口是多少?", "{E}有多少人口?", "{E}大约有多少居民?", "{E}约有多少人?")),
    # never stated
    "colour": (("What is {E}'s favourite colour?", "Which colour does {E} like best?",
                "What colour does {E} like most?"),
               ("{E}最喜欢什么颜色?", "{E}最喜欢的颜色是什么?", "{E}喜欢哪种颜色?")),
    "siblings": (("How many siblings does {E} have?",
                  "How many brothers and sisters does {E} have?", "How many siblings has {E} got?"),
                 ("{E}有几个兄弟姐妹?", "{E}有多少个兄弟姐妹?", "{E}家里有几个兄弟姐妹?")),
    "move_year": (("When did {E} move to {home_city}?",
                   "In which year did {E} move to {home_city}?",
                   "What year did {E} settle in {home_city}?"),
                  ("{E}是哪一年搬到{home_city}的?", "{E}什么时候搬到了{home_city}?",
                   "{E}哪年开始在{home_city}定居?")),
    "school": (("Which university did {E} attend?", "Where did {E} study?",
                "Which school did {E} go to?"),
               ("{E}上的是哪所大学?", "{E}在哪里读的书?", "{E}毕业于哪所学校?")),
    "spouse": (("Who is {E} married to?", "Who is {E}'s spouse?", "Whom did {E} marry?"),
               ("{E}的配偶是谁?", "{E}和谁结婚了?", "{E}的另一半是谁?")),
    "founder": (("Who founded {E}?", "Who is the founder of {E}?", "Which person founded {E}?"),
                ("{E}是谁创办的?", "{E}的创始人是谁?", "谁创立了{E}?")),
    "chief": (("Who runs {E}?", "Who is the chief executive of {E}?", "Who is the head of {E}?"),
              ("{E}的负责人是谁?", "{E}的首席执行官是谁?", "谁在管理{E}?")),
    "revenue": (("How much money did {E} make last year?", "What was {E}'s revenue last year?",
                 "How much did {E} earn last year?"),
                ("{E}去年的收入是多少?", "{E}去年赚了多少钱?", "{E}去年的营业额是多少?")),
    "mayor": (("Who is the mayor of {E}?", "Who is {E}'s mayor?", "Who leads the city of {E}?"),
              ("{E}的市长是谁?", "谁是{E}的市长?", "{E}现任市长是谁?")),
    "area": (("How large is {E} in square kilometres?", "What is the area of {E}?",
              "How many square kilometres does {E} cover?"),
             ("{E}的面积有多大?", "{E}的面积是多少平方公里?", "{E}占地多少平方公里?")),
    "city_founded": (("When was {E} founded?", "In which year was {E} founded?",
                      "How old is the city of {E}?"),
                     ("{E}是哪一年建立的?", "{E}建于哪一年?", "{E}这座城市有多少年的历史?")),
    # multihop
    "birth_country": (("In which country was {E} born?", "Which country was {E} born in?",
                       "In what country is the city where {E} was born?"),
                      ("{E}出生在哪个国家?", "{E}的出生地在哪个国家?",
                       "{E}出生的城市位于哪个国家?")),
    "home_country": (("In which country does {E} live?", "Which country does {E} live in?",
                      "In what country is the city where {E} lives?"),
                     ("{E}住在哪个国家?", "{E}生活在哪个国家?", "{E}居住的城市属于哪个国家?")),
    "employer_seat": (("Where is the {sort} {E} works for based?",
                       "In which city is {E}'s employer based?",
                       "Where are the headquarters of the {sort} that employs {E}?"),
                      ("{E}工作的{sort}总部在哪里?", "{E}的雇主总部位于哪座城市?",
                       "雇用{E}的{sort}总部设在哪里?")),
    "employer_founded": (("When was the {sort} {E} works for founded?",
                          "In which year was {E}'s employer founded?",
                          "When was the {sort} that employs {E} established?"),
                         ("{E}工作的{sort}成立于哪一年?", "{E}的雇主是哪一年成立的?",
                          "雇用{E}的{sort}创建于哪一年?")),
    "friend_home": (("Where does {E}'s closest friend live?",
                     "In which city does {E}'s best friend live?",
                     "Where does the closest friend of {E} live?"),
                    ("{E}最好的朋友住在哪里?", "{E}最好的朋友住在哪座城市?", "{E}的挚友住在哪里?")),
    "friend_employer": (("Who does {E}'s closest friend work for?",
                         "Which organisation does {E}'s best friend work for?",
                         "Who employs the closest friend of {E}?"),
                        ("{E}最好的朋友在哪家机构工作?", "{E}最好的朋友为哪家单位工作?",
                         "{E}的挚友供职于哪家机构?")),
}


def _answers(page: Page, fact: str) -> list[dict]:
    return [{"text": page.text[s:e], "answer_start": s} for s, e in page.spans.get(fact, [])]


def _questions(unseen: bool, lang: str, facts: Mapping[str, Mapping[str, Value]],
               book: Mapping[str, Page]) -> dict[str, list[dict]]:
    """Every question about the entities of one side of the partition in ``lang``, by
    type: each fact of :data:`SINGLE` (unanswerable where left out) and :data:`NEVER`
    of each entity, each :data:`MULTIHOP` chain of each person, in every wording."""
    out: dict[str, list[dict]] = {t: [] for t in TYPES}
    c = cast()

    def ask(values: dict, qtype: str, fact: str, e: Entity, docs: list[Page],
            answer: str) -> None:
        """Every wording of ``fact`` about ``e`` (filled with ``values``); the answer is
        the value of the fact ``answer`` on the last of ``docs`` (none when that page
        does not state it)."""
        for wording in surface(QUESTIONS[fact], lang):
            out[qtype].append({
                "question": fill(wording, values)[0], "lang": lang, "type": qtype,
                "fact": fact, "entity": e.en, "doc_ids": [d.id for d in docs],
                "context_id": docs[-1].id, "answers": _answers(docs[-1], answer),
                "is_impossible": qtype == "unanswerable"})

    for e in (*c.pool("PER", unseen), *c.pool("ORG", unseen), *c.pool("CITY", unseen)):
        mine, page = facts[e.en], book[page_id(lang, e)]
        values = {**surface_values(mine, lang), "E": e.name(lang)}
        for fact in SINGLE[e.kind] + NEVER[e.kind]:
            ask(values, "single" if fact in mine else "unanswerable", fact, e, [page], fact)
        if e.kind == "PER":
            values["sort"] = surface(SORTS[mine["employer"].sub], lang)
            for chain, (first, second) in MULTIHOP.items():
                bridge = book[page_id(lang, mine[first])]
                ask(values, "multihop", chain, e, [page, bridge], second)
    return out


# ----------------------------------------------------------------------------- the set

@dataclass
class QASet(TaskSet):
    """A QA task set: the questions of each split, and ``documents``, the page records
    every split shares (the retrieval collection)."""

    documents: list[dict] = field(default_factory=list)


def _draw(pools: Mapping[tuple[bool, str, str], list[dict]], split: str, n: int,
          langs: tuple[str, ...]) -> list[dict]:
    """``n`` questions for ``split``, taken from the end of the shuffled pools of its side:
    ``round(n * share)`` of each type (single: the rest), alternating the languages."""
    unseen = split == UNSEEN_SPLIT
    quotas = {t: round(n * share) for t, share in SHARES.items()}
    quotas = {"single": n - sum(quotas.values()), **quotas}
    out = []
    for qtype, quota in quotas.items():
        for i in range(quota):
            lang = langs[i % len(langs)]
            pool = pools[unseen, qtype, lang]
            if not pool:
                raise ConfigError(
                    f"sizes[{split!r}]={n} is more than the {NAME} set can render without "
                    f"repeating a question: no {qtype} {lang} questions about "
                    f"{'unseen' if unseen else 'seen'} entities are left; use a smaller size")
            out.append(pool.pop())
    return out


def _card(seed: int, langs: tuple[str, ...], splits: dict[str, list[dict]],
          documents: list[dict]) -> dict:
    card = base_card(
        NAME, description="bilingual questions about a shared collection of pages (one per "
        "person, organisation and city and language); answers are spans of a page "
        "(SQuAD 2.0), a third unanswerable, a sixth needing two pages",
        labels=TYPES, metric="exact match and F1 (SQuAD 2.0: an unanswerable question is "
        "right when the prediction is empty); retrieval recall@k of doc_ids",
        seed=seed, langs=langs, splits=splits,
        unseen={k: v for k, v in cast().unseen_names().items() if k in KINDS},
        partition=PARTITION)
    card.update({
        "type_distribution": {s: distribution((r["type"] for r in recs), TYPES)
                              for s, recs in splits.items()},
        "fact_distribution": {s: distribution(r["fact"] for r in recs)
                              for s, recs in splits.items()},
        "unanswerable_sources": {s: distribution(
            ("never_stated" if r["fact"] in NEVER["PER"] + NEVER["ORG"] + NEVER["CITY"]
             else "not_on_page" for r in recs if r["is_impossible"]),
            ("never_stated", "not_on_page")) for s, recs in splits.items()},
        "facts": {KINDS[k]: {"stated": [f for f in SINGLE[k] if f not in OPTIONAL],
                             "optional": [f for f in SINGLE[k] if f in OPTIONAL],
                             "never_stated": list(NEVER[k])} for k in KINDS},
        "optional_stated_share": STATED,
        "multihop": {chain: list(hops) for chain, hops in MULTIHOP.items()},
        "documents": {"file": "docs.jsonl", "count": len(documents),
                      "by_kind": distribution(d["kind"] for d in documents),
                      "paragraphs": "3-6, blank-line separated; facts scattered over them",
                      "shared_by": list(splits)},
        "answer_language": "answers on Chinese pages are Chinese strings: names (安娜), years "
                           "(一九八四年), counts (三千四百), populations (一百二十万), months "
                           "(三月)",
        "squad": "{split}.squad.json: SQuAD v2.0, one article per context page (title = page "
                 "id); the context is the page the answer spans index (for unanswerable "
                 "questions the page it would be on, for multihop the second page)",
        "repeats": "no question text occurs twice; a seen entity's fact may be asked in "
                   "several splits in other wordings (test_unseen: entities of no other split)",
        "ceiling": {s: {"exact_match": 1.0, "f1": 1.0, "answerable_exact_match": 1.0,
                        "unanswerable_exact_match": 1.0, "retrieval_recall_at_1": 1.0}
                    for s in splits},
        "ceiling_reason": "every answerable question's answer is the value its fact's "
                          "statement gives on the gold page, and no page states another "
                          "value; a never-stated or left-out fact is on no page. The first "
                          "entity a question names is its subject and the title of its "
                          "first gold page (recall@1 1.0); a multihop question's bridge is "
                          "named on that page, the answer on the bridge's page",
    })
    return card


def render(seed: int, sizes: dict[str, int], langs: tuple[str, ...]) -> QASet:
    """The QA set (see the module docstring); ``sizes`` are resolved (evaluation splits
    first, so the size of ``train`` never changes what they hold)."""
    facts, book = profiles(seed), pages(seed, langs)
    pools = {}
    for unseen in (False, True):
        for lang in langs:
            for qtype, items in _questions(unseen, lang, facts, book).items():
                split_rng(NAME, seed, f"pool:{unseen}:{qtype}:{lang}").shuffle(items)
                pools[unseen, qtype, lang] = items
    splits = {}
    for split, n in sizes.items():
        drawn = _draw(pools, split, n, langs)
        split_rng(NAME, seed, split).shuffle(drawn)
        splits[split] = number_records(NAME, split, [[(r, r["type"])] for r in drawn])[0]
    documents = [p.record() for p in book.values()]
    return QASet(NAME, splits, _card(seed, langs, splits, documents), documents=documents)


def to_squad(ts: TaskSet, split: str) -> dict:
    """One split of a QA set as SQuAD v2.0 JSON: ``{"version": "v2.0", "data": [{"title",
    "paragraphs": [{"context", "qas": [{"id", "question", "answers": [{"text",
    "answer_start"}], "is_impossible"}]}]}]}``, one article per context page, in the
    collection's order."""
    if not isinstance(ts, QASet):
        raise ConfigError(f"to_squad needs the {NAME!r} task set; got {ts.name!r}")
    if split not in ts.splits:
        raise ConfigError(f"unknown split {split!r}; known: {', '.join(ts.splits)}")
    qas: dict[str, list[dict]] = {}
    for r in ts.splits[split]:
        qas.setdefault(r["context_id"], []).append(
            {"id": r["id"], "question": r["question"], "answers": r["answers"],
             "is_impossible": r["is_impossible"]})
    return {"version": "v2.0",
            "data": [{"title": d["id"], "paragraphs": [{"context": d["text"],
                                                         "qas": qas[d["id"]]}]}
                     for d in ts.documents if d["id"] in qas]}
