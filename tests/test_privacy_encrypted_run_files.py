"""A run trained with a key keeps no plaintext results (issue 18 §3, encryption at rest).

With a key active, a fine-tuning run's own ``metrics.jsonl``, ``results.json``,
``confusion.json`` and ``errors.jsonl`` (and ``loss.png``, ``confusion.png``) are written
encrypted: the only plaintext file of the run folder is its recipe, ``config.yaml``, and
no file holds a record's text or a label. The readers decrypt with the key: an encrypted
run interrupted after its checkpoint and resumed ends with exactly the metrics, results
and errors of the uninterrupted plaintext run of the same seed, ``lmforge evaluate``
prints what it prints for that run, tuning reads the same evaluations, and ``lmforge
cv``'s library function re-reads encrypted folds as it reads plain ones. Without the key
every reader is the one-line error that names the key options (exit 2 in the CLI), not a
JSON traceback. Without a key the files are plaintext, as before."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fakes import assert_user_error, one_line_error, run_cli
from test_finetune import _recipe, _sentiment, _write_jsonl
from test_privacy_encrypted_load import KEY, _snapshot
from test_privacy_encrypted_outputs import keys  # noqa: F401 (a fixture)
from test_resume_recipes import InterruptAt, Interrupted

from lmforge.errors import ConfigError
from lmforge.io import read_json
from lmforge.privacy.crypto import is_encrypted
from lmforge.privacy.encrypted_io import read_bytes, using_key
from lmforge.tasks.config import build_finetune_recipe
from lmforge.tasks.finetune import finetune
from lmforge.train.metrics_log import MetricsLog, read_metrics, truncate_after

QUIET = {"show_progress": False, "log": lambda m: None}
TRAIN = {"schedule": "constant", "warmup_steps": 0, "log_every": 5, "eval_every": 5,
         "ckpt_every": 10, "threads": 1}
RESULTS = ("metrics.jsonl", "results.json", "confusion.json", "errors.jsonl")
# words of every record (tests/test_finetune.py's sentiment sets) and the labels as JSON
SECRETS = (b"food", b"hotel", b"film", "饭菜".encode(), "酒店".encode(), b'"positive"',
           b'"negative"')


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """A TextCNN sentiment classifier, 20 steps, plain; the same recipe with a key,
    interrupted at step 15 (after its step-10 checkpoint and the step-15 evaluation,
    whose lines the resume drops) and resumed with the key; and the test file."""
    d = tmp_path_factory.mktemp("runs")
    files = tuple(_write_jsonl(d / f"{s}.jsonl", _sentiment(n, i))
                  for i, (s, n) in enumerate([("train", 100), ("val", 20), ("test", 20)]))
    recipes = {name: build_finetune_recipe(_recipe(d / name, *files, steps=20, train=TRAIN))
               for name in ("plain", "enc")}
    finetune(recipes["plain"], **QUIET)
    with using_key(KEY):
        with pytest.raises(Interrupted):
            finetune(recipes["enc"], callbacks=[InterruptAt(15, "step")], **QUIET)
        enc = d / "enc" / "run"
        assert max(r["step"] for r in read_metrics(enc / "metrics.jsonl")) == 15
        finetune(recipes["enc"], resume=True, **QUIET)
    return {"plain": d / "plain" / "run", "enc": enc, "test": Path(files[2])}


def _measured(records: list[dict]) -> list[dict]:
    """Metrics lines without the wall-clock fields."""
    return [{k: v for k, v in r.items() if k not in ("time", "ex_per_s", "tok_per_s")}
            for r in records]


def test_a_keyed_run_folder_holds_no_plaintext_result(runs):
    assert all(not is_encrypted(runs["plain"] / name) for name in RESULTS)
    files = [p for p in runs["enc"].rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {*RESULTS, "loss.png", "confusion.png"}
    for p in files:
        data = p.read_bytes()
        assert not any(s in data for s in SECRETS), p
        if p.name == "config.yaml":  # the recipe: the one plaintext file (docs/privacy.md)
            continue
        assert is_encrypted(p), p
        for text in (data, *data.splitlines()[:1]):
            with pytest.raises(ValueError):
                json.loads(text)


def test_the_resumed_keyed_run_equals_the_uninterrupted_plain_run(runs):
    plain, enc = runs["plain"], runs["enc"]
    with using_key(KEY):
        assert _measured(read_metrics(enc / "metrics.jsonl")) \
            == _measured(read_metrics(plain / "metrics.jsonl"))
        for name in ("confusion.json", "errors.jsonl"):  # byte for byte
            assert read_bytes(enc / name) == (plain / name).read_bytes()
        got, want = read_json(enc / "results.json"), read_json(plain / "results.json")
    assert got.pop("best_checkpoint") == str(enc / "checkpoints" / "step_0000020")
    want.pop("best_checkpoint")
    assert got == want and got["splits"]["test"]["n"] == 20


def test_tuning_reads_the_evaluations_of_a_keyed_run(runs):
    from lmforge.tune.study import evaluations

    want = evaluations(runs["plain"], "val_accuracy")
    assert [s for s, _ in want] == [5, 10, 15, 20]
    with using_key(KEY):
        assert evaluations(runs["enc"], "val_accuracy") == want


def test_evaluate_with_the_key_prints_what_the_plain_run_gives(runs, keys, capsys):  # noqa: F811
    args = ["evaluate", "RUN", "--data", str(runs["test"])]
    code, want, err = run_cli([str(runs["plain"]) if a == "RUN" else a for a in args], capsys)
    assert code == 0 and "accuracy" in want, err
    enc = [str(runs["enc"]) if a == "RUN" else a for a in args]
    code, got, err = run_cli(enc + ["--key-file", keys["key"]], capsys)
    assert code == 0, err
    assert got == want
    assert_user_error(enc, capsys, "is encrypted", "--key-file")


def test_every_reader_without_the_key_is_one_line(runs):
    from lmforge.tune.study import evaluations

    enc = runs["enc"]
    before = _snapshot(enc)
    for call in (lambda: read_metrics(enc / "metrics.jsonl"),
                 lambda: truncate_after(enc / "metrics.jsonl", 10),
                 lambda: evaluations(enc, "val_accuracy"),
                 lambda: read_json(enc / "results.json"),
                 lambda: MetricsLog(enc / "metrics.jsonl", fresh=False)):
        msg = one_line_error(ConfigError, call)
        assert "is encrypted; give its key with --key-file" in msg
    assert _snapshot(enc) == before


def test_a_keyed_metrics_log_is_the_plain_log_encrypted(tmp_path):
    """Lines reach the disk at each sync only, encrypted, and decrypt to the plain log's
    bytes; a resumed log keeps the earlier lines; truncation keeps it encrypted."""
    rows = [{"step": s, "loss": 1 / s, "note": "损失"} for s in (1, 2, 3)]
    plain, enc = tmp_path / "plain.jsonl", tmp_path / "enc.jsonl"
    log = MetricsLog(plain, fresh=True)
    for r in rows:
        log.write(r)
    log.close()
    with using_key(KEY):
        log = MetricsLog(enc, fresh=True)
        log.write(rows[0])
        assert read_bytes(enc) == b""  # written at the next sync
        log.sync()
        log.write(rows[1])
        log.close()
        log = MetricsLog(enc, fresh=False)
        log.write(rows[2])
        log.close()
        assert is_encrypted(enc) and read_bytes(enc) == plain.read_bytes()
        assert truncate_after(enc, 2) == rows[:2]
        assert is_encrypted(enc) and read_metrics(enc) == rows[:2]


def test_cv_rereads_its_encrypted_folds(tmp_path, runs):
    """A keyed cv: every fold's files, its data splits, ``folds.json`` and ``cv.json``
    encrypted; a re-run skips the
    complete folds, reading their encrypted ``results.json``, to the same summary; without
    the key it is the one-line error."""
    pytest.importorskip("sklearn")
    from lmforge.tasks.cv import cross_validate_recipe

    raw = _recipe(tmp_path, *(str(runs["test"].with_name(f"{s}.jsonl"))
                              for s in ("train", "val", "test")), steps=4,
                  train={**TRAIN, "eval_every": 4, "ckpt_every": 4})
    recipe = build_finetune_recipe(raw)
    out = tmp_path / "cv"
    with using_key(KEY):
        cv = cross_validate_recipe(recipe, out, folds=2, **QUIET)
        assert all(is_encrypted(out / f"fold_{k}" / name) for k in (1, 2) for name in RESULTS)
        assert is_encrypted(out / "cv.json") and read_json(out / "cv.json") == cv
        # no plaintext copy of the data: the folds' and the fixed splits are encrypted
        data = [*out.glob("data/*.jsonl"), *out.glob("fold_*/data/*.jsonl")]
        assert len(data) >= 5 and all(is_encrypted(p) for p in data), data
        assert is_encrypted(out / "folds.json")
        assert cross_validate_recipe(recipe, out, folds=2, **QUIET) == cv
    msg = one_line_error(ConfigError, cross_validate_recipe, recipe, out, folds=2, **QUIET)
    assert "folds.json is encrypted; give its key" in msg
