"""Translation and summarisation on the fine-tuning engine: a model learns held-out pairs
from the user's files, the world recipes report every split beside its ceiling with
sacrebleu's and rouge-score's numbers, resume is exact, T5 and the GRU train through the
same path, and bad input is a one-line error."""

from __future__ import annotations

import json
import random

import pytest
import sacrebleu
import torch
from fakes import assert_user_error, run_cli, tiny_train

from lmforge.tasks.config import load_finetune_recipe
from lmforge.tasks.seq2seq import finetune_seq2seq
from lmforge.tasks.seq2seq_config import build_seq2seq_recipe
from lmforge.tasks.seq2seq_predictor import load_seq2seq as load_translator

QUIET = {"show_progress": False, "log": lambda m: None}
WORDS = {"one": "eins", "two": "zwei", "three": "drei", "four": "vier", "five": "fünf",
         "red": "rot", "blue": "blau", "green": "grün", "cat": "Katze", "dog": "Hund",
         "house": "Haus", "tree": "Baum", "big": "groß", "small": "klein", "and": "und"}


def _pairs(n: int, seed: int) -> list[tuple[str, str]]:
    rng = random.Random(seed)
    keys = sorted(WORDS)
    out = []
    for _ in range(n):
        words = [rng.choice(keys) for _ in range(rng.randint(2, 6))]
        out.append((" ".join(words), " ".join(WORDS[w] for w in words)))
    return out


@pytest.fixture(scope="module")
def lexicon_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("mt")
    (d / "train.tsv").write_text("".join(f"{a}\t{b}\n" for a, b in _pairs(3000, 0)),
                                 encoding="utf-8")
    test = _pairs(400, 1)
    (d / "test.jsonl").write_text("".join(json.dumps({"translation": {"en": a, "de": b}})
                                          + "\n" for a, b in test), encoding="utf-8")
    return d


def _recipe(out, train_file, *, steps=600, model=None, **extra) -> dict:
    raw = {
        "task": "translate",
        "run": {"name": "t", "out_dir": str(out), "seed": 0},
        "data": {"train": str(train_file), "langs": ["en", "de"], "max_length": 16,
                 "val_decode": 64},
        "tokenizer": {"kind": "bpe", "vocab_size": 300},
        "model": model or {"arch": "transformer", "d_model": 64, "n_head": 4,
                           "n_encoder_layers": 1, "n_decoder_layers": 1, "d_ff": 128,
                           "dropout": 0.0, "norm_first": True, "max_seq_len": 32,
                           "share_embeddings": True},
        "decode": {"beams": 3, "max_new_tokens": 24},
        "label_smoothing": 0.0,
        "train": tiny_train(steps),
    }
    for k, v in extra.items():
        raw[k] = {**raw.get(k, {}), **v} if isinstance(v, dict) else v
    return raw


@pytest.mark.slow  # 13 s of training: the default suite's budget is spent
def test_learns_held_out_pairs_and_scores_equal_sacrebleu(tmp_path, lexicon_files, capsys):
    raw = _recipe(tmp_path / "run", lexicon_files / "train.tsv",
                  data={"test": [str(lexicon_files / "test.jsonl")]})
    res = finetune_seq2seq(build_seq2seq_recipe(raw), **QUIET)
    test = res.results["splits"]["test"]
    assert test["n"] == 400 and test["bleu"] > 90 and test["exact_match"] > 0.8, test
    assert test["ceiling"] is None  # the user's files: no known ceiling
    # the scores are sacrebleu's on the translations the translator gives
    tr = load_translator(tmp_path / "run")
    pairs = [json.loads(x)["translation"] for x in
             (lexicon_files / "test.jsonl").read_text(encoding="utf-8").splitlines()]
    hyps = tr.translate([p["en"] for p in pairs])
    want = sacrebleu.corpus_bleu(hyps, [[p["de"] for p in pairs]], tokenize="13a")
    assert test["bleu"] == pytest.approx(want.score, abs=1e-9)
    assert test["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a")
    errors = [json.loads(x) for x in (tmp_path / "run/errors.jsonl").read_text().splitlines()]
    assert len(errors) == round(400 * (1 - test["exact_match"]))
    assert all(e["hyp"] != e["ref"] for e in errors)
    assert [e["score"] for e in errors] == sorted(e["score"] for e in errors)
    # the CLI: --text, and --input with --out
    code, out, _ = run_cli(["translate", str(tmp_path / "run"), "--text", "red cat and dog"],
                           capsys)
    assert code == 0 and out.strip() == "rot Katze und Hund"
    src = tmp_path / "in.txt"
    src.write_text("big house\nsmall tree\n", encoding="utf-8")
    code, _, _ = run_cli(["translate", str(tmp_path / "run"), "--input", str(src), "--out",
                          str(tmp_path / "o.jsonl"), "--beams", "1"], capsys)
    rows = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert code == 0 and [r["translation"] for r in rows] == ["groß Haus", "klein Baum"]
    # lmforge evaluate on a parallel file gives the same scores as the run's test split
    code, out, _ = run_cli(["evaluate", str(tmp_path / "run"), "--data",
                            str(lexicon_files / "test.jsonl"), "--out", str(tmp_path / "ev")],
                           capsys)
    saved = json.loads((tmp_path / "ev/test/metrics.json").read_text())
    assert code == 0 and f"BLEU {test['bleu']:.2f}" in out
    assert saved["bleu"] == pytest.approx(test["bleu"]) and saved["n"] == 400


def test_world_recipe_reports_every_split_beside_its_ceiling(tmp_path):
    sizes = {"train": 400, "val": 20, "test": 20, "test_long": 5, "test_unseen": 10,
             "test_compositional": 10}
    r = load_finetune_recipe("translate-transformer-en-zh", [
        f"run.out_dir={tmp_path / 'w'}", f"data.world_sizes={json.dumps(sizes)}",
        "train.max_steps=4", "train.eval_every=2", "train.ckpt_every=2", "train.threads=1",
        "decode.beams=2", "decode.max_new_tokens=8"])
    res = finetune_seq2seq(r, **QUIET)
    splits = res.results["splits"]
    assert list(splits) == ["val", "test", "test_long", "test_unseen", "test_compositional"]
    for name, s in splits.items():
        assert s["n"] == sizes[name] and s["ceiling"] == 100.0
        assert "tok:zh" in s["bleu_signature"] and 0 <= s["bleu"] <= 100
    metrics = [json.loads(x) for x in (tmp_path / "w/metrics.jsonl").read_text().splitlines()]
    assert any("val_bleu" in m for m in metrics)


def test_resume_continues_exactly(tmp_path, lexicon_files, monkeypatch):
    common = {"schedule": "constant", "warmup_steps": 0, "eval_every": 10, "ckpt_every": 10}
    finetune_seq2seq(build_seq2seq_recipe(
        _recipe(tmp_path / "a", lexicon_files / "train.tsv", steps=20, train=common)), **QUIET)
    b = _recipe(tmp_path / "b", lexicon_files / "train.tsv", steps=10, train=common)
    finetune_seq2seq(build_seq2seq_recipe(b), **QUIET)
    b["train"]["max_steps"] = 20

    def retrain(*a, **k):
        raise AssertionError("a resumed run must use its checkpoint's tokenizer")

    for where in ("lmforge.tokenize.train_tokenizer", "lmforge.tokenize.train.train_tokenizer"):
        monkeypatch.setattr(where, retrain)
    finetune_seq2seq(build_seq2seq_recipe(b), resume=True, **QUIET)
    wa = load_translator(tmp_path / "a/checkpoints/step_0000020").model.state_dict()
    wb = load_translator(tmp_path / "b/checkpoints/step_0000020").model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.slow
def test_gru_and_t5_train_through_the_same_path(tmp_path, lexicon_files):
    gru = {"arch": "seq2seq_rnn", "cell": "gru", "d_embed": 32, "d_hidden": 64,
           "bidirectional": True, "attention": "bahdanau"}
    res = finetune_seq2seq(build_seq2seq_recipe(
        _recipe(tmp_path / "gru", lexicon_files / "train.tsv", steps=300, model=gru)), **QUIET)
    assert res.results["splits"]["val"]["bleu"] > 60
    # a T5 backbone: a tiny T5 (v1.1 shape) saved with the BPE tokenizer of the first run;
    # it learns more slowly than the Transformer (no absolute positions), so it is
    # compared with itself untrained
    from lmforge.models.base import save_model_folder
    from lmforge.models.t5 import T5, T5Config
    from lmforge.tasks.seq2seq_config import DecodeConfig
    from lmforge.tasks.seq2seq_predictor import Translator
    from lmforge.tokenize import Tokenizer

    tok = Tokenizer.load(next((tmp_path / "gru/checkpoints").glob("step_*")))
    torch.manual_seed(0)
    t5 = T5(T5Config(vocab_size=tok.vocab_size, d_model=64, d_kv=16, d_ff=128, n_layer=1,
                     n_head=4, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                     pad_token_id=tok.pad_id, eos_token_id=tok.eos_id,
                     decoder_start_token_id=tok.pad_id))
    save_model_folder(t5, tmp_path / "t5")
    tok.save(tmp_path / "t5")
    val = [{"src": a, "tgt": b} for a, b in _pairs(64, 2)]
    before = Translator(t5, tok, DecodeConfig(beams=1, max_new_tokens=24), ("en", "de"))
    untrained = before.evaluate(val)["metrics"]["bleu"]
    raw = _recipe(tmp_path / "t5run", lexicon_files / "train.tsv", steps=300)
    del raw["model"]
    raw["backbone"] = {"path": str(tmp_path / "t5")}
    finetune_seq2seq(build_seq2seq_recipe(raw), **QUIET)
    trained = load_translator(tmp_path / "t5run")
    assert trained.evaluate(val, beams=1)["metrics"]["bleu"] > untrained + 10
    assert type(load_translator(tmp_path / "t5run").model).__name__ == "T5"


@pytest.mark.parametrize("override, message", [
    ({"model": {"arch": "bert"}}, "model.arch must be one of transformer, seq2seq_rnn"),
    ({"backbone": {"path": "x"}}, "exactly one of model"),
    ({"data": {"langs": ["en", "en"]}}, "needs different languages"),
    ({"data": {"langs": ["en"]}}, "must be \\[source, target\\]"),
    ({"metric": "rougeL"}, "not a translate metric"),
    ({"data": {"world": "translation"}}, "exactly one of data.world"),
    ({"data": {"langs": ["en", "fr"]}}, "data.langs"),
    ({"decode": {"beams": 0}}, "decode.beams"),
    ({"data": {"counterfactual": 1}}, "for the answer task only"),
])
def test_recipe_errors_name_the_field(tmp_path, override, message):
    from lmforge.errors import ConfigError

    raw = _recipe(tmp_path / "r", tmp_path / "x.tsv")
    for k, v in override.items():
        raw[k] = v if not isinstance(v, dict) or k == "model" else {**raw.get(k, {}), **v}
    with pytest.raises(ConfigError, match=message):
        build_seq2seq_recipe(raw)


def test_cli_bad_input_exits_2(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a cat\teine Katze\nno tab here\n", encoding="utf-8")
    assert_user_error(["finetune", "translate-transformer-en-zh", "--out", str(tmp_path / "o"),
                       "--set", "data.world=null", "--set", f"data.train={bad}"],
                      capsys, "bad.tsv:line 2")
    assert_user_error(["finetune", "translate-transformer-en-zh", "--set", "task=poem"],
                      capsys, "not a generation task", "summarize, answer, chat")
    assert_user_error(["translate", str(tmp_path), "--text", "x"], capsys,
                      "not a translation run")
    assert_user_error(["summarize", str(tmp_path), "--text", "x"], capsys,
                      "not a summarisation run")


@pytest.mark.slow  # 17 s of training: the default suite's budget is spent
def test_summarization_recipe_scores_rouge_by_language_beside_its_ceiling(tmp_path, capsys):
    from lmforge.eval.summarization import rouge_scores

    sizes = {"train": 300, "val": 16, "test": 16, "test_unseen": 8, "abstractive": 8}
    r = load_finetune_recipe("summarize-transformer", [
        f"run.out_dir={tmp_path / 's'}", f"data.world_sizes={json.dumps(sizes)}",
        "train.max_steps=4", "train.eval_every=2", "train.ckpt_every=2", "train.threads=1",
        "decode.beams=2", "decode.max_new_tokens=8", "tokenizer.vocab_size=600"])
    res = finetune_seq2seq(r, **QUIET)
    splits = res.results["splits"]
    assert list(splits) == ["val", "test", "test_unseen", "abstractive"]
    assert all(s["ceiling"] == 100.0 and s["n"] == sizes[k] for k, s in splits.items())
    # the split's score is the count-weighted mean of rouge-score's per language
    pred = res.predictor
    from lmforge.corpora.tasks import render_task_set

    test = render_task_set("summarization", seed=0, sizes=sizes).splits["test"]
    outs = pred.summarize([x["document"] for x in test])
    want = 0.0
    for lang in ("en", "zh"):
        idx = [i for i, x in enumerate(test) if x["lang"] == lang]
        got = rouge_scores([outs[i] for i in idx], [test[i]["summary"] for i in idx],
                           lang=lang)
        assert splits["test"]["by_lang"][lang]["rougeL"] == pytest.approx(got["rougeL"])
        want += got["rougeL"] * len(idx) / len(test)
    assert splits["test"]["rougeL"] == pytest.approx(want)
    # the commands
    doc = test[0]["document"]
    code, out, _ = run_cli(["summarize", str(tmp_path / "s"), "--text", doc], capsys)
    assert code == 0 and out.strip() == outs[0].strip()
    data = tmp_path / "docs.jsonl"
    data.write_text("".join(json.dumps({"document": x["document"], "summary": x["summary"]},
                                       ensure_ascii=False) + "\n" for x in test),
                    encoding="utf-8")
    code, out, _ = run_cli(["evaluate", str(tmp_path / "s"), "--data", str(data)], capsys)
    assert code == 0 and f"ROUGE-L {splits['test']['rougeL']:.2f}" in out
    assert_user_error(["translate", str(tmp_path / "s"), "--text", "x"], capsys,
                      "not a translation run")


def test_every_builtin_recipe_loads():
    from lmforge.tasks.config import builtin_finetune_recipes
    from lmforge.tasks.seq2seq_config import Seq2SeqRecipe

    names = builtin_finetune_recipes()
    mt = [n for n in names if n.startswith("translate-")]
    for model in ("transformer", "gru"):
        for pair in ("en-zh", "zh-en", "en-de", "de-en"):
            assert f"translate-{model}-{pair}" in mt
    assert "translate-t5-en-zh" in mt
    assert {"summarize-transformer", "summarize-t5", "qa-generative-transformer"} <= set(names)
    for name in names:
        r = load_finetune_recipe(name)
        assert isinstance(r, Seq2SeqRecipe) == (name in mt or name.startswith(
            ("summarize-", "qa-generative-")))
        if name in mt:
            assert "-".join(r.data.langs) == name.rsplit("-", 2)[-2] + "-" + \
                name.rsplit("-", 1)[-1] and r.run.name == name
