"""The world's control set: news items with an opinion whose sentiment, topic and language
codes the world reads back exactly, and a grammar that accepts what the world renders and
rejects what it never would."""

from __future__ import annotations

import pytest

from lmforge.control.codes import ControlError, code_token, parse_controls
from lmforge.corpora.tasks import control as C
from lmforge.corpora.tasks import render_task_set, write_task_set
from lmforge.corpora.tasks.entities import cast

SIZES = {"train": 800, "val": 100, "test": 100, "test_unseen": 200}


@pytest.fixture(scope="module")
def ts():
    return render_task_set("control", seed=5, sizes=SIZES)


def test_deterministic_sizes_no_repeats_and_uniform_codes(ts):
    again = render_task_set("control", seed=5, sizes=SIZES)
    assert again.splits == ts.splits and again.card == ts.card
    assert {s: len(r) for s, r in ts.splits.items()} == SIZES
    texts = [r["text"] for recs in ts.splits.values() for r in recs]
    assert len(set(texts)) == len(texts)
    train = ts.splits["train"]
    for kind, values in C.CONTROLS.items():
        share = {v: sum(r[kind] == v for r in train) / len(train) for v in values}
        assert all(abs(s - 1 / len(values)) < 0.06 for s in share.values()), (kind, share)
    assert ts.card["ceiling"]["test"] == {"sentiment": 1.0, "topic": 1.0, "lang": 1.0,
                                          "grammatical": 1.0}


def test_the_world_reads_every_items_codes_back(ts):
    for recs in ts.splits.values():
        for r in recs:
            assert C.judge(r["text"]) == {"lang": r["lang"], "topic": r["topic"],
                                          "sentiment": r["sentiment"], "grammatical": True}, r


def test_unseen_split_uses_only_held_out_names(ts):
    seen_names = {e.name(lang) for kind in ("PER", "CITY") for e in cast().pool(kind, False)
                  for lang in ("en", "zh")}
    unseen_names = {e.name(lang) for kind in ("PER", "CITY") for e in cast().pool(kind, True)
                    for lang in ("en", "zh")}
    for r in ts.splits["test_unseen"]:
        assert not any(n in r["text"] for n in seen_names - unseen_names if len(n) > 3), r
    assert any(any(n in r["text"] for n in unseen_names) for r in ts.splits["test_unseen"])


@pytest.mark.parametrize("text,lang", [
    ("The battery was delicious.", "en"),                   # adjective that does not fit
    ("The fans was friendly.", "en"),                       # agreement
    ("The match was very.", "en"),                          # no adjective
    ("Zorblax beat Golden Eagles 2 to 1 in Mumbai on Thursday.", "en"),  # not a club
    ("Golden Eagles beat Silver Foxes 12 to 1 in Mumbai on Thursday.", "en"),  # N is 2..9
    ("The match was boring, but.", "en"),
    ("match the was boring.", "en"),
    ("电池很好吃。", "zh"),
    ("比赛很很精彩。", "zh"),
    ("球迷友好粗鲁。", "zh"),
])
def test_grammar_rejects_what_the_world_never_renders(text, lang):
    assert not C.grammar(lang).accepts(text)


@pytest.mark.parametrize("text,lang", [
    ("The fans were friendly.", "en"),
    ("The match wasn't boring at all, and the stadium was very clean.", "en"),
    ("Although the screen is dim, the battery is really durable.", "en"),
    ("The prices were okay.", "en"),
    ("However, the trains were not very fast.", "en"),
    ("The clinic was neither noisy nor quiet.", "en"),
    ("比赛一点也不无聊,但是球场有点脏。", "zh"),
    ("虽然电池不太耐用,但是屏幕非常清晰。", "zh"),
    ("医生既不粗鲁也不友好。", "zh"),
])
def test_grammar_accepts_every_opinion_form(text, lang):
    assert C.grammar(lang).accepts(text)


def test_judge_reads_sentiment_by_the_rules_and_topic_by_the_headline():
    lead = "Silver Foxes beat Golden Eagles 2 to 1 in Mumbai on Thursday."
    j = C.judge(lead + " The match was interesting, but the fans were very rude.")
    assert j == {"lang": "en", "topic": "sport", "sentiment": "negative",
                 "grammatical": True}
    j = C.judge("The match was interesting. " + lead)  # the lead decides the topic
    assert j["topic"] is None and j["sentiment"] == "positive" and j["grammatical"]
    j = C.judge("北京连续下了三天雨。天气不冷。")
    assert j == {"lang": "zh", "topic": "weather", "sentiment": "positive",
                 "grammatical": True}


def test_write_task_set_round_trips(ts, tmp_path):
    import json

    out = write_task_set(ts, tmp_path / "control")
    rows = [json.loads(x) for x in (out / "test.jsonl").read_text("utf-8").splitlines()]
    assert rows == ts.splits["test"]
    assert json.loads((out / "card.json").read_text("utf-8"))["controls"]["lang"] == ["en",
                                                                                      "zh"]


def test_parse_controls():
    assert parse_controls("negative, sport, zh") == {"sentiment": "negative",
                                                     "topic": "sport", "lang": "zh"}
    assert parse_controls("zh,topic=food") == {"lang": "zh", "topic": "food"}
    assert parse_controls("") == {}
    assert code_token("topic", "sport") == "<|topic=sport|>"
    for bad, msg in (("angry, sport", "unknown value"), ("mood=positive", "unknown kind"),
                     ("positive, negative", "twice"), ("topic=positive", "unknown value")):
        with pytest.raises(ControlError, match=msg) as e:
            parse_controls(bad)
        assert "\n" not in str(e.value)
