"""The grammar engine: constructions, derivations, exact probabilities and the parser.

A **construction** is a sentence pattern with named slots, e.g. ::

    slots:  p:person  q:person!=p  pl:place  day:day  part:part
    en:     "{p} met {q} at the {pl} on {day} {part}."
    zh:     "{p}{day}{part}在{pl}见到了{q}。"

Generating a sentence (a *derivation*) makes independent, uniform choices in a fixed
order: first the construction (uniform over the ``K`` constructions), then each slot's
value, uniform over its *pool*. A pool is the whole domain, or depends on one earlier
slot (its *parent*):

* ``q:person!=p``       every person except ``p``;
* ``c2:city!=home(p)``  every city except the home city of person ``p``;
* ``h:hour|part``       the hours allowed in that part of the day (the domain's table).

So the probability of a derivation ``d`` with slot pools ``P_1..P_m`` is exactly ::

    P(d) = 1/K * prod_i 1/|P_i|          surprisal(d) = -log2 P(d) = log2(K * prod_i |P_i|)

Rendering ``d`` in a language fills each ``{slot.form}`` with a precomputed string;
``{slot.form~other}`` takes the form that agrees with the grammatical gender (``genus``)
of slot ``other`` (German: ``{c.acc_mixed~o}`` is roten/rote/rotes as ``o`` is
masculine/feminine/neuter). A construction renders in the languages it has a template
for (:attr:`Construction.langs`; English and Chinese always, German where written);
rendering in another raises a ValueError naming the construction. Every slot is
rendered in every template, and the rendering is **injective**: no two derivations give
the same string (tested on large samples with :meth:`Grammar.parse_all`). Hence
``P(string) = P(its unique derivation)``, and parsing a string recovers its exact
probability. :meth:`Grammar.restrict` keeps the constructions of some languages; its
``K`` is their number.

The parser is a backtracking matcher over each construction's surface template. Slots
are bound the first time the template mentions them (in surface order, which differs
between languages); a slot whose pool depends on an unbound parent binds the parent
first, and so does the slot an agreeing form depends on. Candidate strings for a slot
are indexed by their first character, so a match tries only the few values that can
start at the current position.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Iterator
from dataclasses import dataclass

from .german import FUNCTION_FORMS as DE_FUNCTION_FORMS
from .lexicon import LANGS, MT_LANGS, Domain

_SLOT_RE = re.compile(r"^(\w+):(\w+)(?:(!=)(\w+)|(!=home\()(\w+)\)|(\|)(\w+))?$")
_PH_RE = re.compile(r"\{(\w+)(?:\.(\w+))?(?:~(\w+))?\}")

# forms that are function words agreeing with a slot, not mentions of it
FUNCTION_FORMS = frozenset({"art", "job_art", "cup"}) | DE_FUNCTION_FORMS
AGREEMENT_ATTR = "genus"  # the attribute of a controlling slot that selects an agreeing form

# parse steps
_LIT, _CHK, _ENUM, _ENUMCHK = 0, 1, 2, 3


@dataclass(frozen=True)
class SlotSpec:
    name: str
    domain: str
    parent: str | None  # slot the pool depends on
    rule: str  # "all", "distinct", "not_home", "cond"


def parse_slot(spec: str) -> SlotSpec:
    m = _SLOT_RE.match(spec)
    if not m:
        raise ValueError(f"bad slot spec {spec!r}")
    name, dom = m.group(1), m.group(2)
    if m.group(3):
        return SlotSpec(name, dom, m.group(4), "distinct")
    if m.group(5):
        return SlotSpec(name, dom, m.group(6), "not_home")
    if m.group(7):
        return SlotSpec(name, dom, m.group(8), "cond")
    return SlotSpec(name, dom, None, "all")


@dataclass(frozen=True)
class Segment:
    """A piece of a rendered sentence: literal text (``slot is None``) or a slot's form."""

    text: str
    slot: str | None = None
    form: str | None = None


@dataclass(frozen=True)
class Mention:
    """An entity mention: characters ``start:end`` of the rendering name ``domain``/``value``."""

    start: int
    end: int
    text: str
    slot: str
    form: str
    domain: str
    value: int
    kind: str


class Construction:
    """One sentence pattern, compiled for sampling, rendering and parsing."""

    def __init__(self, name: str, category: str, slots: str, templates: dict[str, str],
                 domains: dict[str, Domain]):
        self.name = name
        self.category = category
        self.templates = dict(templates)
        unknown = set(self.templates) - set(MT_LANGS)
        if unknown:
            raise ValueError(f"{name}: unknown template languages {sorted(unknown)}; "
                             f"the world's are {', '.join(MT_LANGS)}")
        self.langs = tuple(lang for lang in MT_LANGS if lang in self.templates)
        self.specs = [parse_slot(s) for s in slots.split()]
        self.slot_names = tuple(s.name for s in self.specs)
        if len(set(self.slot_names)) != len(self.slot_names):
            raise ValueError(f"{name}: duplicate slot names")
        self.index = {n: i for i, n in enumerate(self.slot_names)}
        self.domains = tuple(domains[s.domain] for s in self.specs)
        self.parent_idx: list[int] = []
        self.pools: list = []  # tuple of values, or (per parent value) tuple of tuples
        for i, s in enumerate(self.specs):
            dom = domains[s.domain]
            if s.parent is None:
                self.parent_idx.append(-1)
                self.pools.append(tuple(range(dom.size)))
                continue
            if s.parent not in self.index or self.index[s.parent] >= i:
                raise ValueError(f"{name}: parent {s.parent!r} of {s.name!r} must come first")
            pi = self.index[s.parent]
            pdom = self.domains[pi]
            self.parent_idx.append(pi)
            if s.rule == "distinct":
                if pdom.name != dom.name:
                    raise ValueError(f"{name}: {s.name}!={s.parent} needs the same domain")
                pools = tuple(tuple(v for v in range(dom.size) if v != pv)
                              for pv in range(pdom.size))
            elif s.rule == "not_home":
                home = pdom.attrs["home"]
                pools = tuple(tuple(v for v in range(dom.size) if v != home[pv])
                              for pv in range(pdom.size))
            else:
                pools = dom.cond[pdom.name]
            self.pools.append(pools)
        self.parts: dict[str, list] = {}
        self.agrees: dict[str, bool] = {}
        self.steps: dict[str, list] = {}
        self.literals: dict[str, tuple[str, ...]] = {}
        for lang in self.langs:
            self._compile(lang)
        self.n_choices = len(self.specs)

    # ------------------------------------------------------------------ compile
    def _slot(self, slot: str, lang: str) -> int:
        if slot not in self.index:
            raise ValueError(f"{self.name}/{lang}: unknown slot {slot!r}")
        return self.index[slot]

    def _agreeing(self, i: int, form: str, j: int, lang: str) -> tuple[tuple[str, ...], ...]:
        """Slot ``i``'s ``form`` agreeing with slot ``j``: one table per value of ``j``,
        the domain's form ``<form>.<genus of that value>``."""
        ctrl = self.domains[j]
        if i == j or AGREEMENT_ATTR not in ctrl.attrs:
            raise ValueError(f"{self.name}/{lang}: {self.slot_names[i]} cannot agree with "
                             f"{self.slot_names[j]} (it needs another slot with a "
                             f"{AGREEMENT_ATTR!r})")
        return tuple(self.domains[i].form(lang, f"{form}.{g}")
                     for g in ctrl.attrs[AGREEMENT_ATTR])

    def _compile(self, lang: str) -> None:
        tpl = self.templates[lang]
        parts: list = []
        pos = 0
        for m in _PH_RE.finditer(tpl):
            if m.start() > pos:
                parts.append(tpl[pos:m.start()])
            i, form = self._slot(m.group(1), lang), m.group(2) or "w"
            if m.group(3):
                j = self._slot(m.group(3), lang)
                parts.append((i, form, self._agreeing(i, form, j, lang), j))
            else:
                parts.append((i, form, self.domains[i].form(lang, form)))
            pos = m.end()
        if pos < len(tpl):
            parts.append(tpl[pos:])
        used = {p[0] for p in parts if isinstance(p, tuple)}
        missing = set(range(len(self.specs))) - used
        if missing:
            raise ValueError(f"{self.name}/{lang}: slots never rendered: "
                             f"{[self.slot_names[i] for i in sorted(missing)]}")
        self.parts[lang] = parts
        self.agrees[lang] = any(len(p) == 4 for p in parts if not isinstance(p, str))
        self.literals[lang] = tuple(p for p in parts if isinstance(p, str))
        # Parse plan: bind each slot where the template first mentions it; a slot's
        # unbound parent, and the unbound slot an agreeing form depends on, come first.
        bound: set[int] = set()
        steps: list = []
        for p in parts:
            if isinstance(p, str):
                steps.append((_LIT, p))
                continue
            i, table, ctrl = p[0], p[2], p[3] if len(p) == 4 else -1
            if ctrl >= 0:
                self._bind(ctrl, bound, steps)
            if i in bound:
                steps.append((_CHK, i, table, ctrl))
                continue
            self._bind(self.parent_idx[i], bound, steps)
            steps.append((_ENUMCHK, i, self.parent_idx[i], self._index(i, table, ctrl), ctrl))
            bound.add(i)
        self.steps[lang] = steps

    def _bind(self, j: int, bound: set[int], steps: list) -> None:
        """Enumerate slot ``j`` (after its unbound ancestors) unless it is bound or -1."""
        chain = []
        while j >= 0 and j not in bound:
            chain.append(j)
            j = self.parent_idx[j]
        for j in reversed(chain):
            steps.append((_ENUM, j, self.parent_idx[j], self.pools[j]))
            bound.add(j)

    def _index(self, i: int, table: tuple, ctrl: int):
        """Candidates of slot ``i`` as {first char: ((value, string), ...)}, per parent
        value if ``i`` has a parent, then per value of ``ctrl`` if the form agrees."""

        def build(pool, tab: tuple[str, ...]) -> dict[str, tuple]:
            idx: dict[str, list] = {}
            for v in pool:
                s = tab[v]
                idx.setdefault(s[:1], []).append((v, s))
            return {k: tuple(c) for k, c in idx.items()}

        def per_ctrl(pool):
            if ctrl < 0:
                return build(pool, table)
            built: dict[int, dict] = {}  # one index per distinct table (per gender)
            for tab in table:
                if id(tab) not in built:
                    built[id(tab)] = build(pool, tab)
            return tuple(built[id(tab)] for tab in table)

        if self.parent_idx[i] < 0:
            return per_ctrl(self.pools[i])
        return tuple(per_ctrl(pool) for pool in self.pools[i])

    # ------------------------------------------------------------------ use
    def pool_sizes(self, values: tuple[int, ...]) -> list[int]:
        out = []
        for i, pools in enumerate(self.pools):
            pi = self.parent_idx[i]
            out.append(len(pools if pi < 0 else pools[values[pi]]))
        return out

    def sample_values(self, rng: random.Random) -> tuple[int, ...]:
        vals: list[int] = []
        choice = rng.choice  # exact uniform choice
        for pi, pools in zip(self.parent_idx, self.pools, strict=True):
            vals.append(choice(pools if pi < 0 else pools[vals[pi]]))
        return tuple(vals)

    def _parts(self, lang: str) -> list:
        try:
            return self.parts[lang]
        except KeyError:
            raise ValueError(f"construction {self.name!r} has no {lang!r} template; it renders "
                             f"in {', '.join(self.langs)}") from None

    @staticmethod
    def _text(p: tuple, values: tuple[int, ...]) -> str:
        """The string of slot part ``p``: ``table[value]``, or ``table[controller][value]``."""
        table = p[2] if len(p) == 3 else p[2][values[p[3]]]
        return table[values[p[0]]]

    def render(self, values: tuple[int, ...], lang: str) -> str:
        """The sentence in ``lang``; ValueError if the construction has no such template."""
        parts = self._parts(lang)
        if self.agrees[lang]:
            text = self._text
            return "".join([p if p.__class__ is str else text(p, values) for p in parts])
        return "".join([p if p.__class__ is str else p[2][values[p[0]]] for p in parts])

    def segments(self, values: tuple[int, ...], lang: str) -> list[Segment]:
        return [Segment(p) if isinstance(p, str) else
                Segment(self._text(p, values), self.slot_names[p[0]], p[1])
                for p in self._parts(lang)]

    def match(self, text: str, lang: str, find_all: bool = False) -> list[tuple[int, ...]]:
        """Every value tuple whose rendering in ``lang`` is exactly ``text`` (none if the
        construction has no ``lang`` template)."""
        literals = self.literals.get(lang)
        if literals is None:
            return []
        for lit in literals:
            if lit not in text:
                return []
        steps = self.steps[lang]
        n = len(steps)
        end = len(text)
        vals = [0] * len(self.specs)
        found: list[tuple[int, ...]] = []

        def rec(k: int, pos: int) -> bool:
            while k < n:
                st = steps[k]
                op = st[0]
                if op == _LIT:
                    s = st[1]
                elif op == _CHK:
                    s = (st[2] if st[3] < 0 else st[2][vals[st[3]]])[vals[st[1]]]
                elif op == _ENUM:
                    i, pi, pools = st[1], st[2], st[3]
                    for v in (pools if pi < 0 else pools[vals[pi]]):
                        vals[i] = v
                        if rec(k + 1, pos):
                            return True
                    return False
                else:
                    i, pi, idx, ctrl = st[1], st[2], st[3], st[4]
                    if pi >= 0:
                        idx = idx[vals[pi]]
                    if ctrl >= 0:
                        idx = idx[vals[ctrl]]
                    cands = idx.get(text[pos:pos + 1], ())
                    empty = idx.get("")
                    if empty:
                        cands = cands + empty
                    for v, s in cands:
                        if text.startswith(s, pos):
                            vals[i] = v
                            if rec(k + 1, pos + len(s)):
                                return True
                    return False
                if not text.startswith(s, pos):
                    return False
                pos += len(s)
                k += 1
            if pos == end:
                found.append(tuple(vals))
                return not find_all
            return False

        rec(0, 0)
        return found


@dataclass(frozen=True, eq=False)
class Sentence:
    """A derivation: the structured meaning from which every rendering is made.

    ``construction`` is the pattern, ``values[i]`` the value of its i-th slot (an index
    into the slot's domain), ``bits`` the exact surprisal ``-log2 P(derivation)``.
    """

    construction: Construction
    values: tuple[int, ...]
    bits: float

    @property
    def name(self) -> str:
        return self.construction.name

    @property
    def key(self) -> tuple:
        """A hashable identity of the derivation: (construction name, values)."""
        return (self.construction.name, self.values)

    def render(self, lang: str) -> str:
        """The sentence in ``lang`` ("en", "zh" or "de"); ValueError if the construction
        has no template in ``lang``."""
        return self.construction.render(self.values, lang)

    def renderings(self, langs: tuple[str, ...] = LANGS) -> dict[str, str]:
        return {lang: self.render(lang) for lang in langs}

    def segments(self, lang: str) -> list[Segment]:
        """The rendering as literal pieces and slot pieces (for spans and alignment)."""
        return self.construction.segments(self.values, lang)

    @property
    def slots(self) -> dict[str, tuple[str, int, str]]:
        """``{slot: (domain, value, English label)}``."""
        c = self.construction
        return {n: (d.name, v, d.labels[v]) for n, d, v in zip(
            c.slot_names, c.domains, self.values, strict=True)}

    def value(self, slot: str) -> int:
        return self.values[self.construction.index[slot]]

    def mentions(self, lang: str) -> list[Mention]:
        """Entity mentions with character spans; facts name the entity they denote.

        Pronouns are mentions of their person with kind ``PRON``; articles and other
        function forms (``art``, ``job_art``, ``cup``) are not mentions.
        """
        c = self.construction
        out, pos = [], 0
        for seg in self.segments(lang):
            if seg.slot is not None and seg.text and seg.form not in FUNCTION_FORMS:
                i = c.index[seg.slot]
                dom, v = c.domains[i], self.values[i]
                if seg.form in dom.derived:
                    dname, ids, kind = dom.derived[seg.form]
                    v = ids[v]
                else:
                    dname, kind = dom.name, dom.kind
                out.append(Mention(pos, pos + len(seg.text), seg.text, seg.slot,
                                   seg.form or "w", dname, v, kind))
            pos += len(seg.text)
        return out

    @property
    def negated(self) -> bool | None:
        """True/False for sentences with a degree or polarity slot, else None."""
        c = self.construction
        for d, v in zip(c.domains, self.values, strict=True):
            if d.name in ("degree", "polarity"):
                return d.attrs["sign"][v] < 0
        return None

    @property
    def sentiment(self) -> int | None:
        """+1/-1 for opinions: the adjective's sentiment times the degree's sign."""
        c = self.construction
        sign, adj = None, None
        for d, v in zip(c.domains, self.values, strict=True):
            if d.name in ("degree", "polarity"):
                sign = d.attrs["sign"][v]
            elif "sentiment" in d.attrs:
                adj = d.attrs["sentiment"][v]
        if sign is None or adj is None:
            return None
        return sign * adj

    def __repr__(self) -> str:
        return f"Sentence({self.name}, {self.render('en')!r}, bits={self.bits:.3f})"


class Grammar:
    """A set of constructions, chosen uniformly; samples, renders and parses sentences.

    :meth:`restrict` gives the grammar of the constructions that render in some set of
    languages: its ``K`` (``n``) is their number, so its bits are those of drawing from it.
    """

    def __init__(self, domains: dict[str, Domain], constructions: list[Construction]):
        self.domains = domains
        self.constructions = tuple(constructions)
        self.by_name = {c.name: c for c in constructions}
        if len(self.by_name) != len(constructions):
            raise ValueError("duplicate construction names")
        self.n = len(constructions)

    def restrict(self, langs: tuple[str, ...]) -> Grammar:
        """The constructions with a template in every one of ``langs``, chosen uniformly
        (``self`` when that is all of them; ValueError when it is none)."""
        keep = [c for c in self.constructions if all(lang in c.templates for lang in langs)]
        if len(keep) == self.n:
            return self
        if not keep:
            raise ValueError(f"no construction renders in all of {', '.join(langs)}")
        return Grammar(self.domains, keep)

    def bits_of(self, c: Construction, values: tuple[int, ...]) -> float:
        """Exact surprisal ``log2(K * prod |pool_i|)`` of a derivation."""
        return math.log2(self.n * math.prod(c.pool_sizes(values)))

    def sample(self, rng: random.Random) -> Sentence:
        c = rng.choice(self.constructions)
        vals = c.sample_values(rng)
        return Sentence(c, vals, self.bits_of(c, vals))

    def parse_all(self, text: str, lang: str) -> list[Sentence]:
        """Every derivation rendering to ``text`` in ``lang`` (one for a grammatical string)."""
        out = []
        for c in self.constructions:
            for vals in c.match(text, lang, find_all=True):
                out.append(Sentence(c, vals, self.bits_of(c, vals)))
        return out

    def parse(self, text: str, lang: str) -> Sentence | None:
        """The derivation of ``text`` in ``lang``, or None when it is not grammatical."""
        for c in self.constructions:
            found = c.match(text, lang)
            if found:
                return Sentence(c, found[0], self.bits_of(c, found[0]))
        return None

    def iter_sentences(self, rng: random.Random) -> Iterator[Sentence]:
        while True:
            yield self.sample(rng)

    # ------------------------------------------------------------------ exact entropy
    def construction_entropy(self, c: Construction) -> float:
        """``E[sum_i log2 |pool_i|]`` for construction ``c``, computed exactly."""
        marg: list[dict[int, float]] = []
        h = 0.0
        for i, pools in enumerate(c.pools):
            pi = c.parent_idx[i]
            dist: dict[int, float] = {}
            if pi < 0:
                h += math.log2(len(pools))
                for v in pools:
                    dist[v] = dist.get(v, 0.0) + 1.0 / len(pools)
            else:
                for pv, pp in marg[pi].items():
                    pool = pools[pv]
                    h += pp * math.log2(len(pool))
                    for v in pool:
                        dist[v] = dist.get(v, 0.0) + pp / len(pool)
            marg.append(dist)
        return h

    def entropy_bits(self) -> float:
        """Exact entropy ``H = E[-log2 P(d)]`` of a derivation (= of a sentence in one language)."""
        return math.log2(self.n) + sum(self.construction_entropy(c)
                                       for c in self.constructions) / self.n
