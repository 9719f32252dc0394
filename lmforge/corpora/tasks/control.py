"""Controlled generation: short news items with an opinion, labelled with the three
control codes a prompt can ask for (CTRL, Keskar et al. 2019): **sentiment** (positive,
negative, neutral), **topic** (the 8 of :mod:`.topic`) and **language** (en, zh).

An item is a news **headline** of its topic (the templates of :mod:`.topic`), possibly
one follow-up sentence of that topic, and an **opinion** on two aspects that belong to
the topic (the match was boring / 比赛非常精彩; the battery was not durable at all), built
by the clause rules of :mod:`.sentiment` (negation, degree words, contrast, concession).
So every code is a function of the text, and the world judges a generated text exactly:

* its **topic** is that of the headline template its first sentence matches
  (:func:`topic_of`);
* its **sentiment** is :func:`~.sentiment.sentiment_label` of the whole text (the rule
  the opinion was built by; facts carry no opinion, and an item whose facts happen to
  contain a polar word is drawn again);
* its **language** is Chinese when it holds a CJK character, else English;
* it is **grammatical** when every sentence is one the world can render: a headline or
  a follow-up of some topic with every slot filled by a value of the slot's kind (a
  person, a city, a club, a number written as the world writes it, ...), or an opinion
  sentence whose clauses pair a topic aspect with an adjective that fits it, in one of
  the sentence forms of :mod:`.sentiment` (:class:`Grammar`).

There is no label noise: the ceiling of every control accuracy and of grammaticality is
1.0. Codes are drawn uniformly (3 x 8 = 24 combinations per language); ``test_unseen``
uses the entities of the held-out side of the partition (:mod:`.entities`).
"""

from __future__ import annotations

import functools
import random
import re
from collections.abc import Iterable

from ..world.lexicon import DAYS, FOODS, MONTHS
from . import sentiment as S
from . import topic as T
from .common import SPLITS, TaskSet, base_card, count, distribution, fill, percent, zh_int
from .entities import cast

NAME = "control"
SENTIMENTS = S.LABELS
TOPICS = T.LABELS
LANGS = ("en", "zh")
SIZES = {s: n for s, n in zip(SPLITS, (40000, 500, 500, 500), strict=True)}
CONTROLS = {"sentiment": SENTIMENTS, "topic": TOPICS, "lang": LANGS}

# Aspects an opinion on a topic talks about: topic | English nouns | sg/pl | Chinese |
# adjective concepts of the sentiment lexicon that fit them.
ASPECTS = S.aspects_table("""
sport | match,game | sg | 比赛 | interesting brilliant good boring bad
sport | fans | pl | 球迷 | friendly rude noisy
sport | stadium | sg | 球场,体育场 | clean comfortable spacious dirty crowded noisy
food | dishes | pl | 菜,菜品 | delicious fresh good salty greasy bad
food | prices | pl | 价格 | reasonable cheap expensive
food | service | sg | 服务 | fast good slow bad
travel | hotel rooms | pl | 酒店房间 | clean quiet comfortable dirty noisy cramped
travel | trains | pl | 火车 | fast comfortable slow crowded
travel | guides | pl | 导游 | friendly helpful rude
work | office | sg | 办公室 | spacious quiet bright cramped noisy dim
work | managers | pl | 经理 | friendly helpful rude
work | training | sg | 培训 | interesting good boring bad
technology | screen | sg | 屏幕 | sharp bright blurry dim
technology | battery | sg | 电池 | durable good bad
technology | design | sg | 设计 | beautiful stylish ugly bad
weather | weather | sg | 天气 | warm good cold hot humid bad
weather | air | sg | 空气 | fresh clean dirty bad
weather | roads | pl | 道路 | clean quiet dirty crowded
health | doctors | pl | 医生 | friendly helpful rude
health | clinic | sg | 诊所 | clean quiet comfortable dirty crowded noisy
health | food in the hospital | sg | 医院的饭菜 | delicious fresh good salty greasy bad
finance | results | pl | 业绩 | impressive good bad
finance | fees | pl | 手续费 | reasonable cheap expensive
finance | staff at the bank | pl | 银行员工 | friendly helpful rude slow
""")


def _sentences(text: str, lang: str) -> list[str]:
    """The sentences of ``text`` (each keeps its final full stop)."""
    if lang == "zh":
        return [s for s in re.findall(r"[^。]*。|[^。]+$", text) if s]
    return [s for s in re.split(r"(?<=\.)\s+", text.strip()) if s]


def _opinion(rng: random.Random, lang: str, aspects: tuple[S.Aspect, ...], label: str,
             present: bool, contract: bool) -> list[str]:
    """An opinion with ``label`` on two of ``aspects``: neutral, one neutral clause; else
    one clause of the label's sign (50%), two joined by "and" / 而且 (25%), or a contrast
    whose deciding clause has the sign and the other the opposite or none (25%).

    Unlike the sentiment set (built to defeat a bag of words: its first clause is as
    often against the label as for it), the clauses mostly carry the label, so that
    a generator learns which clause to write for a code; contrast, concession and
    negation still decide a quarter of the texts."""
    if label == "neutral":
        return S.opinion(rng, lang, aspects, label, present, contract)
    a1, a2 = rng.sample(aspects, 2)
    sign = 1 if label == "positive" else -1
    second = S.polar_clause(rng, lang, a2, sign)
    r, args = rng.random(), (present, contract)
    if r < 0.5:
        return [S.sentence_of(S.polar_clause(rng, lang, a1, sign), lang, *args)]
    if r < 0.75:
        return [S.and_sentence(lang, S.polar_clause(rng, lang, a1, sign), second, *args)]
    first = (S.neutral_clause(rng, lang, a1) if rng.random() < 0.2
             else S.polar_clause(rng, lang, a1, -sign))
    return S.contrast_sentences(lang, first, second, rng.randrange(5), *args)


def _make(rng: random.Random, lang: str, unseen: bool) -> dict:
    """One item with codes drawn uniformly (module docstring)."""
    sentiment, topic = rng.choice(SENTIMENTS), rng.choice(TOPICS)
    k = 0 if lang == "en" else 1
    heads, follow = T.TEMPLATES[topic]
    while True:
        values = T.draw_values(rng, lang, unseen)
        facts = [fill(rng.choice(heads)[k], values)[0]]
        if rng.random() < 0.5:
            facts.append(fill(rng.choice(follow)[k], values)[0])
        core = _opinion(rng, lang, ASPECTS[topic], sentiment, rng.random() < 0.5,
                        lang == "en" and rng.random() < 0.3)
        sents = [facts[0], *core, *facts[1:]] if rng.random() < 0.5 else [*facts, *core]
        text = (" " if lang == "en" else "").join(sents)
        if S.sentiment_label(text, lang) == sentiment:
            return {"text": text, "sentiment": sentiment, "topic": topic, "lang": lang}


def render(seed: int, sizes: dict[str, int], langs: tuple[str, ...]) -> TaskSet:
    """The control set (module docstring); ``sizes`` are resolved. Languages alternate;
    no text occurs twice across the splits."""
    used: set[str] = set()
    splits: dict[str, list[dict]] = {}
    for split, n in sizes.items():
        rng = random.Random(f"{NAME}/{seed}/{split}")
        records: list[dict] = []
        while len(records) < n:
            item = _make(rng, langs[len(records) % len(langs)], split == "test_unseen")
            if item["text"] not in used:
                used.add(item["text"])
                records.append({"id": f"{NAME}-{split}-{len(records):05d}", **item})
        splits[split] = records
    card = base_card(
        NAME, description="bilingual news items with an opinion, each labelled with its "
        "sentiment, topic and language, the control codes of controlled generation; the "
        "world judges a generated text's codes and grammar exactly",
        labels=SENTIMENTS, metric="control accuracy", seed=seed, langs=langs,
        splits=splits, unseen=cast().unseen_names(), partition=S.PARTITION)
    card["controls"] = {k: list(v) for k, v in CONTROLS.items()}
    card["distribution"] = {s: {c: distribution((r[c] for r in recs), CONTROLS[c])
                                for c in ("sentiment", "topic")}
                            for s, recs in splits.items()}
    card["ceiling"] = {s: {"sentiment": 1.0, "topic": 1.0, "lang": 1.0, "grammatical": 1.0}
                       for s in splits}
    clean = {s: [r["sentiment"] for r in recs] for s, recs in splits.items()}
    return TaskSet(NAME, splits, card, clean)




# ----------------------------------------------------------------------------- judges

def _alt(words: Iterable[str]) -> str:
    """A regular expression matching any of ``words`` (longest first)."""
    return "(?:" + "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True)) + ")"


def _slot_values(lang: str) -> dict[str, list[str]]:
    """Every value the world writes into each slot of the topic templates."""
    c = cast()

    def names(kind: str, sub: str | None = None) -> list[str]:
        return [e.name(lang) for unseen in (False, True) for e in c.pool(kind, unseen, sub)]

    en = lang == "en"
    employers = [e.name(lang) for unseen in (False, True) for e in c.pool("ORG", unseen)
                 if e.sub != "club"]
    return {
        "P": names("PER"), "P2": names("PER"), "C": names("CITY"), "C2": names("CITY"),
        "K": names("COUNTRY"), "CLUB": names("ORG", "club"), "CLUB2": names("ORG", "club"),
        "CO": names("ORG", "company"), "BANK": names("ORG", "bank"),
        "UNI": names("ORG", "university"), "HOSP": names("ORG", "hospital"),
        "REST": names("ORG", "restaurant"), "HOTEL": names("ORG", "hotel"), "ORG": employers,
        "N": [count(n, lang) for n in range(2, 10)],
        "N2": [count(n, lang) for n in range(1, 9)],
        "NN": [count(n, lang) for n in range(10, 100)],
        "BIG": [f"{b * 1000:,}" if en else zh_int(b * 1000) for b in range(2, 61)],
        "MIL": [f"{m} million" if en else zh_int(m * 100) + "万" for m in range(10, 901)],
        "PCT": [percent(n, lang, d) for n in range(2, 41) for d in (True, False)],
        "RATE": [percent(n, lang, d) for n in range(1, 7) for d in (True, False)],
        "DEG": [count(n, lang) for n in range(30, 46)],
        "D": [d[0 if en else 1] for d in DAYS],
        "M": [m[0] for m in MONTHS] if en else [zh_int(i, liang=False) + "月"
                                               for i in range(1, 13)],
        "F": [f[0 if en else 2] for f in FOODS], "FP": [f[1] for f in FOODS],
    }


def _template_regex(template: str, slots: dict[str, str]) -> str:
    out, last = [], 0
    for m in re.finditer(r"\{(\w+)\}", template):
        out += [re.escape(template[last:m.start()]), slots[m.group(1)]]
        last = m.end()
    return "".join(out) + re.escape(template[last:])


class _Marker(S.Clause):
    """A clause that renders as a marker, to read the sentence forms off the renderers."""

    def __init__(self, mark: str, score: int):
        super().__init__("", False, pol=score, mod=S.PLAIN)
        object.__setattr__(self, "mark", mark)

    def render(self, lang: str, present: bool, contract: bool) -> str:
        return self.mark


def _clause_regex(lang: str, aspects: Iterable[S.Aspect], initial: bool) -> str:
    """Any clause that pairs one of ``aspects`` with a fitting adjective, in any of the
    clause forms of :class:`~.sentiment.Clause` (plain, degree, negated, neutral,
    neither ... nor); ``initial``: opening a sentence (capitalised)."""
    k = 0 if lang == "en" else 1
    out = []
    for a in aspects:
        words = {pol: [w for c in a.adjectives if S.ADJECTIVES[c][2] == pol
                       for w in S.ADJECTIVES[c][k]] for pol in (1, -1)}
        noun, adj = "\x01", "\x02"
        forms = set()
        for present in (True, False):
            for contract in ((True, False) if lang == "en" else (False,)):
                for pol, mods in ((1, S.MODS_POS), (-1, S.MODS_NEG)):
                    if not words[pol]:
                        continue
                    for mod in mods:
                        for word in _mod_words(lang, mod, pol):
                            c = S.Clause(noun, a.plural, adj, pol, mod, word)
                            forms.add((c.render(lang, present, contract), pol))
                for neutral in S.NEUTRAL[lang]:
                    c = S.Clause(noun, a.plural, neutral=neutral)
                    forms.add((c.render(lang, present, contract), 0))
                c = S.Clause(noun, a.plural, neither=(adj, "\x03"))
                forms.add((c.render(lang, present, contract), 2))
        nouns = _alt(a.en if lang == "en" else a.zh)
        all_adj = _alt(words[1] + words[-1])
        for form, pol in forms:
            rx = re.escape(S.cap(form) if initial else form).replace("\x01", nouns)
            rx = rx.replace("\x02", _alt(words[pol]) if pol in (1, -1) else all_adj)
            out.append(rx.replace("\x03", all_adj))
    return "(?:" + "|".join(sorted(out)) + ")"


def _mod_words(lang: str, mod: str, pol: int) -> tuple[str, ...]:
    """Every way the world writes modifier ``mod`` on an adjective of polarity ``pol``."""
    if mod == S.INTENSE:
        return S.INTENS[lang]
    if mod == S.DOWN:
        return (S.DOWN_POS if pol > 0 else S.DOWN_NEG)[lang]
    if lang == "en":
        return ("",)
    return {S.PLAIN: ("很",), S.NEG: ("不",), S.NEG_WEAK: S.NEG_WEAK_ZH,
            S.NEG_STRONG: S.NEG_STRONG_ZH}[mod]


def _opinion_forms(lang: str) -> list[str]:
    """The opinion sentence forms of :mod:`.sentiment` with clause markers A and B."""
    a, b = "\x04", "\x05"
    forms: set[str] = set()
    for sign in (1, -1):
        x, y = _Marker(a, 1), _Marker(b, sign)
        for style in range(5):
            forms.update(S.contrast_sentences(lang, x, y, style, True, False))
        forms.add(S.and_sentence(lang, x, y, True, False))
    forms.add(S.sentence_of(_Marker(a, 1), lang, True, False))
    # "A. However, B." and "A。可是B。" are two sentences: each half is one
    return [f for form in forms for f in _sentences(form, lang)]


class Grammar:
    """Recognises the sentences the world renders (module docstring) in one language."""

    def __init__(self, lang: str):
        self.lang = lang
        values = _slot_values(lang)
        slots = {k: "(?:" + "|".join(re.escape(v) for v in sorted(set(vs), key=len,
                                                                 reverse=True)) + ")"
                 for k, vs in values.items()}
        k = 0 if lang == "en" else 1
        self.headlines = {t: re.compile("(?:" + "|".join(
            _template_regex(h[k], slots) for h in T.TEMPLATES[t][0]) + r")\Z")
            for t in TOPICS}
        facts = [f[k] for t in TOPICS for f in T.TEMPLATES[t][1]] + [g[k] for g in T.GENERIC]
        self.facts = re.compile("(?:" + "|".join(_template_regex(f, slots)
                                                 for f in facts) + r")\Z")
        aspects = [a for t in TOPICS for a in ASPECTS[t]]
        clause, first = (_clause_regex(lang, aspects, initial) for initial in (False, True))
        opinions = []
        for form in _opinion_forms(lang):
            rx = re.escape(form)
            if rx[0] in "\x04\x05":
                rx = first + rx[1:]
            opinions.append(rx.replace("\x04", clause).replace("\x05", clause))
        self.opinions = re.compile("(?:" + "|".join(opinions) + r")\Z")

    def topic(self, sentence: str) -> str | None:
        """The topic whose headline ``sentence`` is, or None."""
        return next((t for t, rx in self.headlines.items() if rx.match(sentence)), None)

    def accepts(self, sentence: str) -> bool:
        """Whether ``sentence`` is a headline, a follow-up or an opinion sentence."""
        return bool(self.topic(sentence) or self.facts.match(sentence)
                    or self.opinions.match(sentence))


@functools.lru_cache(maxsize=2)
def grammar(lang: str) -> Grammar:
    """The :class:`Grammar` of ``lang`` (built once: a few seconds)."""
    return Grammar(lang)


def language_of(text: str) -> str:
    """``"zh"`` when ``text`` holds a CJK character, else ``"en"``."""
    return "zh" if re.search(r"[\u4e00-\u9fff]", text) else "en"


def topic_of(text: str, lang: str) -> str | None:
    """The topic of ``text``: that of the headline its first sentence is (None when the
    first sentence is no headline)."""
    sents = _sentences(text, lang)
    return grammar(lang).topic(sents[0]) if sents else None


def judge(text: str, lang: str | None = None) -> dict:
    """The codes and grammaticality of a text, as the world reads them (module
    docstring): ``{"lang", "topic", "sentiment", "grammatical"}``. ``lang`` (default:
    the text's own) picks the rules the text is read by."""
    lang = lang or language_of(text)
    sents = _sentences(text, lang)
    g = grammar(lang)
    return {"lang": language_of(text), "topic": g.topic(sents[0]) if sents else None,
            "sentiment": S.sentiment_label(text, lang),
            "grammatical": bool(sents) and all(g.accepts(s) for s in sents)}
