"""Quality of the text-to-text recipes on the world's sets, against their ceilings (slow:
minutes; ``pytest -m slow``). The full-recipe figures are in docs/tasks.md."""

from __future__ import annotations

import json

import pytest

from lmforge.tasks.config import load_finetune_recipe
from lmforge.tasks.seq2seq import finetune_seq2seq

pytestmark = pytest.mark.slow


def test_transformer_translates_english_to_german(tmp_path):
    # 600 of the recipe's 1,500 steps on 20,000 pairs: validation BLEU was 96.6 at step
    # 500 of the full recipe (2026-12-05); the bar of the issue is 90 on test
    sizes = {"train": 20000, "val": 100, "test": 300, "test_long": 20, "test_unseen": 100,
             "test_compositional": 100}
    r = load_finetune_recipe("translate-transformer-en-de", [
        f"run.out_dir={tmp_path / 'mt'}", f"data.world_sizes={json.dumps(sizes)}",
        "train.max_steps=600", "train.eval_every=300", "train.ckpt_every=300"])
    s = finetune_seq2seq(r, show_progress=False, log=lambda m: None).results["splits"]
    assert s["test"]["bleu"] >= 90 and s["test"]["ceiling"] == 100.0
    assert "tok:13a" in s["test"]["bleu_signature"]
    assert s["test_compositional"]["bleu"] >= 80  # known colours in new constructions
    assert s["test_unseen"]["bleu"] >= 40  # names mostly lost (66 with the full recipe)
