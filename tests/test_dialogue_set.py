"""The world's dialogue set: OpenAI-shaped chats whose answers state the QA world's facts,
follow-ups that refer back by pronoun, a scorer that accepts exactly the right answers,
and a closed-book ceiling computed from what training taught."""

from __future__ import annotations

import random

import pytest

from lmforge.chat import ChatTemplate, check_messages
from lmforge.corpora.tasks import render_task_set, write_task_set
from lmforge.corpora.tasks.dialogue import REFUSAL, answer_correct
from lmforge.corpora.tasks.entities import cast
from lmforge.corpora.tasks.qa import NEVER, profiles, surface_values

SIZES = {"train": 600, "val": 100, "test": 200, "test_unseen": 200}


@pytest.fixture(scope="module")
def ts():
    return render_task_set("dialogue", seed=3, sizes=SIZES)


def test_deterministic_shapes_and_no_repeats(ts):
    again = render_task_set("dialogue", seed=3, sizes=SIZES)
    assert again.splits == ts.splits and again.card == ts.card
    assert {s: len(d) for s, d in ts.splits.items()} == {**SIZES}
    seen = set()
    for split, ds in ts.splits.items():
        for d in ds:
            check_messages(d["messages"], d["id"])
            roles = [m["role"] for m in d["messages"] if m["role"] != "system"]
            assert roles == ["user", "assistant"] * len(d["turns"])
            assert 2 <= len(d["turns"]) <= 4
            key = tuple(m["content"] for m in d["messages"])
            assert key not in seen, (split, d["id"])
            seen.add(key)
    assert {d["lang"] for d in ts.splits["train"]} == {"en", "zh"}


def test_subjects_follow_the_partition(ts):
    unseen = {e.en for kind in ("PER", "ORG", "CITY") for e in cast().pool(kind, True)}
    for split, ds in ts.splits.items():
        assert all((d["subject"] in unseen) == (split == "test_unseen") for d in ds), split


def test_answers_state_the_qa_worlds_facts(ts):
    facts = profiles(3)
    n_unknown = 0
    for ds in ts.splits.values():
        for d in ds:
            mine = facts[d["subject"]]
            answers = [m["content"] for m in d["messages"] if m["role"] == "assistant"]
            for turn, answer in zip(d["turns"], answers, strict=True):
                if turn["known"]:
                    value = surface_values(mine, d["lang"])[turn["fact"]]
                    assert turn["value"] == value and value in answer
                else:
                    assert turn["fact"] not in mine
                    assert answer == REFUSAL[d["lang"] == "zh"]
                    n_unknown += 1
    share = n_unknown / sum(len(d["turns"]) for ds in ts.splits.values() for d in ds)
    assert 0.2 < share < 0.35


def test_follow_ups_refer_back_without_the_name(ts):
    by_en = {e.en: e for kind in ("PER", "ORG", "CITY") for e in cast().pool(kind, False)}
    for d in ts.splits["train"]:
        name = by_en[d["subject"]].name(d["lang"])
        questions = [m["content"] for m in d["messages"] if m["role"] == "user"]
        assert name in questions[0]
        assert not any(name in q for q in questions[1:]), questions


def test_scorer_accepts_exactly_the_right_answers(ts):
    rng = random.Random(0)
    facts = profiles(3)
    checked = 0
    for d in ts.splits["test"][:150]:
        answers = [m["content"] for m in d["messages"] if m["role"] == "assistant"]
        for turn, gold in zip(d["turns"], answers, strict=True):
            lang = d["lang"]
            assert answer_correct(gold, turn, lang, d["subject"], seed=3)
            if turn["known"]:
                assert not answer_correct(REFUSAL[lang == "zh"], turn, lang, d["subject"], 3)
                others = sorted({surface_values(f, lang)[turn["fact"]] for f in facts.values()
                                 if turn["fact"] in f} - {turn["value"]})
                wrong = gold.replace(turn["value"], rng.choice(others))
                assert not answer_correct(wrong, turn, lang, d["subject"], 3), wrong
                both = f"{gold} {rng.choice(others)}"
                assert not answer_correct(both, turn, lang, d["subject"], 3), both
                checked += 1
            elif turn["fact"] not in NEVER[{"person": "PER", "organisation": "ORG",
                                            "city": "CITY"}[d["kind"]]]:
                # an optional fact this subject lacks: naming anyone's value is wrong
                value = sorted(surface_values(f, lang)[turn["fact"]] for f in facts.values()
                               if turn["fact"] in f)[0]
                assert not answer_correct(value, turn, lang, d["subject"], 3)
    assert checked > 100


def test_closed_book_ceiling(ts):
    ceiling = ts.card["closed_book_ceiling"]
    assert ceiling["train"] == 1.0 and ts.card["ceiling"]["test"] == 1.0
    # no unseen subject is in train: only the never-stated facts' refusals are knowable
    never = {f for fs in NEVER.values() for f in fs}
    turns = [t for d in ts.splits["test_unseen"] for t in d["turns"]]
    assert ceiling["test_unseen"] == round(sum(t["fact"] in never for t in turns)
                                           / len(turns), 4)
    assert 0.9 < ceiling["test"] <= 1.0


def test_renders_with_the_chat_template_and_writes_jsonl(ts, tmp_path):
    d = ts.splits["val"][0]
    out = ChatTemplate.default().render(d["messages"], spans=True)
    want = [m["content"] + "<|im_end|>" for m in d["messages"] if m["role"] == "assistant"]
    assert [out.text[a:b] for a, b in out.spans] == want
    folder = write_task_set(ts, tmp_path / "dialogue")
    from lmforge.chat import read_chat_jsonl
    assert [r["messages"] for r in read_chat_jsonl(folder / "val.jsonl")] == \
        [d["messages"] for d in ts.splits["val"]]
