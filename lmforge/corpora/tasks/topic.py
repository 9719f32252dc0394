"""Topic: short news items in 8 classes (sport, food, travel, work, technology, weather,
health, finance).

An item is 1-3 sentences: one **headline** sentence of its topic (naming people,
cities, organisations), then up to two sentences drawn from that topic's follow-ups or
from generic news sentences shared by all topics ("The news was reported on Monday.").
A third of the items (``BRIEF``) end with a brief from *another* topic, the headline of
that topic after "In other news," / "另外,": **the lead sentence decides the topic**, so
a bag of words is misled by the brief while a reader of the lead is not.

Topics share words on purpose: prices rise in food and finance, flights are full in
travel and cancelled by snow in weather, an app helps doctors in technology and reminds
patients in health, teams train in sport and work, records fall in sport, travel and
weather. The headline templates differ between topics, so the topic (that of the first
sentence) is a function of the text; ``NOISE = 0.5%`` of each split's labels are
flipped (ceiling ``1 - k/n``).
"""

from __future__ import annotations

import random

from ..world.lexicon import DAYS, FOODS, MONTHS
from .common import PARTITION, TaskSet, base_card, count, fill, percent, render_labelled, zh_int
from .entities import cast

NAME = "topic"
LABELS = ("sport", "food", "travel", "work", "technology", "weather", "health", "finance")
NOISE = 0.005
BRIEF = 0.35  # the share of items that end with a brief from another topic

# Slots: P/P2 people, C/C2 cities, K a country, CLUB/CLUB2, CO a company, BANK, UNI, HOSP,
# REST, HOTEL, ORG any employer; N 2-9, N2 1..N-1, NN 10-99, BIG thousands, MIL millions
# of yuan, PCT a percentage, RATE a small one, DEG a temperature, D a day, M a month,
# F a food (FP its English plural, in English templates).
# topic -> (headlines, follow-ups); each a list of (English, Chinese).
TEMPLATES: dict[str, tuple[list[tuple[str, str]], list[tuple[str, str]]]] = {
    "sport": ([
        ("{CLUB} beat {CLUB2} {N} to {N2} in {C} on {D}.", "{CLUB}{D}在{C}以{N}比{N2}战胜了{CLUB2}。"),
        ("{P} scored {N} goals for {CLUB} this season.", "{P}本赛季为{CLUB}打进了{N}个球。"),
        ("{P} won the {C} marathon in a record time.", "{P}以创纪录的成绩赢得了{C}马拉松。"),
        ("{CLUB} will train in {C} for {N} weeks before the final.",
         "{CLUB}将在{C}集训{N}周,备战决赛。"),
    ], [
        ("The fans celebrated in the streets.", "球迷们在街头庆祝。"),
        ("The coach praised the players after the match.", "赛后教练表扬了球员。"),
        ("The next match is on {D}.", "下一场比赛在{D}进行。"),
        ("{BIG} people watched the game.", "{BIG}名观众观看了比赛。"),
    ]),
    "food": ([
        ("{REST} opened a new kitchen in {C} that sells {FP}.",
         "{REST}在{C}开了一家新店,专门卖{F}。"),
        ("Prices of {FP} at the market in {C} rose by {PCT}.", "{C}市场上{F}的价格上涨了{PCT}。"),
        ("Chef {P} of {REST} shared a recipe for {F} soup.", "{REST}的厨师{P}分享了一道{F}汤的做法。"),
        ("The {C} food festival drew {BIG} visitors.", "{C}美食节吸引了{BIG}名游客。"),
    ], [
        ("The menu has {NN} dishes.", "菜单上有{NN}道菜。"),
        ("Farmers expect a good harvest of {FP} this year.", "农民预计今年{F}会丰收。"),
        ("Many people came to taste the new dishes.", "很多人前来品尝新菜。"),
        ("The team in the kitchen works long hours.", "厨房团队的工作时间很长。"),
    ]),
    "travel": ([
        ("Flights from {C} to {C2} were full during the holiday.",
         "假期期间从{C}飞往{C2}的航班都满了。"),
        ("{HOTEL} in {C} offered rooms at half price in {M}.", "{C}的{HOTEL}{M}推出了半价客房。"),
        ("Tourists from {K} visited {C} in record numbers in {M}.",
         "{M}来自{K}的游客到访{C}的人数创下纪录。"),
        ("{P} spent {N} days hiking near {C}.", "{P}在{C}附近徒步旅行了{N}天。"),
    ], [
        ("The new train line opens on {D}.", "新的火车线路将于{D}开通。"),
        ("Travel agents expect more visitors next month.", "旅行社预计下个月游客会更多。"),
        ("Hotels near the beach are already full.", "海边的酒店已经客满。"),
        ("Museum tickets cost {NN} yuan.", "博物馆门票{NN}元。"),
    ]),
    "work": ([
        ("{CO} hired {NN} new staff in {C}.", "{CO}在{C}招聘了{NN}名新员工。"),
        ("{P} was promoted to team leader at {ORG}.", "{P}在{ORG}被提升为团队负责人。"),
        ("Workers at {ORG} will get a four-day week from {M}.",
         "从{M}起,{ORG}的员工将实行四天工作制。"),
        ("The training course for new employees at {ORG} lasts {N} weeks.",
         "{ORG}新员工的培训课程为期{N}周。"),
        ("{P} left {ORG} after {N} years to start a business.", "{P}在{ORG}工作{N}年后离职创业。"),
    ], [
        ("Staff can work from home on {D}.", "员工可以在{D}居家办公。"),
        ("The company plans to open an office in {C2}.", "公司计划在{C2}开设办事处。"),
        ("Interviews will take place next week.", "面试将在下周进行。"),
        ("The team meets every {D} morning.", "团队每个{D}上午开会。"),
    ]),
    "technology": ([
        ("{CO} released a new phone with a {NN}-hour battery.", "{CO}发布了一款续航{NN}小时的新手机。"),
        ("{CO} launched an app that helps doctors in {C}.", "{CO}推出了一款帮助{C}医生的应用。"),
        ("Engineers at {CO} built a robot that can cook {FP}.", "{CO}的工程师造出了一台会做{F}的机器人。"),
        ("A software update from {CO} fixed {NN} bugs.", "{CO}的一次软件更新修复了{NN}个漏洞。"),
        ("Researchers at {UNI} built a faster computer chip.", "{UNI}的研究人员研制出一种更快的计算机芯片。"),
    ], [
        ("The update is free for all users.", "更新对所有用户免费。"),
        ("The phone goes on sale on {D}.", "这款手机将于{D}开售。"),
        ("The company says the software is safe.", "公司表示该软件是安全的。"),
        ("Online shopping has grown by {PCT}.", "网上购物增长了{PCT}。"),
    ]),
    "weather": ([
        ("Heavy snow in {C} cancelled {NN} flights on {D}.", "{D}{C}的大雪导致{NN}个航班取消。"),
        ("{C} recorded a high of {DEG} degrees on {D}.", "{C}{D}的最高气温达到了{DEG}度。"),
        ("Strong winds are expected in {C} this weekend.", "预计本周末{C}将有大风。"),
        ("It rained for {N} days in a row in {C}.", "{C}连续下了{N}天雨。"),
    ], [
        ("Temperatures will drop on {D}.", "{D}气温将会下降。"),
        ("People are advised to stay indoors.", "建议人们待在室内。"),
        ("The sun will return next week.", "下周将重新放晴。"),
        ("Farmers hope for rain in {M}.", "农民希望{M}能下雨。"),
    ]),
    "health": ([
        ("Doctors at {HOSP} treated {NN} patients with flu this week.",
         "本周{HOSP}的医生治疗了{NN}名流感患者。"),
        ("{HOSP} opened a new clinic for children in {C}.", "{HOSP}在{C}开设了一家儿童诊所。"),
        ("A study by {UNI} found that walking {NN} minutes a day helps the heart.",
         "{UNI}的一项研究发现,每天步行{NN}分钟有益心脏健康。"),
        ("{P}, a nurse at {HOSP}, said that sleep is important.", "{HOSP}的护士{P}说,睡眠很重要。"),
        ("An app from {CO} reminds patients to take their medicine.",
         "{CO}的一款应用会提醒病人按时吃药。"),
    ], [
        ("Doctors advise people to eat more vegetables.", "医生建议人们多吃蔬菜。"),
        ("The clinic is open every {D}.", "诊所每个{D}开放。"),
        ("Flu cases usually rise in winter.", "流感病例通常在冬天增加。"),
    ]),
    "finance": ([
        ("Shares of {CO} rose by {PCT} on {D}.", "{D}{CO}的股价上涨了{PCT}。"),
        ("{BANK} cut its interest rate to {RATE}.", "{BANK}将利率下调至{RATE}。"),
        ("Prices in {C} rose by {PCT} in {M}.", "{M}{C}的物价上涨了{PCT}。"),
        ("{BANK} reported a profit of {MIL} yuan.", "{BANK}公布的利润为{MIL}元。"),
        ("{P}, an analyst at {BANK}, expects the market to grow.",
         "{BANK}的分析师{P}预计市场将会增长。"),
    ], [
        ("Investors were pleased with the results.", "投资者对结果感到满意。"),
        ("The market closed higher on {D}.", "{D}股市收高。"),
        ("The bank will publish its report in {M}.", "该银行将于{M}发布报告。"),
        ("Savings accounts now pay {RATE} a year.", "储蓄账户现在的年利率为{RATE}。"),
    ]),
}

GENERIC = [
    ("The news was reported on {D}.", "这条消息于{D}发布。"),
    ("{P2} said more details would follow.", "{P2}表示将公布更多细节。"),
    ("More news is expected in {M}.", "预计{M}会有更多消息。"),
]


def draw_values(rng: random.Random, lang: str, unseen: bool) -> dict[str, str]:
    """A value for every slot (entities from one side of the partition)."""
    c = cast()
    en = lang == "en"

    def pick(kind: str, k: int = 1, sub: str | None = None) -> list[str]:
        return [e.name(lang) for e in rng.sample(c.pool(kind, unseen, sub), k)]

    clubs = pick("ORG", 2, "club")
    people, cities = pick("PER", 2), pick("CITY", 2)
    employers = [e for e in c.pool("ORG", unseen) if e.sub != "club"]
    n = rng.randint(2, 9)
    big, mil = rng.randint(2, 60) * 1000, rng.randint(10, 900)
    food = rng.choice(FOODS)
    month = rng.randrange(12)
    return {
        "P": people[0], "P2": people[1], "C": cities[0], "C2": cities[1],
        "K": pick("COUNTRY")[0], "CLUB": clubs[0], "CLUB2": clubs[1],
        "CO": pick("ORG", 1, "company")[0], "BANK": pick("ORG", 1, "bank")[0],
        "UNI": pick("ORG", 1, "university")[0], "HOSP": pick("ORG", 1, "hospital")[0],
        "REST": pick("ORG", 1, "restaurant")[0], "HOTEL": pick("ORG", 1, "hotel")[0],
        "ORG": rng.choice(employers).name(lang),
        "N": count(n, lang), "N2": count(rng.randint(1, n - 1), lang),
        "NN": count(rng.randint(10, 99), lang),
        "BIG": f"{big:,}" if en else zh_int(big),
        "MIL": f"{mil} million" if en else zh_int(mil * 100) + "万",
        "PCT": percent(rng.randint(2, 40), lang, digits=rng.random() < 0.5),
        "RATE": percent(rng.randint(1, 6), lang, digits=rng.random() < 0.5),
        "DEG": count(rng.randint(30, 45), lang),
        "D": rng.choice(DAYS)[0 if en else 1],
        "M": MONTHS[month][0] if en else zh_int(month + 1, liang=False) + "月",
        "F": food[0] if en else food[2], "FP": food[1],
    }


def _brief(template: str, lang: str) -> str:
    """A headline of another topic, as a closing brief: "In other news, ..." / 另外,..."""
    if lang == "zh":
        return "另外," + template
    return "In other news, " + (template if template[0] == "{" else
                                template[0].lower() + template[1:])


def _make(rng: random.Random, lang: str, unseen: bool) -> list[tuple[dict, str]]:
    label = rng.choice(LABELS)
    heads, follow = TEMPLATES[label]
    k = 0 if lang == "en" else 1
    extra = rng.choice((0, 1, 1, 2))
    chosen = [rng.choice(heads)[k]] + [t[k] for t in rng.sample(follow + GENERIC, extra)]
    if rng.random() < BRIEF:
        other = rng.choice([x for x in LABELS if x != label])
        chosen[1 + (extra == 2):] = [_brief(rng.choice(TEMPLATES[other][0])[k], lang)]
    values = draw_values(rng, lang, unseen)
    text = (" " if lang == "en" else "").join(fill(t, values)[0] for t in chosen)
    return [({"text": text, "label": label, "lang": lang}, label)]


def render(seed: int, sizes: dict[str, int], langs: tuple[str, ...]) -> TaskSet:
    """The topic set (see the module docstring); ``sizes`` are resolved."""
    splits, clean, fields = render_labelled(NAME, seed, sizes, langs, lambda split, used: _make,
                                            LABELS, {s: NOISE for s in sizes})
    card = base_card(
        NAME, description="bilingual news items of 1-3 sentences in 8 topics; topics share "
        "words (prices, flights, app, team, record)", labels=LABELS, metric="accuracy",
        seed=seed, langs=langs, splits=splits, unseen=cast().unseen_names(),
        partition=PARTITION)
    card.update(fields)
    return TaskSet(NAME, splits, card, clean)
