"""The fine-tuning engine end to end on small generated data: each task learns its
held-out set, the CLI predicts and evaluates, strategies freeze what they say, a resumed
run equals an uninterrupted one, and bad input is one line + exit 2."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from fakes import assert_user_error, run_cli

from lmforge.convert import convert
from lmforge.errors import CheckpointError, ConfigError, LmforgeError
from lmforge.tasks import load_task_model
from lmforge.tasks.config import build_finetune_recipe
from lmforge.tasks.finetune import finetune

NAMES = ["Anna", "Bob", "Carl", "Dana", "Eve", "安娜", "王磊", "李伟"]
CITIES = ["Paris", "Rome", "Oslo", "Lima", "北京", "上海", "广州"]
POS, NEG = ["great", "wonderful", "好", "棒"], ["awful", "terrible", "差", "糟"]
THINGS = ["food", "hotel", "film", "饭菜", "酒店"]


def _write_jsonl(path: Path, rows: list[dict]) -> str:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return str(path)


def _sentiment(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        lab = rng.choice(["positive", "negative"])
        word = rng.choice(POS if lab == "positive" else NEG)
        out.append({"text": f"the {rng.choice(THINGS)} was {word} today", "label": lab})
    return out


def _ner(n: int, seed: int) -> list[tuple[list[str], list[str]]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p, c = rng.choice(NAMES), rng.choice(CITIES)
        toks = [p, "lives", "in", c, "."] if rng.random() < 0.5 \
            else ["we", "met", p, "in", c, "today"]
        out.append((toks, ["B-PER" if t == p else "B-LOC" if t == c else "O" for t in toks]))
    return out


def _conll(path: Path, rows) -> str:
    lines = ["-DOCSTART- -X- -X- O", ""]
    for toks, tags in rows:
        lines += [f"{t} NN O {g}" for t, g in zip(toks, tags, strict=True)] + [""]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return str(path)


def _relations(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        p, c = rng.choice(NAMES), rng.choice(CITIES)
        lives = rng.random() < 0.5
        text = f"{p} lives in {c} ." if lives else f"{p} visited {c} once ."
        h, t = {"name": p, "pos": [0, len(p)]}, {"name": c, "pos": [text.index(c),
                                                                     text.index(c) + len(c)]}
        if rng.random() < 0.3:  # reversed pair: the direction matters
            out.append({"text": text, "h": t, "t": h, "relation": "no_relation"})
        else:
            out.append({"text": text, "h": h, "t": t,
                        "relation": "lives_in" if lives else "no_relation"})
    return out


def _recipe(tmp: Path, train_file: str, val: str, test: str, *, encoder: str = "textcnn",
            steps: int = 60, **sections) -> dict:
    raw = {
        "run": {"name": "t", "out_dir": str(tmp / "run"), "seed": 0},
        "data": {"train": train_file, "val": val, "test": [test], "max_length": 32},
        "backbone": {"encoder": encoder, "encoder_config": {"d_emb": 32} if encoder
                     == "textcnn" else {"d_emb": 32, "hidden": 32}},
        "head": {"pooling": "max" if encoder == "textcnn" else "cls"},
        "train": {"max_steps": steps, "batch_size": 16, "lr": 3e-3, "min_lr": 0.0,
                  "warmup_steps": 5, "eval_every": 20, "ckpt_every": 20, "keep_last": 1,
                  "log_every": 10},
    }
    for k, v in sections.items():
        raw.setdefault(k, {}).update(v)
    return raw


@pytest.fixture(scope="module")
def sentiment_files(tmp_path_factory) -> tuple[str, str, str]:
    d = tmp_path_factory.mktemp("sent")
    return tuple(_write_jsonl(d / f"{s}.jsonl", _sentiment(n, i))
                 for i, (s, n) in enumerate([("train", 300), ("val", 60), ("test", 80)]))


def test_classification_learns_held_out_data_and_cli_predicts(tmp_path, sentiment_files,
                                                              capsys):
    res = finetune(build_finetune_recipe(_recipe(tmp_path, *sentiment_files)),
                   show_progress=False, log=lambda m: None)
    assert res.results["splits"]["test"]["accuracy"] >= 0.97
    run = res.run_dir
    for f in ("results.json", "confusion.json", "confusion.png", "errors.jsonl", "loss.png",
              "metrics.jsonl", "config.yaml"):
        assert (run / f).is_file(), f
    # the best checkpoint is picked by the validation metric (f1_macro by default)
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert any("val_f1_macro" in x for x in lines)
    # a classifier's rate is in examples a second, never labelled as tokens
    train_lines = [x for x in lines if "loss" in x]
    assert train_lines and all("ex_per_s" in x and "tok_per_s" not in x for x in train_lines)
    pred = load_task_model(run)
    out = pred.predict(["the hotel was awful today", "the 饭菜 was 棒 today"])
    assert [o["label"] for o in out] == ["negative", "positive"]
    assert abs(sum(out[0]["probs"].values()) - 1) < 1e-5
    cli = [sys.executable, "-m", "lmforge.cli"]
    r = subprocess.run([*cli, "predict", str(run), "--text", "the film was great today"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1])["label"] == "positive"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "good"}\n{oops\n', encoding="utf-8")
    assert_user_error(["predict", str(run), "--input", str(bad)], capsys,
                      f"{bad}:line 2: invalid JSON")
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café\n".encode("latin-1"))
    assert_user_error(["predict", str(run), "--input", str(latin)], capsys,
                      f"{latin}:line 1: not valid UTF-8")
    code, _, err = run_cli(["evaluate", str(run), "--data", sentiment_files[2], "--out",
                            str(tmp_path / "ev")], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "ev/test/metrics.json").read_text())["accuracy"] >= 0.97


def test_tagging_bilstm_crf_on_conll(tmp_path):
    files = [_conll(tmp_path / f"{s}.conll", _ner(n, i))
             for i, (s, n) in enumerate([("train", 300), ("val", 60), ("test", 60)])]
    raw = _recipe(tmp_path, *files, encoder="bilstm", steps=80, head={"head": "crf"})
    res = finetune(build_finetune_recipe(raw), show_progress=False, log=lambda m: None)
    assert res.results["splits"]["test"]["entity_f1"] >= 0.97
    out = load_task_model(res.run_dir).predict(["Dana lives in Lima ."])[0]
    assert [(e["label"], e["text"]) for e in out["entities"]] == [("PER", "Dana"),
                                                                  ("LOC", "Lima")]


def test_subword_all_labels_every_piece_and_still_tags_words(tmp_path):
    from lmforge.tasks.encode import encode_tagging

    files = [_conll(tmp_path / f"{s}.conll", _ner(n, i))
             for i, (s, n) in enumerate([("train", 300), ("val", 60), ("test", 60)])]
    raw = _recipe(tmp_path, *files, encoder="bilstm", steps=80, head={"head": "linear"})
    raw["data"]["subword"] = "all"
    res = finetune(build_finetune_recipe(raw), show_progress=False, log=lambda m: None)
    assert res.results["splits"]["test"]["entity_f1"] >= 0.97
    tok = load_task_model(res.run_dir).tokenizer
    rec = {"text": "Dana lives in Livesdana", "tokens": ["Dana", "lives", "in", "Livesdana"],
           "tags": ["B-PER", "O", "O", "B-LOC"]}
    index = {"O": 0, "B-PER": 1, "B-LOC": 2}
    first = encode_tagging([rec], tok, index, 64)[0][0]
    every = encode_tagging([rec], tok, index, 64, subword="all")[0][0]
    assert first.input_ids == every.input_ids
    assert every.word_index == list(range(1, len(every.input_ids) - 1))  # all but CLS/SEP
    assert set(first.word_index) <= set(every.word_index)
    pieces = len(every.input_ids) - 1 - first.word_index[-1]
    assert pieces > 1 and every.word_tags[-pieces:] == [2] * pieces  # the word's tag, copied
    raw["head"]["head"] = "crf"
    with pytest.raises(ConfigError, match="subword=all"):
        build_finetune_recipe(raw)


def test_relations_direction_matters(tmp_path):
    files = [_write_jsonl(tmp_path / f"{s}.jsonl", _relations(n, i))
             for i, (s, n) in enumerate([("train", 400), ("val", 80), ("test", 80)])]
    raw = _recipe(tmp_path, *files, encoder="bilstm", steps=120)
    res = finetune(build_finetune_recipe(raw), show_progress=False, log=lambda m: None)
    assert res.results["splits"]["test"]["relation_f1"] >= 0.95
    pred = load_task_model(res.run_dir)
    text = "Eve lives in Oslo ."
    h, t = {"name": "Eve", "pos": [0, 3]}, {"name": "Oslo", "pos": [13, 17]}
    out = pred.predict([{"text": text, "h": h, "t": t}, {"text": text, "h": t, "t": h}])
    assert [o["relation"] for o in out] == ["lives_in", "no_relation"]


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_resume_continues_exactly(tmp_path, sentiment_files, grad_accum, monkeypatch):
    # no loss.png (0.2 s a run): the weights are compared, not the picture
    monkeypatch.setattr("lmforge.train.trainer.plot_loss", lambda *a, **k: True)
    common = {"schedule": "constant", "warmup_steps": 0, "grad_accum": grad_accum}
    a = _recipe(tmp_path / "a", *sentiment_files, steps=40, train=common)
    finetune(build_finetune_recipe(a), show_progress=False, log=lambda m: None)
    b = _recipe(tmp_path / "b", *sentiment_files, steps=20, train=common)
    finetune(build_finetune_recipe(b), show_progress=False, log=lambda m: None)
    b["train"]["max_steps"] = 40

    def retrain(*a, **k):
        raise AssertionError("a resumed run must use its checkpoint's tokenizer")

    for where in ("lmforge.tokenize.train_tokenizer", "lmforge.tokenize.train.train_tokenizer"):
        monkeypatch.setattr(where, retrain)
    finetune(build_finetune_recipe(b), resume=True, show_progress=False, log=lambda m: None)
    wa = load_task_model(tmp_path / "a/run/checkpoints/step_0000040").model.state_dict()
    wb = load_task_model(tmp_path / "b/run/checkpoints/step_0000040").model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_strategies_freeze_what_they_say(tmp_path, sentiment_files):
    from lmforge.tasks.finetune import apply_strategy
    from lmforge.tasks.model import TaskModel, TaskModelConfig

    enc = {"vocab_size": 50, "n_layer": 3, "n_head": 2, "d_model": 16, "max_position": 32}
    for strategy, want in [("frozen", ("classifier.",)),
                           ("top_k", ("classifier.", "encoder.pooler.", "encoder.layers.2."))]:
        model = TaskModel(TaskModelConfig("classify", ["a", "b"], "bert", dict(enc)))
        raw = _recipe(tmp_path, *sentiment_files, finetune={"strategy": strategy,
                                                            "top_k": 1})
        trainable, total = apply_strategy(model, build_finetune_recipe(raw))
        names = {n for n, p in model.named_parameters() if p.requires_grad}
        assert names and all(n.startswith(want) for n in names), names
        assert any(n.startswith(want[-1]) for n in names)
        assert trainable == sum(p.numel() for p in model.parameters() if p.requires_grad)
        assert 0 < trainable < total


@pytest.mark.parametrize("override, message", [
    ({"finetune": {"metric": "bleu"}}, "finetune.metric"),
    ({"finetune": {"strategy": "lora"}}, "lora needs a pretrained encoder"),
    ({"finetune": {"strategy": "top_k"}}, "top_k needs a layered encoder"),
])
def test_bad_options_are_one_line_errors(tmp_path, sentiment_files, override, message):
    raw = _recipe(tmp_path, *sentiment_files, **override)
    with pytest.raises(ConfigError, match=message):
        finetune(build_finetune_recipe(raw), show_progress=False, log=lambda m: None)


def test_augment_ops_choose_the_eda_operations(tmp_path, sentiment_files):
    from lmforge.tasks.finetune import _augment

    rows = _sentiment(20, 3)
    raw = _recipe(tmp_path, *sentiment_files, data={"augment": 2, "augment_ops": ["rs"]})
    out = _augment(build_finetune_recipe(raw), "classify", rows)
    assert len(out) == 60 and [r["label"] for r in out[::3]] == [r["label"] for r in rows]
    for i, r in enumerate(out):  # swaps only: the same words, labels kept
        assert sorted(r["text"].replace(" ", "")) == sorted(rows[i // 3]["text"].replace(" ", ""))
        assert r["label"] == rows[i // 3]["label"]
    assert any(r["text"] != rows[i // 3]["text"] for i, r in enumerate(out))
    with pytest.raises(ConfigError, match="augment_ops"):
        build_finetune_recipe(_recipe(tmp_path, *sentiment_files,
                                      data={"augment": 2, "augment_ops": ["swap"]}))


def test_recipe_errors_name_the_field():
    with pytest.raises(ConfigError, match="data"):
        build_finetune_recipe({"backbone": {"encoder": "textcnn"}})
    with pytest.raises(ConfigError, match="exactly one of backbone"):
        build_finetune_recipe({"data": {"world": "topic"},
                               "backbone": {"encoder": "textcnn", "path": "x"}})


def test_cli_bad_input_exits_2(tmp_path, sentiment_files, capsys):
    bad = tmp_path / "one.jsonl"
    rows = _sentiment(20, 0)
    rows.append({"text": "odd one", "label": "mixed"})  # a label with one example
    _write_jsonl(bad, rows)
    # in-process (the real entry point runs as a subprocess in the classification test)
    assert_user_error(["finetune", "classify-topic", "--out", str(tmp_path / "r"), "--set",
                       "data.world=null", "--set", f"data.train={bad}"], capsys, "mixed")
    assert_user_error(["predict", str(tmp_path)], capsys)
    with pytest.raises(LmforgeError):
        load_task_model(tmp_path)


def test_classical_baseline_recipe_predicts_like_sklearn(tmp_path, sentiment_files):
    pytest.importorskip("sklearn")
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    raw = {"run": {"out_dir": str(tmp_path / "run"), "seed": 0},
           "data": {"train": sentiment_files[0], "val": sentiment_files[1],
                    "test": [sentiment_files[2]]},
           "backbone": {"classical": "tfidf-logreg",
                        "classical_config": {"analyzer": "word", "ngram_range": [1, 1],
                                             "sublinear_tf": False}}}
    res = finetune(build_finetune_recipe(raw), show_progress=False, log=lambda m: None)
    train = [json.loads(x) for x in Path(sentiment_files[0]).read_text().splitlines()]
    test = [json.loads(x) for x in Path(sentiment_files[2]).read_text().splitlines()]
    ref = make_pipeline(TfidfVectorizer(), LogisticRegression(random_state=0)).fit(
        [r["text"] for r in train], [r["label"] for r in train])
    want = ref.predict([r["text"] for r in test])
    got = [p["label"] for p in load_task_model(res.run_dir).predict([r["text"] for r in test])]
    assert got == list(want)
    acc = sum(g == r["label"] for g, r in zip(got, test, strict=True)) / len(test)
    assert res.results["splits"]["test"]["accuracy"] == pytest.approx(acc)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory, sentiment_files) -> str:
    """An untrained 2-layer BERT with a WordPiece tokenizer, as an lmforge model folder."""
    from lmforge.models.bert import BertConfig, BertModel
    from lmforge.tokenize import train_tokenizer

    folder = tmp_path_factory.mktemp("bert")
    texts = [json.loads(x)["text"] for x in Path(sentiment_files[0]).read_text().splitlines()]
    tok = train_tokenizer("wordpiece", texts=texts, vocab_size=200, show_progress=False)
    torch.manual_seed(0)
    model = BertModel(BertConfig(vocab_size=tok.vocab_size, n_layer=2, n_head=2, d_model=32,
                                 max_position=64, head="mlm", dropout=0.0))
    model.save_pretrained(folder)
    tok.save(folder)
    return str(folder)


def test_lora_strategy_trains_adapters_only_and_merges(tmp_path, sentiment_files, tiny_bert,
                                                      capsys):
    raw = _recipe(tmp_path, *sentiment_files, steps=80,
                  backbone={"encoder": None, "encoder_config": {}, "path": tiny_bert},
                  head={"pooling": "cls"},
                  finetune={"strategy": "lora", "lora": {"r": 4, "alpha": 8,
                                                         "target_modules": "all-linear"}})
    raw["train"]["lr"] = 1e-2
    res = finetune(build_finetune_recipe(raw), show_progress=False, log=lambda m: None)
    trainable, total = res.trainable
    model = res.predictor.model
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n or n.startswith("classifier.") for n in names)
    assert trainable == sum(p.numel() for n, p in model.named_parameters() if n in names)
    assert res.results["splits"]["test"]["accuracy"] >= 0.9
    assert (res.run_dir / "adapter/adapter_config.json").is_file()
    texts = ["the film was great today", "the hotel was awful today"]
    before = load_task_model(res.run_dir).predict(texts)
    merged = tmp_path / "merged"
    code, _, err = run_cli(["lora", "merge", str(res.run_dir), "--out", str(merged)], capsys)
    assert code == 0, err
    plain = load_task_model(merged)
    assert plain.model.config.lora is None
    assert not any("lora_" in n for n, _ in plain.model.named_parameters())
    after = plain.predict(texts)
    for a, b in zip(before, after, strict=True):
        assert a["label"] == b["label"]
        assert all(abs(a["probs"][k] - b["probs"][k]) < 1e-4 for k in a["probs"])
    with pytest.raises(CheckpointError, match="fine-tuned task model.*lmforge predict"):
        convert(merged, tmp_path / "hf", to="hf")


@pytest.mark.parametrize("private", [False, True])
def test_a_bert_skips_padding_while_it_trains_unless_dp(tmp_path, sentiment_files, tiny_bert,
                                                        monkeypatch, private):
    """Training runs the unpadded encoder; DP-SGD (Opacus' per-example hooks) and the
    model it returns afterwards (predict, ONNX export) keep the padded one."""
    from lmforge.models.bert import BertModel

    calls = []
    unpadded = BertModel._encode_unpadded
    monkeypatch.setattr(BertModel, "_encode_unpadded",
                        lambda self, *a: calls.append(1) or unpadded(self, *a))
    train = {"threads": 1, "eval_every": 10, "ckpt_every": 10}
    if private:
        pytest.importorskip("opacus")
        train["privacy"] = {"noise_multiplier": 1.0, "delta": 1e-3}
    raw = _recipe(tmp_path, *sentiment_files, steps=10, train=train, head={"pooling": "mean"},
                  backbone={"encoder": None, "encoder_config": {}, "path": tiny_bert})
    res = finetune(build_finetune_recipe(raw), show_progress=False, log=lambda m: None)
    assert (len(calls) == 0) == private
    assert res.predictor.model.skip_padding is False
    n = len(calls)
    res.predictor.predict(["the film was great today", "bad"])
    assert len(calls) == n


def test_decoder_classifies_with_last_token_pooling(tmp_path, sentiment_files):
    from lmforge.models.gpt import GPT, GPTConfig
    from lmforge.tokenize import train_tokenizer

    folder = tmp_path / "gpt"
    texts = [json.loads(x)["text"] for x in Path(sentiment_files[0]).read_text().splitlines()]
    tok = train_tokenizer("wordpiece", texts=texts, vocab_size=200, show_progress=False)
    torch.manual_seed(0)
    GPT(GPTConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=32,
                  max_seq_len=64)).save_pretrained(folder)
    tok.save(folder)
    raw = _recipe(tmp_path, *sentiment_files, steps=80,
                  backbone={"encoder": None, "encoder_config": {}, "path": str(folder)},
                  head={"pooling": "last"})
    res = finetune(build_finetune_recipe(raw), show_progress=False, log=lambda m: None)
    assert res.results["splits"]["test"]["accuracy"] >= 0.95
    raw["head"]["pooling"] = "cls"
    raw["run"]["out_dir"] = str(tmp_path / "run2")
    with pytest.raises(ConfigError, match="pooling=last"):
        finetune(build_finetune_recipe(raw), show_progress=False, log=lambda m: None)


def test_entity_noise_and_token_dropout_touch_only_what_they_say():
    import numpy as np

    from lmforge.tasks.encode import Encoded, TaskBatches

    # words: 10 (B-PER), 11 12 (I-PER), 13 (B-NUM); noise on PER only
    ex = [Encoded([2, 10, 11, 12, 13, 3], word_index=[1, 2, 4], word_tags=[1, 2, 3],
                  n_words=3)]
    src = TaskBatches(ex, 0, "tag", 64, entity_noise=0.5, vocab=(5, 100), noise_tags={1, 2})
    a = src.batch(0, 0, np.random.default_rng([0, 0, 0]))["input_ids"]
    b = src.batch(0, 0, np.random.default_rng([0, 0, 0]))["input_ids"]
    assert torch.equal(a, b)  # a pure function of the generator: resume stays exact
    changed = (a != torch.tensor(ex[0].input_ids)).any(0)
    assert changed.tolist() == [False, True, True, True, False, False]
    drop = TaskBatches(ex, 0, "tag", 64, token_dropout=0.5, unk_id=1)
    ids = drop.batch(0, 0, np.random.default_rng(1))["input_ids"]
    assert (ids[:, 0] == 2).all() and (ids[:, -1] == 3).all()  # [CLS]/[SEP] kept
    assert set(ids[:, 1:-1].unique().tolist()) == {1, 10, 11, 12, 13}


def test_group_by_length_pads_less_and_keeps_every_example_equally_likely():
    import numpy as np

    from lmforge.tasks.encode import Encoded, TaskBatches

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=600)
    ex = [Encoded(list(range(2, 2 + n)), label=i) for i, n in enumerate(lengths)]
    plain = TaskBatches(ex, 0, "classify", 8)
    grouped = TaskBatches(ex, 0, "classify", 8, group_by_length=True)
    assert len(grouped.groups) == 600 // (8 * TaskBatches.GROUP_BATCHES)
    assert sorted(np.concatenate(grouped.groups).tolist()) == list(range(600))

    def draws(src, n):
        return [src.batch(s, 0, np.random.default_rng([7, s, 0])) for s in range(n)]

    padded = {name: sum(b["input_ids"].numel() for b in draws(src, 300))
              for name, src in (("plain", plain), ("grouped", grouped))}
    assert padded["grouped"] < 0.7 * padded["plain"]
    a, b = draws(grouped, 3), draws(grouped, 3)
    assert all(torch.equal(x["input_ids"], y["input_ids"]) for x, y in zip(a, b, strict=True))
    # each slot draws every example with probability 1/N: a chi-square over 20000 draws
    counts = np.bincount(np.concatenate([d["labels"].numpy() for d in draws(grouped, 2500)]),
                         minlength=600)
    expected = counts.sum() / 600
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < 700  # 599 degrees of freedom: the 99.9th percentile is about 715


def test_micro_batches_are_length_sorted_slices_of_one_random_draw():
    from lmforge.errors import DataError
    from lmforge.tasks.encode import Encoded, TaskBatches

    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=600)
    ex = [Encoded(list(range(2, 2 + n)), label=i) for i, n in enumerate(lengths)]
    whole = TaskBatches(ex, 0, "classify", 32)
    split = TaskBatches(ex, 0, "classify", 8, micro_batches=4)
    padded = {"whole": 0, "split": 0}
    for s in range(200):
        one = whole.batch(s, 0, np.random.default_rng([3, s]))
        parts = [split.batch(s, m, np.random.default_rng([3, s]) if m == 0 else
                             np.random.default_rng([3, s, m])) for m in range(4)]
        # the same 32 examples (one draw of 4 x 8), sorted by length into the slices
        assert sorted(torch.cat([p["labels"] for p in parts]).tolist()) \
            == sorted(one["labels"].tolist())
        longest = [int(p["attention_mask"].sum(1).max()) for p in parts]
        assert longest == sorted(longest)
        padded["whole"] += one["input_ids"].numel()
        padded["split"] += sum(p["input_ids"].numel() for p in parts)
    assert padded["split"] < 0.8 * padded["whole"]
    with pytest.raises(DataError, match="drawn together"):
        TaskBatches(ex, 0, "classify", 8, micro_batches=2).batch(0, 1, rng)
    with pytest.raises(DataError, match="micro_batches"):
        TaskBatches(ex, 0, "classify", 8, micro_batches=0)

