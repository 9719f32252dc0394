"""Tiny trained parents for the compression tests: a GPT on the world corpus, a BERT
sentiment classifier and a BERT CRF tagger (MLM-pretrained on the world, then
fine-tuned), each in seconds. Each trains only as long as the tests' bars need (the
measured figures are in the docstrings): the fixtures are built once per test file and
worker, several times in a ``make test``."""

from __future__ import annotations

from pathlib import Path

QUIET = {"show_progress": False, "log": lambda _m: None}


def tiny_lm_run(out: Path, steps: int = 60) -> Path:
    """A 2-layer GPT (d 64, 4 heads) trained ``steps`` on 3,000 world sentences. Measured
    at 60 steps (seeds 1337, 1, 2): int8 and int8-dynamic move its bits per sentence by
    at most 0.06% and int4 (g=32) with int8 tables by at most 0.36%, against the tests'
    bars of 1% and 3% (at 150 steps, seed 1337: 0.07% and 0.09%)."""
    from lmforge.config import load_recipe, resolve_recipe_path
    from lmforge.pretrain import pretrain

    recipe = load_recipe(resolve_recipe_path("quickstart"), [
        f"run.out_dir={out}", "data.world_train_sentences=3000",
        "data.world_eval_sentences=100", "tokenizer.vocab_size=384", "model.n_layer=2",
        "model.d_model=64", "model.n_head=4", "model.n_kv_head=4",
        f"train.max_steps={steps}", f"train.eval_every={steps}", f"train.ckpt_every={steps}",
        "train.warmup_steps=10", "train.precision=fp32", "train.device=cpu",
        "train.threads=1", "sample.prompts=[]"])
    return pretrain(recipe, **QUIET).run_dir


def tiny_bert_backbone(mlm_steps: int) -> dict:
    """A 2-layer BERT (d 64, 4 heads, WordPiece 512) MLM-pretrained on 2,000 world
    sentences for ``mlm_steps``, as a fine-tuning recipe's backbone section."""
    return {"pretrain": "bert-world", "pretrain_set": [
        "data.world_train_sentences=2000", "tokenizer.vocab_size=512", "model.n_layer=2",
        "model.n_head=4", "model.d_model=64", f"train.max_steps={mlm_steps}",
        f"train.eval_every={mlm_steps}", f"train.ckpt_every={mlm_steps}",
        "train.warmup_steps=5", "train.precision=fp32", "train.threads=1"]}


def tiny_train(steps: int, warmup: int) -> dict:
    """The fine-tuning section of the tiny task runs: fp32, one thread, one checkpoint."""
    return {"max_steps": steps, "batch_size": 32, "lr": 2e-3, "min_lr": 0.0,
            "warmup_steps": warmup, "eval_every": steps, "ckpt_every": steps,
            "keep_last": 1, "precision": "fp32", "threads": 1}


def tiny_classifier_run(out: Path, steps: int = 20, mlm_steps: int = 10) -> Path:
    """A 2-layer BERT (d 64, 4 heads) sentiment classifier on 300 English reviews. No test
    needs it to be accurate (it predicts the majority class, 34% test accuracy; so did the
    earlier 1,500 reviews, 60 MLM and 120 fine-tuning steps, 35%, at 2.6x the time), only
    to be a classifier run with its own WordPiece vocabulary."""
    from lmforge.tasks.config import build_finetune_recipe
    from lmforge.tasks.finetune import finetune

    raw = {
        "run": {"name": "tiny-sentiment", "out_dir": str(out), "seed": 0},
        "data": {"world": "sentiment", "langs": ["en"], "max_length": 64,
                 "world_sizes": {"train": 300, "val": 50, "test": 50,
                                 "test_unseen": 20, "contrast": 10}},
        "backbone": tiny_bert_backbone(mlm_steps),
        "head": {"pooling": "mean", "dropout": 0.0},
        "train": tiny_train(steps, warmup=10),
    }
    return finetune(build_finetune_recipe(raw), **QUIET).run_dir


def tiny_ner_run(out: Path, steps: int = 40, mlm_steps: int = 10) -> Path:
    """A 2-layer BERT with a CRF head tagging the world's English NER sentences: test
    entity F1 0.50-0.55 (seeds 0, 1, 2; 0.50 with 30 MLM steps), int8's the same to
    0.001: its bar (0.05) compares two real taggers."""
    from lmforge.tasks.config import build_finetune_recipe
    from lmforge.tasks.finetune import finetune

    raw = {
        "run": {"name": "tiny-ner", "out_dir": str(out), "seed": 0},
        "data": {"world": "ner", "langs": ["en"], "max_length": 64,
                 "world_sizes": {"train": 600, "val": 50, "test": 100, "test_unseen": 10}},
        "backbone": tiny_bert_backbone(mlm_steps),
        "head": {"head": "crf", "dropout": 0.0},
        "train": tiny_train(steps, warmup=5),
    }
    return finetune(build_finetune_recipe(raw), **QUIET).run_dir
