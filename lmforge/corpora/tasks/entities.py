"""The cast of the task sets: the world's people and cities, extended, split seen/unseen.

The world has 20 people and 24 cities: too few to hold some out. The task sets use a
larger cast:

* **people**: the world's 20, plus 16 more (``seen``), plus 12 that are ``unseen``;
* **cities**: the world's 24 (two in each of 12 countries), plus 3 more ``seen`` and 9
  ``unseen`` ones, each in one of the world's 12 countries;
* **organisations**: 42 named companies, banks, universities, hospitals, restaurants,
  hotels and sports clubs, each seated in a city (an unseen organisation in an unseen
  city), 11 of them ``unseen``;
* **films**: 8 titles, 2 of them ``unseen``.

**The partition** is fixed (it does not depend on the seed) and written in the tables
below: every entity of the world itself is seen, and the unseen ones (about 25% of each
kind) are new names that occur nowhere in the world's LM corpus either. Train, val and
test texts (and the sentiment ``contrast`` pairs) draw only seen entities; ``test_unseen``
draws only unseen people, cities, organisations and films. Countries (12) are shared.

Names were chosen so that no name contains another entity's name (no city inside an
organisation's name), so a string search for an unseen name finds only its mentions.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ..world.lexicon import CITIES, COUNTRIES, PEOPLE


@dataclass(frozen=True)
class Entity:
    """A named entity in both languages.

    ``kind``: ``PER``, ``CITY``, ``COUNTRY``, ``ORG`` or ``FILM``. ``sub``: the sort of
    organisation (``company``, ``bank``, ``university``, ``hospital``, ``restaurant``,
    ``hotel``, ``club``), or a person's gender (``F``/``M``). ``home``: a city's country,
    an organisation's seat city (English names).
    """

    en: str
    zh: str
    kind: str
    unseen: bool = False
    sub: str = ""
    home: str = ""

    def name(self, lang: str) -> str:
        """The Chinese name for ``zh``; the Latin one (copied) for English and German."""
        return self.zh if lang == "zh" else self.en


def _table(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")] for line in text.strip().splitlines()]


# English | Chinese | gender | partition
_MORE_PEOPLE = _table("""
Oliver | 奥利弗 | M | seen
Sophie | 索菲 | F | seen
Daniel | 丹尼尔 | M | seen
Grace | 格蕾丝 | F | seen
Lucas | 卢卡斯 | M | seen
Chloe | 克洛伊 | F | seen
Ethan | 伊森 | M | seen
Laura | 劳拉 | F | seen
Liu Yang | 刘洋 | M | seen
Huang Min | 黄敏 | F | seen
Wu Hao | 吴昊 | M | seen
Xu Jing | 徐静 | F | seen
Lin Feng | 林峰 | M | seen
Zhu Ting | 朱婷 | F | seen
Ma Chao | 马超 | M | seen
Guo Mei | 郭梅 | F | seen
Oscar | 奥斯卡 | M | unseen
Fiona | 菲奥娜 | F | unseen
Victor | 维克多 | M | unseen
Isabel | 伊莎贝尔 | F | unseen
Hugo | 雨果 | M | unseen
Nora | 诺拉 | F | unseen
Sun Hao | 孙浩 | M | unseen
Feng Tao | 冯涛 | M | unseen
Zheng Jie | 郑洁 | F | unseen
Cao Yang | 曹阳 | M | unseen
Deng Lan | 邓兰 | F | unseen
Pan Yue | 潘悦 | F | unseen
""")

# English | Chinese | country | partition
_MORE_CITIES = _table("""
Guangzhou | 广州 | China | seen
Hangzhou | 杭州 | China | seen
Boston | 波士顿 | America | seen
Nagoya | 名古屋 | Japan | unseen
Incheon | 仁川 | Korea | unseen
Bangalore | 班加罗尔 | India | unseen
Marseille | 马赛 | France | unseen
Edinburgh | 爱丁堡 | Britain | unseen
Frankfurt | 法兰克福 | Germany | unseen
Naples | 那不勒斯 | Italy | unseen
Montreal | 蒙特利尔 | Canada | unseen
Perth | 珀斯 | Australia | unseen
""")

# English | Chinese | sort | seat city | partition
_ORGS = _table("""
Bluefin Technologies | 蓝鳍科技 | company | Shanghai | seen
Northstar Software | 北极星软件 | company | Boston | seen
Silverleaf Electronics | 银叶电子 | company | Seoul | seen
Redwood Systems | 红杉系统 | company | Chicago | seen
Brightpath Networks | 明途网络 | company | Hangzhou | seen
Greenfield Robotics | 绿野机器人 | company | Munich | seen
Cloudpeak Computing | 云峰计算 | company | Bangalore | unseen
Ironbridge Data | 铁桥数据 | company | Frankfurt | unseen
Harbor Bank | 港湾银行 | bank | London | seen
Goldcrest Bank | 金冠银行 | bank | New York | seen
Evergreen Bank | 长青银行 | bank | Toronto | seen
Summit Bank | 顶峰银行 | bank | Edinburgh | unseen
Riverside University | 河畔大学 | university | Beijing | seen
Lakeview University | 湖景大学 | university | Melbourne | seen
Eastfield University | 东原大学 | university | Lyon | seen
Westbrook University | 西溪大学 | university | Montreal | unseen
Mercy Hospital | 仁爱医院 | hospital | Delhi | seen
Greenhill Hospital | 青山医院 | hospital | Osaka | seen
Lakeside Hospital | 湖滨医院 | hospital | Madrid | seen
Hopewell Hospital | 希望医院 | hospital | Perth | unseen
Golden Dragon | 金龙饭店 | restaurant | Guangzhou | seen
Blue Lotus | 蓝莲餐厅 | restaurant | Paris | seen
Red Lantern | 红灯笼餐厅 | restaurant | Busan | seen
Jade Palace | 翡翠宫 | restaurant | Tokyo | seen
Bamboo House | 竹园饭店 | restaurant | Vancouver | seen
Silver Spoon | 银勺餐厅 | restaurant | Rome | seen
Copper Pot | 铜锅餐厅 | restaurant | Incheon | unseen
Olive Tree | 橄榄树餐厅 | restaurant | Naples | unseen
Grand Harbor Hotel | 海港大酒店 | hotel | Sydney | seen
Pine Lodge | 松林旅馆 | hotel | Manchester | seen
Starlight Hotel | 星光酒店 | hotel | Barcelona | seen
Royal Garden Hotel | 皇家花园酒店 | hotel | Milan | seen
Seaview Hotel | 海景酒店 | hotel | Mumbai | seen
Maple Inn | 枫叶旅馆 | hotel | Berlin | seen
Cloudtop Hotel | 云顶酒店 | hotel | Nagoya | unseen
Coral Bay Hotel | 珊瑚湾酒店 | hotel | Marseille | unseen
Red Lions | 红狮队 | club | Shanghai | seen
Golden Eagles | 金鹰队 | club | Madrid | seen
Blue Sharks | 蓝鲨队 | club | Sydney | seen
Silver Foxes | 银狐队 | club | Boston | seen
Iron Wolves | 铁狼队 | club | Perth | unseen
Storm Riders | 风暴骑士队 | club | Naples | unseen
""")

# English | Chinese | partition
_FILMS = _table("""
The Silent River | 《沉默的河》 | seen
Midnight Train | 《午夜列车》 | seen
Blue Horizon | 《蓝色地平线》 | seen
The Last Summer | 《最后的夏天》 | seen
Paper Boats | 《纸船》 | seen
Winter Light | 《冬日之光》 | seen
Falling Stars | 《流星雨》 | unseen
The Lighthouse Keeper | 《守灯人》 | unseen
""")


@dataclass(frozen=True)
class Cast:
    """All entities, by kind; :meth:`pool` gives the seen or the unseen ones."""

    people: tuple[Entity, ...]
    cities: tuple[Entity, ...]
    countries: tuple[Entity, ...]
    orgs: tuple[Entity, ...]
    films: tuple[Entity, ...]

    def pool(self, kind: str, unseen: bool, sub: str | None = None) -> tuple[Entity, ...]:
        """Entities of ``kind`` in one side of the partition (countries are shared);
        ``sub`` keeps one sort of organisation (or one gender of people)."""
        every = {"PER": self.people, "CITY": self.cities, "COUNTRY": self.countries,
                 "ORG": self.orgs, "FILM": self.films}[kind]
        return tuple(e for e in every if (kind == "COUNTRY" or e.unseen == unseen)
                     and (sub is None or e.sub == sub))

    def city(self, en: str) -> Entity:
        return next(c for c in self.cities if c.en == en)

    def country(self, en: str) -> Entity:
        return next(c for c in self.countries if c.en == en)

    def unseen_names(self) -> dict[str, list[str]]:
        """The unseen entities, by kind, each as its English and Chinese name."""
        out: dict[str, list[str]] = {}
        for kind, group in (("PER", self.people), ("CITY", self.cities), ("ORG", self.orgs),
                            ("FILM", self.films)):
            out[kind] = [n for e in group if e.unseen for n in (e.en, e.zh)]
        return out


@functools.lru_cache(maxsize=1)
def cast() -> Cast:
    """The task sets' cast (built once)."""
    people = [Entity(r[0], r[1], "PER", sub=r[2]) for r in PEOPLE]
    people += [Entity(r[0], r[1], "PER", r[3] == "unseen", sub=r[2]) for r in _MORE_PEOPLE]
    cities = [Entity(r[0], r[1], "CITY", home=r[2]) for r in CITIES]
    cities += [Entity(r[0], r[1], "CITY", r[3] == "unseen", home=r[2]) for r in _MORE_CITIES]
    countries = [Entity(r[0], r[1], "COUNTRY") for r in COUNTRIES]
    orgs = [Entity(r[0], r[1], "ORG", r[4] == "unseen", sub=r[2], home=r[3]) for r in _ORGS]
    films = [Entity(r[0], r[1], "FILM", r[2] == "unseen") for r in _FILMS]
    return Cast(tuple(people), tuple(cities), tuple(countries), tuple(orgs), tuple(films))
