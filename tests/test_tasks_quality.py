"""Quality of the built-in fine-tuning recipes on the world's task sets, each against the
set's ceiling (slow: minutes each; ``pytest -m slow``). The measured figures are in
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
    assert s["test_unseen"]["accuracy"] >= 0.92  # 0.95 measured; unseen names are OOV


def test_ner_bilstm_crf_entity_f1(tmp_path):
    s = _run(tmp_path, "ner-bilstm-crf")
    assert s["test"]["entity_f1"] >= 0.97
    assert s["test"]["entity_f1_strict"] >= 0.97
    assert s["test_unseen"]["entity_f1"] >= 0.8


def test_relations_bert_typed_markers(tmp_path):
    s = _run(tmp_path, "re-bert")
    assert s["test"]["relation_f1"] >= 0.95
    assert s["test_unseen"]["relation_f1"] >= 0.9


def test_ner_bert_crf_finds_unseen_names(tmp_path):
    s = _run(tmp_path, "ner-bert-crf")
    assert s["test"]["entity_f1"] >= 0.97
    # 1,500 steps: 0.922 (1 thread); 1,000 steps gave 0.896 / 0.893 (1 / 2 threads) once
    # the WordPiece vocabulary became deterministic. Without mention replacement: 0.616.
    assert s["test_unseen"]["entity_f1"] >= 0.90


def test_minilm_pretrained_beats_the_same_architecture_from_scratch(tmp_path):
    # a third of the recipe's 300 steps (which give 0.977 against 0.586 from scratch),
    # on smaller evaluation splits: the 22.7M-parameter model is the slowest test here
    short = ["train.max_steps=100", "train.warmup_steps=10", "train.eval_every=100",
             "train.ckpt_every=100",
             "data.world_sizes={val: 200, test: 500, test_unseen: 100, contrast: 100}"]
    pre = _run(tmp_path / "pre", "classify-sentiment-minilm", *short)
    scratch = _run(tmp_path / "scratch", "classify-sentiment-minilm", *short,
                   "backbone.init=random")
    assert pre["test"]["accuracy"] >= 0.9
    assert pre["test"]["accuracy"] >= scratch["test"]["accuracy"] + 0.2


def test_sentiment_bert_head_near_its_ceiling(tmp_path):
    # the full recipe (MLM on mostly reviews, 750 Muon steps of 64): 0.978 / 0.972 / 0.973
    # on seeds 0-2 with AVX2 kernels (mean 0.974, ceiling 0.982); the bound leaves room
    # for the thread count and the kernels, which move a run by about a point
    s = _run(tmp_path, "classify-sentiment")
    assert s["test"]["accuracy"] >= 0.955
    assert s["test"]["accuracy"] <= s["test"]["ceiling"] + 1e-9
    # contrast pairs (600 items; a bag of words gets 0.48, TF-IDF 0.63): 0.993-1.000 on
    # seeds 0-2; an earlier recipe gave 0.968 on one CI run
    assert s["contrast"]["accuracy"] >= 0.95
    assert s["test_unseen"]["accuracy"] >= 0.92  # 0.945-0.952 measured
