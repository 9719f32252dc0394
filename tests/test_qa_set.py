"""The world's QA set: pages that scatter facts, answer spans that match, answers checked
against the fact base, unanswerable questions whose fact is on no page, multihop chains,
the unseen split, the retrieval ceiling, Chinese items, and the SQuAD v2.0 export."""

from __future__ import annotations

import json
import re
import time
from collections import Counter

import pytest

from lmforge.corpora.tasks import TASK_SETS, render_task_set, write_task_set
from lmforge.corpora.tasks.entities import cast
from lmforge.corpora.tasks.qa import pages, profiles, to_squad
from lmforge.corpora.tasks.relations import fact_base
from lmforge.corpora.world.lexicon import ACTIVITIES
from lmforge.errors import ConfigError

CJK = re.compile(r"[\u4e00-\u9fff〇]")
SMALL = {"train": 200, "val": 30, "test": 60, "test_unseen": 60}
KIND = {"PER": "person", "ORG": "organisation", "CITY": "city"}
ENTITIES = {e.en: e for e in (*cast().people, *cast().orgs, *cast().cities)}

# Words that state a fact (ours, not the module's): each answer span lies in a sentence
# with one of them; for the facts of EXCLUSIVE, every sentence of the page with one of
# them holds the answer, so the page states no other value.
CUES = {
    "birth_city": (("born",), ("出生",)), "birth_year": (("born",), ("出生",)),
    "home_city": (("lives in", "lived in"), ("住",)),
    "employer": (("works for", "worked at", "joined", " is a", " is an"),
                 ("担任", "加入", "工作", "的")),
    "role": (("works for", " is a", " is an"), ("担任", "的")),
    "start_year": (("joined", "since"), ("加入", "起就在")),
    "friend": (("closest friend",), ("最好的朋友",)),
    "hobby": (("pastime", "free time"), ("爱好", "业余")),
    "seat": (("based in", "headquarters"), ("总部",)),
    "founded": (("founded", "established"), ("成立", "创建")),
    "employees": (("employs", "staff"), ("员工",)),
    "country": (("lies in", "part of"), ("位于", "属于")),
    "food": (("famous", "known all over"), ("闻名",)),
    "festival": (("festival",), ("花节",)),
    "population": (("population", "inhabitants"), ("人口", "居民")),
}
EXCLUSIVE = set(CUES) - {"employer", "role"}
# Words any statement of a fact the collection never states would need.
NEVER_CUES = {
    "colour": ("colour", "color", "颜色"),
    "siblings": ("sibling", "brother", "sister", "兄弟", "姐妹"),
    "move_year": ("moved", "settle", "搬", "定居"),
    "school": ("studied", "attended", "school", "graduat", "毕业", "读书", "上学"),
    "spouse": ("married", "husband", "wife", "spouse", "结婚", "配偶", "丈夫", "妻子"),
    "founder": ("founder", "founded by", "创办", "创始", "创立"),
    "chief": ("chief", "runs ", "head of", "负责人", "首席", "执行官"),
    "revenue": ("revenue", "earn", "made ", "收入", "营业额", "赚"),
    "mayor": ("mayor", "市长"), "area": ("square", "area", "面积", "平方"),
    "city_founded": ("founded", "established", "建立", "建于", "历史"),
}


@pytest.fixture(scope="module")
def ts():
    start = time.perf_counter()
    out = render_task_set("qa", seed=0)
    out.card["_seconds"] = time.perf_counter() - start
    return out


@pytest.fixture(scope="module")
def docs(ts):
    return {d["id"]: d for d in ts.documents}


def _records(ts):
    return [r for recs in ts.splits.values() for r in recs]


def _sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=[.。])\s*", text) if s]


def _sentence_at(text: str, start: int) -> str:
    left = max(text.rfind(". ", 0, start) + 1, text.rfind("。", 0, start) + 1,
               text.rfind("\n", 0, start) + 1)
    right = min(i for i in (text.find(".", start), text.find("。", start), len(text)) if i >= 0)
    return text[left:right + 1]


def _cues(fact: str, lang: str) -> tuple[str, ...]:
    en, zh = CUES[fact]
    return zh if lang == "zh" else en


def _value(x, lang: str) -> str:
    return x.name(lang) if hasattr(x, "name") else x[lang == "zh"]


# ----------------------------------------------------------------------------- API

def test_sizes_types_languages_speed_and_card(ts):
    assert ts.card["_seconds"] < 3  # about 0.15 s on one core
    want = {"train": 4000, "val": 500, "test": 1000, "test_unseen": 1000}
    assert {s: len(r) for s, r in ts.splits.items()} == want == ts.card["sizes"]
    for split, recs in ts.splits.items():
        n = len(recs)
        types = Counter(r["type"] for r in recs)
        assert types == {"unanswerable": round(n / 3), "multihop": round(n / 6),
                         "single": n - round(n / 3) - round(n / 6)}
        assert ts.card["type_distribution"][split] == dict(types)
        for t in types:  # each type alternates the languages
            langs = Counter(r["lang"] for r in recs if r["type"] == t)
            assert abs(langs["en"] - langs["zh"]) <= 1
        src = ts.card["unanswerable_sources"][split]
        assert src["never_stated"] + src["not_on_page"] == types["unanswerable"]
        assert src["not_on_page"] > 0
        assert ts.card["ceiling"][split] == {
            "exact_match": 1.0, "f1": 1.0, "answerable_exact_match": 1.0,
            "unanswerable_exact_match": 1.0, "retrieval_recall_at_1": 1.0}
    assert ts.card["documents"]["count"] == len(ts.documents) == 2 * len(ENTITIES)
    assert ts.card["documents"]["by_kind"] == {"city": 72, "organisation": 84, "person": 96}
    questions = [r["question"] for r in _records(ts)]
    assert len(set(questions)) == len(questions)  # no question text twice
    assert "qa" in TASK_SETS


def test_deterministic_and_seed_dependent():
    a = render_task_set("qa", seed=5, sizes=SMALL)
    b = render_task_set("qa", seed=5, sizes=SMALL)
    c = render_task_set("qa", seed=6, sizes=SMALL)
    assert a.splits == b.splits and a.documents == b.documents and a.card == b.card
    assert a.splits != c.splits and a.documents != c.documents
    assert profiles(5) != profiles(6)


def test_one_language_renders_at_half_the_default_sizes():
    en = render_task_set("qa", seed=0, langs=("en",))
    assert {k: len(v) for k, v in en.splits.items()} == {
        "val": 250, "test": 500, "test_unseen": 500, "train": 2000}
    assert {r["lang"] for v in en.splits.values() for r in v} == {"en"}


def test_bad_arguments_raise_config_errors(ts):
    with pytest.raises(ConfigError, match="allowed: train, val, test, test_unseen"):
        render_task_set("qa", sizes={"dev": 3})
    with pytest.raises(ConfigError, match=r"sizes\['val'\] must be an integer >= 0"):
        render_task_set("qa", sizes={"val": -1})
    with pytest.raises(ConfigError, match=r"sizes\['test_unseen'\]=3000 is more than the qa set"):
        render_task_set("qa", sizes={"test_unseen": 3000})
    with pytest.raises(ConfigError, match="langs must be"):
        render_task_set("qa", langs=("en", "fr"))
    with pytest.raises(ConfigError, match="unknown split 'dev'; known: val, test"):
        to_squad(ts, "dev")
    with pytest.raises(ConfigError, match="to_squad needs the 'qa' task set; got 'topic'"):
        to_squad(render_task_set("topic", sizes={"train": 2, "val": 2, "test": 2,
                                                 "test_unseen": 2}), "train")


# ----------------------------------------------------------------------------- pages

def test_every_entity_has_a_page_per_language_that_scatters_its_facts():
    book = pages(0)
    facts = profiles(0)
    assert len(book) == 2 * len(ENTITIES)
    for page in book.values():
        e = page.entity
        assert page.id == f"{page.lang}/{KIND[e.kind]}/{e.en}"
        paragraphs = page.text.split("\n\n")
        assert 3 <= len(paragraphs) <= 6
        # every paragraph mixes sentences: each holds at least two
        assert all(len(_sentences(p)) >= 2 for p in paragraphs)
        assert page.text.startswith(e.name(page.lang))
        # each fact the profile holds is stated, with its value at its spans
        assert set(page.spans) == set(facts[e.en])
        where = set()
        for fact, spans in page.spans.items():
            for s, t in spans:
                assert page.text[s:t] == _value(facts[e.en][fact], page.lang)
                where.add(page.text[:s].count("\n\n"))
        assert len(where) >= 2  # facts over two paragraphs at least
        others = [x for x in (*ENTITIES.values(), *cast().countries)
                  if x != e and x.name(page.lang) in page.text]
        assert others  # distractors for a keyword retriever


def test_pages_keep_to_one_side_of_the_partition(docs):
    names = {side: [n for e in ENTITIES.values() if e.unseen == side for n in (e.en, e.zh)]
             for side in (False, True)}
    for d in docs.values():
        assert d["unseen"] == ENTITIES[d["entity"]].unseen
        assert not [n for n in names[not d["unseen"]] if n in d["text"]], d["id"]


# ----------------------------------------------------------------------------- answers

def test_every_answer_span_matches_its_context(ts, docs):
    for r in _records(ts):
        context = docs[r["context_id"]]["text"]
        assert r["context_id"] == r["doc_ids"][-1]
        assert r["is_impossible"] == (r["type"] == "unanswerable") == (not r["answers"])
        assert len({a["text"] for a in r["answers"]}) <= 1  # one value, maybe twice named
        for a in r["answers"]:
            assert context[a["answer_start"]:a["answer_start"] + len(a["text"])] == a["text"]


def test_single_answers_are_the_stated_fact(ts, docs):
    base, c = fact_base(0), cast()
    oracle = {"birth_city": lambda e: base.born[e.en], "home_city": lambda e: base.lives[e.en],
              "employer": lambda e: base.works[e.en], "friend": lambda e: base.friends[e.en][0],
              "seat": lambda e: c.city(e.home), "country": lambda e: c.country(e.home)}
    seen = Counter()
    for r in _records(ts):
        if r["type"] != "single":
            continue
        e, lang = ENTITIES[r["entity"]], r["lang"]
        assert r["doc_ids"] == [f"{lang}/{KIND[e.kind]}/{e.en}"]
        text = docs[r["context_id"]]["text"]
        answer = r["answers"][0]["text"]
        if r["fact"] in oracle:
            assert answer == oracle[r["fact"]](e).name(lang), r
            seen[r["fact"]] += 1
        for a in r["answers"]:
            sentence = _sentence_at(text, a["answer_start"])
            assert any(w in sentence for w in _cues(r["fact"], lang)), r
        if r["fact"] in EXCLUSIVE:  # no other sentence states another value
            for s in _sentences(text):
                if any(w in s for w in _cues(r["fact"], lang)):
                    assert answer in s, (r, s)
    assert set(seen) == set(oracle)


def test_unanswerable_facts_are_on_no_page(ts, docs):
    book = list(docs.values())
    sources = Counter()
    for r in _records(ts):
        if r["type"] != "unanswerable":
            continue
        e, lang, fact = ENTITIES[r["entity"]], r["lang"], r["fact"]
        page = f"{lang}/{KIND[e.kind]}/{e.en}"
        assert r["doc_ids"] == [page] and r["answers"] == []
        text = docs[page]["text"]
        if fact in NEVER_CUES:
            cues = NEVER_CUES[fact]
            sources["never"] += 1
        else:  # an optional fact this entity's page leaves out
            assert fact not in profiles(0)[e.en]
            cues = _cues(fact, lang)
            sources["left_out"] += 1
            if fact == "hobby":
                for act in ACTIVITIES:
                    pat = re.escape(act[1]) if lang == "zh" else rf"\b{re.escape(act[0])}\b"
                    assert not re.search(pat, text), (r, act)
        assert not any(w in text for w in cues), r
        # nor does any sentence of the collection that names the entity
        name = e.name(lang)
        for d in book:
            if d["lang"] == lang and name in d["text"]:
                for s in _sentences(d["text"]):
                    assert not (name in s and any(w in s for w in cues)), (r, s)
    assert sources["never"] and sources["left_out"]


def test_multihop_chains_follow_the_fact_base(ts, docs):
    base, c, facts = fact_base(0), cast(), profiles(0)
    chains = {  # chain -> (bridge of a person, the answer from the bridge)
        "birth_country": (lambda p: base.born[p], lambda b: c.country(b.home)),
        "home_country": (lambda p: base.lives[p], lambda b: c.country(b.home)),
        "employer_seat": (lambda p: base.works[p], lambda b: c.city(b.home)),
        "employer_founded": (lambda p: base.works[p], lambda b: facts[b.en]["founded"]),
        "friend_home": (lambda p: base.friends[p][0], lambda b: base.lives[b.en]),
        "friend_employer": (lambda p: base.friends[p][0], lambda b: base.works[b.en]),
    }
    seen = Counter()
    for r in _records(ts):
        if r["type"] != "multihop":
            continue
        e, lang = ENTITIES[r["entity"]], r["lang"]
        bridge_of, answer_of = chains[r["fact"]]
        bridge = bridge_of(e.en)
        first = f"{lang}/person/{e.en}"
        assert r["doc_ids"] == [first, f"{lang}/{KIND[bridge.kind]}/{bridge.en}"], r
        assert bridge.name(lang) in docs[first]["text"]  # the first page names the bridge
        assert r["answers"] and {a["text"] for a in r["answers"]} == {
            _value(answer_of(bridge), lang)}, r
        seen[r["fact"]] += 1
    assert set(seen) == set(chains)


def test_unseen_entities_only_in_test_unseen(ts, docs):
    unseen_names = [n for e in ENTITIES.values() if e.unseen for n in (e.en, e.zh)]
    seen_names = [n for e in ENTITIES.values() if not e.unseen for n in (e.en, e.zh)]
    for split, recs in ts.splits.items():
        held_out = split == "test_unseen"
        for r in recs:
            assert ENTITIES[r["entity"]].unseen == held_out
            assert all(docs[d]["unseen"] == held_out for d in r["doc_ids"])
            other = seen_names if held_out else unseen_names
            assert not [n for n in other if n in r["question"]], r


def test_the_first_entity_a_question_names_is_its_subject(ts):
    """The retrieval ceiling: the page titled with the first named entity is gold."""
    names = {lang: [(e.name(lang), e) for e in ENTITIES.values()] for lang in ("en", "zh")}
    for r in _records(ts):
        found = [(r["question"].find(n), e) for n, e in names[r["lang"]] if n in r["question"]]
        subject = min(found, key=lambda x: x[0])[1]
        assert subject.en == r["entity"], r
        assert r["doc_ids"][0] == f"{r['lang']}/{KIND[subject.kind]}/{subject.en}"


def test_chinese_items_are_chinese(ts, docs):
    for r in _records(ts):
        if r["lang"] == "zh":
            assert CJK.search(r["question"])
            assert all(CJK.fullmatch(ch) for a in r["answers"] for ch in a["text"]), r
        else:
            assert not CJK.search(r["question"] + "".join(a["text"] for a in r["answers"]))
    for d in docs.values():
        assert bool(CJK.search(d["text"])) == (d["lang"] == "zh")
    only_zh = render_task_set("qa", sizes=SMALL, langs=("zh",))
    assert {r["lang"] for r in _records(only_zh)} == {"zh"}
    assert {d["lang"] for d in only_zh.documents} == {"zh"}


# ----------------------------------------------------------------------------- files

def test_files_and_squad_round_trip(tmp_path):
    small = render_task_set("qa", seed=1, sizes=SMALL)
    out = write_task_set(small, tmp_path / "qa")
    docs = [json.loads(x) for x in (out / "docs.jsonl").read_text("utf-8").splitlines()]
    assert docs == small.documents
    assert json.loads((out / "card.json").read_text("utf-8"))["task"] == "qa"
    for split, recs in small.splits.items():
        lines = (out / f"{split}.jsonl").read_text("utf-8").splitlines()
        assert [json.loads(x) for x in lines] == recs
        with open(out / f"{split}.squad.json", encoding="utf-8") as f:
            squad = json.load(f)
        assert squad["version"] == "v2.0"
        by_id = {r["id"]: r for r in recs}
        got = []
        for article in squad["data"]:
            assert set(article) == {"title", "paragraphs"} and len(article["paragraphs"]) == 1
            para = article["paragraphs"][0]
            assert para["context"] == next(d["text"] for d in docs if d["id"] == article["title"])
            for qa in para["qas"]:
                assert set(qa) == {"id", "question", "answers", "is_impossible"}
                r = by_id[qa["id"]]
                assert r["context_id"] == article["title"] and qa["question"] == r["question"]
                assert qa["is_impossible"] == (qa["answers"] == [])
                for a in qa["answers"]:
                    assert set(a) == {"text", "answer_start"}
                    start = a["answer_start"]
                    assert para["context"][start:start + len(a["text"])] == a["text"]
                got.append(qa["id"])
        assert sorted(got) == sorted(by_id)  # every question once
