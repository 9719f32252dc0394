"""The world's translation set: exact targets, and the long, unseen and compositional
splits hold what their names promise."""

from __future__ import annotations

import pytest

from lmforge.corpora.tasks import render_task_set
from lmforge.corpora.tasks.entities import cast
from lmforge.corpora.tasks.translation import held_out, is_compositional
from lmforge.corpora.world import default_world
from lmforge.errors import ConfigError

SIZES = {"train": 3000, "val": 100, "test": 200, "test_long": 60, "test_unseen": 150,
         "test_compositional": 150}


@pytest.fixture(scope="module", params=[("en", "zh"), ("zh", "en"), ("en", "de"), ("de", "en")])
def ts(request):
    return render_task_set("translation", seed=3, sizes=SIZES, langs=request.param)


def test_deterministic_sizes_and_no_shared_source(ts):
    again = render_task_set("translation", seed=3, sizes=SIZES, langs=ts.card["langs"])
    assert again.splits == ts.splits
    assert ts.card["sizes"] == SIZES
    seen: set[str] = set()
    for records in ts.splits.values():
        sources = {r["src"] for r in records}
        assert len(sources) == len(records) and not sources & seen
        seen |= sources
    other = render_task_set("translation", seed=4, sizes=SIZES, langs=ts.card["langs"])
    assert other.splits["test"] != ts.splits["test"]


def test_targets_are_the_sources_derivation(ts):
    world = default_world()
    src, tgt = ts.card["langs"]
    for split in ("train", "test", "test_compositional"):
        for r in ts.splits[split][:300]:
            s = world.parse(r["src"], src)
            assert s is not None and s.name == r["construction"]
            assert s.render(tgt) == r["tgt"]
    assert all(v == {"exact_match": 1.0, "bleu": 100.0} for v in ts.card["ceiling"].values())


def test_compositional_pairs_never_reach_training(ts):
    world = default_world()
    src = ts.card["langs"][0]
    colour = world.domains["color"]
    for split in ("train", "val", "test"):
        assert not any(is_compositional(world.parse(r["src"], src)) for r in ts.splits[split])
    comp = [world.parse(r["src"], src) for r in ts.splits["test_compositional"]]
    assert all(is_compositional(s) for s in comp)
    # every held-out colour is known from training with some other construction
    train_colours = {v for r in ts.splits["train"]
                     for s in [world.parse(r["src"], src)]
                     for d, v in zip(s.construction.domains, s.values, strict=True)
                     if d.name == "color"}
    held = {v for c in world.constructions for v in held_out(c)}
    assert held <= train_colours and len(held) >= 6
    assert set(ts.card["held_out_colours"]) == {c.name for c in world.constructions
                                                if held_out(c)}
    assert {colour.labels[v] for c in world.constructions for v in held_out(c)} \
        == {x for v in ts.card["held_out_colours"].values() for x in v}


def test_long_sources_are_longer_than_any_training_source(ts):
    longest = max(len(r["src"]) for r in ts.splits["train"])
    assert ts.card["longest_train_source_chars"] == longest
    world = default_world()
    src, tgt = ts.card["langs"]
    for r in ts.splits["test_long"]:
        assert len(r["src"]) > longest and r["construction"].count("+") in (1, 2)
        assert not world.accepts(r["src"], src)  # not one sentence of the grammar


def test_each_side_is_in_its_language(ts):
    import re

    cjk = re.compile("[\u4e00-\u9fff]")
    for side, lang in zip(("src", "tgt"), ts.card["langs"], strict=True):
        for records in ts.splits.values():
            assert all(bool(cjk.search(r[side])) == (lang == "zh") for r in records)


def test_unseen_people_are_new_and_keep_their_pronouns(ts):
    src, tgt = ts.card["langs"]
    unseen = cast().pool("PER", True)
    train_text = " ".join(r["src"] + r["tgt"] for r in ts.splits["train"])
    for e in unseen:
        assert e.name(src) not in train_text and e.name(tgt) not in train_text
    for r in ts.splits["test_unseen"]:
        names = [e for e in unseen if e.name(src) in r["src"]]
        assert names and all(e.name(tgt) in r["tgt"] for e in names)
    en = [r["src" if src == "en" else "tgt"] for r in ts.splits["test_unseen"]]
    # a woman's pronoun follows an unseen woman's name when the sentence uses one
    women = [e.en for e in unseen if e.sub == "F"]
    hers = [t for t in en if " she " in t and all(e.en not in t for e in unseen
                                                  if e.sub == "M")]
    assert hers and all(any(w in t for w in women) for t in hers)


def test_bad_language_pairs_are_one_line_errors():
    for langs in [("en",), ("en", "en"), ("en", "fr"), ("en", "zh", "de")]:  # zh-de works
        with pytest.raises(ConfigError, match="langs=\\(source, target\\)"):
            render_task_set("translation", sizes=SIZES, langs=langs)
