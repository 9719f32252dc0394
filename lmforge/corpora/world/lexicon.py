"""The world's lexicon: entities, word lists and their renderings in English, Chinese, German.

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

**German.** Each word list has a German column: nouns with their gender (attribute
``genus``: ``m``/``f``/``n``) and plural, places with the preposition of location
(in/an/auf), jobs in a man's and a woman's form (Arzt/Ärztin: ``{p.job}`` follows the
person), cities as German exonyms (München, Mailand, Peking, Tokio, Rom; else copied),
activities as infinitive phrases (``ein+kaufen`` marks a separable verb). The German
forms are derived by the rules of :mod:`.german`:

* nouns: ``w`` (nominative), ``acc``/``dat`` (den Löwen: weak masculines), ``pl``,
  the articles ``der_nom``/``der_acc``/``der_dat`` and ``ein_nom``/``ein_acc``/``ein_dat``
  (der/den/dem, eine/eine/einer...), the pronouns ``it_nom``/``it_acc``/``it_dat``
  (er/ihn/ihm, sie, es);
* places and seasons: ``at`` (im Park, in der Schule, am Strand, auf dem Markt, im
  Sommer), ``to`` (zum Park, zur Schule);
* colours: ``pl`` (strong plural: drei rote Bälle) and ``<case>_<declension>.<genus>``
  (``acc_mixed.m`` roten, ``acc_mixed.n`` rotes), chosen by agreement in the template;
* persons: ``subj``/``obj``/``dat`` (er, ihn, ihm / sie, sie, ihr), ``poss_dat_m``
  (seinem/ihrem), ``rel`` (der/die), ``gen`` (Annas, James'), ``job_art`` (ein/eine);
* numbers 2..99 in words (zwei, siebzehn, einundzwanzig), hours and dates in digits
  (um 8:15 Uhr, am 4. Juli), times of day as compounds (``day`` + ``part.cmp``:
  Montagmorgen; ``day.adv`` + ``part.adv``: montagmorgens).

``LANGS`` (en, zh) are the languages of the LM corpus; ``MT_LANGS`` adds German, which
only parallel data (and parsing) use.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from . import german as de

LANGS = ("en", "zh")  # the languages of the LM corpus
MT_LANGS = ("en", "zh", "de")  # every language a construction may render in


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
# Nouns: English singular | plural | Chinese | classifier | German | gender | German plural.

ANIMALS = _rows("""
cat | cats | 猫 | 只 | Katze | f | Katzen
dog | dogs | 狗 | 只 | Hund | m | Hunde
bird | birds | 鸟 | 只 | Vogel | m | Vögel
rabbit | rabbits | 兔子 | 只 | Kaninchen | n | Kaninchen
horse | horses | 马 | 匹 | Pferd | n | Pferde
cow | cows | 牛 | 头 | Kuh | f | Kühe
pig | pigs | 猪 | 头 | Schwein | n | Schweine
sheep | sheep | 羊 | 只 | Schaf | n | Schafe
duck | ducks | 鸭子 | 只 | Ente | f | Enten
chicken | chickens | 鸡 | 只 | Huhn | n | Hühner
goose | geese | 鹅 | 只 | Gans | f | Gänse
fish | fish | 鱼 | 条 | Fisch | m | Fische
snake | snakes | 蛇 | 条 | Schlange | f | Schlangen
tiger | tigers | 老虎 | 只 | Tiger | m | Tiger
lion | lions | 狮子 | 头 | Löwe | m | Löwen
elephant | elephants | 大象 | 头 | Elefant | m | Elefanten
monkey | monkeys | 猴子 | 只 | Affe | m | Affen
panda | pandas | 熊猫 | 只 | Panda | m | Pandas
mouse | mice | 老鼠 | 只 | Maus | f | Mäuse
frog | frogs | 青蛙 | 只 | Frosch | m | Frösche
wolf | wolves | 狼 | 只 | Wolf | m | Wölfe
deer | deer | 鹿 | 头 | Hirsch | m | Hirsche
donkey | donkeys | 驴 | 头 | Esel | m | Esel
parrot | parrots | 鹦鹉 | 只 | Papagei | m | Papageien
""")

OBJECTS = _rows("""
book | books | 书 | 本 | Buch | n | Bücher
notebook | notebooks | 笔记本 | 本 | Heft | n | Hefte
magazine | magazines | 杂志 | 本 | Zeitschrift | f | Zeitschriften
dictionary | dictionaries | 词典 | 本 | Wörterbuch | n | Wörterbücher
pen | pens | 笔 | 支 | Kugelschreiber | m | Kugelschreiber
pencil | pencils | 铅笔 | 支 | Bleistift | m | Bleistifte
umbrella | umbrellas | 伞 | 把 | Regenschirm | m | Regenschirme
chair | chairs | 椅子 | 把 | Stuhl | m | Stühle
key | keys | 钥匙 | 把 | Schlüssel | m | Schlüssel
knife | knives | 刀 | 把 | Messer | n | Messer
guitar | guitars | 吉他 | 把 | Gitarre | f | Gitarren
cup | cups | 杯子 | 个 | Tasse | f | Tassen
bag | bags | 包 | 个 | Tasche | f | Taschen
box | boxes | 盒子 | 个 | Kiste | f | Kisten
ball | balls | 球 | 个 | Ball | m | Bälle
bottle | bottles | 瓶子 | 个 | Flasche | f | Flaschen
bowl | bowls | 碗 | 个 | Schüssel | f | Schüsseln
hat | hats | 帽子 | 顶 | Hut | m | Hüte
shirt | shirts | 衬衫 | 件 | Hemd | n | Hemden
coat | coats | 外套 | 件 | Mantel | m | Mäntel
sweater | sweaters | 毛衣 | 件 | Pullover | m | Pullover
skirt | skirts | 裙子 | 条 | Rock | m | Röcke
scarf | scarves | 围巾 | 条 | Schal | m | Schals
car | cars | 汽车 | 辆 | Auto | n | Autos
bicycle | bicycles | 自行车 | 辆 | Fahrrad | n | Fahrräder
table | tables | 桌子 | 张 | Tisch | m | Tische
bed | beds | 床 | 张 | Bett | n | Betten
sofa | sofas | 沙发 | 张 | Sofa | n | Sofas
map | maps | 地图 | 张 | Landkarte | f | Landkarten
ticket | tickets | 票 | 张 | Ticket | n | Tickets
photo | photos | 照片 | 张 | Foto | n | Fotos
painting | paintings | 画 | 幅 | Gemälde | n | Gemälde
letter | letters | 信 | 封 | Brief | m | Briefe
watch | watches | 手表 | 块 | Armbanduhr | f | Armbanduhren
computer | computers | 电脑 | 台 | Computer | m | Computer
camera | cameras | 相机 | 台 | Kamera | f | Kameras
phone | phones | 手机 | 部 | Handy | n | Handys
lamp | lamps | 台灯 | 盏 | Lampe | f | Lampen
mirror | mirrors | 镜子 | 面 | Spiegel | m | Spiegel
flag | flags | 旗子 | 面 | Flagge | f | Flaggen
""")

FOODS = _rows("""
apple | apples | 苹果 | 个 | Apfel | m | Äpfel
orange | oranges | 橙子 | 个 | Orange | f | Orangen
banana | bananas | 香蕉 | 根 | Banane | f | Bananen
pear | pears | 梨 | 个 | Birne | f | Birnen
peach | peaches | 桃子 | 个 | Pfirsich | m | Pfirsiche
lemon | lemons | 柠檬 | 个 | Zitrone | f | Zitronen
mango | mangoes | 芒果 | 个 | Mango | f | Mangos
watermelon | watermelons | 西瓜 | 个 | Wassermelone | f | Wassermelonen
tomato | tomatoes | 西红柿 | 个 | Tomate | f | Tomaten
potato | potatoes | 土豆 | 个 | Kartoffel | f | Kartoffeln
carrot | carrots | 胡萝卜 | 根 | Karotte | f | Karotten
cucumber | cucumbers | 黄瓜 | 根 | Gurke | f | Gurken
onion | onions | 洋葱 | 个 | Zwiebel | f | Zwiebeln
egg | eggs | 鸡蛋 | 个 | Ei | n | Eier
cake | cakes | 蛋糕 | 块 | Kuchen | m | Kuchen
cookie | cookies | 饼干 | 块 | Keks | m | Kekse
sandwich | sandwiches | 三明治 | 个 | Sandwich | n | Sandwiches
hamburger | hamburgers | 汉堡 | 个 | Hamburger | m | Hamburger
dumpling | dumplings | 饺子 | 个 | Teigtasche | f | Teigtaschen
steamed bun | steamed buns | 包子 | 个 | Dampfnudel | f | Dampfnudeln
mooncake | mooncakes | 月饼 | 块 | Mondkuchen | m | Mondkuchen
strawberry | strawberries | 草莓 | 颗 | Erdbeere | f | Erdbeeren
cherry | cherries | 樱桃 | 颗 | Kirsche | f | Kirschen
pumpkin | pumpkins | 南瓜 | 个 | Kürbis | m | Kürbisse
""")

# Drinks: English word | container | Chinese (always 一杯 in Chinese) | German.
DE_CONTAINERS = {"cup": ("Tasse", "f"), "glass": ("Glas", "n")}  # eine Tasse, ein Glas
DRINKS = _rows("""
coffee | cup | 咖啡 | Kaffee
tea | cup | 茶 | Tee
green tea | cup | 绿茶 | Grüntee
black tea | cup | 红茶 | Schwarztee
hot chocolate | cup | 热巧克力 | Kakao
soy milk | cup | 豆浆 | Sojamilch
milk | glass | 牛奶 | Milch
orange juice | glass | 橙汁 | Orangensaft
apple juice | glass | 苹果汁 | Apfelsaft
lemonade | glass | 柠檬水 | Limonade
cola | glass | 可乐 | Cola
beer | glass | 啤酒 | Bier
""")

# Colours: English | Chinese | German adjective stem (declined by .german).
COLORS = _rows("""
red | 红色 | rot
blue | 蓝色 | blau
green | 绿色 | grün
yellow | 黄色 | gelb
black | 黑色 | schwarz
white | 白色 | weiß
orange | 橙色 | orangefarben
purple | 紫色 | violett
pink | 粉色 | rosafarben
brown | 棕色 | braun
grey | 灰色 | grau
silver | 银色 | silbern
""")

# Jobs: English | Chinese | German (man) | German (woman).
JOBS = _rows("""
doctor | 医生 | Arzt | Ärztin
teacher | 老师 | Lehrer | Lehrerin
nurse | 护士 | Krankenpfleger | Krankenpflegerin
engineer | 工程师 | Ingenieur | Ingenieurin
lawyer | 律师 | Anwalt | Anwältin
cook | 厨师 | Koch | Köchin
driver | 司机 | Fahrer | Fahrerin
farmer | 农民 | Bauer | Bäuerin
writer | 作家 | Schriftsteller | Schriftstellerin
singer | 歌手 | Sänger | Sängerin
painter | 画家 | Maler | Malerin
police officer | 警察 | Polizist | Polizistin
pilot | 飞行员 | Pilot | Pilotin
scientist | 科学家 | Wissenschaftler | Wissenschaftlerin
accountant | 会计 | Buchhalter | Buchhalterin
actor | 演员 | Schauspieler | Schauspielerin
baker | 面包师 | Bäcker | Bäckerin
dentist | 牙医 | Zahnarzt | Zahnärztin
journalist | 记者 | Journalist | Journalistin
architect | 建筑师 | Architekt | Architektin
""")

# Countries: English | Chinese | German (all neuter, used without an article).
COUNTRIES = _rows("""
China | 中国 | China
Japan | 日本 | Japan
Korea | 韩国 | Korea
India | 印度 | Indien
France | 法国 | Frankreich
Britain | 英国 | Großbritannien
Germany | 德国 | Deutschland
Italy | 意大利 | Italien
Spain | 西班牙 | Spanien
America | 美国 | Amerika
Canada | 加拿大 | Kanada
Australia | 澳大利亚 | Australien
""")

# Cities: English | Chinese | country | German (the exonym where German has one).
CITIES = _rows("""
Beijing | 北京 | China | Peking
Shanghai | 上海 | China | Shanghai
Tokyo | 东京 | Japan | Tokio
Osaka | 大阪 | Japan | Osaka
Seoul | 首尔 | Korea | Seoul
Busan | 釜山 | Korea | Busan
Delhi | 德里 | India | Delhi
Mumbai | 孟买 | India | Mumbai
Paris | 巴黎 | France | Paris
Lyon | 里昂 | France | Lyon
London | 伦敦 | Britain | London
Manchester | 曼彻斯特 | Britain | Manchester
Berlin | 柏林 | Germany | Berlin
Munich | 慕尼黑 | Germany | München
Rome | 罗马 | Italy | Rom
Milan | 米兰 | Italy | Mailand
Madrid | 马德里 | Spain | Madrid
Barcelona | 巴塞罗那 | Spain | Barcelona
New York | 纽约 | America | New York
Chicago | 芝加哥 | America | Chicago
Toronto | 多伦多 | Canada | Toronto
Vancouver | 温哥华 | Canada | Vancouver
Sydney | 悉尼 | Australia | Sydney
Melbourne | 墨尔本 | Australia | Melbourne
""")

# Places: English | Chinese | German | gender | German preposition of location.
PLACES = _rows("""
park | 公园 | Park | m | in
school | 学校 | Schule | f | in
library | 图书馆 | Bibliothek | f | in
hospital | 医院 | Krankenhaus | n | in
museum | 博物馆 | Museum | n | in
supermarket | 超市 | Supermarkt | m | in
restaurant | 饭店 | Restaurant | n | in
cinema | 电影院 | Kino | n | in
bank | 银行 | Bank | f | in
train station | 火车站 | Bahnhof | m | an
airport | 机场 | Flughafen | m | an
market | 市场 | Markt | m | auf
beach | 海边 | Strand | m | an
cafe | 咖啡馆 | Café | n | in
hotel | 酒店 | Hotel | n | in
bookstore | 书店 | Buchhandlung | f | in
post office | 邮局 | Post | f | auf
gym | 健身房 | Fitnessstudio | n | in
stadium | 体育场 | Stadion | n | in
swimming pool | 游泳池 | Schwimmbad | n | in
bakery | 面包店 | Bäckerei | f | in
theater | 剧院 | Theater | n | in
university | 大学 | Universität | f | an
square | 广场 | Platz | m | auf
""")

# Activities: English verb phrase (after "to") | Chinese | German infinitive phrase
# (``+`` after the particle of a separable verb: ein+kaufen -> einkaufen, einzukaufen).
ACTIVITIES = _rows("""
swim | 游泳 | schwimmen
run | 跑步 | laufen
dance | 跳舞 | tanzen
sing | 唱歌 | singen
read books | 看书 | Bücher lesen
cook | 做饭 | kochen
draw pictures | 画画 | Bilder malen
play chess | 下棋 | Schach spielen
play football | 踢足球 | Fußball spielen
play basketball | 打篮球 | Basketball spielen
play tennis | 打网球 | Tennis spielen
play table tennis | 打乒乓球 | Tischtennis spielen
play badminton | 打羽毛球 | Badminton spielen
play the piano | 弹钢琴 | Klavier spielen
play the guitar | 弹吉他 | Gitarre spielen
play the violin | 拉小提琴 | Geige spielen
go cycling | 骑自行车 | Rad fahren
go fishing | 钓鱼 | angeln
go hiking | 爬山 | wandern
go skiing | 滑雪 | Ski fahren
go skating | 滑冰 | Schlittschuh laufen
go shopping | 逛街 | ein+kaufen
take photos | 拍照 | fotografieren
watch movies | 看电影 | Filme an+sehen
watch TV | 看电视 | fern+sehen
listen to music | 听音乐 | Musik hören
write letters | 写信 | Briefe schreiben
study English | 学英语 | Englisch lernen
study Chinese | 学中文 | Chinesisch lernen
drink tea | 喝茶 | Tee trinken
fly kites | 放风筝 | Drachen steigen lassen
play cards | 打牌 | Karten spielen
""")

# Adjectives: English | Chinese | sentiment (+1 good, -1 bad) | German (predicative).
ADJ_OBJECT = _rows("""
expensive | 贵 | -1 | teuer
cheap | 便宜 | 1 | billig
beautiful | 漂亮 | 1 | schön
ugly | 难看 | -1 | hässlich
heavy | 重 | -1 | schwer
light | 轻 | 1 | leicht
new | 新 | 1 | neu
old | 旧 | -1 | alt
clean | 干净 | 1 | sauber
dirty | 脏 | -1 | schmutzig
comfortable | 舒服 | 1 | bequem
sturdy | 结实 | 1 | stabil
""")

ADJ_FOOD = _rows("""
delicious | 好吃 | 1 | lecker
fresh | 新鲜 | 1 | frisch
sweet | 甜 | 1 | süß
sour | 酸 | -1 | sauer
expensive | 贵 | -1 | teuer
cheap | 便宜 | 1 | billig
bitter | 苦 | -1 | bitter
salty | 咸 | -1 | salzig
""")

ADJ_ANIMAL = _rows("""
cute | 可爱 | 1 | niedlich
clever | 聪明 | 1 | klug
friendly | 友好 | 1 | freundlich
quiet | 安静 | 1 | ruhig
beautiful | 漂亮 | 1 | schön
gentle | 温顺 | 1 | sanft
clean | 干净 | 1 | sauber
brave | 勇敢 | 1 | mutig
""")

ADJ_CITY = _rows("""
beautiful | 美 | 1 | schön
hot | 热 | -1 | heiß
cold | 冷 | -1 | kalt
warm | 暖和 | 1 | warm
dry | 干燥 | -1 | trocken
humid | 潮湿 | -1 | feucht
lively | 热闹 | 1 | lebhaft
quiet | 安静 | 1 | ruhig
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

# Days: English | Chinese | German.
DAYS = _rows("""
Monday | 星期一 | Montag
Tuesday | 星期二 | Dienstag
Wednesday | 星期三 | Mittwoch
Thursday | 星期四 | Donnerstag
Friday | 星期五 | Freitag
Saturday | 星期六 | Samstag
Sunday | 星期天 | Sonntag
""")

# Parts of the day: English | plural | Chinese | allowed hours (1..11) | German.
PARTS = [("morning", "mornings", "上午", range(6, 12), "Morgen"),
         ("afternoon", "afternoons", "下午", range(1, 6), "Nachmittag"),
         ("evening", "evenings", "晚上", range(6, 12), "Abend")]

# Months: English | days | German.
MONTHS = _rows("""
January | 31 | Januar
February | 28 | Februar
March | 31 | März
April | 30 | April
May | 31 | Mai
June | 30 | Juni
July | 31 | Juli
August | 31 | August
September | 30 | September
October | 31 | Oktober
November | 30 | November
December | 31 | Dezember
""")

# Seasons: English | Chinese | German | gender | German preposition (im Sommer).
SEASONS = _rows("""
spring | 春天 | Frühling | m | in
summer | 夏天 | Sommer | m | in
autumn | 秋天 | Herbst | m | in
winter | 冬天 | Winter | m | in
""")


# ----------------------------------------------------------------------------- domains

def _de_words(rows: list[list[str]], col: int) -> de.Forms:
    return {("de", "w"): tuple(r[col] for r in rows)}


def _noun_domain(name: str, kind: str, rows: list[list[str]]) -> Domain:
    sg = tuple(r[0] for r in rows)
    de_forms, genus = de.noun_forms([(r[4], r[5], r[6]) for r in rows])
    return Domain(name, kind, sg, {
        ("en", "w"): sg,
        ("en", "pl"): tuple(r[1] for r in rows),
        ("en", "art"): tuple(article(w) for w in sg),
        ("zh", "w"): tuple(r[2] for r in rows),
        ("zh", "cl"): tuple(r[3] for r in rows),
        **de_forms,
    }, attrs={"genus": genus})


def _word_domain(name: str, kind: str, rows: list[list[str]], de_forms: de.Forms,
                 lexical: bool = True, sentiment: bool = False,
                 genus: tuple[str, ...] | None = None) -> Domain:
    en = tuple(r[0] for r in rows)
    attrs: dict[str, tuple] = {"sentiment": tuple(int(r[2]) for r in rows)} if sentiment else {}
    if genus is not None:
        attrs["genus"] = genus
    return Domain(name, kind, en, {("en", "w"): en, ("en", "art"): tuple(
        article(w) for w in en), ("zh", "w"): tuple(r[1] for r in rows), **de_forms},
        lexical=lexical, attrs=attrs)


def _located_domain(name: str, kind: str, rows: list[list[str]]) -> Domain:
    """Places and seasons: a German noun with its gender and preposition (im, am, zum)."""
    de_forms, genus = de.place_forms([(r[2], r[3], r[4]) for r in rows])
    return _word_domain(name, kind, rows, de_forms, genus=genus)


def build_domains() -> dict[str, Domain]:
    """All domains of the world, by name."""
    d: dict[str, Domain] = {}
    d["animal"] = _noun_domain("animal", "ANIMAL", ANIMALS)
    d["object"] = _noun_domain("object", "OBJECT", OBJECTS)
    d["food"] = _noun_domain("food", "FOOD", FOODS)
    d["color"] = _word_domain("color", "COLOR", COLORS,
                              de.adjective_forms([r[2] for r in COLORS]))
    d["job"] = _word_domain("job", "JOB", JOBS, _de_words(JOBS, 2))
    d["country"] = _word_domain("country", "LOC", COUNTRIES, _de_words(COUNTRIES, 2))
    d["place"] = _located_domain("place", "PLACE", PLACES)
    d["activity"] = _word_domain("activity", "ACTIVITY", ACTIVITIES,
                                 de.activity_forms([r[2] for r in ACTIVITIES]))
    d["season"] = _located_domain("season", "TIME", SEASONS)
    d["day"] = _word_domain("day", "TIME", DAYS, {
        **_de_words(DAYS, 2), ("de", "adv"): tuple(r[2].lower() for r in DAYS)})
    for name, rows in (("adj_object", ADJ_OBJECT), ("adj_food", ADJ_FOOD),
                       ("adj_animal", ADJ_ANIMAL), ("adj_city", ADJ_CITY)):
        d[name] = _word_domain(name, "ADJ", rows, _de_words(rows, 3), sentiment=True)

    country_ix = {r[0]: i for i, r in enumerate(COUNTRIES)}
    city_country = tuple(country_ix[r[2]] for r in CITIES)
    cities = tuple(r[0] for r in CITIES)
    d["city"] = Domain("city", "LOC", cities, {
        ("en", "w"): cities, ("zh", "w"): tuple(r[1] for r in CITIES),
        ("de", "w"): tuple(r[3] for r in CITIES),
        ("en", "country"): tuple(COUNTRIES[c][0] for c in city_country),
        ("zh", "country"): tuple(COUNTRIES[c][1] for c in city_country),
        ("de", "country"): tuple(COUNTRIES[c][2] for c in city_country),
    }, attrs={"country": city_country}, derived={"country": ("country", city_country, "LOC")})

    drinks = tuple(r[0] for r in DRINKS)
    d["drink"] = Domain("drink", "FOOD", drinks, {
        ("en", "w"): drinks, ("en", "cup"): tuple(f"a {r[1]} of" for r in DRINKS),
        ("zh", "w"): tuple(r[2] for r in DRINKS),
        ("de", "w"): tuple(r[3] for r in DRINKS),
        ("de", "cup"): tuple(de.indefinite("acc", *DE_CONTAINERS[r[1]]) for r in DRINKS)})

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
    genus = pick("m", "f")
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
        ("de", "w"): names,
        ("de", "gen"): tuple(de.genitive(n) for n in names),
        ("de", "subj"): de.agree(de.PRONOUN["nom"], genus),
        ("de", "obj"): de.agree(de.PRONOUN["acc"], genus),
        ("de", "dat"): de.agree(de.PRONOUN["dat"], genus),
        ("de", "poss_dat_m"): tuple(de.possessive(g, "dat", "m") for g in genus),
        ("de", "rel"): de.agree(de.DEF_ARTICLE["nom"], genus),
        ("de", "job"): tuple(JOBS[j][3 if x else 2] for j, x in zip(job, female, strict=True)),
        ("de", "job_art"): de.agree(de.INDEF_ARTICLE["nom"], genus),
        ("de", "city"): tuple(CITIES[c][3] for c in home),
        ("de", "country"): tuple(COUNTRIES[c][2] for c in country),
        ("de", "food_pl"): tuple(FOODS[f][6] for f in food),
    }, attrs={"gender": tuple("F" if x else "M" for x in female), "job": job, "home": home,
              "food": food, "country": country, "genus": genus},
        derived={"city": ("city", home, "LOC"), "country": ("country", country, "LOC"),
                 "job": ("job", job, "JOB"), "subj": ("person", ids, "PRON"),
                 "obj": ("person", ids, "PRON"), "poss": ("person", ids, "PRON"),
                 "dat": ("person", ids, "PRON"), "poss_dat_m": ("person", ids, "PRON"),
                 "food": ("food", food, "FOOD"), "food_pl": ("food", food, "FOOD")})

    # Numbers, times and dates (not content words).
    nums = tuple(range(2, 100))
    d["number"] = Domain("number", "NUM", tuple(str(n) for n in nums), {
        ("en", "w"): tuple(str(n) for n in nums),
        ("zh", "w"): tuple(zh_number(n) for n in nums),
        ("de", "w"): tuple(de.de_number(n) for n in nums)}, lexical=False)
    parts = tuple(p[0] for p in PARTS)
    d["part"] = Domain("part", "TIME", parts, {
        ("en", "w"): parts, ("en", "pl"): tuple(p[1] for p in PARTS),
        ("zh", "w"): tuple(p[2] for p in PARTS),
        ("de", "w"): tuple(p[4] for p in PARTS),
        ("de", "cmp"): tuple(p[4].lower() for p in PARTS),
        ("de", "adv"): tuple(p[4].lower() + "s" for p in PARTS)})
    hours = tuple(range(1, 12))  # value v is the hour v + 1
    d["hour"] = Domain("hour", "TIME", tuple(str(h) for h in hours), {
        ("en", "w"): tuple(str(h) for h in hours),
        ("zh", "w"): tuple(zh_number(h) + "点" for h in hours),
        ("de", "w"): tuple(str(h) for h in hours)}, lexical=False,
        cond={"part": tuple(tuple(h - 1 for h in p[3]) for p in PARTS)})
    d["minute"] = Domain("minute", "TIME", ("00", "15", "30", "45"), {
        ("en", "w"): (":00", ":15", ":30", ":45"),
        ("zh", "w"): ("", "十五分", "半", "四十五分"),
        ("de", "w"): ("", ":15", ":30", ":45")}, lexical=False)
    months = tuple(r[0] for r in MONTHS)
    d["month"] = Domain("month", "TIME", months, {
        ("en", "w"): months, ("zh", "w"): tuple(zh_number(i, False) + "月" for i in range(1, 13)),
        ("de", "w"): tuple(r[2] for r in MONTHS)})
    mdays = tuple(range(1, 32))  # value v is the day v + 1
    d["mday"] = Domain("mday", "TIME", tuple(str(x) for x in mdays), {
        ("en", "w"): tuple(str(x) for x in mdays),
        ("zh", "w"): tuple(zh_number(x, False) + "日" for x in mdays),
        ("de", "w"): tuple(f"{x}." for x in mdays)}, lexical=False,
        cond={"month": tuple(tuple(range(int(r[1]))) for r in MONTHS)})
    d["degree"] = Domain("degree", "DEGREE", ("very", "not", "not very"), {
        ("en", "w"): ("very", "not", "not very"), ("zh", "w"): ("很", "不", "不太"),
        ("de", "w"): ("sehr", "nicht", "nicht sehr")},
        lexical=False, attrs={"sign": (1, -1, -1)})
    d["polarity"] = Domain("polarity", "DEGREE", ("positive", "negative"), {
        ("en", "like"): ("likes", "does not like"), ("en", "w"): ("very", "not"),
        ("zh", "like"): ("喜欢", "不喜欢"), ("zh", "w"): ("很", "不"),
        ("de", "w"): ("sehr", "nicht")},
        lexical=False, attrs={"sign": (1, -1)})
    return d
