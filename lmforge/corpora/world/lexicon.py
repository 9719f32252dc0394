"""The world's lexicon: entities, word lists and their renderings in English and Chinese.

Every slot of a construction draws a value (an integer) from a :class:`Domain`. A domain
knows how to render each value in each language, in several *forms*: ``w`` is the plain
word, and others are inflections or function words that go with it (``pl`` plural,
``art`` the English article a/an that agrees with it, ``cl`` the Chinese classifier,
``subj``/``obj``/``poss`` pronouns of a person, ``city``/``job``/``food`` facts of a
person...). Forms are precomputed tuples, so
rendering a value is one tuple index.

Facts are attributes of entities: each person has a gender, a job, a home city and a
favourite food; each city lies in a country. A fact is rendered as a form of the entity
slot (``{p.city}``), so it costs 0 bits: it is determined by the person already chosen.

Numbers are written with Arabic digits in English and with Chinese numerals in Chinese
(``两`` for a lone 2 before a classifier, as in 两只猫 / 两点, and ``二`` in dates).
"""

from __future__ import annotations

from dataclasses import dataclass, field

LANGS = ("en", "zh")


@dataclass(frozen=True)
class Domain:
    """A finite set of values ``0..size-1`` with per-language renderings.

    ``forms[(lang, form)]`` is a tuple of strings indexed by value. ``kind`` is a coarse
    entity type (``PER``, ``LOC``, ``ANIMAL``...) for later NER-style reuse. ``lexical``
    tells whether the words are content words (counted by :func:`World.vocabulary`).
    ``attrs`` holds per-value attributes (``gender``, ``sentiment``, ``home``...).
    ``derived[form] = (domain, ids, kind)``: the entity that a form mentions, for forms
    that render a fact (``person.city`` mentions the city ``ids[person]``).
    ``cond[parent_domain]`` gives, per parent value, the pool of allowed values (hours
    of a part of the day, days of a month).
    """

    name: str
    kind: str
    labels: tuple[str, ...]
    forms: dict[tuple[str, str], tuple[str, ...]]
    lexical: bool = True
    attrs: dict[str, tuple] = field(default_factory=dict)
    derived: dict[str, tuple[str, tuple[int, ...], str]] = field(default_factory=dict)
    cond: dict[str, tuple[tuple[int, ...], ...]] = field(default_factory=dict)

    @property
    def size(self) -> int:
        return len(self.labels)

    def form(self, lang: str, form: str = "w") -> tuple[str, ...]:
        try:
            return self.forms[(lang, form)]
        except KeyError:
            raise KeyError(f"domain {self.name!r} has no form {form!r} in {lang!r}") from None

    def words(self, lang: str) -> tuple[str, ...]:
        """The base words (form ``w``) in ``lang``."""
        return self.forms[(lang, "w")]


# ----------------------------------------------------------------------------- numerals

_ZH_DIGITS = "零一二三四五六七八九"


def zh_number(n: int, liang: bool = True) -> str:
    """Chinese numeral for ``1 <= n <= 99``; ``liang``: a lone 2 is ``两`` (quantities)."""
    if not 1 <= n <= 99:
        raise ValueError(f"zh_number supports 1..99, got {n}")
    if n == 2 and liang:
        return "两"
    tens, ones = divmod(n, 10)
    if tens == 0:
        return _ZH_DIGITS[ones]
    head = "十" if tens == 1 else _ZH_DIGITS[tens] + "十"
    return head + (_ZH_DIGITS[ones] if ones else "")


def article(word: str) -> str:
    """``a`` or ``an`` before an English word (all words here follow the vowel-letter rule)."""
    return "an" if word[0].lower() in "aeiou" else "a"


def _rows(table: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("|")] for line in table.strip().splitlines()]


# ----------------------------------------------------------------------------- word lists
# Nouns: English singular | plural | Chinese | classifier.

ANIMALS = _rows("""
cat | cats | 猫 | 只
dog | dogs | 狗 | 只
bird | birds | 鸟 | 只
rabbit | rabbits | 兔子 | 只
horse | horses | 马 | 匹
cow | cows | 牛 | 头
pig | pigs | 猪 | 头
sheep | sheep | 羊 | 只
duck | ducks | 鸭子 | 只
chicken | chickens | 鸡 | 只
goose | geese | 鹅 | 只
fish | fish | 鱼 | 条
snake | snakes | 蛇 | 条
tiger | tigers | 老虎 | 只
lion | lions | 狮子 | 头
elephant | elephants | 大象 | 头
monkey | monkeys | 猴子 | 只
panda | pandas | 熊猫 | 只
mouse | mice | 老鼠 | 只
frog | frogs | 青蛙 | 只
wolf | wolves | 狼 | 只
deer | deer | 鹿 | 头
donkey | donkeys | 驴 | 头
parrot | parrots | 鹦鹉 | 只
""")

OBJECTS = _rows("""
book | books | 书 | 本
notebook | notebooks | 笔记本 | 本
magazine | magazines | 杂志 | 本
dictionary | dictionaries | 词典 | 本
pen | pens | 笔 | 支
pencil | pencils | 铅笔 | 支
umbrella | umbrellas | 伞 | 把
chair | chairs | 椅子 | 把
key | keys | 钥匙 | 把
knife | knives | 刀 | 把
guitar | guitars | 吉他 | 把
cup | cups | 杯子 | 个
bag | bags | 包 | 个
box | boxes | 盒子 | 个
ball | balls | 球 | 个
bottle | bottles | 瓶子 | 个
bowl | bowls | 碗 | 个
hat | hats | 帽子 | 顶
shirt | shirts | 衬衫 | 件
coat | coats | 外套 | 件
sweater | sweaters | 毛衣 | 件
skirt | skirts | 裙子 | 条
scarf | scarves | 围巾 | 条
car | cars | 汽车 | 辆
bicycle | bicycles | 自行车 | 辆
table | tables | 桌子 | 张
bed | beds | 床 | 张
sofa | sofas | 沙发 | 张
map | maps | 地图 | 张
ticket | tickets | 票 | 张
photo | photos | 照片 | 张
painting | paintings | 画 | 幅
letter | letters | 信 | 封
watch | watches | 手表 | 块
computer | computers | 电脑 | 台
camera | cameras | 相机 | 台
phone | phones | 手机 | 部
lamp | lamps | 台灯 | 盏
mirror | mirrors | 镜子 | 面
flag | flags | 旗子 | 面
""")

FOODS = _rows("""
apple | apples | 苹果 | 个
orange | oranges | 橙子 | 个
banana | bananas | 香蕉 | 根
pear | pears | 梨 | 个
peach | peaches | 桃子 | 个
lemon | lemons | 柠檬 | 个
mango | mangoes | 芒果 | 个
watermelon | watermelons | 西瓜 | 个
tomato | tomatoes | 西红柿 | 个
potato | potatoes | 土豆 | 个
carrot | carrots | 胡萝卜 | 根
cucumber | cucumbers | 黄瓜 | 根
onion | onions | 洋葱 | 个
egg | eggs | 鸡蛋 | 个
cake | cakes | 蛋糕 | 块
cookie | cookies | 饼干 | 块
sandwich | sandwiches | 三明治 | 个
hamburger | hamburgers | 汉堡 | 个
dumpling | dumplings | 饺子 | 个
steamed bun | steamed buns | 包子 | 个
mooncake | mooncakes | 月饼 | 块
strawberry | strawberries | 草莓 | 颗
cherry | cherries | 樱桃 | 颗
pumpkin | pumpkins | 南瓜 | 个
""")

# Drinks: English word | container | Chinese (always 一杯 in Chinese).
DRINKS = _rows("""
coffee | cup | 咖啡
tea | cup | 茶
green tea | cup | 绿茶
black tea | cup | 红茶
hot chocolate | cup | 热巧克力
soy milk | cup | 豆浆
milk | glass | 牛奶
orange juice | glass | 橙汁
apple juice | glass | 苹果汁
lemonade | glass | 柠檬水
cola | glass | 可乐
beer | glass | 啤酒
""")

COLORS = _rows("""
red | 红色
blue | 蓝色
green | 绿色
yellow | 黄色
black | 黑色
white | 白色
orange | 橙色
purple | 紫色
pink | 粉色
brown | 棕色
grey | 灰色
silver | 银色
""")

JOBS = _rows("""
doctor | 医生
teacher | 老师
nurse | 护士
engineer | 工程师
lawyer | 律师
cook | 厨师
driver | 司机
farmer | 农民
writer | 作家
singer | 歌手
painter | 画家
police officer | 警察
pilot | 飞行员
scientist | 科学家
accountant | 会计
actor | 演员
baker | 面包师
dentist | 牙医
journalist | 记者
architect | 建筑师
""")

COUNTRIES = _rows("""
China | 中国
Japan | 日本
Korea | 韩国
India | 印度
France | 法国
Britain | 英国
Germany | 德国
Italy | 意大利
Spain | 西班牙
America | 美国
Canada | 加拿大
Australia | 澳大利亚
""")

# Cities: English | Chinese | country.
CITIES = _rows("""
Beijing | 北京 | China
Shanghai | 上海 | China
Tokyo | 东京 | Japan
Osaka | 大阪 | Japan
Seoul | 首尔 | Korea
Busan | 釜山 | Korea
Delhi | 德里 | India
Mumbai | 孟买 | India
Paris | 巴黎 | France
Lyon | 里昂 | France
London | 伦敦 | Britain
Manchester | 曼彻斯特 | Britain
Berlin | 柏林 | Germany
Munich | 慕尼黑 | Germany
Rome | 罗马 | Italy
Milan | 米兰 | Italy
Madrid | 马德里 | Spain
Barcelona | 巴塞罗那 | Spain
New York | 纽约 | America
Chicago | 芝加哥 | America
Toronto | 多伦多 | Canada
Vancouver | 温哥华 | Canada
Sydney | 悉尼 | Australia
Melbourne | 墨尔本 | Australia
""")

PLACES = _rows("""
park | 公园
school | 学校
library | 图书馆
hospital | 医院
museum | 博物馆
supermarket | 超市
restaurant | 饭店
cinema | 电影院
bank | 银行
train station | 火车站
airport | 机场
market | 市场
beach | 海边
cafe | 咖啡馆
hotel | 酒店
bookstore | 书店
post office | 邮局
gym | 健身房
stadium | 体育场
swimming pool | 游泳池
bakery | 面包店
theater | 剧院
university | 大学
square | 广场
""")

# Activities: English verb phrase (after "to") | Chinese.
ACTIVITIES = _rows("""
swim | 游泳
run | 跑步
dance | 跳舞
sing | 唱歌
read books | 看书
cook | 做饭
draw pictures | 画画
play chess | 下棋
play football | 踢足球
play basketball | 打篮球
play tennis | 打网球
play table tennis | 打乒乓球
play badminton | 打羽毛球
play the piano | 弹钢琴
play the guitar | 弹吉他
play the violin | 拉小提琴
go cycling | 骑自行车
go fishing | 钓鱼
go hiking | 爬山
go skiing | 滑雪
go skating | 滑冰
go shopping | 逛街
take photos | 拍照
watch movies | 看电影
watch TV | 看电视
listen to music | 听音乐
write letters | 写信
study English | 学英语
study Chinese | 学中文
drink tea | 喝茶
fly kites | 放风筝
play cards | 打牌
""")

# Adjectives: English | Chinese | sentiment (+1 good, -1 bad).
ADJ_OBJECT = _rows("""
expensive | 贵 | -1
cheap | 便宜 | 1
beautiful | 漂亮 | 1
ugly | 难看 | -1
heavy | 重 | -1
light | 轻 | 1
new | 新 | 1
old | 旧 | -1
clean | 干净 | 1
dirty | 脏 | -1
comfortable | 舒服 | 1
sturdy | 结实 | 1
""")

ADJ_FOOD = _rows("""
delicious | 好吃 | 1
fresh | 新鲜 | 1
sweet | 甜 | 1
sour | 酸 | -1
expensive | 贵 | -1
cheap | 便宜 | 1
bitter | 苦 | -1
salty | 咸 | -1
""")

ADJ_ANIMAL = _rows("""
cute | 可爱 | 1
clever | 聪明 | 1
friendly | 友好 | 1
quiet | 安静 | 1
beautiful | 漂亮 | 1
gentle | 温顺 | 1
clean | 干净 | 1
brave | 勇敢 | 1
""")

ADJ_CITY = _rows("""
beautiful | 美 | 1
hot | 热 | -1
cold | 冷 | -1
warm | 暖和 | 1
dry | 干燥 | -1
humid | 潮湿 | -1
lively | 热闹 | 1
quiet | 安静 | 1
""")

# People: English name | Chinese name | gender | job | home city | favourite food.
PEOPLE = _rows("""
Alice | 爱丽丝 | F | doctor | London | apple
Emma | 艾玛 | F | teacher | Paris | strawberry
Lucy | 露西 | F | nurse | Sydney | mango
Mary | 玛丽 | F | lawyer | New York | cake
Anna | 安娜 | F | singer | Berlin | cherry
Tom | 汤姆 | M | cook | Chicago | hamburger
Jack | 杰克 | M | police officer | Melbourne | potato
David | 大卫 | M | engineer | Munich | egg
Peter | 彼得 | M | farmer | Vancouver | carrot
James | 詹姆斯 | M | driver | Madrid | orange
Wang Fang | 王芳 | F | accountant | Beijing | dumpling
Li Na | 李娜 | F | dentist | Shanghai | watermelon
Chen Jing | 陈静 | F | architect | Tokyo | banana
Zhao Li | 赵丽 | F | baker | Seoul | steamed bun
Zhou Ting | 周婷 | F | journalist | Busan | mooncake
Li Wei | 李伟 | M | painter | Beijing | steamed bun
Zhang Qiang | 张强 | M | pilot | Shanghai | potato
Liu Jun | 刘军 | M | actor | Tokyo | apple
Wang Lei | 王磊 | M | scientist | Paris | cake
Yang Yong | 杨勇 | M | writer | Sydney | watermelon
""")

DAYS = _rows("""
Monday | 星期一
Tuesday | 星期二
Wednesday | 星期三
Thursday | 星期四
Friday | 星期五
Saturday | 星期六
Sunday | 星期天
""")

# Parts of the day: English | plural | Chinese | allowed hours (1..11).
PARTS = [("morning", "mornings", "上午", range(6, 12)),
         ("afternoon", "afternoons", "下午", range(1, 6)),
         ("evening", "evenings", "晚上", range(6, 12))]

MONTHS = _rows("""
January | 31
February | 28
March | 31
April | 30
May | 31
June | 30
July | 31
August | 31
September | 30
October | 31
November | 30
December | 31
""")

SEASONS = _rows("""
spring | 春天
summer | 夏天
autumn | 秋天
winter | 冬天
""")


# ----------------------------------------------------------------------------- domains

def _noun_domain(name: str, kind: str, rows: list[list[str]]) -> Domain:
    sg = tuple(r[0] for r in rows)
    return Domain(name, kind, sg, {
        ("en", "w"): sg,
        ("en", "pl"): tuple(r[1] for r in rows),
        ("en", "art"): tuple(article(w) for w in sg),
        ("zh", "w"): tuple(r[2] for r in rows),
        ("zh", "cl"): tuple(r[3] for r in rows),
    })


def _word_domain(name: str, kind: str, rows: list[list[str]], lexical: bool = True,
                 sentiment: bool = False) -> Domain:
    en = tuple(r[0] for r in rows)
    attrs = {"sentiment": tuple(int(r[2]) for r in rows)} if sentiment else {}
    return Domain(name, kind, en, {("en", "w"): en, ("en", "art"): tuple(
        article(w) for w in en), ("zh", "w"): tuple(r[1] for r in rows)},
        lexical=lexical, attrs=attrs)


def build_domains() -> dict[str, Domain]:
    """All domains of the world, by name."""
    d: dict[str, Domain] = {}
    d["animal"] = _noun_domain("animal", "ANIMAL", ANIMALS)
    d["object"] = _noun_domain("object", "OBJECT", OBJECTS)
    d["food"] = _noun_domain("food", "FOOD", FOODS)
    d["color"] = _word_domain("color", "COLOR", COLORS)
    d["job"] = _word_domain("job", "JOB", JOBS)
    d["country"] = _word_domain("country", "LOC", COUNTRIES)
    d["place"] = _word_domain("place", "PLACE", PLACES)
    d["activity"] = _word_domain("activity", "ACTIVITY", ACTIVITIES)
    d["season"] = _word_domain("season", "TIME", SEASONS)
    d["day"] = _word_domain("day", "TIME", DAYS)
    for name, rows in (("adj_object", ADJ_OBJECT), ("adj_food", ADJ_FOOD),
                       ("adj_animal", ADJ_ANIMAL), ("adj_city", ADJ_CITY)):
        d[name] = _word_domain(name, "ADJ", rows, sentiment=True)

    country_ix = {r[0]: i for i, r in enumerate(COUNTRIES)}
    city_country = tuple(country_ix[r[2]] for r in CITIES)
    cities = tuple(r[0] for r in CITIES)
    d["city"] = Domain("city", "LOC", cities, {
        ("en", "w"): cities, ("zh", "w"): tuple(r[1] for r in CITIES),
        ("en", "country"): tuple(COUNTRIES[c][0] for c in city_country),
        ("zh", "country"): tuple(COUNTRIES[c][1] for c in city_country),
    }, attrs={"country": city_country}, derived={"country": ("country", city_country, "LOC")})

    drinks = tuple(r[0] for r in DRINKS)
    d["drink"] = Domain("drink", "FOOD", drinks, {
        ("en", "w"): drinks, ("en", "cup"): tuple(f"a {r[1]} of" for r in DRINKS),
        ("zh", "w"): tuple(r[2] for r in DRINKS)})

    # People and their facts.
    job_ix = {r[0]: i for i, r in enumerate(JOBS)}
    city_ix = {r[0]: i for i, r in enumerate(CITIES)}
    food_ix = {r[0]: i for i, r in enumerate(FOODS)}
    names = tuple(r[0] for r in PEOPLE)
    zh_names = tuple(r[1] for r in PEOPLE)
    female = tuple(r[2] == "F" for r in PEOPLE)
    job = tuple(job_ix[r[3]] for r in PEOPLE)
    home = tuple(city_ix[r[4]] for r in PEOPLE)
    food = tuple(food_ix[r[5]] for r in PEOPLE)
    country = tuple(city_country[h] for h in home)
    ids = tuple(range(len(PEOPLE)))
    pick = lambda f, t: tuple(t if x else f for x in female)  # noqa: E731
    d["person"] = Domain("person", "PER", names, {
        ("en", "w"): names,
        ("en", "subj"): pick("he", "she"),
        ("en", "obj"): pick("him", "her"),
        ("en", "poss"): pick("his", "her"),
        ("en", "job"): tuple(JOBS[j][0] for j in job),
        ("en", "job_art"): tuple(article(JOBS[j][0]) for j in job),
        ("en", "city"): tuple(CITIES[c][0] for c in home),
        ("en", "country"): tuple(COUNTRIES[c][0] for c in country),
        ("en", "food_pl"): tuple(FOODS[f][1] for f in food),
        ("zh", "w"): zh_names,
        ("zh", "subj"): pick("他", "她"),
        ("zh", "obj"): pick("他", "她"),
        ("zh", "poss"): pick("他的", "她的"),
        ("zh", "job"): tuple(JOBS[j][1] for j in job),
        ("zh", "city"): tuple(CITIES[c][1] for c in home),
        ("zh", "country"): tuple(COUNTRIES[c][1] for c in country),
        ("zh", "food"): tuple(FOODS[f][2] for f in food),
        ("zh", "food_cl"): tuple(FOODS[f][3] for f in food),
    }, attrs={"gender": tuple("F" if x else "M" for x in female), "job": job, "home": home,
              "food": food, "country": country},
        derived={"city": ("city", home, "LOC"), "country": ("country", country, "LOC"),
                 "job": ("job", job, "JOB"), "subj": ("person", ids, "PRON"),
                 "obj": ("person", ids, "PRON"), "poss": ("person", ids, "PRON"),
                 "food": ("food", food, "FOOD"), "food_pl": ("food", food, "FOOD")})

    # Numbers, times and dates (not content words).
    nums = tuple(range(2, 100))
    d["number"] = Domain("number", "NUM", tuple(str(n) for n in nums), {
        ("en", "w"): tuple(str(n) for n in nums),
        ("zh", "w"): tuple(zh_number(n) for n in nums)}, lexical=False)
    parts = tuple(p[0] for p in PARTS)
    d["part"] = Domain("part", "TIME", parts, {
        ("en", "w"): parts, ("en", "pl"): tuple(p[1] for p in PARTS),
        ("zh", "w"): tuple(p[2] for p in PARTS)})
    hours = tuple(range(1, 12))  # value v is the hour v + 1
    d["hour"] = Domain("hour", "TIME", tuple(str(h) for h in hours), {
        ("en", "w"): tuple(str(h) for h in hours),
        ("zh", "w"): tuple(zh_number(h) + "点" for h in hours)}, lexical=False,
        cond={"part": tuple(tuple(h - 1 for h in p[3]) for p in PARTS)})
    d["minute"] = Domain("minute", "TIME", ("00", "15", "30", "45"), {
        ("en", "w"): (":00", ":15", ":30", ":45"),
        ("zh", "w"): ("", "十五分", "半", "四十五分")}, lexical=False)
    months = tuple(r[0] for r in MONTHS)
    d["month"] = Domain("month", "TIME", months, {
        ("en", "w"): months, ("zh", "w"): tuple(zh_number(i, False) + "月" for i in range(1, 13))})
    mdays = tuple(range(1, 32))  # value v is the day v + 1
    d["mday"] = Domain("mday", "TIME", tuple(str(x) for x in mdays), {
        ("en", "w"): tuple(str(x) for x in mdays),
        ("zh", "w"): tuple(zh_number(x, False) + "日" for x in mdays)}, lexical=False,
        cond={"month": tuple(tuple(range(int(r[1]))) for r in MONTHS)})
    d["degree"] = Domain("degree", "DEGREE", ("very", "not", "not very"), {
        ("en", "w"): ("very", "not", "not very"), ("zh", "w"): ("很", "不", "不太")},
        lexical=False, attrs={"sign": (1, -1, -1)})
    d["polarity"] = Domain("polarity", "DEGREE", ("positive", "negative"), {
        ("en", "like"): ("likes", "does not like"), ("en", "w"): ("very", "not"),
        ("zh", "like"): ("喜欢", "不喜欢"), ("zh", "w"): ("很", "不")},
        lexical=False, attrs={"sign": (1, -1)})
    return d
