"""The bilingual world: determinism, exact surprisal, injectivity, the parser, the format."""

from __future__ import annotations

import json
import math
import random
import re
import statistics
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.corpora import (
    World,
    accepts,
    accepts_any,
    default_world,
    lm_corpus,
    lm_surprisal_bits,
    surprisal_bits,
    write_lm_corpus,
)
from lmforge.corpora.world import detect_lang, zh_number
from lmforge.errors import ConfigError

N = 20000


@pytest.fixture(scope="module")
def world() -> World:
    return default_world()


@pytest.fixture(scope="module")
def sample(world):
    sents = world.sentences("test", N, seed=0)
    return sents, {lang: [s.render(lang) for s in sents] for lang in ("en", "zh")}


# ----------------------------------------------------------------------------- determinism

def test_lm_corpus_is_deterministic_and_splits_differ():
    a = lm_corpus("train", 300, seed=0)
    b = lm_corpus("train", 300, seed=0)
    assert [(x.text, x.lang, x.bits) for x in a] == [(x.text, x.lang, x.bits) for x in b]
    assert [x.text for x in lm_corpus("train", 300, seed=1)] != [x.text for x in a]
    val = {x.text for x in lm_corpus("val", 300, seed=0)}
    test = {x.text for x in lm_corpus("test", 300, seed=0)}
    train = {x.text for x in a}
    assert len(train & test) <= 3 and len(train & val) <= 3 and len(val & test) <= 3
    # a prefix of a longer corpus
    assert [x.text for x in lm_corpus("train", 1000, seed=0)[:300]] == [x.text for x in a]


def test_bad_arguments_name_the_allowed_values(world):
    with pytest.raises(ConfigError, match="train, val, test"):
        lm_corpus("dev", 3)
    with pytest.raises(ConfigError, match="en, zh"):
        accepts("Hello.", "fr")


# ----------------------------------------------------------------------------- size

def test_not_a_toy(world, sample):
    sents, texts = sample
    assert len(world.constructions) >= 20
    for lang in ("en", "zh"):
        assert len(world.vocabulary(lang)) >= 300, lang
    # uniform over constructions: each >= 2%, and all of them occur
    assert 1 / len(world.constructions) >= 0.02
    assert {s.name for s in sents} == {c.name for c in world.constructions}
    # every lexical word and template word is reachable
    for lang in ("en", "zh"):
        blob = "\n".join(texts[lang])
        missing = [w for w in world.vocabulary(lang) if w not in blob]
        assert not missing, (lang, missing[:10])


def test_mean_surprisal_and_exact_entropy(world, sample):
    sents, _ = sample
    bits = [s.bits for s in sents]
    mean, sd = statistics.fmean(bits), statistics.pstdev(bits)
    h = world.entropy_bits()
    assert mean >= 30 and h >= 30
    assert abs(mean - h) < 4 * sd / math.sqrt(len(bits))
    assert world.lm_entropy_bits() == pytest.approx(h + 1)
    # each construction's exact entropy agrees with its sample mean
    per: dict[str, list[float]] = {}
    for s in sents:
        per.setdefault(s.name, []).append(s.bits)
    k = math.log2(len(world.constructions))
    for c in world.constructions:
        xs = per[c.name]
        exact = k + world.grammar.construction_entropy(c)
        assert abs(statistics.fmean(xs) - exact) < 0.1, c.name


# ----------------------------------------------------------------------------- exactness

def test_injective_on_a_large_sample(sample):
    sents, texts = sample
    for lang in ("en", "zh"):
        seen: dict[str, tuple] = {}
        for s, t in zip(sents, texts[lang], strict=True):
            assert seen.setdefault(t, s.key) == s.key, (lang, t)


def test_parse_all_finds_exactly_one_derivation(world, sample):
    sents, texts = sample
    for lang in ("en", "zh"):
        for s, t in zip(sents[:3000], texts[lang][:3000], strict=True):
            found = world.parse_all(t, lang)
            assert [f.key for f in found] == [s.key], (lang, t)


def test_parser_recovers_every_derivation_and_its_bits(world, sample):
    sents, texts = sample
    for lang in ("en", "zh"):
        for s, t in zip(sents, texts[lang], strict=True):
            p = world.parse(t, lang)
            assert p is not None and p.key == s.key, (lang, t)
            assert abs(p.bits - s.bits) < 1e-9
    s, t = sents[0], texts["zh"][0]
    assert accepts(t, "zh") and not accepts(t, "en")
    assert abs(surprisal_bits(t, "zh") - s.bits) < 1e-9
    assert surprisal_bits(t + t, "zh") is None


def test_bits_are_the_product_of_choice_probabilities(world, sample):
    sents, _ = sample
    for s in sents[:500]:
        c = s.construction
        p = 1 / len(world.constructions)
        for n in c.pool_sizes(s.values):
            p /= n
        assert abs(s.bits - (-math.log2(p))) < 1e-9


def test_lm_items(sample):
    items = lm_corpus("val", 4000, seed=3)
    zh = sum(it.lang == "zh" for it in items)
    assert 1800 < zh < 2200
    for it in items:
        assert it.text == it.sentence.render(it.lang)
        assert it.bits == pytest.approx(1 + it.sentence.bits, abs=1e-12)
        assert detect_lang(it.text) == it.lang
    for it in items[:1000]:
        assert accepts_any(it.text)
        assert abs(lm_surprisal_bits(it.text) - it.bits) < 1e-9
    assert lm_surprisal_bits("Hello world.") is None and not accepts_any("你好。")


# ----------------------------------------------------------------------------- rejection

CLASSIFIERS = "只本把个辆张条头匹支件台"


def _replace_segment(s, lang, pick, rng):
    """Render ``s`` with one segment (chosen by ``pick``) replaced; None if none fits."""
    segs = s.segments(lang)
    idx = [i for i, g in enumerate(segs) if pick(g)]
    if not idx:
        return None
    i = rng.choice(idx)
    return segs, i


def _corruptions(world, s, lang, rng):
    """(kind, corrupted text) pairs that must all be rejected."""
    text = s.render(lang)
    out = []
    c = s.construction
    person = world.domains["person"]

    # pronoun of the wrong gender
    r = _replace_segment(s, lang, lambda g: g.form in ("subj", "obj", "poss"), rng)
    if r:
        segs, i = r
        g = segs[i]
        table = person.form(lang, g.form)
        other = next(x for x in table if x != g.text)
        out.append(("pronoun", "".join(x.text if j != i else other for j, x in enumerate(segs))))
    # wrong classifier
    if lang == "zh":
        r = _replace_segment(s, lang, lambda g: g.form in ("cl", "food_cl"), rng)
        if r:
            segs, i = r
            other = rng.choice([x for x in CLASSIFIERS if x != segs[i].text])
            out.append(("classifier", "".join(x.text if j != i else other
                                               for j, x in enumerate(segs))))
    # wrong fact (job, city, country, favourite food)
    facts = ("city", "job", "country", "food", "food_pl")
    r = _replace_segment(s, lang, lambda g: g.form in facts, rng)
    if r:
        segs, i = r
        g = segs[i]
        dom = c.domains[c.index[g.slot]]
        other = rng.choice([x for x in set(dom.form(lang, g.form)) if x != g.text])
        out.append(("fact", "".join(x.text if j != i else other for j, x in enumerate(segs))))
    # wrong English article
    if lang == "en":
        r = _replace_segment(s, lang, lambda g: g.form in ("art", "job_art"), rng)
        if r:
            segs, i = r
            other = {"a": "an", "an": "a"}[segs[i].text]
            out.append(("article", "".join(x.text if j != i else other
                                            for j, x in enumerate(segs))))
    # 两 where 二 belongs and vice versa
    if "两" in text:
        out.append(("liang", text.replace("两", "二", 1)))
    # truncated, wrong final mark
    cut = rng.randrange(1, len(text))
    out.append(("truncated", text[:cut]))
    end = {"。": "?", "?": "。"} if lang == "zh" else {".": "?", "?": "."}
    out.append(("final mark", text[:-1] + end[text[-1]]))
    # doubled and swapped words (characters in Chinese, avoiding numerals)
    if lang == "en":
        words = text[:-1].split(" ")
        i = rng.randrange(len(words))
        out.append(("doubled", " ".join(words[:i + 1] + words[i:]) + text[-1]))
        pairs = [i for i in range(len(words) - 1) if words[i] != words[i + 1]]
        i = rng.choice(pairs)
        w2 = words[:i] + [words[i + 1], words[i]] + words[i + 2:]
        out.append(("swapped", " ".join(w2) + text[-1]))
        out.append(("lowercase", text[0].lower() + text[1:]))
    else:
        i = rng.randrange(len(text) - 1)
        out.append(("doubled", text[:i + 1] + text[i:]))
        num = set("一二两三四五六七八九十")
        pairs = [i for i in range(len(text) - 2) if text[i] != text[i + 1]
                 and not ({text[i], text[i + 1]} & num)]
        i = rng.choice(pairs)
        out.append(("swapped", text[:i] + text[i + 1] + text[i] + text[i + 2:]))
    out.append(("space", text + " "))
    return out


def test_corrupted_sentences_are_rejected(world, sample):
    sents, _ = sample
    rng = random.Random(7)
    kinds: dict[str, int] = {}
    for s in sents[:3000]:
        for lang in ("en", "zh"):
            for kind, bad in _corruptions(world, s, lang, rng):
                assert bad != s.render(lang)
                assert not world.accepts(bad, lang), (kind, lang, bad)
                assert surprisal_bits(bad, lang) is None
                kinds[kind] = kinds.get(kind, 0) + 1
    for kind in ("pronoun", "classifier", "fact", "article", "truncated", "final mark",
                 "doubled", "swapped"):
        assert kinds.get(kind, 0) >= 100, (kind, kinds)
    assert kinds.get("liang", 0) >= 20, kinds


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=60))
def test_arbitrary_text_never_crashes(text):
    assert accepts_any(text) in (True, False)
    assert lm_surprisal_bits(text) is None or lm_surprisal_bits(text) > 1


# ----------------------------------------------------------------------------- format

def test_surface_format(sample):
    _, texts = sample
    for t in texts["en"]:
        assert t[-1] in ".?" and t[0].isupper() and t.isascii(), t
        assert "  " not in t and t == t.strip()
        assert 8 <= len(t.split()) <= 26, t
    for t in texts["zh"]:
        assert t[-1] in "。?" and " " not in t, t
        assert not re.search("[A-Za-z0-9]", t), t
        assert 10 <= len(t) <= 40, t
    for lang in ("en", "zh"):
        for t in texts[lang]:
            assert unicodedata.normalize("NFKC", t) == t, t


def test_english_articles_agree(sample):
    _, texts = sample
    for t in texts["en"]:
        assert not re.search(r"\ba [aeiou]", t, re.I), t
        assert not re.search(r"\ban [^aeiou]", t, re.I), t


def test_chinese_numerals():
    assert [zh_number(n) for n in (1, 2, 3, 10, 11, 12, 20, 22, 37, 99)] == [
        "一", "两", "三", "十", "十一", "十二", "二十", "二十二", "三十七", "九十九"]
    assert zh_number(2, liang=False) == "二"
    with pytest.raises(ValueError):
        zh_number(100)


def test_long_range_agreement(world, sample):
    sents, _ = sample
    person = world.domains["person"]
    n_pron = 0
    for s in sents[:5000]:
        c = s.construction
        for lang in ("en", "zh"):
            for g in s.segments(lang):
                if g.form in ("subj", "obj", "poss"):
                    female = person.attrs["gender"][s.value(g.slot)] == "F"
                    assert (g.text in ("she", "her", "她", "她的")) == female
                    n_pron += 1
        if c.name == "favorite":  # a fact repeated at both ends of the sentence
            food = world.domains["food"]
            fav = person.attrs["food"][s.value("p")]
            assert s.render("en").count(food.form("en", "pl")[fav]) >= 2
    assert n_pron > 1000


# ----------------------------------------------------------------------------- reuse

def test_derivation_object_supports_task_reuse(world, sample):
    sents, texts = sample
    for s in sents[:2000]:
        en, zh = s.render("en"), s.render("zh")
        assert world.parse(en, "en").key == world.parse(zh, "zh").key == s.key
        for lang, text in (("en", en), ("zh", zh)):
            assert "".join(g.text for g in s.segments(lang)) == text
            ms = s.mentions(lang)
            for m in ms:
                assert text[m.start:m.end] == m.text
            names = [m for m in ms if m.kind == "PER"]
            assert names and all(m.domain == "person" for m in names)
            assert all(m.text not in ("a", "an", "的") for m in ms)
            pron = [m for m in ms if m.kind == "PRON"]
            assert all(m.domain == "person" and m.text in ("he", "she", "him", "her", "his",
                                                           "他", "她", "他的", "她的")
                       for m in pron)
        slots = s.slots
        assert set(slots) == set(s.construction.slot_names)
    ops = [s for s in sents if s.construction.category == "opinion"]
    assert ops and all(s.negated in (True, False) and s.sentiment in (1, -1) for s in ops)
    assert {s.negated for s in ops} == {True, False}
    facts = [m for s in sents[:2000] for m in s.mentions("en") if m.form == "city"]
    home = world.domains["person"].attrs["home"]
    for s in sents[:2000]:
        for m in s.mentions("en"):
            if m.form == "city" and m.slot == "p":
                assert m.domain == "city" and m.value == home[s.value("p")]
    assert facts


def test_write_lm_corpus(tmp_path):
    paths = write_lm_corpus(tmp_path / "w", 50, 20, 30, seed=5)
    assert sorted(p.name for p in paths.values()) == [
        "test.jsonl", "test.txt", "train.txt", "val.jsonl", "val.txt"]
    lines = (tmp_path / "w" / "train.txt").read_text(encoding="utf-8").splitlines()
    assert lines == [it.text for it in lm_corpus("train", 50, seed=5)]
    rows = [json.loads(x) for x in (tmp_path / "w" / "test.jsonl").read_text(
        encoding="utf-8").splitlines()]
    assert len(rows) == 30 and set(rows[0]) == {"text", "lang", "bits"}
    txt = (tmp_path / "w" / "test.txt").read_text(encoding="utf-8").splitlines()
    assert [r["text"] for r in rows] == txt
    for r in rows:
        assert abs(lm_surprisal_bits(r["text"]) - r["bits"]) < 1e-9
    with pytest.raises(ConfigError):
        write_lm_corpus(tmp_path / "x", -1, 0, 0)


def test_stats(world):
    st_ = world.stats(2000)
    assert st_["constructions"] == len(world.constructions)
    assert st_["mean_bits"] >= 30 and st_["content_words"]["zh"] >= 300
    assert set(st_["construction_entropy_bits"]) == {c.name for c in world.constructions}


def test_many_generated_sentences_parse(world):
    """Every generated sentence parses. (This was a timed test; its bound depended on the
    CPU and the load beside it. 20,000 sentences take about 1 s on a 2-core machine.)"""
    sents = world.sentences("train", 20000)
    assert len(sents) == 20000
    assert all(world.accepts(s.render("zh"), "zh") for s in sents[:2000])
