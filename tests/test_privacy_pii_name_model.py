"""The learned person-name recognizer (lmforge/privacy/pii/name_model.py): its shape
statistics, a fresh fit's quality on documents it never saw, the shipped model's gain
over the rules alone, and the guard against a model file that does not match the code."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("faker")
pytest.importorskip("jieba")

from lmforge.privacy.pii import analyze  # noqa: E402
from lmforge.privacy.pii.analyzer import DEFAULT_THRESHOLD  # noqa: E402
from lmforge.privacy.pii.evalset import en_name, render_pii_set, score, zh_name  # noqa: E402
from lmforge.privacy.pii.name_model import (  # noqa: E402
    en_shape,
    learned_names,
    load_model,
    zh_char_stats,
)
from lmforge.privacy.pii.name_training import en_training_names, train, zh_name_drawer  # noqa: E402
from lmforge.privacy.pii.names import rule_names  # noqa: E402
from lmforge.privacy.pii.spans import resolve_overlaps  # noqa: E402


def test_shape_statistics_tell_names_from_words():
    given, surnames, _, _ = zh_char_stats()
    assert min(given[c] for c in "丽华伟芳") > max(given.get(c, -99) for c in "的了是在")
    assert surnames["王"] > surnames.get("由", -99)
    for name, word in (("Shetty", "present"), ("Aarav", "about"), ("Murthy", "question")):
        assert en_shape(name) > en_shape(word), (name, word)


def test_training_names_are_not_the_evaluation_names():
    """The training names come from other lists than the evaluation's (Faker's zh_CN
    given names; en_GB and en_IN): most evaluation names are never trained on."""
    import random

    draw = zh_name_drawer(random.Random(0))
    trained = {draw("") for _ in range(3000)}
    rng = random.Random(1)
    evaluated = [zh_name(rng) for _ in range(300)]
    assert sum(n in trained for n in evaluated) < 0.2 * len(evaluated)
    first, last = en_training_names()
    pairs = [en_name(rng).split(" ", 1) for _ in range(300)]
    assert sum(f in first and s in last for f, s in pairs) < 0.2 * len(pairs)


@pytest.fixture(scope="module")
def small_model():
    return train(n=60, seed=7)


def _names(model):
    """The analyzer's PERSON spans from the rules, and from ``model`` unless None."""
    def predict(text):
        found = rule_names(text) + (learned_names(text, model) if model else [])
        return resolve_overlaps([s for s in found if s.score >= DEFAULT_THRESHOLD])
    return predict


@pytest.mark.parametrize("lang", ["zh", "en"])
def test_a_fresh_fit_finds_names_in_documents_it_never_saw(small_model, lang):
    """Fitted on 60 documents per template set, the model (with the rules) finds names
    in other documents of those templates carrying Faker's names, which it never saw,
    clearly better than the rules alone (F2: presidio-research's measure)."""
    docs = render_pii_set(lang, 150, 3, "heldout2")
    both = score(docs, _names(small_model), ("PERSON",))["PERSON"]
    rules = score(docs, _names(None), ("PERSON",))["PERSON"]
    assert both["precision"] >= 0.95 and both["recall"] >= 0.92, both
    assert both["f2"] >= rules["f2"] + 0.05, (both, rules)


def test_the_shipped_model_in_the_analyzer():
    """New phrasings the rules miss: a name with no label, title or jieba tag."""
    for text, name in (("旅客刘丹丹，护照已过期。", "刘丹丹"), ("会议纪要由林瑜整理，请审阅。", "林瑜"),
                       ("Aarush Shetty will present; questions afterwards.", "Aarush Shetty")):
        assert name not in [text[s.start:s.end] for s in _names(None)(text)]
        found = [text[s.start:s.end] for s in analyze(text, ["PERSON"])]
        assert found == [name], (text, found)
    for text in ("马上就到，方便的话一起去黄金海岸。", "The Red Cross and General Electric sponsored it."):
        assert analyze(text, ["PERSON"]) == []


def test_a_model_file_for_other_features_is_refused(tmp_path):
    model = json.loads(json.dumps(load_model()))
    model["zh"]["features"] = model["zh"]["features"][:-1]
    path = tmp_path / "name_model.json"
    path.write_text(json.dumps(model), encoding="utf-8")
    with pytest.raises(ValueError, match="zh features differ.*name_training"):
        load_model(str(path))
