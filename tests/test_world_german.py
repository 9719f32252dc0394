"""German in the world: injectivity, the parser, agreement, rejection, en/zh unchanged."""

from __future__ import annotations

import math
import random
import re
import unicodedata

import pytest

from lmforge.corpora import LANGS, World, default_world, lm_corpus
from lmforge.corpora.world import MT_LANGS, de_number, sentences
from lmforge.corpora.world.grammar import Construction, Grammar, Sentence
from lmforge.errors import ConfigError

N = 20000
EN_DE = ("en", "de")


@pytest.fixture(scope="module")
def world() -> World:
    return default_world()


@pytest.fixture(scope="module")
def sample(world):
    sents = world.sentences("test", N, seed=0, langs=EN_DE)
    return sents, [s.render("de") for s in sents]


def make(world: World, name: str, **labels: str) -> Sentence:
    """The derivation of construction ``name`` with each slot given by its English label."""
    c = world.grammar.by_name[name]
    vals = tuple(d.labels.index(labels[n]) for n, d in zip(c.slot_names, c.domains,
                                                              strict=True))
    return Sentence(c, vals, world.grammar.bits_of(c, vals))


# ----------------------------------------------------------------------------- coverage

def test_every_construction_has_german(world):
    with_de = [c.name for c in world.constructions if "de" in c.langs]
    assert len(with_de) >= 12
    assert len(with_de) == len(world.constructions) == 27
    assert MT_LANGS == ("en", "zh", "de") and LANGS == ("en", "zh")
    assert len(world.vocabulary("de")) >= 300
    categories = {c.category for c in world.constructions if "de" in c.langs}
    assert categories == {"statement", "fact", "question", "opinion"}


# ----------------------------------------------------------------------------- exactness

def test_german_is_injective_on_a_large_sample(sample):
    sents, texts = sample
    seen: dict[str, tuple] = {}
    for s, t in zip(sents, texts, strict=True):
        assert seen.setdefault(t, s.key) == s.key, t
    assert len({s.key for s in sents}) > 0.99 * N


def test_parse_all_finds_exactly_one_german_derivation(world, sample):
    sents, texts = sample
    for s, t in zip(sents[:3000], texts[:3000], strict=True):
        assert [f.key for f in world.parse_all(t, "de")] == [s.key], t


def test_every_german_sentence_parses_to_its_derivation_and_bits(world, sample):
    sents, texts = sample
    for s, t in zip(sents, texts, strict=True):
        p = world.parse(t, "de")
        assert p is not None and p.key == s.key, t
        assert abs(p.bits - s.bits) < 1e-9
        assert world.surprisal_bits(t, "de") == p.bits
    en = sents[0].render("en")
    assert world.accepts(texts[0], "de") and not world.accepts(texts[0], "en")
    assert not world.accepts(en, "de")


# ----------------------------------------------------------------------------- worked examples

LOST = dict(p="Anna", c="red", city="Munich", day="Monday", part="morning", q="Tom")


@pytest.mark.parametrize(("name", "labels", "german"), [
    # gender: the article, the adjective ending and the pronoun follow the noun
    ("lost", dict(LOST, o="ball", pl="park"),
     "Anna verlor am Montagmorgen in München einen roten Ball, aber Tom fand ihn im Park."),
    ("lost", dict(LOST, o="cup", pl="school"),
     "Anna verlor am Montagmorgen in München eine rote Tasse, aber Tom fand sie in der "
     "Schule."),
    ("lost", dict(LOST, o="book", pl="beach"),
     "Anna verlor am Montagmorgen in München ein rotes Buch, aber Tom fand es am Strand."),
    # plural after a number: strong ending
    ("buy", dict(p="Tom", n="3", c="red", o="ball", pl="market", city="Milan", day="Friday",
                 part="evening"),
     "Tom kaufte am Freitagabend auf dem Markt in Mailand drei rote Bälle."),
    # weak masculine noun: einen weißen Löwen
    ("q_where", dict(city="Beijing", p="Alice", q="David", c="white", a="lion", day="Sunday",
                     part="afternoon"),
     "Wo in Peking haben Alice und David am Sonntagnachmittag einen weißen Löwen gesehen?"),
    # der/die/das + weak nominative, relative pronoun den/die/das, verb-final clauses
    ("op_object", dict(p="Anna", c="black", o="umbrella", city="Rome", day="Tuesday",
                       deg="not very", adj="expensive"),
     "Anna findet, dass der schwarze Regenschirm, den sie am Dienstag in Rom gekauft hat, "
     "nicht sehr teuer ist."),
    ("op_object", dict(p="Tom", c="black", o="bag", city="Rome", day="Tuesday", deg="very",
                       adj="expensive"),
     "Tom findet, dass die schwarze Tasche, die er am Dienstag in Rom gekauft hat, sehr "
     "teuer ist."),
    ("op_object", dict(p="Tom", c="black", o="car", city="Rome", day="Tuesday", deg="not",
                       adj="expensive"),
     "Tom findet, dass das schwarze Auto, das er am Dienstag in Rom gekauft hat, nicht "
     "teuer ist."),
    # den/die/das + weak accusative; er/sie/es for the animal; negation with nicht
    ("op_animal", dict(p="Anna", pol="negative", q="Tom", c="brown", a="dog", adj="clever"),
     "Anna mag den braunen Hund von Tom nicht, weil er nicht klug ist."),
    ("op_animal", dict(p="Anna", pol="positive", q="Tom", c="brown", a="cat", adj="clever"),
     "Anna mag die braune Katze von Tom sehr, weil sie sehr klug ist."),
    ("op_animal", dict(p="Anna", pol="positive", q="Tom", c="brown", a="horse", adj="clever"),
     "Anna mag das braune Pferd von Tom sehr, weil es sehr klug ist."),
    # zu + dem/der; weil ... verb-final; separable verb
    ("because", dict(p="Tom", pl="library", day="Friday", part="evening", hour="7", min="30",
                     act="go shopping", q="Anna"),
     "Tom ging am Freitagabend um 7:30 Uhr zur Bibliothek, weil er mit Anna einkaufen "
     "wollte."),
    ("works", dict(p="Tom", pl="train station", q="Anna", day="Thursday", part="morning"),
     "Tom arbeitet als Koch in Chicago, und er geht jeden Donnerstagmorgen mit Anna zum "
     "Bahnhof."),
    ("intro", dict(p="Anna", act="watch TV", q="Tom", pl="square", day="Sunday",
                   part="afternoon"),
     "Anna ist Sängerin aus Berlin, und sie mag es, sonntagnachmittags mit Tom auf dem Platz "
     "fernzusehen."),
    # dative pronouns and possessives agree with the person
    ("gift", dict(p="Anna", q="Tom", pl="train station", day="Saturday", part="morning",
                  n="2", c="green", o="bicycle"),
     "Anna traf Tom am Samstagmorgen am Bahnhof und schenkte ihm zwei grüne Fahrräder."),
    ("birthday", dict(month="July", mday="4", p="Tom", q="Anna", n="21", f="strawberry"),
     "Am 4. Juli schenkte Tom Anna einundzwanzig Erdbeeren zu ihrem Geburtstag."),
    ("birthday", dict(month="July", mday="4", p="Anna", q="Tom", n="21", f="strawberry"),
     "Am 4. Juli schenkte Anna Tom einundzwanzig Erdbeeren zu seinem Geburtstag."),
    ("favorite", dict(p="Alice", q="James", n="5", pl="square", day="Friday", part="evening"),
     "Alice liebt Äpfel, deshalb kaufte James ihr am Freitagabend auf dem Platz fünf Äpfel."),
    ("op_city", dict(p="Tom", q="Anna", day="Wednesday", c2="London", s="summer",
                     deg="very", adj="hot"),
     "Tom, der in Chicago wohnt, sagte Anna am Mittwoch, dass London im Sommer sehr heiß "
     "ist."),
    ("home", dict(p="Alice", c2="Paris", q="Tom", month="March", mday="28"),
     "Alice wohnt in London, das in Großbritannien liegt, aber sie ist am 28. März mit Tom "
     "nach Paris gereist."),
    ("q_fact", dict(p="David", act="play chess", q="Li Wei", pl="university", day="Monday",
                    part="evening"),
     "Will David, ein Ingenieur aus München, am Montagabend mit Li Wei an der Universität "
     "Schach spielen?"),
    ("q_fact", dict(p="Alice", act="play chess", q="Li Wei", pl="university", day="Monday",
                    part="evening"),
     "Will Alice, eine Ärztin aus London, am Montagabend mit Li Wei an der Universität "
     "Schach spielen?"),
    ("farm", dict(n="15", a="duck", n2="8", a2="cat", p="James", city="Beijing"),
     "Auf James' Bauernhof bei Peking gibt es fünfzehn Enten und acht Katzen."),
    ("order", dict(day="Saturday", part="morning", hour="8", min="30", p="Mary", dr="coffee",
                   f="apple", city="Rome"),
     "Am Samstagmorgen um 8:30 Uhr bestellte Mary im Café in Rom eine Tasse Kaffee und "
     "einen Apfel."),
    # verb second after a fronted time phrase
    ("zoo", dict(day="Sunday", part="morning", hour="8", min="15", p="Liu Jun", n="14",
                 a="chicken", city="Paris"),
     "Am Sonntagmorgen um 8:15 Uhr sah Liu Jun im Zoo von Paris in Frankreich vierzehn "
     "Hühner."),
    ("q_who", dict(p="Wang Fang", c="purple", o="scarf", pl="bank", city="Chicago",
                   day="Wednesday", part="afternoon"),
     "Wer hat Wang Fang am Mittwochnachmittag in der Bank in Chicago einen violetten Schal "
     "geschenkt?"),
    ("price", dict(p="Tom", n="74", c="pink", o="shirt", pl="airport", day="Sunday",
                   part="evening"),
     "Tom bezahlte am Sonntagabend am Flughafen vierundsiebzig Yuan für ein rosafarbenes "
     "Hemd."),
    ("flight", dict(p="Tom", q="Anna", city="Munich", c2="Milan", month="May", mday="1"),
     "Tom wird am 1. Mai mit Anna von München nach Mailand fliegen."),
])
def test_worked_examples(world, name, labels, german):
    s = make(world, name, **labels)
    assert s.render("de") == german
    assert world.parse(german, "de").key == s.key


@pytest.mark.parametrize("bad", [
    "Anna verlor am Montagmorgen in München ein roten Ball, aber Tom fand ihn im Park.",
    "Anna verlor am Montagmorgen in München einen rote Ball, aber Tom fand ihn im Park.",
    "Anna verlor am Montagmorgen in München einen roten Ball, aber Tom fand es im Park.",
    "Anna verlor am Montagmorgen in München einen roten Ball, aber Tom fand ihn in dem Park.",
    "Anna verlor am Montagmorgen in München eine rotes Tasse, aber Tom fand sie in der Schule.",
    "Anna verlor am Montagmorgen in München ein rotes Buch, aber Tom fand es an dem Strand.",
    "Tom kaufte am Freitagabend auf dem Markt in Mailand drei roten Bälle.",
    "Tom kaufte am Freitagabend auf dem Markt in Mailand drei rote Ball.",
    "Wo in Peking haben Alice und David am Sonntagnachmittag einen weißen Löwe gesehen?",
    "Tom ging am Freitagabend um 7:30 Uhr zu der Bibliothek, weil er mit Anna einkaufen wollte.",
    "Tom ging am Freitagabend um 7:30 Uhr zur Bibliothek, weil er wollte mit Anna einkaufen.",
    "Tom ging am Freitagabend um 7:30 Uhr zur Bibliothek, weil sie mit Anna einkaufen wollte.",
    "Am Sonntagmorgen um 8:15 Uhr Liu Jun sah im Zoo von Paris in Frankreich vierzehn Hühner.",
    "Am 4. Juli schenkte Tom Anna einundzwanzig Erdbeeren zu seinem Geburtstag.",
    "Anna mag den braunen Hund von Tom nicht, weil sie nicht klug ist.",
    "Anna mag der braune Hund von Tom nicht, weil er nicht klug ist.",
    "Tom, die in Chicago wohnt, sagte Anna am Mittwoch, dass London im Sommer sehr heiß ist.",
    "Alice liebt Äpfel, deshalb James kaufte ihr am Freitagabend auf dem Platz fünf Äpfel.",
    "Anna ist Sängerin aus Berlin, und sie mag es, sonntagnachmittags mit Tom auf dem Platz "
    "zu fernsehen.",
    "Will David, eine Ingenieur aus München, am Montagabend mit Li Wei an der Universität "
    "Schach spielen?",
    "Tom wird am 1. Mai mit Anna von München nach Mailand fliegen?",
])
def test_corrupted_worked_examples_are_rejected(world, bad):
    assert not world.accepts(bad, "de")
    assert world.parse_all(bad, "de") == []


def test_german_numbers():
    assert [de_number(n) for n in (1, 2, 11, 12, 16, 17, 20, 21, 30, 37, 66, 71, 99)] == [
        "eins", "zwei", "elf", "zwölf", "sechzehn", "siebzehn", "zwanzig", "einundzwanzig",
        "dreißig", "siebenunddreißig", "sechsundsechzig", "einundsiebzig", "neunundneunzig"]
    words = [de_number(n) for n in range(1, 100)]
    assert len(set(words)) == 99
    with pytest.raises(ValueError):
        de_number(100)


# ----------------------------------------------------------------------------- agreement

_ENDING_AFTER = {"einen": "en", "eine": "e", "ein": "es", "den": "en", "die": "e",
                 "das": "e", "der": "e"}


def test_adjective_endings_and_contractions_agree(world, sample):
    """Read the agreement off the text itself: the ending of a colour after an article,
    and the gender of a place after a contracted preposition."""
    _, texts = sample
    colours = "|".join(world.domains["color"].form("de", "w"))
    np = re.compile(rf"\b(einen|eine|ein|den|die|das|der) ({colours})(\w*) ([A-ZÄÖÜ]\w*)")
    place = world.domains["place"]
    genus = dict(zip(place.form("de", "w"), place.attrs["genus"], strict=True))
    after = re.compile(r"\b(im|am|zum|in der|an der|auf der|zur|auf dem) ([A-ZÄÖÜ]\w*)")
    n_np = n_pl = 0
    for t in texts:
        for art, _stem, ending, _noun in np.findall(t):
            assert ending == _ENDING_AFTER[art], t
            n_np += 1
        for prep, noun in after.findall(t):
            if noun in genus:
                feminine = prep in ("in der", "an der", "auf der", "zur")
                assert (genus[noun] == "f") == feminine, t
                n_pl += 1
    assert n_np > 3000 and n_pl > 5000


def test_pronouns_agree(world, sample):
    sents, _ = sample
    person = world.domains["person"]
    nouns = {n: world.domains[n] for n in ("object", "animal")}
    by_genus = {"it_nom": {"m": "er", "f": "sie", "n": "es"},
                "it_acc": {"m": "ihn", "f": "sie", "n": "es"}}
    personal = {"subj": ("er", "sie"), "obj": ("ihn", "sie"), "dat": ("ihm", "ihr"),
                "poss_dat_m": ("seinem", "ihrem"), "rel": ("der", "die")}
    n_pron = 0
    for s in sents[:5000]:
        c = s.construction
        for g in s.segments("de"):
            dom = c.domains[c.index[g.slot]] if g.slot else None
            if dom is person and g.form in personal:
                female = person.attrs["gender"][s.value(g.slot)] == "F"
                assert g.text == personal[g.form][female], s
                n_pron += 1
            elif dom in nouns.values() and g.form in by_genus:
                assert g.text == by_genus[g.form][dom.attrs["genus"][s.value(g.slot)]]
                n_pron += 1
    assert n_pron > 1500


def test_agreement_with_a_later_slot_parses(world):
    """Strong endings without an article: the noun comes after the adjective it governs,
    so the parser must bind the noun first."""
    c = Construction("strong", "statement", "c:color o:object",
                     {"en": "{c} {o}.", "zh": "{c}的{o}。", "de": "{c.nom_strong~o} {o}."},
                     world.domains)
    g = Grammar(world.domains, [c])
    vals = [(a, b) for a in range(12) for b in range(40)]
    texts = {v: c.render(v, "de") for v in vals}
    assert texts[(0, 14)] == "roter Ball." and texts[(0, 11)] == "rote Tasse."
    assert texts[(0, 0)] == "rotes Buch."
    assert len(set(texts.values())) == len(vals)
    for v, t in texts.items():
        assert [x.values for x in g.parse_all(t, "de")] == [v]
    assert g.parse("rotes Ball.", "de") is None


def test_agreement_needs_a_gendered_slot(world):
    with pytest.raises(ValueError, match="cannot agree"):
        Construction("bad", "statement", "c:color city:city",
                     {"en": "{c} {city}.", "zh": "{c}{city}。",
                      "de": "{c.acc_mixed~city} {city}."}, world.domains)


# ----------------------------------------------------------------------------- rejection

def _swap(text: str, rng: random.Random, names: set[str]) -> str | None:
    words = text[:-1].split(" ")
    pairs = [i for i in range(len(words) - 1) if words[i] != words[i + 1]
             and not {words[i], words[i + 1]} <= names]
    if not pairs:
        return None
    i = rng.choice(pairs)
    return " ".join(words[:i] + [words[i + 1], words[i]] + words[i + 2:]) + text[-1]


def _corruptions(world, s, rng):
    """(kind, corrupted German text) pairs that must all be rejected."""
    text = s.render("de")
    segs = s.segments("de")
    c = s.construction
    out = []

    def replaced(i: int, other: str) -> str:
        return "".join(x.text if j != i else other for j, x in enumerate(segs))

    def alternatives(g) -> list[str]:
        dom, v = c.domains[c.index[g.slot]], s.value(g.slot)
        if "_weak" in g.form or "_mixed" in g.form:  # another gender's ending, same word
            table = [dom.form("de", f"{g.form}.{gen}")[v] for gen in ("m", "f", "n")]
            if len(set(table)) == 1:  # weak nominative: -e for every gender
                table.append(dom.form("de", f"{g.form.replace('nom', 'acc')}.m")[v])
        else:
            table = list(dom.form("de", g.form))
        return sorted({x for x in table if x != g.text})

    person = world.domains["person"]
    kinds = {"article": lambda g, dom: g.form.startswith(("der_", "ein_"))
             or g.form in ("at", "to", "cup"),
             "ending": lambda g, dom: "_weak" in g.form or "_mixed" in g.form,
             "pronoun": lambda g, dom: g.form in ("it_nom", "it_acc") or (
                 dom is person and g.form in ("subj", "dat", "poss_dat_m", "rel", "job_art"))}
    for kind, pick in kinds.items():
        cands = [(i, alts) for i, g in enumerate(segs)
                 if g.slot and pick(g, c.domains[c.index[g.slot]])
                 for alts in [alternatives(g)] if alts]
        if cands:
            i, alts = rng.choice(cands)
            out.append((kind, replaced(i, rng.choice(alts))))
    plural = [i for i, g in enumerate(segs) if g.form == "pl"]
    if plural:
        i = rng.choice(plural)
        dom = c.domains[c.index[segs[i].slot]]
        sg = dom.form("de", "w")[s.value(segs[i].slot)]
        if sg != segs[i].text and segs[i].text.endswith("e") and dom.name == "color":
            out.append(("ending", replaced(i, segs[i].text + "n")))
        elif sg != segs[i].text:
            out.append(("number", replaced(i, sg)))
    nouns = [g.text for g in segs if g.slot and g.form in ("w", "acc", "dat", "pl")
             and g.text[:1].isupper() and c.domains[c.index[g.slot]].kind != "PER"]
    if nouns:
        noun = rng.choice(nouns)
        out.append(("lowercase noun", text.replace(noun, noun[0].lower() + noun[1:], 1)))
    swapped = _swap(text, rng, set(world.domains["person"].form("de", "w")))
    if swapped:
        out.append(("swapped", swapped))
    out.append(("truncated", text[:rng.randrange(1, len(text))]))
    out.append(("final mark", text[:-1] + {".": "?", "?": "."}[text[-1]]))
    out.append(("space", text + " "))
    return out


def test_corrupted_german_sentences_are_rejected(world, sample):
    sents, _ = sample
    rng = random.Random(11)
    kinds: dict[str, int] = {}
    for s in sents[:3000]:
        for kind, bad in _corruptions(world, s, rng):
            assert bad != s.render("de"), kind
            assert not world.accepts(bad, "de"), (kind, bad)
            kinds[kind] = kinds.get(kind, 0) + 1
    for kind in ("article", "ending", "pronoun", "number", "lowercase noun", "swapped",
                 "truncated", "final mark"):
        assert kinds.get(kind, 0) >= 100, (kind, kinds)


# ----------------------------------------------------------------------------- en/zh unchanged

def test_default_sample_is_the_same_with_or_without_german():
    fresh = World()
    before = [(s.key, s.bits, s.render("en"), s.render("zh"))
              for s in fresh.sentences("train", 2000, seed=4)]
    german = World()
    for s in german.sentences("train", 500, seed=9, langs=("de",)):
        german.parse(s.render("de"), "de")
    german.entropy_bits(("en", "de"))
    after = [(s.key, s.bits, s.render("en"), s.render("zh"))
             for s in german.sentences("train", 2000, seed=4)]
    assert after == before
    # every construction has German, so asking for it draws the very same derivations
    for langs in (EN_DE, ("en", "zh", "de"), ("de",)):
        assert [(s.key, s.bits) for s in german.sentences("train", 2000, 4, langs)] == [
            (k, b) for k, b, _, _ in before]
        assert german.entropy_bits(langs) == german.entropy_bits()
    assert [s.key for s in sentences("val", 300, 2, langs=EN_DE)] == [
        s.key for s in sentences("val", 300, 2)]


def test_lm_corpus_stays_english_and_chinese():
    items = lm_corpus("val", 2000, seed=1)
    assert {it.lang for it in items} == {"en", "zh"}
    assert all(it.text == it.sentence.render(it.lang) for it in items)
    assert default_world().stats(500)["content_words"].keys() == {"en", "zh"}


# ----------------------------------------------------------------------------- languages

def test_constructions_without_german(world):
    d = world.domains
    sang = Construction("sang", "statement", "p:person",
                        {"en": "{p} sang.", "zh": "{p}唱歌了。"}, d)
    met = Construction("met", "statement", "p:person q:person!=p",
                       {"en": "{p} met {q}.", "zh": "{p}见到了{q}。", "de": "{p} traf {q}."}, d)
    g = Grammar(d, [sang, met])
    assert sang.langs == ("en", "zh") and met.langs == ("en", "zh", "de")
    with pytest.raises(ValueError, match="'sang' has no 'de' template"):
        Sentence(sang, (0,), g.bits_of(sang, (0,))).render("de")
    assert g.restrict(("en", "zh")) is g
    en_de = g.restrict(EN_DE)
    assert en_de.constructions == (met,) and en_de.n == 1
    rng = random.Random(0)
    drawn = [en_de.sample(rng) for _ in range(200)]
    assert {s.name for s in drawn} == {"met"}
    # K = 1 construction, then 20 people and 19 others: exactly log2(20 * 19) bits
    assert all(s.bits == pytest.approx(math.log2(20 * 19)) for s in drawn)
    assert g.bits_of(met, drawn[0].values) == pytest.approx(drawn[0].bits + 1)
    assert en_de.parse("Alice traf Tom.", "de").values == (0, 5)
    assert g.parse("Alice sang.", "de") is None and g.parse("Alice sang.", "en") is not None
    with pytest.raises(ValueError, match="no construction renders"):
        Grammar(d, [sang]).restrict(("de",))
    with pytest.raises(ValueError, match="unknown template languages"):
        Construction("x", "statement", "p:person", {"en": "{p}.", "fr": "{p}."}, d)


def test_bad_languages_name_the_allowed_values(world):
    with pytest.raises(ConfigError, match="en, zh, de"):
        world.parse("Hallo.", "fr")
    with pytest.raises(ConfigError, match="en, zh, de"):
        world.sentences("train", 3, langs=("en", "fr"))
    with pytest.raises(ConfigError, match="at least one"):
        world.sentences("train", 3, langs=())


# ----------------------------------------------------------------------------- format, reuse

def test_german_surface_format(sample):
    _, texts = sample
    for t in texts:
        assert t[-1] in ".?" and t[0].isupper(), t
        assert "  " not in t and t == t.strip() and ",," not in t, t
        assert not re.search("[\u4e00-\u9fff]", t), t
        assert 8 <= len(t.split()) <= 26, t
        assert unicodedata.normalize("NFKC", t) == t, t
    assert any("ß" in t for t in texts) and any("ü" in t for t in texts)


def test_german_vocabulary_is_reachable(world, sample):
    sents, texts = sample
    blob = "\n".join(texts)
    lower = blob.lower()  # parts of the day occur inside compounds: Montagmorgen
    jobs = set(world.domains["job"].form("de", "w"))  # lemmas; a woman's job is Ärztin
    missing = [w for w in world.vocabulary("de") if w not in jobs and w.lower() not in lower]
    assert not missing, missing[:10]
    assert all(j in blob for j in world.domains["person"].form("de", "job"))


def test_german_mentions(world, sample):
    sents, texts = sample
    function_words = {"der", "die", "das", "den", "dem", "ein", "eine", "einen", "im", "am",
                      "zum", "zur", "in der", "an der", "auf dem", "auf der", "es"}
    n_pron = 0
    for s, t in zip(sents[:2000], texts[:2000], strict=True):
        assert "".join(g.text for g in s.segments("de")) == t
        ms = s.mentions("de")
        assert all(t[m.start:m.end] == m.text for m in ms)
        assert not any(m.text in function_words for m in ms), t
        pron = [m for m in ms if m.kind == "PRON"]
        assert all(m.domain == "person" and m.text in ("er", "sie", "ihn", "ihm", "ihr",
                                                        "seinem", "ihrem") for m in pron), t
        n_pron += len(pron)
        assert {m.value for m in ms if m.kind == "PER"} == {
            s.value(n) for n, d in zip(s.construction.slot_names, s.construction.domains,
                                       strict=True) if d.name == "person"}
        en_colours = [m.value for m in s.mentions("en") if m.kind == "COLOR"]
        assert [m.value for m in ms if m.kind == "COLOR"] == en_colours
    assert n_pron > 300
