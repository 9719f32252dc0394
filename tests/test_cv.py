"""``lmforge cv``: k-fold cross-validation of the fine-tuning recipes (lmforge.tasks.cv).

The folds against scikit-learn's own splitters, then end-to-end runs of tiny recipes (a
TextCNN topic classifier, a BiLSTM-CRF tagger, a TF-IDF baseline on a user's CSV): the
held-out parts cover the pool once, cv.json's mean and std are numpy's over the folds,
the held-out ceilings are the world's noise-free labels, completed folds are skipped on a
re-run and an interrupted one resumes; bad input is one line and exit 2."""

from __future__ import annotations

import csv
import json
import random
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from fakes import assert_user_error, run_cli

from lmforge.errors import LmforgeError
from lmforge.tasks.config import build_finetune_recipe
from lmforge.tasks.cv import cross_validate_recipe, make_folds

pytest.importorskip("sklearn")

QUIET = {"show_progress": False, "log": lambda _m: None}


def _train(steps: int) -> dict:
    return {"max_steps": steps, "batch_size": 16, "lr": 1e-2, "min_lr": 0.0,
            "warmup_steps": 5, "eval_every": steps // 2, "ckpt_every": steps,
            "keep_last": 1, "precision": "fp32", "threads": 1}


def _topic_recipe(steps: int = 60) -> dict:
    """A TextCNN (d 32, 32 filters) on 300 English world news items, 8 topics."""
    return {"run": {"name": "tiny-topic", "seed": 0},
            "data": {"world": "topic", "langs": ["en"], "max_length": 48,
                     "world_sizes": {"train": 240, "val": 60, "test": 80, "test_unseen": 40}},
            "backbone": {"encoder": "textcnn", "tokenizer": {"vocab_size": 500},
                         "encoder_config": {"d_emb": 32, "n_filters": 32,
                                            "kernel_sizes": [2, 3]}},
            "head": {"pooling": "max"}, "finetune": {"metric": "accuracy"},
            "train": _train(steps)}


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _sets(values: dict) -> list[str]:
    return [a for k, v in values.items() for a in ("--set", f"{k}={v}")]


# ----------------------------------------------------------------------------- the folds

def test_folds_are_seeded_disjoint_and_cover_the_records():
    from sklearn.model_selection import KFold

    folds = make_folds(103, 5, seed=7)
    assert folds == make_folds(103, 5, seed=7)
    assert folds != make_folds(103, 5, seed=8)
    flat = [i for part in folds for i in part]
    assert sorted(flat) == list(range(103))  # disjoint and covering
    assert sorted(len(p) for p in folds) == [20, 20, 21, 21, 21]
    ref = [sorted(t) for _, t in KFold(5, shuffle=True, random_state=7).split(range(103))]
    assert folds == ref


def test_stratified_folds_keep_the_class_proportions():
    from sklearn.model_selection import StratifiedKFold

    rng = random.Random(0)
    labels = ["a"] * 61 + ["b"] * 29 + ["c"] * 10
    rng.shuffle(labels)
    folds = make_folds(len(labels), 4, seed=3, labels=labels)
    assert sorted(i for p in folds for i in p) == list(range(len(labels)))
    for cls, total in Counter(labels).items():
        counts = [sum(labels[i] == cls for i in part) for part in folds]
        assert max(counts) - min(counts) <= 1 and sum(counts) == total
    ref = StratifiedKFold(4, shuffle=True, random_state=3).split(np.zeros(len(labels)), labels)
    assert folds == [sorted(t) for _, t in ref]
    plain = make_folds(len(labels), 4, seed=3)  # unstratified: the same sizes, other parts
    assert [len(p) for p in plain] == [len(p) for p in folds] and plain != folds


# ----------------------------------------------------------------------------- end to end

def test_cv_of_a_classifier_end_to_end_with_skip_and_resume(tmp_path):
    from lmforge.corpora.tasks import render_task_set

    raw = _topic_recipe()
    out = tmp_path / "cv"
    cv = cross_validate_recipe(build_finetune_recipe(raw), out, 3, stratified=True, **QUIET)
    assert cv == json.loads((out / "cv.json").read_text())
    assert cv["std"].endswith("(ddof=1)") and cv["metric"] == "accuracy"

    # the held-out parts: disjoint, covering the pool (train + val), one per fold
    folds = json.loads((out / "folds.json").read_text())
    assert folds["seed"] == 0 and folds["pool"] == {"train": 240, "val": 60}
    ts = render_task_set("topic", seed=0, sizes=raw["data"]["world_sizes"], langs=("en",))
    pool = ts.splits["train"] + ts.splits["val"]
    held_ids = []
    for k, part in enumerate(folds["held_out"], 1):
        val = _read_jsonl(out / f"fold_{k}" / "data" / "val.jsonl")
        train = _read_jsonl(out / f"fold_{k}" / "data" / "train.jsonl")
        assert [r["id"] for r in val] == [pool[i]["id"] for i in part]
        assert not {r["id"] for r in val} & {r["id"] for r in train}
        assert len(val) + len(train) == len(pool)
        held_ids += [r["id"] for r in val]
    assert sorted(held_ids) == sorted(r["id"] for r in pool)

    # per-fold figures are the fold runs' own; the summary is numpy's (sample std)
    for f in cv["per_fold"]:
        res = json.loads((Path(f["run_dir"]) / "results.json").read_text())
        assert f["splits"]["test"]["accuracy"] == res["splits"]["test"]["accuracy"]
        assert set(f["splits"]) == {"val", "test", "test_unseen"}
    for split in ("val", "test", "test_unseen"):
        for metric in ("accuracy", "f1_macro"):
            xs = [f["splits"][split][metric] for f in cv["per_fold"]]
            assert cv["summary"][split][metric]["mean"] == pytest.approx(np.mean(xs))
            assert cv["summary"][split][metric]["std"] == pytest.approx(np.std(xs, ddof=1))
    # a TextCNN learns the 8 topics well above chance (1/8) on held-out and test data
    assert cv["summary"]["val"]["accuracy"]["mean"] >= 0.6
    assert cv["summary"]["test"]["accuracy"]["mean"] >= 0.6

    # ceilings: the card's for test; for each held-out part, its noise-free share
    clean = {r["id"]: c for s in ("train", "val")
             for r, c in zip(ts.splits[s], ts.clean[s], strict=True)}
    for f, part in zip(cv["per_fold"], folds["held_out"], strict=True):
        exact = np.mean([pool[i]["label"] == clean[pool[i]["id"]] for i in part])
        assert f["splits"]["val"]["ceiling"] == pytest.approx(exact)
        assert f["splits"]["test"]["ceiling"] == ts.card["ceiling"]["test"]

    # a re-run skips the completed folds and gives the same cv.json
    stamps = {k: (out / f"fold_{k}" / "results.json").stat().st_mtime_ns for k in (1, 2, 3)}
    logs: list[str] = []
    again = cross_validate_recipe(build_finetune_recipe(raw), out, 3, stratified=True,
                                  show_progress=False, log=logs.append)
    assert again == cv
    assert sum("complete, skipped" in m for m in logs) == 3
    assert stamps == {k: (out / f"fold_{k}" / "results.json").stat().st_mtime_ns
                      for k in (1, 2, 3)}

    # an interrupted fold (a checkpoint, no results) needs --resume, then continues
    (out / "fold_2" / "results.json").unlink()
    with pytest.raises(LmforgeError, match="--resume"):
        cross_validate_recipe(build_finetune_recipe(raw), out, 3, stratified=True, **QUIET)
    resumed = cross_validate_recipe(build_finetune_recipe(raw), out, 3, stratified=True,
                                    resume=True, **QUIET)
    assert resumed["per_fold"][1]["splits"] == cv["per_fold"][1]["splits"]
    assert stamps[1] == (out / "fold_1" / "results.json").stat().st_mtime_ns


def test_cv_of_a_tagger_end_to_end(tmp_path):
    raw = {"run": {"name": "tiny-ner", "seed": 0},
           "data": {"world": "ner", "langs": ["en"], "max_length": 48,
                    "world_sizes": {"train": 150, "val": 30, "test": 60, "test_unseen": 30}},
           "backbone": {"encoder": "bilstm", "tokenizer": {"vocab_size": 400},
                        "encoder_config": {"d_emb": 32, "hidden": 32}},
           "head": {"head": "crf"}, "train": _train(100)}
    recipe = build_finetune_recipe(raw)
    with pytest.raises(LmforgeError, match="--stratified"):
        cross_validate_recipe(recipe, tmp_path / "s", 3, stratified=True, **QUIET)
    cv = cross_validate_recipe(recipe, tmp_path / "cv", 3, **QUIET)
    assert cv["task"] == "tag" and cv["metric"] == "entity_f1"
    assert len(cv["per_fold"]) == 3 and [f["n_train"] for f in cv["per_fold"]] == [120] * 3
    xs = [f["splits"]["val"]["entity_f1"] for f in cv["per_fold"]]
    assert cv["summary"]["val"]["entity_f1"]["std"] == pytest.approx(np.std(xs, ddof=1))
    # the entity spans survive the fold files: a BiLSTM-CRF tags held-out sentences well
    assert cv["summary"]["val"]["entity_f1"]["mean"] >= 0.8
    assert cv["summary"]["test"]["entity_f1"]["mean"] >= 0.8
    assert all(f["splits"][s]["ceiling"] == 1.0 for f in cv["per_fold"]
               for s in ("val", "test"))


# ----------------------------------------------------------------------------- the CLI

def _csv(path: Path, n: int, seed: int) -> Path:
    """A CSV with ``sentence`` and ``polarity`` columns: two words decide the label."""
    rng = random.Random(seed)
    things, good, bad = ["food", "room", "film", "staff"], ["great", "lovely"], ["awful",
                                                                              "rude"]
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["sentence", "polarity"])
        for _ in range(n):
            pos = rng.random() < 0.5
            w.writerow([f"the {rng.choice(things)} was {rng.choice(good if pos else bad)} "
                        f"{rng.choice(['today', 'again', 'there'])}", "pos" if pos else "neg"])
    return path


def test_cli_cross_validates_a_users_csv_and_guards_its_folder(tmp_path, capsys):
    data = _csv(tmp_path / "reviews.csv", 90, 0)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"run: {{name: csv, seed: 0}}\n"
                      f"data: {{train: {data}, text_field: sentence, label_field: polarity}}\n"
                      "backbone: {classical: tfidf-logreg}\n", encoding="utf-8")
    out = tmp_path / "cv"
    code, stdout, _ = run_cli(["cv", str(recipe), "--folds", "3", "--stratified", "--out",
                               str(out), "--no-progress"], capsys)
    assert code == 0
    assert "mean ± std" in stdout and "ddof=1" in stdout
    cv = json.loads((out / "cv.json").read_text())
    assert sum(f["splits"]["val"]["n"] for f in cv["per_fold"]) == 90  # the whole file
    assert cv["summary"]["val"]["accuracy"]["mean"] >= 0.95
    assert cv["per_fold"][0]["splits"]["val"]["ceiling"] is None  # no card for a file
    first = _read_jsonl(out / "fold_1" / "data" / "train.jsonl")[0]
    assert set(first) == {"text", "label"}
    # the same folder with another seed, or another recipe: refused, nothing run
    assert_user_error(["cv", str(recipe), "--folds", "3", "--stratified", "--out", str(out),
                       "--set", "run.seed=1"], capsys, "folds.json", "another --out")
    assert_user_error(["cv", str(recipe), "--folds", "3", "--stratified", "--out", str(out),
                       "--set", "backbone.classical=tfidf-svm"], capsys,
                      "fold_1 was run with another recipe", "backbone")


@pytest.mark.parametrize("args, fragments", [
    (["--folds", "1"], ["--folds must be an integer >= 2, got 1"]),
    (["--folds", "20"], ["--folds 20 exceeds the 15 records"]),
    (["--folds", "8", "--stratified"], ["--stratified: label", "fewer than the 8 folds"]),
])
def test_cli_bad_fold_counts_are_one_line(tmp_path, capsys, args, fragments):
    sizes = "{train: 12, val: 3, test: 10, test_unseen: 10, contrast: 10}"
    assert_user_error(["cv", "classify-tfidf", *args, "--out", str(tmp_path / "cv"),
                       "--set", f"data.world_sizes={sizes}"], capsys, *fragments)
    assert not (tmp_path / "cv").exists()


@pytest.mark.parametrize("recipe, fragment", [
    ("translate-gru-en-de", "task is translate"),
    ("qa-extractive-bert", "task is extract"),
])
def test_cli_refuses_tasks_without_cross_validation(tmp_path, capsys, recipe, fragment):
    sets = _sets({"data.world_sizes": "{train: 20, val: 5, test: 5, test_unseen: 5}"}
                 ) if recipe.startswith("qa") else []
    assert_user_error(["cv", recipe, "--out", str(tmp_path / "cv"), *sets], capsys,
                      "lmforge cv supports classification, NER and relation", fragment)
