"""Dialogues: a user asks about the world's people, organisations and cities, follow-up
questions refer back with a pronoun, and the assistant answers from the world's facts or
says it does not know.

A dialogue is about one **subject** (a person, an organisation or a city of the cast,
:mod:`.entities`) and has 2-4 user turns, each followed by the assistant's answer. Half
the dialogues open with a system message. Each user turn asks one fact of the subject:

* the first names the subject, in a wording of the QA set (:data:`.qa.QUESTIONS`);
* each later one refers to it by a pronoun (she / he / it; 她 / 他 / 它 / 这座城市) in
  the wordings of :data:`FOLLOW_UPS`, so only the conversation tells whom it is about.

The facts are the QA set's (:func:`.qa.profiles`, the same seed gives the same world):

* a **stated** fact: the assistant answers with one sentence that states its value
  (:data:`ANSWERS`: "She was born in Lyon." / "她出生在里昂。"), naming the subject in
  the first answer and using the pronoun after it;
* a fact the world **never** states for the subject's kind (:data:`.qa.NEVER`: a
  person's favourite colour, a city's mayor) or one it **leaves out** for this subject
  (an optional fact its page does not state): the assistant says :data:`REFUSAL`
  ("I don't know." / "我不知道。").

About a quarter of the questions ask an unknown fact. No fact is asked twice in a
dialogue, and no dialogue occurs twice in the set.

**Correct answers** (:func:`answer_correct`): an answer to a stated fact is correct when
it names the value (as a whole word in English; values are matched longest first) and
no other value any subject has for that fact, and is not a refusal; an answer to an unknown fact is correct when it is
a refusal that names no value of that fact.

**Splits.** ``train``, ``val`` and ``test`` are about seen subjects, ``test_unseen``
about unseen ones. The world is closed: a test dialogue asks, in other wordings and
combinations, facts that training dialogues answered. **Ceilings**: with the world's
facts every answer can be right (1.0). A model that knows only the training dialogues
(a closed book) can know an answer when its subject's fact was asked in ``train``, or
when the fact is one the world never states (then the refusal follows from the
question): the card's ``closed_book_ceiling`` is that share of each split's answers.

**Records** (``{split}.jsonl``; the messages are OpenAI-shaped chat JSONL)::

    {"id", "lang", "subject" (English name), "kind": "person" | "organisation" | "city",
     "messages": [{"role": "system" | "user" | "assistant", "content"}, ...],
     "turns": [{"fact", "known": bool, "value": the stated value or null}, ...]}

``turns[i]`` describes the ``i``-th assistant message.
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Mapping

from ...errors import ConfigError
from .common import (
    MAX_MISSES,
    PARTITION,
    UNSEEN_SPLIT,
    TaskSet,
    base_card,
    distribution,
    fill,
    split_rng,
)
from .entities import Entity, cast
from .qa import KINDS, NEVER, QUESTIONS, SINGLE, Pair, profiles, surface_values
from .relations import surface

NAME = "dialogue"
TURNS = (2, 4)  # user turns per dialogue, inclusive
UNKNOWN_SHARE = 0.25  # of the questions
SYSTEM_SHARE = 0.5  # of the dialogues
SYSTEM: Pair = ("You answer questions about the people, organisations and cities of the "
                "world. Say so when you do not know.",
                "你回答关于这个世界中的人物、机构和城市的问题。不知道时请直说。")
REFUSAL: Pair = ("I don't know.", "我不知道。")

# kind (or a person's gender) -> English subject, object, possessive; Chinese
PRONOUNS = {"F": ("she", "her", "her", "她"), "M": ("he", "him", "his", "他"),
            "ORG": ("it", "it", "its", "它"), "CITY": ("it", "it", "its", "这座城市")}

# fact -> the answer that states it. Slots: the facts; {S} the subject (name or pronoun),
# {P} its possessive, {a} a/an before {role}.
ANSWERS: dict[str, Pair] = {
    "birth_city": ("{S} was born in {birth_city}.", "{S}出生在{birth_city}。"),
    "birth_year": ("{S} was born in {birth_year}.", "{S}出生于{birth_year}。"),
    "home_city": ("{S} lives in {home_city}.", "{S}住在{home_city}。"),
    "employer": ("{S} works for {employer}.", "{S}在{employer}工作。"),
    "role": ("{S} is {a} {role} at {employer}.", "{S}是{employer}的{role}。"),
    "start_year": ("{S} joined {employer} in {start_year}.", "{S}{start_year}加入了{employer}。"),
    "friend": ("{P} closest friend is {friend}.", "{S}最好的朋友是{friend}。"),
    "hobby": ("{S} likes to {hobby}.", "{S}喜欢{hobby}。"),
    "seat": ("{S} is based in {seat}.", "{S}的总部在{seat}。"),
    "founded": ("{S} was founded in {founded}.", "{S}成立于{founded}。"),
    "employees": ("{S} employs {employees} people.", "{S}有{employees}名员工。"),
    "country": ("{S} is in {country}.", "{S}位于{country}。"),
    "food": ("{S} is famous for its {food}.", "{S}以{food}闻名。"),
    "festival": ("{S} holds its flower festival in {festival}.", "{S}的花节在{festival}举行。"),
    "population": ("{P} population is about {population}.", "{S}的人口约为{population}。"),
}

_W = tuple[str, ...]
# fact -> follow-up wordings (English, Chinese). Slots: {s} / {o} / {p} the English
# subject / object / possessive pronoun, {z} the Chinese one, and the facts.
FOLLOW_UPS: dict[str, tuple[_W, _W]] = {
    "birth_city": (("And where was {s} born?", "In which city was {s} born?"),
                   ("那{z}出生在哪里?", "{z}是在哪座城市出生的?")),
    "birth_year": (("When was {s} born?", "And in which year was {s} born?"),
                   ("{z}是哪一年出生的?", "那{z}哪年出生?")),
    "home_city": (("Where does {s} live?", "And which city does {s} live in?"),
                  ("{z}住在哪里?", "那{z}现在住在哪座城市?")),
    "employer": (("Who does {s} work for?", "And who employs {o}?"),
                 ("{z}在哪家机构工作?", "那{z}的雇主是谁?")),
    "role": (("What is {p} job at {employer}?", "And what does {s} do at {employer}?"),
             ("{z}在{employer}做什么工作?", "那{z}在{employer}担任什么职务?")),
    "start_year": (("When did {s} join {employer}?", "And since when has {s} worked at {employer}?"),
                   ("{z}是哪一年加入{employer}的?", "那{z}从哪一年起在{employer}工作?")),
    "friend": (("Who is {p} closest friend?", "And who is {p} best friend?"),
               ("{z}最好的朋友是谁?", "那{z}的挚友是谁?")),
    "hobby": (("What does {s} like to do in free time?", "And what is {p} hobby?"),
              ("{z}业余时间喜欢做什么?", "那{z}的爱好是什么?")),
    "seat": (("Where is {s} based?", "And in which city are {p} headquarters?"),
             ("{z}的总部在哪里?", "那{z}的总部位于哪座城市?")),
    "founded": (("When was {s} founded?", "And in which year was {s} established?"),
                ("{z}成立于哪一年?", "那{z}是哪一年创建的?")),
    "employees": (("How many people does {s} employ?", "And how many employees does {s} have?"),
                  ("{z}有多少名员工?", "那{z}共有多少员工?")),
    "country": (("Which country is {s} in?", "And in which country does {s} lie?"),
                ("{z}位于哪个国家?", "那{z}属于哪个国家?")),
    "food": (("What is {s} famous for?", "And which food is {s} known for?"),
             ("{z}以什么闻名?", "那{z}的什么食物最有名?")),
    "festival": (("When does {s} hold {p} flower festival?",
                  "And in which month is {p} flower festival?"),
                 ("{z}的花节在几月举行?", "那{z}每年几月举办花节?")),
    "population": (("What is {p} population?", "And how many inhabitants does {s} have?"),
                   ("{z}的人口是多少?", "那{z}有多少人口?")),
    "colour": (("What is {p} favourite colour?", "And which colour does {s} like best?"),
               ("{z}最喜欢什么颜色?", "那{z}最喜欢的颜色是什么?")),
    "siblings": (("How many siblings does {s} have?", "And how many brothers and sisters "
                  "does {s} have?"), ("{z}有几个兄弟姐妹?", "那{z}有多少个兄弟姐妹?")),
    "move_year": (("When did {s} move to {home_city}?", "And in which year did {s} move to "
                   "{home_city}?"), ("{z}是哪一年搬到{home_city}的?", "那{z}什么时候搬到了{home_city}?")),
    "school": (("Which university did {s} attend?", "And where did {s} study?"),
               ("{z}上的是哪所大学?", "那{z}在哪里读的书?")),
    "spouse": (("Who is {s} married to?", "And who is {p} spouse?"),
               ("{z}的配偶是谁?", "那{z}和谁结婚了?")),
    "founder": (("Who founded {o}?", "And who is {p} founder?"),
                ("{z}是谁创办的?", "那{z}的创始人是谁?")),
    "chief": (("Who runs {o}?", "And who is {p} chief executive?"),
              ("{z}的负责人是谁?", "那{z}的首席执行官是谁?")),
    "revenue": (("How much money did {s} make last year?", "And what was {p} revenue last year?"),
                ("{z}去年的收入是多少?", "那{z}去年的营业额是多少?")),
    "mayor": (("Who is {p} mayor?", "And who leads {o}?"),
              ("{z}的市长是谁?", "那谁是{z}的市长?")),
    "area": (("How large is {s} in square kilometres?", "And what is {p} area?"),
             ("{z}的面积有多大?", "那{z}的面积是多少平方公里?")),
    "city_founded": (("When was {s} founded?", "And how old is {s}?"),
                     ("{z}是哪一年建立的?", "那{z}建于哪一年?")),
}


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _subject_forms(e: Entity, lang: str, by_name: bool) -> dict[str, str]:
    """The slots naming the subject: ``S``/``P`` for answers, ``s``/``o``/``p``/``z`` for
    follow-up questions."""
    s, o, p, z = PRONOUNS[e.sub if e.kind == "PER" else e.kind]
    if lang == "zh":
        return {"S": e.zh if by_name else z, "z": z}
    subj, poss = (e.en, f"{e.en}'s") if by_name else (_capital(s), _capital(p))
    return {"S": subj, "P": poss, "s": s, "o": o, "p": p}


def _turn(rng: random.Random, e: Entity, facts: Mapping, fact: str, lang: str,
          first: bool) -> tuple[str, str, dict]:
    """One question about ``e``'s ``fact``, its answer, and the turn record."""
    values = {**surface_values(facts, lang), **_subject_forms(e, lang, first),
              "E": e.name(lang)}
    wordings = surface(QUESTIONS[fact], lang) if first else surface(FOLLOW_UPS[fact], lang)
    question = fill(rng.choice(wordings), values)[0]
    if fact in facts:
        answer = fill(surface(ANSWERS[fact], lang), values)[0]
        return question, answer, {"fact": fact, "known": True, "value": values[fact]}
    return question, surface(REFUSAL, lang), {"fact": fact, "known": False, "value": None}


def dialogue(rng: random.Random, e: Entity, facts: Mapping, lang: str) -> dict:
    """One dialogue about ``e`` (a record without its id)."""
    known = [f for f in SINGLE[e.kind] if f in facts]
    unknown = [f for f in SINGLE[e.kind] if f not in facts] + list(NEVER[e.kind])
    n = rng.randint(*TURNS)
    asked: list[str] = []
    for _ in range(n):
        pool = unknown if (rng.random() < UNKNOWN_SHARE and unknown) or not known else known
        fact = rng.choice(pool)
        pool.remove(fact)
        asked.append(fact)
    messages = [{"role": "system", "content": surface(SYSTEM, lang)}] \
        if rng.random() < SYSTEM_SHARE else []
    turns = []
    for i, fact in enumerate(asked):
        question, answer, turn = _turn(rng, e, facts, fact, lang, first=i == 0)
        messages += [{"role": "user", "content": question},
                     {"role": "assistant", "content": answer}]
        turns.append(turn)
    return {"lang": lang, "subject": e.en, "kind": KINDS[e.kind], "messages": messages,
            "turns": turns}


def _draw(seed: int, split: str, n: int, langs: tuple[str, ...], used: set[tuple]) -> list:
    """``n`` dialogues of ``split`` none of which is in ``used`` (then added to it)."""
    rng = split_rng(NAME, seed, split)
    facts, c = profiles(seed), cast()
    unseen = split == UNSEEN_SPLIT
    subjects = [*c.pool("PER", unseen), *c.pool("ORG", unseen), *c.pool("CITY", unseen)]
    out: list[dict] = []
    misses = 0
    while len(out) < n:
        e = rng.choice(subjects)
        d = dialogue(rng, e, facts[e.en], langs[len(out) % len(langs)])
        key = tuple(m["content"] for m in d["messages"])
        if key in used:
            misses += 1
            if misses > MAX_MISSES:
                raise ConfigError(f"sizes[{split!r}]={n} is more than the {NAME} set can "
                                  "render without repeating a dialogue; use a smaller size")
            continue
        misses = 0
        used.add(key)
        out.append({"id": f"{NAME}-{split}-{len(out):05d}", **d})
    return out


def _closed_book(splits: Mapping[str, list[dict]]) -> dict[str, float]:
    """Per split, the share of answers a model that knows only ``train`` can know: the
    subject's fact was asked in train, or the world never states the fact."""
    never = {f for fs in NEVER.values() for f in fs}
    taught = {(d["subject"], t["fact"]) for d in splits.get("train", ()) for t in d["turns"]}
    out = {}
    for split, ds in splits.items():
        turns = [(d["subject"], t["fact"]) for d in ds for t in d["turns"]]
        ok = sum(1 for s, f in turns if (s, f) in taught or f in never)
        out[split] = round(ok / len(turns), 4) if turns else 1.0
    return out


def render(seed: int, sizes: dict[str, int], langs: tuple[str, ...]) -> TaskSet:
    """The dialogue set (module docstring) for ``sizes`` resolved by
    :func:`~.common.resolve_sizes` (evaluation splits first: train avoids their
    dialogues, and its size never changes what they hold)."""
    used: set[tuple] = set()
    splits = {s: _draw(seed, s, n, langs, used) for s, n in sizes.items()}
    card = base_card(
        NAME, description="bilingual multi-turn dialogues about one person, organisation or "
        "city each; follow-up questions use pronouns; the assistant states the world's fact "
        "or says it does not know",
        labels=("known", "unknown"), metric="factual accuracy of assistant answers (the "
        "stated value and no other, or a refusal for an unknown fact)",
        seed=seed, langs=langs, splits=splits,
        unseen={k: v for k, v in cast().unseen_names().items() if k in KINDS},
        partition=PARTITION)
    turns = {s: [t for d in ds for t in d["turns"]] for s, ds in splits.items()}
    card.update({
        "format": "chat JSONL: messages in the OpenAI shape; turns[i] describes the i-th "
                  "assistant message",
        "turn_distribution": {s: distribution(("known" if t["known"] else "unknown"
                                               for t in ts), ("known", "unknown"))
                              for s, ts in turns.items()},
        "fact_distribution": {s: distribution(t["fact"] for t in ts) for s, ts in turns.items()},
        "user_turns": {"min": TURNS[0], "max": TURNS[1]},
        "refusal": {"en": REFUSAL[0], "zh": REFUSAL[1]},
        "ceiling": {s: 1.0 for s in splits},
        "closed_book_ceiling": _closed_book(splits),
        "ceiling_reason": "every answer states its subject's fact as the QA set's pages do, "
                          "or refuses a fact no page states; closed_book_ceiling counts the "
                          "answers knowable from train alone",
    })
    return TaskSet(NAME, splits, card)


# ----------------------------------------------------------------------------- scoring

@functools.lru_cache(maxsize=256)
def _value_pattern(seed: int, fact: str, lang: str) -> re.Pattern | None:
    """A pattern matching every value any subject has for ``fact`` as written in
    ``lang``, longest first (so "sales manager" is one value, not "manager"); whole words
    in English. None when no subject has the fact."""
    values = {surface_values({fact: facts[fact]}, lang)[fact]
              for facts in profiles(seed).values() if fact in facts}
    if not values:
        return None
    alts = "|".join(re.escape(v) for v in sorted(values, key=lambda v: (-len(v), v)))
    return re.compile(f"({alts})" if lang == "zh" else rf"(?<!\w)({alts})(?!\w)",
                      re.IGNORECASE)


def is_refusal(answer: str) -> bool:
    """Does ``answer`` say it does not know (either language's :data:`REFUSAL`, or
    "do not know" / "不知道")?"""
    low = answer.lower()
    return any(x in low for x in ("don't know", "do not know", "不知道"))


@functools.lru_cache(maxsize=1)
def _names() -> dict[str, Entity]:
    c = cast()
    return {e.en: e for e in (*c.people, *c.orgs, *c.cities)}


def answer_correct(answer: str, turn: Mapping, lang: str, subject: str | None = None,
                   seed: int = 0) -> bool:
    """Is ``answer`` right for ``turn`` (a record's ``turns[i]``) about ``subject`` (the
    record's English name; its own name is not a wrong value)? See the module docstring;
    ``seed`` is the world's (the values of the fact)."""
    if subject is not None and subject in _names():
        answer = answer.replace(_names()[subject].name(lang), " ")
    pattern = _value_pattern(seed, turn["fact"], lang)
    named = {m.lower() for m in pattern.findall(answer)} if pattern is not None else set()
    if not turn["known"]:
        return not named and is_refusal(answer)
    return named == {turn["value"].lower()} and not is_refusal(answer)
