"""The controlled-generation recipe (``task: control``) end to end at a tiny size: codes
before the text with the loss on the text only, every combination of codes generated and
judged by the world, forced words always present and banned words never, the
``lmforge generate --control`` prompt, and recipe mistakes refused in one line."""

from __future__ import annotations

import json

import pytest
from fakes import assert_user_error, run_cli

from lmforge.control.codes import ControlError, all_code_tokens, code_ids
from lmforge.control.finetune import combinations, encode_split, finetune_control
from lmforge.corpora.tasks import render_task_set
from lmforge.corpora.tasks.control import judge
from lmforge.errors import ConfigError
from lmforge.tasks.config import load_finetune_recipe
from lmforge.tokenize import train_tokenizer

SIZES = {"train": 300, "val": 20, "test": 1, "test_unseen": 1}
TINY = ["model={arch: gpt, n_layer: 1, n_head: 2, d_model: 32, max_seq_len: 160}",
        "tokenizer.vocab_size=500", "train.max_steps=30", "train.eval_every=30",
        "train.ckpt_every=30", "train.batch_size=8", "train.threads=1",
        "train.warmup_steps=2", f"data.world_sizes={json.dumps(SIZES)}",
        "evaluate.samples=1", "evaluate.forced=1", "evaluate.banned=1",
        "evaluate.max_new_tokens=48", "evaluate.num_beams=2"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("control") / "run"
    r = load_finetune_recipe("control-world", [f"run.out_dir={out}", *TINY])
    return finetune_control(r, show_progress=False, log=lambda m: None)


def test_codes_prefix_the_text_and_only_the_text_is_trained():
    records = render_task_set("control", seed=1, sizes=SIZES).splits["train"]
    tok = train_tokenizer("bpe", texts=[r["text"] for r in records], vocab_size=400,
                          special_tokens=all_code_tokens(), show_progress=False)
    ex = encode_split(tok, records, 128, 0.0, 0)
    for r, e in zip(records[:20], ex[:20], strict=True):
        prompt = code_ids(tok, r)
        assert e.ids[:4] == prompt and len(prompt) == 4
        assert tok.decode(e.ids[4:-1]) == r["text"] and e.ids[-1] == tok.eos_id
        assert e.trained == [False] * 4 + [True] * (len(e.ids) - 4)
    dropped = encode_split(tok, records, 128, 0.3, 0)
    kept = sum(sum(1 for t in e.ids if t in tok.special_ids) - 2 for e in dropped)
    assert abs(kept / (3 * len(records)) - 0.7) < 0.06  # each code kept with p = 0.7
    assert encode_split(tok, records, 128, 0.3, 0) == dropped  # seeded


def test_every_combination_is_generated_and_judged_by_the_world(run):
    res = run.results
    n = len(combinations(["en", "zh"]))
    assert n == 48 and res["sampled"]["n"] == res["forced"]["n"] == res["banned"]["n"] == n
    assert res["ceiling"] == 1.0
    samples = [json.loads(x) for x in (run.run_dir / "samples.jsonl").read_text(
        "utf-8").splitlines()]
    assert len(samples) == 3 * n
    for s in samples:
        assert s["judged"] == judge(s["text"], s["asked"]["lang"])
    sampled = [s for s in samples if s["part"] == "sampled"]
    share = sum(s["judged"]["topic"] == s["asked"]["topic"] for s in sampled) / n
    assert res["sampled"]["topic_accuracy"] == round(share, 4)


def test_forced_words_always_appear_and_banned_words_never(run):
    samples = [json.loads(x) for x in (run.run_dir / "samples.jsonl").read_text(
        "utf-8").splitlines()]
    forced = [s for s in samples if s["part"] == "forced"]
    banned = [s for s in samples if s["part"] == "banned"]
    assert all(s["word"] in s["text"] for s in forced)
    assert not any(s["word"] in s["text"] for s in banned)
    assert run.results["forced"]["word_present"] == 1.0
    assert run.results["banned"]["word_absent"] == 1.0


def test_generate_with_control_codes(run, capsys):
    code, out, err = run_cli(["generate", str(run.run_dir), "--control",
                              "negative, sport, zh", "--temperature", "0",
                              "--max-new-tokens", "20"], capsys)
    assert code == 0, err
    from lmforge.generate.text import complete_ids
    from lmforge.hub import load_pretrained

    model, tok = load_pretrained(run.run_dir, require_tokenizer=True)
    want = complete_ids(model, tok, [code_ids(tok, {"sentiment": "negative", "topic": "sport",
                                                    "lang": "zh"})],
                        temperature=0, max_new_tokens=20)[0].text
    assert out == want + "\n"
    assert_user_error(["generate", str(run.run_dir), "--control", "angry"], capsys,
                      "control 'angry': unknown value")
    assert_user_error(["generate", str(run.run_dir), "--control", "zh, en"], capsys,
                      "gives the lang twice")


def test_a_model_without_codes_is_refused():
    tok = train_tokenizer("bpe", texts=["plain text only"] * 10, vocab_size=300,
                          show_progress=False)
    with pytest.raises(ControlError, match="not trained with control codes"):
        code_ids(tok, {"topic": "sport"})


def test_bad_recipes_are_one_line_errors():
    with pytest.raises(ConfigError, match="model.arch must be one of gpt .got .bert.."):
        load_finetune_recipe("control-world", ["model.arch=bert"])
    with pytest.raises(ConfigError, match="give the GPT to train"):
        load_finetune_recipe("control-world", ["model=null"])
    with pytest.raises(ConfigError, match="code_dropout"):
        load_finetune_recipe("control-world", ["data.code_dropout=1.5"])


def test_evaluate_a_control_run_again(run, capsys, tmp_path):
    code, out, err = run_cli(["evaluate", str(run.run_dir), "--set", "forced=0", "--set",
                              "banned=0", "--out", str(tmp_path / "ev")], capsys)
    assert code == 0, err
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text("utf-8"))
    assert saved["sampled"] == run.results["sampled"]  # same seed, same texts
    assert "forced" not in saved and "sampled " in out
    assert_user_error(["evaluate", str(run.run_dir), "--set", "beams=3"], capsys,
                      "evaluate.beams: unknown field")
    assert_user_error(["evaluate", str(run.run_dir / "nowhere")], capsys,
                      "--data")


def test_classifier_runs_also_label_the_sampled_texts(run, tmp_path):
    from lmforge.control.finetune import evaluate_control_run
    from lmforge.tasks.finetune import finetune
    from lmforge.tasks.predictor import load_task_model

    sizes = json.dumps({"train": 300, "val": 50, "test": 10, "test_unseen": 10,
                        "contrast": 10})
    clf = finetune(load_finetune_recipe("classify-tfidf", [
        f"run.out_dir={tmp_path / 'tfidf'}", f"data.world_sizes={sizes}"]),
        show_progress=False, log=lambda m: None).run_dir
    res = evaluate_control_run(run.run_dir, None, ["forced=0", "banned=0",
                                                   f"classifiers={{sentiment: {clf}}}"],
                               log=lambda m: None)
    samples = [json.loads(x) for x in (run.run_dir / "samples.jsonl").read_text(
        "utf-8").splitlines() if '"sampled"' in x]
    written = [s for s in samples if s["text"].strip()]  # an empty text counts as wrong
    labels = [p["label"] for p in load_task_model(clf).predict([s["text"] for s in written])]
    want = sum(lab == s["asked"]["sentiment"] for lab, s in zip(labels, written,
                                                                 strict=True)) / len(samples)
    assert res["sampled"]["sentiment_accuracy_by_classifier"] == round(want, 4)
