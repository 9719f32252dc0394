"""Quality of the built-in fine-tuning recipes on the world's task sets, each against the
set's ceiling (slow: minutes each; ``pytest -m slow``). The figures are recorded in
docs/tasks.md."""

from __future__ import annotations

import pytest

from lmforge.tasks.config import load_finetune_recipe
from lmforge.tasks.finetune import finetune

pytestmark = pytest.mark.slow


def _run(tmp_path, recipe: str, *sets: str) -> dict:
    r = load_finetune_recipe(recipe, [f"run.out_dir={tmp_path / recipe}", *sets])
    return finetune(r, show_progress=False, log=lambda m: None).results["splits"]


def test_topic_textcnn_reaches_97_percent(tmp_path):
    s = _run(tmp_path, "classify-topic")
    assert s["test"]["accuracy"] >= 0.97
    assert s["test"]["accuracy"] <= s["test"]["ceiling"] + 1e-9


def test_ner_bilstm_crf_and_bert_crf(tmp_path):
    bilstm = _run(tmp_path, "ner-bilstm-crf")
    assert bilstm["test"]["entity_f1"] >= 0.97
    bert = _run(tmp_path, "ner-bert-crf")
    assert bert["test"]["entity_f1"] >= 0.97
    assert bert["test_unseen"]["entity_f1"] >= 0.90


def test_relations_bert_markers(tmp_path):
    s = _run(tmp_path, "re-bert")
    assert s["test"]["relation_f1"] >= 0.95


def test_sentiment_bert_near_ceiling_and_tfidf_below(tmp_path):
    bert = _run(tmp_path, "classify-sentiment")
    assert bert["test"]["accuracy"] >= 0.97
    assert bert["test"]["accuracy"] >= bert["test"]["ceiling"] - 0.01
    tfidf = _run(tmp_path, "classify-tfidf")
    assert tfidf["test"]["accuracy"] <= bert["test"]["accuracy"] - 0.1
    assert tfidf["contrast"]["accuracy"] < bert["contrast"]["accuracy"]
