"""Person names in Chinese and English.

**Chinese** (three signals, the strongest wins):

1. jieba's part-of-speech tagger marks a word ``nr`` (person name) and it starts with a
   surname of :data:`ZH_SURNAMES` (about 400 single ones, Faker's ``zh_CN`` inventory
   included, but not 和, which is nearly always "and"; a compound surname such as 欧阳 joined to the next ``nr*`` word), and it is
   not a label word itself (申请人): 0.6;
2. a surname and one or two characters directly before a title (先生, 女士, 经理, 老师,
   ...): 0.85;
3. a surname after a label (姓名, 联系人, 收件人, 我叫, ...), the length taken from jieba's
   word when it starts there, else the surname and one or two Han characters up to a
   function character (的, 说, 在, ...): 0.85.

A label or a title anywhere in the window adds 0.35.

**English.** Runs of capitalised words (``O'Brien`` and ``Smith-Jones`` included) are
scored by the name lists of Faker's ``en_US`` locale (the ``privacy`` extra): a known
first name 0.55, a known last name +0.3, another second capitalised word +0.1. A run of common
English words (Zipf ≥ 4, "General Electric") without a label is not a name unless it is
a known first and last name ("Will Smith"). A run
without a known first name gets +0.25 inside a sentence and +0.25 when all its words are
rare in English (wordfreq: Zipf frequency < 3.6, true of most names and not of "General
Electric"); a lone first name at a sentence start loses 0.1;
a title (Mr, Ms, Dr, ...) before the run gives 0.9; a label (name, dear, contact, signed,
...) adds 0.35, or else, for two or more words, a cue (by, for, to, and ... before; said,
told, and ... after; an apposition between commas) 0.2. Runs that contain a place or organisation word (Street, Bank, University, ...), a
month or a weekday are not names; a lone capitalised word must be a known first name.
"""

from __future__ import annotations

import functools
import re

from ...extras import require_extra
from .context import has_context
from .spans import PiiSpan, clip

ZH_SURNAMES = frozenset(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任"
    "沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫"
    "孔向汤常温康施文牛樊葛邢安齐易乔伍庞颜倪庄聂章鲁岳翟殷詹申欧耿关兰焦俞左柳甘祝包宁尚符舒阮柯纪梅"
    "童凌毕单季裴霍涂成苗谷盛曲翁冉骆蓝路游辛靳管柴蒙鲍华喻祁蒲房滕屈饶解牟艾尤阳时穆农司卓古吉缪简车"
    "项连芦麦褚娄窦戚岑景党宫费卜冷晏席卫米柏宗瞿桂全佟应臧闵苟邬边卞姬师仇栾隋商刁沙荣巫寇桑郎甄丛"
    "仲虞敖巩明佘池查麻苑迟邝萧傅阎赖洪官封谈匡鞠惠荆乐冀郁胥南班储原栗燕楚鄢劳谌奚皮粟冼蔺楼盘满闻位厉"
    "伊仝区郜海阚花权强帅屠豆朴盖练廉禹井祖漆巴丰支卿国狄平计索宣晋相初门云容敬来扈晁芮都普阙浦戈伏鹿薄"
    "邸雍辜羊阿乌母裘亓修邰赫杭况那宿鲜印逯隆茹诸战慕危玉银亢嵇公哈湛宾戎勾茅利呼居揭干但尉冶斯元束檀衣"
    "信展阴昝智幸奉植衡富尧闭由")
ZH_COMPOUND = ("欧阳", "司马", "上官", "诸葛", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙",
               "宇文", "司徒", "夏侯", "令狐", "端木", "独孤", "南宫", "西门", "澹台", "呼延")
ZH_TITLES = ("先生", "女士", "小姐", "老师", "经理", "医生", "大夫", "教授", "同学", "主任",
             "总监", "律师", "师傅", "阿姨", "书记", "院长", "博士", "会计")
ZH_LABELS = ("姓名", "联系人", "收件人", "收货人", "患者", "客户", "申请人", "经办人", "负责人",
             "我叫", "名叫", "叫做", "我是", "签名", "持卡人", "持有人", "户主", "法人", "乘客",
             "寄件人", "管理员", "员工", "学生", "用户", "家长", "开户人", "户名", "收款人",
             "付款人", "业主", "房东", "租客")
# characters that end a name after a label (function words)
_STOP = "的说在和与是了把被给向对从到为也都就还又很已将要会曾等及或"
# label words, and words jieba's dictionary wrongly tags nr
_NOT_ZH_NAME = frozenset(ZH_LABELS + ZH_TITLES + ("银行卡",))
_HAN = r"[\u4e00-\u9fff]"
_SURNAME = "(?:" + "|".join(ZH_COMPOUND) + "|[" + "".join(sorted(ZH_SURNAMES)) + "])"
_BEFORE_TITLE = re.compile(rf"{_SURNAME}{_HAN}{{1,2}}?(?=(?:{'|'.join(ZH_TITLES)}))")
_AFTER_LABEL = re.compile(rf"(?:{'|'.join(ZH_LABELS)})[：:是为\s]*(?={_SURNAME})")


def _surname_len(word: str) -> int:
    if word[:2] in ZH_COMPOUND:
        return 2
    return 1 if word[:1] in ZH_SURNAMES else 0


def jieba_words(text: str) -> list[tuple[int, str, str]]:
    """(start, word, flag) for every word of jieba's POS tagger."""
    import logging

    import jieba
    import jieba.posseg as pseg

    jieba.setLogLevel(logging.WARNING)
    out, pos = [], 0
    for pair in pseg.cut(text):
        out.append((pos, pair.word, pair.flag))
        pos += len(pair.word)
    return out


def _name_length_ok(word: str) -> bool:
    """A surname and one or two given characters (黄金海岸 and 向来如此 are not names)."""
    n = _surname_len(word)
    return n > 0 and 1 <= len(word) - n <= 2


def _jieba_names(words: list[tuple[int, str, str]]) -> list[PiiSpan]:
    """Names from jieba's tags (0.6). A 3-character name is often cut in two, so a
    surname followed by an ``nr*`` word, or a surname jieba tags ``nr`` followed by one or
    two characters (李|淑英, 卢|海燕, 谢|桂兰, 欧阳|娜娜), and a surname-initial pair followed
    by a one-character ``nr`` (范金|凤) are joined; a surname-initial pair followed by any
    one character before punctuation or a function word (杨淑|兰和) is joined at 0.4, so
    it needs a label or title."""
    out = []
    for i, (start, word, flag) in enumerate(words):
        nxt = words[i + 1] if i + 1 < len(words) else None
        after = words[i + 2][1] if i + 2 < len(words) else ""
        score = 0.6
        if nxt and _surname_len(word) == len(word) and (nxt[2].startswith("nr") or flag == "nr") \
                and len(nxt[1]) <= 2 and re.fullmatch(rf"{_HAN}+", nxt[1]) \
                and not set(nxt[1]) & set(_STOP):
            word, flag = word + nxt[1], "nr"
        elif nxt and len(word) == 2 and _surname_len(word) and len(nxt[1]) == 1 \
                and re.fullmatch(_HAN, nxt[1]) and nxt[1] not in _STOP:
            if nxt[2] == "nr":
                word, flag = word + nxt[1], "nr"
            elif not re.match(_HAN, after[:1]) or after[:1] in _STOP:
                word, flag, score = word + nxt[1], "nr", 0.4  # 杨淑|兰和: needs a label
        if (flag.startswith("nr") and flag != "nrt" and _name_length_ok(word)
                and word not in _NOT_ZH_NAME):
            out.append(PiiSpan(start, start + len(word), "PERSON", score, "name_zh_jieba"))
    return out


def _after_label(text: str, start: int, starts: dict[int, str]) -> str | None:
    """The name right after a label: jieba's (joined) name or word when it is one, else
    the surname and the Han characters up to a function character (的, 说, ...), at most
    two more."""
    word = starts.get(start)
    if word is not None and _name_length_ok(word):
        return word
    n = _surname_len(text[start:start + 2])
    run = re.match(rf"{_HAN}{{{n}}}[^\W\d_{_STOP}]{{1,2}}", text[start:])
    if run is None or not re.fullmatch(rf"{_HAN}+", run.group()):
        return None
    return run.group()


def _zh(text: str, words: list[tuple[int, str, str]] | None = None) -> list[PiiSpan]:
    if not re.search(_HAN, text):
        return []
    words = jieba_words(text) if words is None else words
    spans = _jieba_names(words)
    spans += [PiiSpan(m.start(), m.end(), "PERSON", 0.85, "name_zh_title")
              for m in _BEFORE_TITLE.finditer(text)]
    starts = {s: w for s, w, _ in words} | {s.start: text[s.start:s.end] for s in spans}
    for m in _AFTER_LABEL.finditer(text):
        word = _after_label(text, m.end(), starts)
        if word is not None:
            spans.append(PiiSpan(m.end(), m.end() + len(word), "PERSON", 0.85, "name_zh_label"))
    return [PiiSpan(s.start, s.end, s.type, clip(s.score + (0.35 if has_context(
        text, s.start, s.end, ZH_LABELS + ZH_TITLES, before=8, after=4) else 0.0)), s.recognizer)
        for s in spans]


@functools.lru_cache(maxsize=1)
def en_name_lists() -> tuple[frozenset[str], frozenset[str]]:
    """First and last names of Faker's ``en_US`` locale."""
    require_extra("faker", "privacy", "English name recognition")
    from faker.providers.person.en_US import Provider

    first = frozenset(Provider.first_names_male) | frozenset(Provider.first_names_female)
    return first, frozenset(Provider.last_names)


EN_TITLES = r"(?:Mr|Mrs|Ms|Miss|Mx|Dr|Prof|Sir|Dame|Mister|Madam|Rev)\.?"
EN_LABELS = ("name", "dear", "contact", "signed", "regards", "sincerely", "attn", "cc",
             "hi", "hello", "patient", "customer", "employee", "applicant", "called", "named",
             "thanks", "holder", "passenger", "cardholder", "recipient")
_NOT_NAME = frozenset(
    "Street St Avenue Ave Road Rd Boulevard Lane Drive Court Way Place Square Park Bank "
    "University College School Hospital Hotel Restaurant Company Inc Ltd Corp Group Club "
    "City County State Republic Kingdom Airport Station Center Centre Museum Church Bridge "
    "January February March September October November December Monday Tuesday Wednesday Thursday Friday Saturday Sunday Order Invoice Ticket Version "
    "Room Suite Apt North South East West New Times Post News Street Lake River Mount".split())
_MONTH_NAMES = frozenset(("April", "May", "June", "July", "August"))  # also first names
_LEADING = frozenset(
    "The This That These Those Dear Hi Hello Thanks Regards Best Please Our Your My His "
    "Her Their We You They I It Contact Call Ask Email Send Tell Patient Customer Name "
    "Cardholder Applicant Passenger Recipient Employee Client Yesterday Today Tomorrow "
    "Meanwhile Later Then Also".split())
EN_CUES = ("by", "for", "to", "from", "with", "met", "and")
EN_CUES_AFTER = ("said", "says", "told", "wrote", "asked", "reported", "called", "signed",
                 "and")
RARE_ZIPF = 3.6
COMMON_ZIPF = 3.0
PHRASE_ZIPF = 4.0
_EN_WORD = r"(?:Mc|Mac|O')?[A-Z][a-z]+(?:-[A-Z][a-z]+)?"
_EN_RUN = re.compile(rf"(?<![\w'-]){_EN_WORD}(?: {_EN_WORD}){{0,2}}(?![\w'-])")
_EN_TITLED = re.compile(rf"(?<![\w'-]){EN_TITLES} ({_EN_WORD}(?: {_EN_WORD}){{0,2}})(?![\w'-])")


def _rare(words: list[str]) -> bool:
    """Every word is rare as an English word (wordfreq's Zipf frequency below 3.6: about
    4 per million words), as most surnames and given names are, and "Machine Learning",
    "General Electric" or "North Hill" are not."""
    return all(_zipf(w) < RARE_ZIPF for w in words)


def _zipf(word: str) -> float:
    """log10 of the word's frequency per billion words of English (wordfreq)."""
    wordfreq = require_extra("wordfreq", "privacy", "English name recognition")
    return wordfreq.zipf_frequency(word.lower(), "en")


def _common_phrase(words: list[str], first: frozenset[str], last: frozenset[str]) -> bool:
    """Every word is a common English word (Zipf ≥ 4: "Deep Learning", "General
    Electric", "Red Cross") and the run is not a known first name plus a known last name
    ("Will Smith")."""
    known = words[0] in first and (len(words) == 1 or words[-1] in last)
    return not known and all(_zipf(w) >= PHRASE_ZIPF for w in words)


def _apposition(text: str, start: int, end: int) -> bool:
    """``..., X Y, ...``: between commas after a lower-case word ("The landlord, X Y,")."""
    return (re.search(r"[a-z], $", text[max(0, start - 3):start]) is not None
            and text[end:end + 1] == ",")


def _sentence_start(text: str, i: int) -> bool:
    before = text[:i].rstrip()
    return not before or before[-1] in ".!?\n\"'“"


def _name_words(words: list[str], first: frozenset[str]) -> list[str]:
    """``words`` without leading capitalised non-names ("Contact John Smith", "Traveller
    Jai Gill": a word with a Zipf frequency ≥ 3 before two more words); empty when a place, organisation or calendar word is among them, or for a
    lone month that is also a first name (May)."""
    while words and (words[0] in _LEADING or (len(words) > 2 and words[0] not in first
                                              and _zipf(words[0]) >= COMMON_ZIPF)):
        words = words[1:]
    if len(words) == 1 and words[0] in _MONTH_NAMES:
        return []  # "in May"; "April Jones" stays a name
    return [] if any(w in _NOT_NAME for w in words) else words


def _en(text: str) -> list[PiiSpan]:
    first, last = en_name_lists()
    out = [PiiSpan(m.start(1), m.end(1), "PERSON", 0.9, "name_en_title")
           for m in _EN_TITLED.finditer(text) if not _NOT_NAME.intersection(m.group(1).split())]
    for m in _EN_RUN.finditer(text):
        words = _name_words(m.group().split(" "), first)
        if not words:
            continue
        start = m.end() - len(" ".join(words))
        labelled = has_context(text, start, m.end(), EN_LABELS, before=14, after=0)
        if not labelled and _common_phrase(words, first, last):
            continue
        score = 0.55 if words[0] in first else 0.0
        if len(words) > 1:
            score += 0.3 if words[-1] in last else 0.1
            if score < 0.5:  # no known first name: judge the shape
                score += 0.25 * (not _sentence_start(text, start)) + 0.25 * _rare(words)
        elif _sentence_start(text, start):
            score -= 0.1
        if score <= 0.0:
            continue
        if labelled:
            score += 0.35
        elif len(words) > 1 and (has_context(text, start, m.end(), EN_CUES, before=12, after=0)
                                 or has_context(text, m.end(), m.end(), EN_CUES_AFTER,
                                                before=0, after=10)
                                 or _apposition(text, start, m.end())):
            score += 0.2
        out.append(PiiSpan(start, m.end(), "PERSON", clip(score), "name_en"))
    return out


def rule_names(text: str, words: list[tuple[int, str, str]] | None = None) -> list[PiiSpan]:
    """The rules' names (``words``: jieba's words of ``text`` when the caller has them);
    :func:`.name_model.person` adds the learned recognizer's."""
    return _zh(text, words) + _en(text)
