"""More run files encrypted with a key (issue 18 §3, encryption at rest).

With a key active, a LoRA run's PEFT ``adapter/`` folder, a chat run's ``results.json`` and
``errors.jsonl``, a pretraining run's ``lmforge.json`` (with a DP run's privacy report
merged into it) and ``samples.txt``, and a pretrained backbone's ``backbone_text.txt`` are
written encrypted, and decrypt to exactly what the same run writes without a key; their
readers (:func:`lmforge.hf.peft.load_peft_adapter`, :func:`lmforge.io.read_json`, the
backbone's data preparation) give with the key what they give for the plaintext run, and
without it the one-line error naming the key options. ``lmforge cv`` and ``lmforge tune``
take the key options: a keyed cross-validation or study leaves its runs encrypted and
gives the plaintext one's numbers; without the key a re-run is one line, exit 2."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from fakes import assert_user_error, one_line_error, run_cli
from test_finetune import _recipe, sentiment_files, tiny_bert  # noqa: F401 (fixtures)
from test_privacy_encrypted_load import KEY, _snapshot
from test_privacy_encrypted_outputs import keys  # noqa: F401 (a fixture)

from lmforge.errors import ConfigError
from lmforge.io import read_json
from lmforge.privacy.crypto import is_encrypted
from lmforge.privacy.encrypted_io import read_bytes, using_key
from lmforge.tasks.config import build_finetune_recipe
from lmforge.tasks.finetune import finetune

QUIET = {"show_progress": False, "log": lambda m: None}
NO_KEY = "is encrypted; give its key with --key-file"


def _plain_and_keyed(build) -> dict[str, Path]:
    """``build(name)`` run twice, into ``name`` "plain" without a key and "enc" with
    ``KEY`` active; their run folders."""
    plain = build("plain")
    with using_key(KEY):
        enc = build("enc")
    return {"plain": Path(plain), "enc": Path(enc)}


def _assert_sealed_copy(plain: Path, enc: Path, names: tuple[str, ...]) -> None:
    """Each of ``names`` is plaintext in ``plain``, encrypted in ``enc``, and decrypts to
    the plaintext file's bytes."""
    for name in names:
        assert not is_encrypted(plain / name), name
        assert is_encrypted(enc / name), name
        with using_key(KEY):
            assert read_bytes(enc / name) == (plain / name).read_bytes(), name


# ----------------------------------------------------------------------- LoRA adapter


@pytest.fixture(scope="module")
def lora_runs(tmp_path_factory, sentiment_files, tiny_bert) -> dict[str, Path]:  # noqa: F811
    """A LoRA classifier on the tiny BERT (6 steps), plain and with a key."""
    d = tmp_path_factory.mktemp("lora")

    def build(name: str) -> Path:
        raw = _recipe(d / name, *sentiment_files, steps=6,
                      backbone={"encoder": None, "encoder_config": {}, "path": tiny_bert},
                      head={"pooling": "cls"},
                      train={"eval_every": 6, "ckpt_every": 6, "warmup_steps": 0,
                             "threads": 1},
                      finetune={"strategy": "lora", "lora": {"r": 4, "alpha": 8}})
        return finetune(build_finetune_recipe(raw), **QUIET).run_dir

    return {**_plain_and_keyed(build), "base": Path(tiny_bert)}


def _lora_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    from lmforge.nn.lora import lora_state_dict

    return {k: v.clone() for k, v in lora_state_dict(model).items()}


def test_a_keyed_lora_run_seals_its_peft_adapter(lora_runs):
    from lmforge.hf.peft import ADAPTER_CONFIG, ADAPTER_WEIGHTS

    plain, enc = lora_runs["plain"] / "adapter", lora_runs["enc"] / "adapter"
    assert {p.name for p in enc.iterdir()} == {ADAPTER_CONFIG, ADAPTER_WEIGHTS}
    assert b"lora_A" not in (enc / ADAPTER_WEIGHTS).read_bytes()
    assert b"peft_type" not in (enc / ADAPTER_CONFIG).read_bytes()
    _assert_sealed_copy(plain, enc, (ADAPTER_CONFIG, ADAPTER_WEIGHTS))


def test_the_sealed_adapter_loads_with_the_key_as_the_plain_one(lora_runs):
    from lmforge.hf.peft import load_peft_adapter
    from lmforge.hub import load_pretrained

    def fresh() -> torch.nn.Module:
        return load_pretrained(lora_runs["base"])[0]

    model = fresh()
    want_cfg = load_peft_adapter(model, lora_runs["plain"] / "adapter")
    want = _lora_state(model)
    model = fresh()
    with using_key(KEY):
        assert load_peft_adapter(model, lora_runs["enc"] / "adapter") == want_cfg
    got = _lora_state(model)
    assert got.keys() == want.keys()
    assert any(v.abs().sum() > 0 for k, v in want.items() if "lora_B" in k)  # trained
    assert all(torch.equal(got[k], want[k]) for k in want)
    model = fresh()
    before = _snapshot(lora_runs["enc"] / "adapter")
    msg = one_line_error(ConfigError, load_peft_adapter, model, lora_runs["enc"] / "adapter")
    assert NO_KEY in msg and "adapter_config.json" in msg
    assert getattr(model, "lora_config", None) is None  # left as it was
    assert _snapshot(lora_runs["enc"] / "adapter") == before


def test_a_keyed_lora_run_merges_with_the_key_as_the_plain_run(lora_runs, tmp_path, keys,  # noqa: F811
                                                              capsys):
    from lmforge.tasks import merge_task_lora
    from lmforge.tasks.predictor import load_task_model

    texts = ["the film was great today", "the hotel was awful today"]
    want = load_task_model(merge_task_lora(lora_runs["plain"], tmp_path / "plain")
                           ).predict(texts)
    with using_key(KEY):
        merged = merge_task_lora(lora_runs["enc"], tmp_path / "enc")
        assert load_task_model(merged).predict(texts) == want
    assert all(is_encrypted(p) for p in merged.iterdir())
    msg = one_line_error(ConfigError, merge_task_lora, lora_runs["enc"], tmp_path / "none")
    assert NO_KEY in msg and not (tmp_path / "none").exists()
    # the command takes the key options
    code, _, err = run_cli(["lora", "merge", str(lora_runs["enc"]), "--out",
                            str(tmp_path / "cli"), "--key-file", keys["key"]], capsys)
    assert code == 0, err
    assert all(is_encrypted(p) for p in (tmp_path / "cli").iterdir())
    with using_key(KEY):
        assert load_task_model(tmp_path / "cli").predict(texts) == want
    assert_user_error(["lora", "merge", str(lora_runs["enc"]), "--out", str(tmp_path / "no")],
                      capsys, NO_KEY)


# ------------------------------------------------------------------- TF-IDF baseline


def test_a_keyed_tfidf_baseline_seals_its_model_folder(tmp_path, sentiment_files):  # noqa: F811
    """A TF-IDF + logistic regression run with a key writes its ``classical/`` model
    encrypted; loaded with the key it predicts as the plain run; without, one line."""
    pytest.importorskip("sklearn")
    from lmforge.tasks.predictor import load_task_model

    def build(name: str) -> Path:
        raw = {"run": {"out_dir": str(tmp_path / name), "seed": 0},
               "data": {"train": sentiment_files[0], "val": sentiment_files[1],
                        "test": [sentiment_files[2]]},
               "backbone": {"classical": "tfidf-logreg"}}
        return finetune(build_finetune_recipe(raw), **QUIET).run_dir

    runs = _plain_and_keyed(build)
    model = sorted(p.name for p in (runs["plain"] / "classical").iterdir())
    assert model and sorted(p.name for p in (runs["enc"] / "classical").iterdir()) == model
    _assert_sealed_copy(runs["plain"] / "classical", runs["enc"] / "classical", tuple(model))
    texts = ["the film was great today", "the hotel was awful today"]
    want = load_task_model(runs["plain"]).predict(texts)
    with using_key(KEY):
        assert load_task_model(runs["enc"]).predict(texts) == want
    assert NO_KEY in one_line_error(ConfigError, load_task_model, runs["enc"])


# ------------------------------------------------------------------------------- chat


@pytest.fixture(scope="module")
def chat_runs(tmp_path_factory) -> dict[str, Path]:
    """A chat run on the world's dialogues (4 steps; its test errors are written), plain
    and with a key."""
    from test_chat_recipe import TINY

    from lmforge.chat.finetune import finetune_chat
    from lmforge.tasks.config import load_finetune_recipe

    d = tmp_path_factory.mktemp("chat")
    sizes = {"train": 20, "val": 4, "test": 4, "test_unseen": 0}

    def build(name: str) -> Path:
        r = load_finetune_recipe("chat-world", [
            f"run.out_dir={d / name}", *TINY, f"data.world_sizes={json.dumps(sizes)}",
            "data.langs=[en]", "data.val_dialogues=2", "train.max_steps=4",
            "train.eval_every=4", "train.ckpt_every=4"])
        return finetune_chat(r, **QUIET).run_dir

    return _plain_and_keyed(build)


def test_a_keyed_chat_run_seals_its_results_and_errors(chat_runs):
    plain, enc = chat_runs["plain"], chat_runs["enc"]
    assert (plain / "errors.jsonl").stat().st_size > 0
    _assert_sealed_copy(plain, enc, ("errors.jsonl",))
    assert not is_encrypted(plain / "results.json") and is_encrypted(enc / "results.json")
    with using_key(KEY):
        got, want = read_json(enc / "results.json"), read_json(plain / "results.json")
    assert got.pop("best_checkpoint") == str(enc / "checkpoints" / "step_0000004")
    want.pop("best_checkpoint")
    assert got == want and "test" in got["splits"]
    plaintext = {p.relative_to(enc).as_posix() for p in enc.rglob("*")
                 if p.is_file() and not is_encrypted(p)}
    assert plaintext == {"config.yaml"}, plaintext
    before = _snapshot(enc)
    assert NO_KEY in one_line_error(ConfigError, read_json, enc / "results.json")
    assert _snapshot(enc) == before


# ------------------------------------------------------------- pretraining, with DP


@pytest.fixture(scope="module")
def dp_pretraining(tmp_path_factory, keys) -> dict[str, Path]:  # noqa: F811
    """``lmforge pretrain`` of a 1-layer char GPT with DP-SGD (3 steps) and two sample
    prompts, plain and with ``--key-file``: the run's ``lmforge.json`` is written at the
    start, the privacy report merged into it at the checkpoint."""
    pytest.importorskip("opacus")
    from test_privacy_dp import tiny_dp_pretraining

    d = tmp_path_factory.mktemp("dp")
    sets = {**tiny_dp_pretraining(d), "sample.prompts": '["the ", "a "]',
            "sample.max_new_tokens": 8}
    threads = torch.get_num_threads()
    runs = {}
    for name, key in (("plain", []), ("enc", ["--key-file", keys["key"]])):
        args = [a for k, v in {**sets, "run.out_dir": d / name}.items()
                for a in ("--set", f"{k}={v}")]
        code, _, err = run_cli(["pretrain", "quickstart", "--no-progress", *args, *key])
        assert code == 0, err
        runs[name] = d / name
    torch.set_num_threads(threads)
    return runs


def test_a_keyed_pretraining_run_seals_lmforge_json_and_samples(dp_pretraining):
    plain, enc = dp_pretraining["plain"], dp_pretraining["enc"]
    _assert_sealed_copy(plain, enc, ("samples.txt",))
    assert not is_encrypted(plain / "lmforge.json") and is_encrypted(enc / "lmforge.json")
    with using_key(KEY):
        got, want = read_json(enc / "lmforge.json"), read_json(plain / "lmforge.json")
    assert got.pop("started") and want.pop("started")
    assert got == want and want["privacy"]["steps"] == 3  # DP's report, merged with the key
    plaintext = {p.relative_to(enc).as_posix() for p in enc.rglob("*")
                 if p.is_file() and not is_encrypted(p)}
    assert {p for p in plaintext if not p.startswith("data/")} == {"config.yaml", "data.json"}
    assert NO_KEY in one_line_error(ConfigError, read_json, enc / "lmforge.json")


# ---------------------------------------------------------- a backbone's task text


@pytest.fixture(scope="module")
def backbone_runs(tmp_path_factory, sentiment_files) -> dict[str, Path]:  # noqa: F811
    """A classifier whose 2-layer BERT backbone is MLM-pretrained first (4 steps) on 300
    world sentences and the task's training texts (``backbone_text.txt``), then
    fine-tuned 4 steps; plain and with a key."""
    from compress_fixtures import tiny_bert_backbone

    d = tmp_path_factory.mktemp("backbone")
    backbone = tiny_bert_backbone(4)
    backbone["pretrain_set"] = [*backbone["pretrain_set"], "data.world_train_sentences=300"]

    def build(name: str) -> Path:
        raw = _recipe(d / name, *sentiment_files, steps=4,
                      backbone={"encoder": None, "encoder_config": {}, **backbone},
                      head={"pooling": "cls"},
                      train={"eval_every": 4, "ckpt_every": 4, "warmup_steps": 0,
                             "threads": 1, "precision": "fp32"})
        return finetune(build_finetune_recipe(raw), **QUIET).run_dir

    return _plain_and_keyed(build)


def test_a_keyed_backbone_pretrains_on_its_sealed_task_text(backbone_runs):
    plain, enc = backbone_runs["plain"], backbone_runs["enc"]
    text = (plain / "backbone_text.txt").read_text(encoding="utf-8")
    assert "the hotel was" in text
    _assert_sealed_copy(plain, enc, ("backbone_text.txt",))
    # read in memory, the task text gives the backbone the plain run's token shards
    shards = sorted(p.name for p in (plain / "backbone" / "data").glob("*.bin"))
    assert shards
    for name in shards:
        assert (enc / "backbone" / "data" / name).read_bytes() \
            == (plain / "backbone" / "data" / name).read_bytes(), name
    with using_key(KEY):
        got, want = read_json(enc / "results.json"), read_json(plain / "results.json")
    assert _without_run_dirs(got) == _without_run_dirs(want)


def test_encrypted_inputs_give_the_documents_of_the_plain_files(tmp_path):
    """The data readers read an encrypted input (txt, jsonl, csv, parquet) as the plain
    file: the same documents, split the same way (a byte-order mark, CRLF, blank and
    whitespace lines, no final newline), with the key, in memory; without it, the one-line
    error."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    from lmforge.data.readers import iter_documents
    from lmforge.privacy.encrypted_io import write_bytes

    table = io.BytesIO()
    pq.write_table(pa.table({"text": ["p 一", None, "  ", "q"]}), table)
    files = {"t.txt": "\ufeffone 一\r\n\n  \ntwo\r\n\t\nthree\rfour\n\nfive".encode(),
             "r.jsonl": '{"text": "a row"}\n\n{"text": "b 行"}\n'.encode(),
             "c.csv": b'text,label\n"x, y",1\nz,0\n', "t.parquet": table.getvalue()}
    for name, data in files.items():
        (tmp_path / f"plain_{name}").write_bytes(data)
        write_bytes(tmp_path / f"enc_{name}", data, KEY)

    def docs(prefix: str) -> list[str]:
        return [d.text for d in iter_documents([tmp_path / f"{prefix}_{n}" for n in files])]

    want = docs("plain")
    assert want == ["one 一", "two", "three\rfour", "five", "a row", "b 行", "x, y", "z",
                    "p 一", "q"]
    with using_key(KEY):
        assert docs("enc") == want
    assert NO_KEY in one_line_error(ConfigError, docs, "enc")


# ---------------------------------------------------------------- lmforge cv and tune


# 10 steps, evaluated at 5 and 10, of test_tune's tiny TextCNN topic classifier
SHORT = ["--set", "train.max_steps=10", "--set", "train.eval_every=5", "--set",
         "train.ckpt_every=10"]


def _cli_twice(capsys, keys, args_of: Callable[[str], list[str]],  # noqa: F811
               where: Path) -> dict[str, Path]:
    """``lmforge ARGS --out WHERE/plain`` and ``... --out WHERE/enc --key-file K``, with
    ``ARGS = args_of(name)``; the two output folders."""
    for name, key in (("plain", []), ("enc", ["--key-file", keys["key"]])):
        code, _, err = run_cli([*args_of(name), "--out", str(where / name), *key], capsys)
        assert code == 0, err
    return {"plain": where / "plain", "enc": where / "enc"}


def _without_run_dirs(value):
    """``value`` with every ``run_dir`` and ``best_checkpoint`` field dropped."""
    if isinstance(value, dict):
        return {k: _without_run_dirs(v) for k, v in value.items()
                if k not in ("run_dir", "best_checkpoint")}
    if isinstance(value, list):
        return [_without_run_dirs(v) for v in value]
    return value


def _topic_recipe(path: Path) -> Path:
    """test_tune's tiny TextCNN topic classifier (two evaluations in 20 steps) on a quarter
    of its world: these tests check the key options, not what the runs learn."""
    import copy

    import yaml
    from test_tune import TINY

    raw = copy.deepcopy(TINY)
    raw["data"]["world_sizes"] = {"train": 100, "val": 24, "test": 12, "test_unseen": 6}
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return path


def test_cv_takes_the_key_options(tmp_path, keys, capsys):  # noqa: F811
    recipe = _topic_recipe(tmp_path / "topic.yaml")
    args = ["cv", str(recipe), "--folds", "2", "--no-progress", *SHORT]
    cv = _cli_twice(capsys, keys, lambda _name: args, tmp_path)
    for name in ("cv.json", "folds.json", "fold_1/results.json", "fold_2/metrics.jsonl",
                 "fold_1/data/train.jsonl"):
        assert is_encrypted(cv["enc"] / name) and not is_encrypted(cv["plain"] / name), name
    with using_key(KEY):
        got = read_json(cv["enc"] / "cv.json")
    assert _without_run_dirs(got) == _without_run_dirs(read_json(cv["plain"] / "cv.json"))
    before = _snapshot(cv["enc"])
    assert_user_error([*args, "--out", str(cv["enc"])], capsys, NO_KEY, "folds.json")
    assert _snapshot(cv["enc"]) == before


def test_tune_takes_the_key_options(tmp_path, keys, capsys):  # noqa: F811
    import yaml
    from test_tune import SPACE

    pytest.importorskip("optuna")
    # one of test_tune's parameters: the plot of parameter importances that every study
    # draws fits a forest to a 3-parameter space (0.9 s a study); with one it is instant
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"train.lr": SPACE["train.lr"]}), encoding="utf-8")
    args = ["tune", str(_topic_recipe(tmp_path / "topic.yaml")), "--space", str(space),
            "--trials", "1", "--sampler", "random", "--seed", "0", "--metric",
            "val_accuracy", *SHORT]

    def study(name: str) -> list[str]:
        return [*args, "--study", name, "--storage", f"sqlite:///{tmp_path / name}.db"]

    where = _cli_twice(capsys, keys, study, tmp_path / "studies")
    best = {n: json.loads((where[n] / "best.json").read_text()) for n in ("plain", "enc")}
    assert best["enc"]["best"]["value"] == best["plain"]["best"]["value"]
    assert best["enc"]["best"]["params"] == best["plain"]["best"]["params"]
    for name in ("metrics.jsonl", "results.json"):
        assert is_encrypted(where["enc"] / "trial_0000" / name), name
    before = _snapshot(where["enc"])  # the study continues with its key only
    again = [*study("enc"), "--trials", "2", "--out", str(where["enc"])]
    assert_user_error(again, capsys, NO_KEY, "metrics.jsonl")
    assert_user_error([*again, "--workers", "2", "--key-file", keys["key"]], capsys,
                      "--workers 2 with a key")
    assert _snapshot(where["enc"]) == before
    # a plaintext study does not continue encrypted (it would end up half and half)
    before = _snapshot(where["plain"])
    assert_user_error([*study("plain"), "--trials", "2", "--out", str(where["plain"]),
                       "--key-file", keys["key"]], capsys, "plaintext", "without the key")
    assert _snapshot(where["plain"]) == before
