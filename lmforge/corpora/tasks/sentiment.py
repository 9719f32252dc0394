"""Sentiment: reviews whose label is decided by negation, contrast and degree words.

A review (2-4 sentences) of a hotel, a restaurant, a product, a city or a film is some
factual sentences (no opinion) around one **opinion core**. A core is made of *clauses*
"aspect + modifier + adjective" (the room was very clean / 房间非常干净). Each adjective
has a polarity ``p = +1`` or ``-1``; the modifier gives a signed strength ``m``:

=================  ================================  ==========================  ====
modifier           English                           Chinese                     m
=================  ================================  ==========================  ====
plain              was clean                         很干净                       +2
intensifier        was very / really / extremely     非常 / 特别 / 十分            +3
downtoner          slightly, somewhat (p<0);         有点, 有些 (p<0);             +1
                   fairly, reasonably (p>0)          比较, 较为 (p>0)
negation           was not clean, wasn't clean       不干净                       -2
weak negation      was not very clean (p>0 only)     不太, 不怎么 (p>0 only)      -1
strong negation    was not clean at all              一点也不, 一点都不            -3
=================  ================================  ==========================  ====

A clause's **score** is ``s = p * m``: "not clean" is -2, "not rude at all" +3. A
*neutral clause* says the aspect was okay / average / ordinary (还行 / 一般 / 马马虎虎)
or neither X nor Y (既不X也不Y). The label of the review is:

* an ``Overall, ...`` / ``总的来说, ...`` sentence, if there is one, decides alone;
* else a clause after **but / however / 但是 / 不过 / 可是** decides (the contrast
  dominates), and a clause after **although / 虽然** never decides (the other one does:
  "Although A, B" and "B, although A" are both B);
* else the scores of the clauses add up (``A, and B``; the stronger one wins): the sign
  of ``s_1 + s_2`` (never 0 by construction);
* a review whose deciding clause is neutral, or without any opinion clause, is neutral.

So the same adjectives appear in positive and negative reviews, and the word *order*
decides: a bag of words cannot tell "A was great, but B was awful" from "B was awful,
but A was great". :func:`sentiment_label` is this decision function applied to the text
(it ignores entity names); every rendered item's noise-free label equals it.

Label mix: 37.5% positive, 37.5% negative, 25% neutral. Then ``NOISE = 1.75%`` of the
labels of each split are flipped (ceiling ``1 - k/n``, about 0.982). The ``contrast``
split holds pairs (``"pair"``) that differ only in a negation or in the order of a
contrast and have opposite labels; it has no noise.
"""

from __future__ import annotations

import functools
import random
import re
from dataclasses import dataclass

from ..world.lexicon import COLORS, DAYS, MONTHS, OBJECTS, article
from .common import (
    DEFAULT_SIZES,
    PARTITION,
    SPLITS,
    TaskSet,
    base_card,
    count,
    fill,
    render_labelled,
    zh_int,
)
from .entities import Entity, cast

NAME = "sentiment"
LABELS = ("positive", "negative", "neutral")
NOISE = 0.0175
ALL_SPLITS = (*SPLITS, "contrast")
SIZES = {**DEFAULT_SIZES, "contrast": 600}

# ----------------------------------------------------------------------------- lexicon
# Adjectives: concept | English words | Chinese words | polarity. Words of one concept
# are synonyms (the generator picks one at random), so swapping them keeps the label.
ADJECTIVES = {r[0]: (tuple(r[1].split(",")), tuple(r[2].split(",")), int(r[3])) for r in (
    [c.strip() for c in line.split("|")] for line in """
good | good,nice | 好 | 1
bad | bad,poor | 差,差劲 | -1
clean | clean,tidy | 干净,整洁 | 1
dirty | dirty,filthy | 脏,肮脏 | -1
quiet | quiet,peaceful | 安静,宁静 | 1
noisy | noisy,loud | 吵,吵闹 | -1
comfortable | comfortable,cosy | 舒服,舒适 | 1
spacious | spacious,roomy | 宽敞,宽大 | 1
cramped | small,cramped | 小,狭小 | -1
hard | hard | 硬 | -1
friendly | friendly,kind | 友好,友善 | 1
helpful | helpful,welcoming | 热情,热心 | 1
rude | rude,impolite | 粗鲁,无礼 | -1
fast | fast,quick | 快,迅速 | 1
slow | slow,sluggish | 慢,缓慢 | -1
delicious | delicious,tasty | 好吃,美味 | 1
fresh | fresh | 新鲜 | 1
salty | salty | 咸 | -1
greasy | greasy,oily | 油腻 | -1
cheap | cheap,affordable | 便宜,实惠 | 1
expensive | expensive,pricey | 贵,昂贵 | -1
reasonable | reasonable | 合理 | 1
convenient | convenient | 方便,便利 | 1
remote | remote,isolated | 偏僻 | -1
warm | warm,mild | 暖和 | 1
cold | cold,chilly | 冷,寒冷 | -1
hot | hot | 热,炎热 | -1
humid | humid,muggy | 潮湿,闷热 | -1
crowded | crowded,packed | 拥挤 | -1
interesting | interesting,engaging | 有趣,有意思 | 1
boring | boring,dull | 无聊,乏味,枯燥 | -1
moving | moving,touching | 感人 | 1
natural | natural,convincing | 自然 | 1
brilliant | brilliant,excellent | 精彩,出色 | 1
stiff | stiff,wooden | 生硬 | -1
pleasant | pleasant,lovely | 好听,动听 | 1
impressive | impressive,stunning | 震撼 | 1
crude | crude,rough | 粗糙 | -1
beautiful | beautiful,pretty | 漂亮,好看 | 1
stylish | stylish,elegant | 时尚 | 1
ugly | ugly | 难看,丑陋 | -1
sharp | sharp,clear | 清晰,清楚 | 1
blurry | blurry,fuzzy | 模糊 | -1
bright | bright | 亮 | 1
dim | dim,dark | 暗 | -1
durable | durable,sturdy | 耐用,结实 | 1
""".strip().splitlines())}

NEUTRAL = {"en": ("okay", "average", "ordinary"), "zh": ("还行", "一般", "马马虎虎")}

# Modifiers by language: intensifiers, downtoners for negative and for positive
# adjectives, weak and strong negations (Chinese: prefixes of the adjective).
INTENS = {"en": ("very", "really", "extremely"), "zh": ("非常", "特别", "十分")}
DOWN_NEG = {"en": ("slightly", "somewhat"), "zh": ("有点", "有些")}
DOWN_POS = {"en": ("fairly", "reasonably"), "zh": ("比较", "较为")}
NEG_WEAK_ZH = ("不太", "不怎么")
NEG_STRONG_ZH = ("一点也不", "一点都不")

# Modifier codes and their signed strengths m.
PLAIN, INTENSE, DOWN, NEG, NEG_WEAK, NEG_STRONG = "plain", "intense", "down", "neg", \
    "neg_weak", "neg_strong"
STRENGTH = {PLAIN: 2, INTENSE: 3, DOWN: 1, NEG: -2, NEG_WEAK: -1, NEG_STRONG: -3}
MODS_POS = (PLAIN, INTENSE, DOWN, NEG, NEG_WEAK, NEG_STRONG)
MODS_NEG = (PLAIN, INTENSE, DOWN, NEG, NEG_STRONG)


@dataclass(frozen=True)
class Aspect:
    en: tuple[str, ...]   # synonyms
    plural: bool          # English verb agreement (the staff were)
    zh: tuple[str, ...]
    adjectives: tuple[str, ...]  # concepts that fit this aspect


def aspects_table(table: str) -> dict[str, tuple[Aspect, ...]]:
    out: dict[str, list[Aspect]] = {}
    for line in table.strip().splitlines():
        dom, en, num, zh, adj = (c.strip() for c in line.split("|"))
        out.setdefault(dom, []).append(Aspect(tuple(en.split(",")), num == "pl",
                                              tuple(zh.split(",")), tuple(adj.split())))
    return {k: tuple(v) for k, v in out.items()}


# domain | English nouns | sg/pl | Chinese nouns | adjective concepts
ASPECTS = aspects_table("""
hotel | room | sg | 房间 | clean quiet comfortable spacious good dirty noisy cramped bad
hotel | bed | sg | 床 | comfortable clean good hard dirty bad
hotel | staff,employees | pl | 员工,工作人员 | friendly helpful good rude slow bad
hotel | breakfast | sg | 早餐 | delicious fresh good greasy salty bad
hotel | location | sg | 位置 | convenient good remote bad
hotel | price | sg | 价格,价钱 | reasonable cheap expensive
restaurant | food | sg | 菜,饭菜,菜品 | delicious fresh good salty greasy bad
restaurant | service | sg | 服务 | fast good slow bad
restaurant | waiters | pl | 服务员 | friendly helpful good rude slow bad
restaurant | soup | sg | 汤 | delicious fresh good salty greasy bad
restaurant | prices | pl | 价格,价钱 | reasonable cheap expensive
product | design | sg | 设计 | beautiful stylish good ugly bad
product | screen | sg | 屏幕 | sharp bright good blurry dim bad
product | battery | sg | 电池 | durable good bad
product | price | sg | 价格,价钱 | reasonable cheap expensive
product | quality | sg | 质量 | good bad
product | delivery | sg | 送货,配送 | fast good slow bad
city | weather | sg | 天气 | warm good cold hot humid bad
city | streets | pl | 街道 | clean quiet dirty crowded noisy
city | people | pl | 人 | friendly helpful rude
city | public transport | sg | 交通 | convenient fast slow crowded bad
city | air | sg | 空气 | fresh clean dirty bad
film | story | sg | 故事,情节 | interesting moving good boring bad
film | acting | sg | 演技 | natural brilliant good stiff bad
film | music | sg | 音乐 | pleasant moving good noisy bad
film | ending | sg | 结局 | moving interesting good boring bad
film | special effects | pl | 特效 | impressive brilliant crude bad
film | dialogue | sg | 对白,台词 | interesting natural stiff boring
""")

# Overall verdicts: the reviewed thing, by domain (English noun, Chinese phrase).
PRODUCTS = ("phone", "computer", "camera", "watch", "lamp", "bicycle")
_OBJ = {r[0]: r for r in OBJECTS}
OVERALL_NOUN = {
    "hotel": (("hotel",), ("这家酒店", "这家宾馆")),
    "restaurant": (("restaurant",), ("这家餐厅", "这家饭馆")),
    "city": (("trip",), ("这次旅行",)),
    "film": (("film", "movie"), ("这部电影", "这部影片")),
}
OVERALL_ADJ = ("good", "bad")

DOMAINS = ("hotel", "restaurant", "product", "city", "film")

# Factual sentences: the first names the reviewed thing {T}; the others add colour.
# Slots: T target, C its city, K a country, P a person, N a count, D a day, M a month,
# O a product noun (Chinese: {Q} its classifier), X a colour, L a film's length.
INTRO = {
    "hotel": [("I stayed at {T} in {C} for {N} nights.", "我在{C}的{T}住了{N}晚。"),
              ("We booked {N} nights at {T} in {C}.", "我们在{C}的{T}订了{N}晚。")],
    "restaurant": [("I had dinner at {T} in {C} on {D}.", "我{D}在{C}的{T}吃了晚饭。"),
                   ("We went to {T} in {C} for lunch on {D}.", "我们{D}去{C}的{T}吃了午饭。")],
    "product": [("I bought the {O} from {T} in {C} in {M}.", "我{M}在{C}买了{T}的{O}。"),
                ("I ordered a {O} made by {T} on {D}.", "我{D}订了一{Q}{T}生产的{O}。")],
    "city": [("I spent {N} days in {T} in {M}.", "我{M}在{T}待了{N}天。"),
             ("We visited {T}, {K}, in {M}.", "我们{M}去了{K}的{T}。")],
    "film": [("I watched {T} at a cinema in {C} on {D}.", "我{D}在{C}的电影院看了{T}。"),
             ("{P} and I saw {T} on {D}.", "我和{P}{D}一起看了{T}。")],
}
EXTRA = {
    "hotel": [("We arrived on {D} with {P}.", "我们{D}和{P}一起到的。"),
              ("{P} booked the room for us.", "{P}帮我们订的房间。"),
              ("The hotel is next to the train station.", "酒店在火车站旁边。")],
    "restaurant": [("We ordered {N} dishes.", "我们点了{N}个菜。"),
                   ("{P} recommended this place.", "{P}推荐了这个地方。"),
                   ("We sat by the window.", "我们坐在窗边。")],
    "product": [("I have used it for {N} weeks.", "我已经用了{N}个星期。"),
                ("It came in {A} {X} box.", "它装在一个{X}的盒子里。"),
                ("{P} has the same one.", "{P}也有一{Q}同样的。")],
    "city": [("I travelled there with {P}.", "我是和{P}一起去的。"),
             ("{T} is in {K}.", "{T}在{K}。"),
             ("We took the train from {C2}.", "我们从{C2}坐火车去的。")],
    "film": [("The film is {L} minutes long.", "这部电影长{L}分钟。"),
             ("I went with {P}.", "我是和{P}一起去的。")],
}

# ----------------------------------------------------------------------------- clauses


@dataclass(frozen=True)
class Clause:
    """One opinion about one aspect: ``adj`` with modifier ``mod`` (its score
    ``p * m``), or neutral (``neutral`` word, or ``neither`` of two adjectives)."""

    noun: str
    plural: bool
    adj: str = ""         # surface word
    pol: int = 0
    mod: str = PLAIN
    mod_word: str = ""    # the modifier as written (intensifier, downtoner, negation)
    neutral: str = ""     # okay / 还行 ...
    neither: tuple[str, str] = ("", "")

    @property
    def score(self) -> int:
        """Signed strength; 0 for a neutral clause."""
        return 0 if self.neutral or self.neither[0] else self.pol * STRENGTH[self.mod]

    def render(self, lang: str, present: bool, contract: bool) -> str:
        if lang == "zh":
            if self.neutral:
                return self.noun + self.neutral
            if self.neither[0]:
                return f"{self.noun}既不{self.neither[0]}也不{self.neither[1]}"
            return self.noun + self.mod_word + self.adj
        be = ("are" if present else "were") if self.plural else ("is" if present else "was")
        head = f"the {self.noun} {be}"
        if self.neutral:
            return f"{head} {self.neutral}"
        if self.neither[0]:
            return f"{head} neither {self.neither[0]} nor {self.neither[1]}"
        neg_head = f"the {self.noun} {be}n't" if contract else f"{head} not"
        return {PLAIN: f"{head} {self.adj}",
                INTENSE: f"{head} {self.mod_word} {self.adj}",
                DOWN: f"{head} {self.mod_word} {self.adj}",
                NEG: f"{neg_head} {self.adj}",
                NEG_WEAK: f"{neg_head} very {self.adj}",
                NEG_STRONG: f"{neg_head} {self.adj} at all"}[self.mod]


def _mod_word(rng: random.Random, lang: str, mod: str, pol: int, adj: str) -> str:
    if mod == INTENSE:
        return rng.choice(INTENS[lang])
    if mod == DOWN:
        words = (DOWN_POS if pol > 0 else DOWN_NEG)[lang]
        return rng.choice(words if len(adj) > 1 or lang == "en" else words[:1])  # 比较好
    if lang == "en":
        return ""
    return {PLAIN: "很", NEG: "不", NEG_WEAK: rng.choice(NEG_WEAK_ZH),
            NEG_STRONG: rng.choice(NEG_STRONG_ZH)}[mod]


def _noun(rng: random.Random, aspect: Aspect, lang: str) -> str:
    return rng.choice(aspect.en if lang == "en" else aspect.zh)


def _clause(rng: random.Random, lang: str, aspect: Aspect, concept: str, mod: str) -> Clause:
    en, zh, pol = ADJECTIVES[concept]
    adj = rng.choice(en if lang == "en" else zh)
    return Clause(_noun(rng, aspect, lang), aspect.plural, adj, pol, mod,
                  _mod_word(rng, lang, mod, pol, adj))


def polar_clause(rng: random.Random, lang: str, aspect: Aspect, sign: int | None = None) -> Clause:
    """A clause on ``aspect`` whose score has ``sign`` (any sign if None)."""
    while True:
        concept = rng.choice(aspect.adjectives)
        pol = ADJECTIVES[concept][2]
        mod = rng.choice(MODS_POS if pol > 0 else MODS_NEG)
        if sign is None or pol * STRENGTH[mod] * sign > 0:
            return _clause(rng, lang, aspect, concept, mod)


def neutral_clause(rng: random.Random, lang: str, aspect: Aspect) -> Clause:
    """"okay"-like (60%), or "neither X nor Y" with X, Y of opposite polarities."""
    noun = _noun(rng, aspect, lang)
    pos = [c for c in aspect.adjectives if ADJECTIVES[c][2] > 0]
    neg = [c for c in aspect.adjectives if ADJECTIVES[c][2] < 0]
    if pos and neg and rng.random() < 0.4:
        k = 0 if lang == "en" else 1
        a = rng.choice(ADJECTIVES[rng.choice(pos)][k])
        b = rng.choice(ADJECTIVES[rng.choice(neg)][k])
        return Clause(noun, aspect.plural, neither=(a, b) if rng.random() < 0.5 else (b, a))
    return Clause(noun, aspect.plural, neutral=rng.choice(NEUTRAL[lang]))


def _label(score: int) -> str:
    return "neutral" if score == 0 else "positive" if score > 0 else "negative"


# ----------------------------------------------------------------------------- cores
# A core is a list of opinion sentences; the review puts facts around it.

def cap(s: str) -> str:
    return s[0].upper() + s[1:]


def _end(s: str, lang: str) -> str:
    return s + ("." if lang == "en" else "。")


def sentence_of(clause: Clause, lang: str, present: bool, contract: bool) -> str:
    return _end(cap(clause.render(lang, present, contract)), lang)


def contrast_sentences(lang: str, first: Clause, second: Clause, style: int, present: bool,
              contract: bool) -> list[str]:
    """``second`` dominates: "first, but second" and its variants (style 0..4)."""
    a = first.render(lang, present, contract)
    b = second.render(lang, present, contract)
    if lang == "en":
        return [[f"{cap(a)}, but {b}.", f"Although {a}, {b}.", f"{cap(b)}, although {a}.",
                 f"{cap(a)}. However, {b}.", f"{cap(a)}; however, {b}."][style]]
    return [[f"{a},但是{b}。", f"虽然{a},但是{b}。", f"{b},虽然{a}。", f"{a},不过{b}。",
             f"{a}。可是{b}。"][style]]


def and_sentence(lang: str, first: Clause, second: Clause, present: bool, contract: bool) -> str:
    a = first.render(lang, present, contract)
    b = second.render(lang, present, contract)
    if lang == "en":
        return f"{cap(a)}, and {b}."
    return f"{a},{'而且' if first.score * second.score > 0 else ''}{b}。"


def _overall(rng: random.Random, lang: str, domain: str, product: str, sign: int,
             present: bool, contract: bool) -> str:
    """An overall verdict whose score has ``sign`` (0: a neutral one)."""
    if domain == "product":
        obj = _OBJ[product]
        nouns = ((product,), (f"这{obj[3]}{obj[2]}",))
    else:
        nouns = OVERALL_NOUN[domain]
    aspect = Aspect(nouns[0], False, nouns[1], OVERALL_ADJ)
    clause = (neutral_clause(rng, lang, aspect) if sign == 0
              else polar_clause(rng, lang, aspect, sign))
    text = clause.render(lang, present, contract)
    return f"Overall, {text}." if lang == "en" else f"总的来说,{text}。"


def opinion(rng: random.Random, lang: str, aspects: tuple[Aspect, ...], label: str,
            present: bool, contract: bool) -> list[str]:
    """One opinion sentence (or two, for "A. However, B.") with ``label`` on two of
    ``aspects``, no verdict: a single clause (35%), two clauses that add up (20%), a
    contrast (45%)."""
    a1, a2 = rng.sample(aspects, 2)
    args = (present, contract)
    if label == "neutral":
        return [sentence_of(neutral_clause(rng, lang, a1), lang, *args)]
    sign = 1 if label == "positive" else -1
    r = rng.random()
    if r < 0.35:
        return [sentence_of(polar_clause(rng, lang, a1, sign), lang, *args)]
    if r < 0.55:
        while True:
            c1, c2 = polar_clause(rng, lang, a1), polar_clause(rng, lang, a2)
            if (c1.score + c2.score) * sign > 0:
                return [and_sentence(lang, c1, c2, *args)]
    first = (neutral_clause(rng, lang, a1) if rng.random() < 0.2
             else polar_clause(rng, lang, a1, -sign))
    return contrast_sentences(lang, first, polar_clause(rng, lang, a2, sign), rng.randrange(5), *args)


def _core(rng: random.Random, lang: str, domain: str, product: str, label: str,
          present: bool, contract: bool) -> list[str]:
    """Opinion sentences whose label (by the rules of the module docstring) is ``label``:
    an opinion, possibly followed by an overall verdict that overrides it (15%); for
    neutral: facts only (30%), a neutral opinion (40%), a polar one overridden (30%)."""
    args = (present, contract)
    r = rng.random()
    if label == "neutral":
        if r < 0.3:
            return []
        if r < 0.7:
            return opinion(rng, lang, ASPECTS[domain], label, *args)
        return (opinion(rng, lang, ASPECTS[domain], rng.choice(LABELS[:2]), *args)
                + [_overall(rng, lang, domain, product, 0, *args)])
    if r < 0.85:
        return opinion(rng, lang, ASPECTS[domain], label, *args)
    sign = 1 if label == "positive" else -1
    return (opinion(rng, lang, ASPECTS[domain], rng.choice(LABELS), *args)
            + [_overall(rng, lang, domain, product, sign, *args)])


# ----------------------------------------------------------------------------- reviews

@dataclass(frozen=True)
class _Frame:
    """The factual side of a review: domain, language, product, and its fact sentences."""

    domain: str
    lang: str
    product: str
    intro: str
    extras: tuple[str, ...]


def _frame(rng: random.Random, lang: str, unseen: bool) -> _Frame:
    c = cast()
    domain = rng.choice(DOMAINS)
    cities = c.pool("CITY", unseen)
    if domain == "city":
        target: Entity = rng.choice(cities)
        city = target
    else:
        target = rng.choice(c.pool("FILM", unseen) if domain == "film" else c.pool(
            "ORG", unseen, {"hotel": "hotel", "restaurant": "restaurant"}.get(domain, "company")))
        city = c.city(target.home) if target.home else rng.choice(cities)
    product = rng.choice(PRODUCTS)
    obj = _OBJ[product]
    color = rng.choice(COLORS)
    month = rng.randrange(12)
    values = {
        "T": target.name(lang), "C": city.name(lang),
        "C2": rng.choice([x for x in cities if x is not city]).name(lang),
        "K": c.country(city.home).name(lang),
        "P": rng.choice(c.pool("PER", unseen)).name(lang),
        "N": count(rng.randint(2, 9), lang), "L": count(rng.randint(85, 150), lang),
        "D": rng.choice(DAYS)[0 if lang == "en" else 1],
        "M": MONTHS[month][0] if lang == "en" else zh_int(month + 1, liang=False) + "月",
        "O": product if lang == "en" else obj[2], "Q": obj[3],
        "X": color[0] if lang == "en" else color[1], "A": article(color[0]),
    }
    k = 0 if lang == "en" else 1
    intro = fill(rng.choice(INTRO[domain])[k], values)[0]
    extras = tuple(fill(t[k], values)[0] for t in EXTRA[domain])
    return _Frame(domain, lang, product, intro, extras)


def _assemble(rng: random.Random, frame: _Frame, core: list[str]) -> str:
    """The intro, the core, and extra facts (before or after the core) for 2-4 sentences
    in all; an overall verdict stays last."""
    n_core = sum(s.count("." if frame.lang == "en" else "。") for s in core)
    extras = rng.sample(frame.extras, min(rng.randint(max(0, 1 - n_core), 3 - n_core),
                                          len(frame.extras)))
    before = [e for e in extras if rng.random() < 0.4]
    after = [e for e in extras if e not in before]
    sents = [frame.intro, *before, *core]
    if core and core[-1].startswith(("Overall", "总的来说")):
        sents[-1:-1] = after
    else:
        sents += after
    return (" " if frame.lang == "en" else "").join(sents)


def _make(rng: random.Random, lang: str, unseen: bool) -> list[tuple[dict, str]]:
    frame = _frame(rng, lang, unseen)
    r = rng.random()
    label = "positive" if r < 0.375 else "negative" if r < 0.75 else "neutral"
    core = _core(rng, lang, frame.domain, frame.product, label, rng.random() < 0.5,
                 lang == "en" and rng.random() < 0.3)
    return [({"text": _assemble(rng, frame, core), "label": label, "lang": lang}, label)]


def _make_pair(rng: random.Random, lang: str, unseen: bool) -> list[tuple[dict, str]]:
    """Two reviews with the same facts that differ only in a negation (plain <-> not) or
    in the order of a contrast, with opposite labels."""
    frame = _frame(rng, lang, unseen)
    a1, a2 = rng.sample(ASPECTS[frame.domain], 2)
    args = (rng.random() < 0.5, lang == "en" and rng.random() < 0.3)
    if rng.random() < 0.5:
        concept = rng.choice(a1.adjectives)
        pol = ADJECTIVES[concept][2]
        plain = _clause(rng, lang, a1, concept, PLAIN)
        negated = Clause(plain.noun, plain.plural, plain.adj, pol, NEG,
                         _mod_word(rng, lang, NEG, pol, plain.adj))
        cores = [[sentence_of(plain, lang, *args)], [sentence_of(negated, lang, *args)]]
        labels = [_label(pol), _label(-pol)]
    else:
        c1, c2 = polar_clause(rng, lang, a1, 1), polar_clause(rng, lang, a2, -1)
        style = rng.randrange(5)
        cores = [contrast_sentences(lang, c2, c1, style, *args), contrast_sentences(lang, c1, c2, style, *args)]
        labels = ["positive", "negative"]
    state = rng.getstate()
    out = []
    for core, label in zip(cores, labels, strict=True):
        rng.setstate(state)  # the same facts in the same places
        out.append(({"text": _assemble(rng, frame, core), "label": label, "lang": lang},
                    label))
    return out


# ----------------------------------------------------------------------------- the rule

@functools.lru_cache(maxsize=1)
def _lexicon() -> tuple[dict[str, int], dict[str, int], re.Pattern, re.Pattern]:
    """Polarity of every adjective and neutral word (0) by language, a pattern of every
    entity name (to mask), and a longest-first pattern of the Chinese words."""
    en = {w: pol for ws, _, pol in ADJECTIVES.values() for w in ws}
    zh = {w: pol for _, ws, pol in ADJECTIVES.values() for w in ws}
    for lang, table in (("en", en), ("zh", zh)):
        table.update({w: 0 for w in NEUTRAL[lang]})
    c = cast()
    names = sorted({n for group in (c.people, c.cities, c.countries, c.orgs, c.films)
                    for e in group for n in (e.en, e.zh)}, key=len, reverse=True)
    masks = re.compile("|".join(map(re.escape, names)))
    zh_words = re.compile("|".join(map(re.escape, sorted(zh, key=len, reverse=True))))
    return en, zh, masks, zh_words


_EN_TOKEN = re.compile(r"[a-z]+(?:'[a-z]+)?")
_MAIN, _AFTER, _SUB, _OVERALL = "main", "after", "sub", "overall"
_NEUTRAL = "neutral"
_CONNECTIVES = {
    "en": {"but": _AFTER, "however": _AFTER, "although": _SUB, "and": _MAIN},
    "zh": {"但是": _AFTER, "不过": _AFTER, "可是": _AFTER, "虽然": _SUB, "而且": _MAIN},
}


def _en_value(words: list[str], lex: dict[str, int]) -> int | str | None:
    """Score of an English clause, ``"neutral"``, or None if it holds no opinion."""
    if "neither" in words:
        return _NEUTRAL
    idx = next((i for i, w in enumerate(words) if w in lex), None)
    if idx is None:
        return None
    pol = lex[words[idx]]
    if pol == 0:
        return _NEUTRAL
    pre = words[:idx]
    if "not" in pre or any(w.endswith("n't") for w in pre):
        m = -3 if words[idx + 1:idx + 3] == ["at", "all"] else -1 if "very" in pre else -2
    else:
        m = (3 if any(w in INTENS["en"] for w in pre) else
             1 if any(w in DOWN_NEG["en"] + DOWN_POS["en"] for w in pre) else 2)
    return pol * m


def _zh_value(clause: str, lex: dict[str, int], words: re.Pattern) -> int | str | None:
    """Score of a Chinese clause: the first (longest) adjective, then its prefix."""
    if "既不" in clause:
        return _NEUTRAL
    m = words.search(clause)
    if m is None:
        return None
    pol = lex[m.group()]
    if pol == 0:
        return _NEUTRAL
    pre = clause[:m.start()]
    for prefixes, strength in ((NEG_STRONG_ZH, -3), (NEG_WEAK_ZH, -1), (("不",), -2),
                               (INTENS["zh"], 3), (DOWN_NEG["zh"] + DOWN_POS["zh"], 1)):
        if pre.endswith(prefixes):
            return pol * strength
    return pol * 2


def _segments(text: str, lang: str) -> list[tuple[str, str]]:
    """(role, clause) pairs: the text cut at sentence ends, commas and semicolons; a
    piece's role comes from the connective that opens it (or the piece before it:
    "However," and "Overall,")."""
    out: list[tuple[str, str]] = []
    pending = None
    for piece in re.split(r"[.;,。]", text if lang == "zh" else text.lower()):
        piece = piece.strip()
        if not piece:
            continue
        if piece in ("overall", "总的来说", "however"):
            pending = _AFTER if piece == "however" else _OVERALL
            continue
        role, pending = pending or _MAIN, None
        for word, r in _CONNECTIVES[lang].items():
            if piece.startswith(word) and (lang == "zh" or piece[len(word):][:1] == " "):
                role, piece = r, piece[len(word):]
                break
        out.append((role, piece))
    return out


def sentiment_label(text: str, lang: str) -> str:
    """The label a reader gets from ``text`` by the rules of this module (order-aware:
    negation scope, contrast, concession, degree words). Entity names are masked first.

    Every rendered item's noise-free label equals ``sentiment_label(text, lang)``.
    """
    en, zh, masks, zh_words = _lexicon()
    values: list[tuple[str, int | str]] = []
    for role, clause in _segments(masks.sub("@", text), lang):
        v = (_en_value(_EN_TOKEN.findall(clause), en) if lang == "en"
             else _zh_value(clause, zh, zh_words))
        if v is not None:
            values.append((role, v))
    for role in (_OVERALL, _AFTER):
        decisive = [v for r, v in values if r == role]
        if decisive:
            return _NEUTRAL if decisive[-1] == _NEUTRAL else _label(decisive[-1])
    return _label(sum(v for r, v in values if r == _MAIN and v != _NEUTRAL))


# ----------------------------------------------------------------------------- the set

def render(seed: int, sizes: dict[str, int], langs: tuple[str, ...]) -> TaskSet:
    """The sentiment set (see the module docstring); ``sizes`` are resolved."""
    splits, clean, fields = render_labelled(
        NAME, seed, sizes, langs, lambda split, used: _make_pair if split == "contrast" else _make,
        LABELS, {s: 0.0 if s == "contrast" else NOISE for s in sizes})
    for i, rec in enumerate(splits.get("contrast", [])):
        rec["pair"] = i // 2
    card = base_card(
        NAME, description="bilingual reviews (hotels, restaurants, products, cities, films); "
        "the label is decided by negation, contrast (but/however/但是/不过/可是 dominate, "
        "although/虽然 yields) and degree words; 'contrast' holds minimal pairs with "
        "opposite labels", labels=LABELS, metric="accuracy", seed=seed, langs=langs,
        splits=splits, unseen=cast().unseen_names(), partition=PARTITION)
    card.update(fields)
    card["pairs"] = len(splits.get("contrast", [])) // 2
    return TaskSet(NAME, splits, card, clean)
