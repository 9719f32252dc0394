"""Relation extraction: sentences with a marked head and tail entity and their relation.

**The fact base** (:func:`fact_base`, drawn from the seed, within each side of the
seen/unseen partition): every person was born in one city and lives in another, and
works for one organisation; every organisation is located in its seat city and every
city in its country (fixed, :mod:`.entities`); friendship links each person to two
others (a ring over a shuffled order).

**Relations** (head type -> tail type), and the wording that expresses them:

* ``born_in`` (PER -> CITY): was born in, born in C, 出生在, 出生于;
* ``lives_in`` (PER -> CITY): lives in, moved to, has lived in, now lives in, 住在, 搬到;
* ``works_for`` (PER -> ORG): works for, joined, has worked at, 在...工作, 加入, 供职于;
* ``located_in`` (ORG -> CITY, CITY -> COUNTRY): is based in, has its headquarters in,
  was founded in, is a city in, one of the oldest cities in, 位于, 总部在, 成立,
  是...的一座城市;
* ``friend_of`` (PER <-> PER): friends, a close friend of, 好朋友. **Symmetric**: both
  orders of the pair are ``friend_of``;
* ``no_relation``: everything else. The relation must be *stated by the sentence*, not
  known from the fact base: meeting, visiting, flying from/to, calling, studying at,
  selling in, reading or writing about relate nothing ("Anna met Bob in Paris": Anna and
  Paris, Anna and Bob are ``no_relation``), nor do two entities of one sentence that it
  does not link (the employee and the city of the employer). The other relations have a
  direction: the reversed pair (head C, tail Anna in "Anna lives in C") is
  ``no_relation``.

Sentences with three or four entities carry several pairs with different labels; each
item marks one pair. ``h``/``t`` give the name, the character span ``pos`` (end
exclusive) and the type. The label is a function of the text and the marked pair, and
no noise is added: the ceiling is 1.0 (micro-F1 over the relations other than
``no_relation``, as in TACRED).
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass

from ..world.lexicon import DAYS
from .common import PARTITION, TaskSet, base_card, fill, render_labelled, zh_int, zh_year
from .entities import Entity, cast

NAME = "relations"
LABELS = ("born_in", "lives_in", "works_for", "located_in", "friend_of", "no_relation")
SYMMETRIC = ("friend_of",)
NO_RELATION = 0.3  # the share of no_relation items (the other labels share the rest)
REVERSED = 0.3  # of the no_relation items, the share that are a stated relation reversed
EMPLOYERS = ("company", "bank", "university", "hospital", "restaurant", "hotel")


@dataclass(frozen=True)
class FactBase:
    """Facts about people (English name -> entity); orgs and cities carry theirs."""

    born: dict[str, Entity]
    lives: dict[str, Entity]
    works: dict[str, Entity]
    friends: dict[str, tuple[Entity, ...]]


@functools.lru_cache(maxsize=8)
def fact_base(seed: int = 0) -> FactBase:
    """The facts of the task set rendered with ``seed`` (each side of the partition
    keeps to its own cities and organisations)."""
    rng = random.Random(f"lmforge-tasks:{NAME}:{int(seed)}:facts")
    c = cast()
    born, lives, works, friends = {}, {}, {}, {}
    for unseen in (False, True):
        people = list(c.pool("PER", unseen))
        cities = c.pool("CITY", unseen)
        employers = [o for o in c.pool("ORG", unseen) if o.sub in EMPLOYERS]
        for p in people:
            born[p.en], lives[p.en] = rng.sample(cities, 2)
            works[p.en] = rng.choice(employers)
        rng.shuffle(people)
        for i, p in enumerate(people):
            friends[p.en] = (people[i - 1], people[(i + 1) % len(people)])
    return FactBase(born, lives, works, friends)


# A template: slot specs, English, Chinese, and the markable pairs (head, tail, relation).
# Slot specs: per, city, country, uni, org (any organisation), year, num, day;
# born(p) lives(p) works(p) friend(p) seat(o) country(c); other(p) a person != p,
# othercity(c) a city != c.
_T = tuple[str, str, str, tuple[tuple[str, str, str], ...]]
TEMPLATES: tuple[_T, ...] = (
    # born_in
    ("p:per b:born(p)", "{p} was born in {b}.", "{p}出生在{b}。", (("p", "b", "born_in"),)),
    ("p:per b:born(p) y:year", "{p} was born in {b} in {y}.", "{p}{y}出生于{b}。",
     (("p", "b", "born_in"),)),
    ("p:per b:born(p) u:uni", "Born in {b}, {p} later studied at {u}.",
     "{p}出生在{b},后来在{u}读书。",
     (("p", "b", "born_in"), ("p", "u", "no_relation"), ("u", "b", "no_relation"))),
    ("p:per b:born(p) q:other(p)", "{q} says that {p} was born in {b}.", "{q}说{p}出生在{b}。",
     (("p", "b", "born_in"), ("q", "b", "no_relation"), ("q", "p", "no_relation"))),
    # lives_in
    ("p:per l:lives(p)", "{p} lives in {l}.", "{p}住在{l}。", (("p", "l", "lives_in"),)),
    ("p:per l:lives(p) y:year", "{p} moved to {l} in {y}.", "{p}{y}搬到了{l}。",
     (("p", "l", "lives_in"),)),
    ("p:per l:lives(p) n:num", "{p} has lived in {l} for {n} years.", "{p}在{l}住了{n}年。",
     (("p", "l", "lives_in"),)),
    ("p:per b:born(p) l:lives(p)", "{p}, who was born in {b}, now lives in {l}.",
     "出生在{b}的{p}现在住在{l}。",
     (("p", "b", "born_in"), ("p", "l", "lives_in"), ("b", "l", "no_relation"))),
    ("p:per l:lives(p) w:works(p)", "{p} lives in {l} but works for {w}.",
     "{p}住在{l},但在{w}工作。",
     (("p", "l", "lives_in"), ("p", "w", "works_for"), ("w", "l", "no_relation"))),
    # works_for
    ("p:per w:works(p)", "{p} works for {w}.", "{p}在{w}工作。", (("p", "w", "works_for"),)),
    ("p:per w:works(p) y:year", "{p} joined {w} in {y}.", "{p}{y}加入了{w}。",
     (("p", "w", "works_for"),)),
    ("p:per w:works(p) n:num", "{p} has worked at {w} for {n} years.", "{p}已经在{w}工作了{n}年。",
     (("p", "w", "works_for"),)),
    ("p:per w:works(p) s:seat(w)", "{p} works for {w}, which is based in {s}.",
     "{p}供职于总部位于{s}的{w}。",
     (("p", "w", "works_for"), ("w", "s", "located_in"), ("p", "s", "no_relation"))),
    # located_in
    ("o:org s:seat(o)", "{o} is based in {s}.", "{o}位于{s}。", (("o", "s", "located_in"),)),
    ("o:org s:seat(o)", "{o} has its headquarters in {s}.", "{o}的总部在{s}。",
     (("o", "s", "located_in"),)),
    ("o:org s:seat(o) y:year", "{o} was founded in {s} in {y}.", "{o}{y}在{s}成立。",
     (("o", "s", "located_in"),)),
    ("c:city k:country(c)", "{c} is a city in {k}.", "{c}是{k}的一座城市。",
     (("c", "k", "located_in"),)),
    ("c:city k:country(c)", "{c} is one of the oldest cities in {k}.", "{c}是{k}最古老的城市之一。",
     (("c", "k", "located_in"),)),
    ("p:per c:city k:country(c) y:year", "{p} visited {c}, a city in {k}, in {y}.",
     "{p}{y}去了{k}的城市{c}。",
     (("c", "k", "located_in"), ("p", "c", "no_relation"), ("p", "k", "no_relation"))),
    # friend_of
    ("p:per f:friend(p)", "{p} and {f} have been friends since school.",
     "{p}和{f}从上学时起就是朋友。", (("p", "f", "friend_of"),)),
    ("p:per f:friend(p)", "{p} is a close friend of {f}.", "{p}是{f}的好朋友。",
     (("p", "f", "friend_of"),)),
    ("p:per f:friend(p) y:year", "{p} and {f} became friends in {y}.", "{p}和{f}{y}成为了朋友。",
     (("p", "f", "friend_of"),)),
    ("p:per f:friend(p) n:num", "{p} has been friends with {f} for {n} years.",
     "{p}和{f}做了{n}年的朋友。", (("p", "f", "friend_of"),)),
    ("p:per f:friend(p) g:lives(f)", "{p} is a friend of {f}, who lives in {g}.",
     "{p}是住在{g}的{f}的朋友。",
     (("p", "f", "friend_of"), ("f", "g", "lives_in"), ("p", "g", "no_relation"))),
    # no relation stated
    ("p:per q:other(p) c:city", "{p} met {q} in {c}.", "{p}在{c}见到了{q}。",
     (("p", "q", "no_relation"), ("p", "c", "no_relation"), ("q", "c", "no_relation"))),
    ("p:per c:city", "{p} visited {c} last summer.", "{p}去年夏天去过{c}。",
     (("p", "c", "no_relation"),)),
    ("p:per o:org d:day", "{p} read a report about {o} on {d}.", "{p}{d}读了一篇关于{o}的报道。",
     (("p", "o", "no_relation"),)),
    ("p:per c:city c2:othercity(c) d:day", "{p} flew from {c} to {c2} on {d}.",
     "{p}{d}从{c}飞往{c2}。",
     (("p", "c", "no_relation"), ("p", "c2", "no_relation"), ("c", "c2", "no_relation"))),
    ("o:org c:city n:num", "{o} sold {n} phones in {c} last year.", "{o}去年在{c}卖出了{n}部手机。",
     (("o", "c", "no_relation"),)),
    ("p:per q:other(p) d:day", "{p} called {q} on {d}.", "{p}{d}给{q}打了电话。",
     (("p", "q", "no_relation"),)),
    ("p:per k:country", "{p} wrote a book about {k}.", "{p}写了一本关于{k}的书。",
     (("p", "k", "no_relation"),)),
)


def _fill_slots(rng: random.Random, specs: str, facts: FactBase, unseen: bool) -> dict:
    """An entity, or an (English, Chinese) string pair, for each slot of a template."""
    c = cast()
    out: dict = {}
    for spec in specs.split():
        name, kind = spec.split(":")
        fn, _, arg = kind.rstrip(")").partition("(")
        ref = out.get(arg)
        if fn == "per":
            out[name] = rng.choice(c.pool("PER", unseen))
        elif fn == "other":
            out[name] = rng.choice([p for p in c.pool("PER", unseen) if p != ref])
        elif fn in ("city", "othercity"):
            out[name] = rng.choice([x for x in c.pool("CITY", unseen) if x != ref])
        elif fn in ("uni", "org"):
            out[name] = rng.choice(c.pool("ORG", unseen, "university" if fn == "uni" else None))
        elif fn == "country":
            out[name] = c.country(ref.home) if ref else rng.choice(c.countries)
        elif fn == "seat":
            out[name] = c.city(ref.home)
        elif fn in ("born", "lives", "works"):
            out[name] = getattr(facts, fn)[ref.en]
        elif fn == "friend":
            out[name] = rng.choice(facts.friends[ref.en])
        elif fn == "year":
            y = rng.randint(1950, 2022)
            out[name] = (str(y), zh_year(y))
        elif fn == "num":
            n = rng.randint(2, 30)
            out[name] = (str(n), zh_int(n))
        else:  # day
            out[name] = tuple(rng.choice(DAYS))
    return out


def surface(value: Entity | tuple[str, str], lang: str) -> str:
    if isinstance(value, Entity):
        return value.name(lang)
    return value[0] if lang == "en" else value[1]


# label -> every (template, pair) that states it
_BY_LABEL = {label: [(tpl, pair) for tpl in TEMPLATES for pair in tpl[3] if pair[2] == label]
             for label in LABELS}


def _maker(facts: FactBase, used: set[str]):
    def make(rng: random.Random, lang: str, unseen: bool) -> list[tuple[dict, str]]:
        """A label first (``NO_RELATION`` of them no_relation, of which ``REVERSED`` are
        stated relations marked in reverse), then a template and a pair that state it,
        drawn again (up to 50 times) while the text is already ``used``: so templates
        with few distinct sentences do not skew the label mix."""
        if rng.random() < NO_RELATION:
            reverse = rng.random() < REVERSED
            label = rng.choice(("born_in", "lives_in", "works_for", "located_in")) \
                if reverse else "no_relation"
        else:
            reverse, label = False, rng.choice(LABELS[:-1])
        for _ in range(50):
            (specs, en, zh, _), (h, t, rel) = rng.choice(_BY_LABEL[label])
            slots = _fill_slots(rng, specs, facts, unseen)
            text, where = fill(en if lang == "en" else zh,
                               {k: surface(v, lang) for k, v in slots.items()})
            if text not in used:
                break
        if reverse or (rel in SYMMETRIC and rng.random() < 0.5):
            h, t = t, h
        rel = "no_relation" if reverse else rel
        rec = {"text": text, "lang": lang}
        for key, slot in (("h", h), ("t", t)):
            start, end = where[slot]
            rec[key] = {"name": text[start:end], "pos": [start, end], "type": slots[slot].kind}
        rec["relation"] = rel
        return [(rec, rel)]

    return make


def render(seed: int, sizes: dict[str, int], langs: tuple[str, ...]) -> TaskSet:
    """The relation set (see the module docstring); ``sizes`` are resolved."""
    facts = fact_base(seed)
    splits, clean, fields = render_labelled(
        NAME, seed, sizes, langs, lambda split, used: _maker(facts, used), LABELS,
        {s: 0.0 for s in sizes}, key="relation")
    card = base_card(
        NAME, description="bilingual sentences with a marked head and tail entity "
        "(OpenNRE format); the relation is what the sentence states about the pair",
        labels=LABELS, metric="micro_f1 excluding no_relation (TACRED)", seed=seed,
        langs=langs, splits=splits, unseen=cast().unseen_names(), partition=PARTITION)
    card.update(fields)
    card.update({
        "relations": {"born_in": ["PER", "CITY"], "lives_in": ["PER", "CITY"],
                      "works_for": ["PER", "ORG"],
                      "located_in": [["ORG", "CITY"], ["CITY", "COUNTRY"]],
                      "friend_of": ["PER", "PER"]},
        "symmetric": list(SYMMETRIC),
        "no_relation_share": NO_RELATION,
        "reversed_share_of_no_relation": REVERSED,
    })
    return TaskSet(NAME, splits, card, clean)
