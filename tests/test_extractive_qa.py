"""Extractive question answering end to end on generated SQuAD files: a small encoder
learns to answer held-out questions whose contexts span several windows, says "" to
the unanswerable ones, the predictor and the CLI answer and score, a resumed run equals
an uninterrupted one, Chinese characters missing from a backbone's vocabulary get tokens
of their own, and bad input is one line + exit 2. The slow test runs the English MiniLM
recipe on the world's questions; the Chinese recipe (16-25 minutes) is measured by hand
(figures in docs/tasks.md)."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fakes import one_line_error, run_cli

from lmforge.errors import ConfigError, DataError
from lmforge.eval.qa import qa_scores
from lmforge.tasks import load_task_model
from lmforge.tasks.config import build_finetune_recipe, load_finetune_recipe
from lmforge.tasks.finetune import finetune

PEOPLE = ["Anna", "Bob", "Carl", "Dana", "Eve", "Fred", "Gina", "Hugo"]
THINGS = ["car", "ball", "house", "hat", "kite", "boat"]
COLOURS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple"]
CITIES = ["Paris", "Rome", "Oslo", "Lima", "Cairo", "Tokyo", "Quito", "Dakar"]
FILLER = ["The sky is clear today.", "It rained on Monday.", "The shop opens at nine.",
          "Tom likes tea.", "The park is quiet.", "A bus stops near the bridge."]
CLI = [sys.executable, "-m", "lmforge.cli"]


def _questions(n: int, seed: int, impossible: float) -> list[dict]:
    """'What colour is Anna's hat?' / 'Where does Anna live?' about a context of 3-6
    sentences; with probability ``impossible`` the asked fact is left out (no answer)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p, t = rng.choice(PEOPLE), rng.choice(THINGS)
        colour, city = rng.choice(COLOURS), rng.choice(CITIES)
        ask, drop = rng.choice(["colour", "city"]), rng.random() < impossible
        facts = {"colour": f"{p} has a {colour} {t}.", "city": f"{p} lives in {city}."}
        sents = [s for k, s in facts.items() if not (drop and k == ask)]
        sents += rng.sample(FILLER, rng.randint(1, 4))
        rng.shuffle(sents)
        context = " ".join(sents)
        answer = colour if ask == "colour" else city
        answers = [] if drop else [{"text": answer, "answer_start": context.index(
            facts[ask]) + facts[ask].index(f" {answer}") + 1}]
        out.append({"id": f"q{seed}-{i}", "context": context, "answers": answers,
                    "question": f"What colour is {p}'s {t}?" if ask == "colour"
                    else f"Where does {p} live?", "is_impossible": drop})
    return out


def _squad(path: Path, records: list[dict]) -> str:
    from lmforge.data.squad import write_squad

    write_squad(records, path)
    return str(path)


def _recipe(tmp: Path, files: tuple[str, str, str], steps: int = 500, **train) -> dict:
    return {"run": {"name": "qa", "out_dir": str(tmp / "run"), "seed": 0},
            "data": {"train": files[0], "val": files[1], "test": [files[2]],
                     "max_length": 32, "doc_stride": 8},
            "backbone": {"encoder": "bilstm", "encoder_config": {"d_emb": 32, "hidden": 32}},
            "train": {"max_steps": steps, "batch_size": 16, "lr": 3e-3, "min_lr": 0.0,
                      "warmup_steps": 5, "eval_every": steps // 2, "ckpt_every": steps // 2,
                      "keep_last": 1, "log_every": 50, "threads": 1, **train}}


@pytest.fixture(scope="module")
def qa_files(tmp_path_factory) -> tuple[str, str, str]:
    d = tmp_path_factory.mktemp("squad")
    return tuple(_squad(d / f"{s}.json", _questions(n, i, impossible=0.3))
                 for i, (s, n) in enumerate([("train", 600), ("val", 80), ("test", 100)]))


@pytest.fixture(scope="module")
def qa_run(tmp_path_factory, qa_files):
    tmp = tmp_path_factory.mktemp("qa")
    return finetune(build_finetune_recipe(_recipe(tmp, qa_files)), show_progress=False,
                    log=lambda m: None)


def test_learns_held_out_questions_across_windows(qa_run, qa_files):
    from lmforge.data.squad import read_squad
    from lmforge.tasks.qa_spans import encode_qa

    test = read_squad(qa_files[2])
    pred = load_task_model(qa_run.run_dir)
    windows = encode_qa(test, pred.tokenizer, max_length=32, stride=8)
    assert len(windows) > len(test) * 1.3  # many contexts are cut into several windows
    assert any(w.start_position == 0 and not r["is_impossible"]
               for w in windows for r in [test[w.example]])  # answer in another window
    s = qa_run.results["splits"]["test"]
    assert s["HasAns_f1"] >= 90 and s["f1"] >= 90 and s["NoAns_exact"] >= 90
    assert qa_run.results["metric"] == "f1" and qa_run.results["version_2_with_negative"]
    # the reported scores are the official ones of the predictions the model makes
    answers = pred.predict(test)
    ref = qa_scores({r["id"]: a["answer"] for r, a in zip(test, answers, strict=True)}, test)
    assert s["f1"] == pytest.approx(ref["f1"]) and s["exact"] == pytest.approx(ref["exact"])
    errors = [json.loads(x) for x in (qa_run.run_dir / "errors.jsonl").read_text().splitlines()]
    assert len(errors) == round(len(test) * (1 - s["exact"] / 100))
    assert all(e["pred"] != (e["gold"] or [""])[0] for e in errors)


def test_unanswerable_questions_get_the_empty_answer_above_the_threshold(qa_run, qa_files):
    from lmforge.data.squad import read_squad

    pred = load_task_model(qa_run.run_dir)
    theta = qa_run.results["null_threshold"]
    assert pred.cfg.null_threshold == pytest.approx(theta)  # tuned on val, saved in the model
    test = read_squad(qa_files[2])
    cands = pred.candidates(test)
    out = pred.predict(test)
    impossible = [i for i, r in enumerate(test) if r["is_impossible"]]
    assert sum(out[i]["answer"] == "" for i in impossible) >= 0.9 * len(impossible)
    for c, o in zip(cands, out, strict=True):
        empty = c.score_diff is None or c.score_diff > theta
        assert (o["answer"] == "") == empty
        assert (o["start"] is None) == empty
        if not empty:  # a span answer is the context's characters [start, end)
            assert o["answer"] == c.text and 0 < o["score"] <= 1


def test_predictor_and_cli_answer_and_evaluate(qa_run, qa_files, tmp_path, capsys):
    from lmforge.data.squad import read_squad

    pred = load_task_model(qa_run.run_dir)
    asked = [{"question": r["question"], "context": r["context"]}
             for r in read_squad(qa_files[2]) if not r["is_impossible"]][:20]
    gold = [r["answers"][0]["text"] for r in read_squad(qa_files[2])
            if not r["is_impossible"]][:20]
    out = pred.predict(asked)
    assert sum(o["answer"] == g for o, g in zip(out, gold, strict=True)) >= 18
    assert all(q["context"][o["start"]:o["end"]] == o["answer"]
               for q, o in zip(asked, out, strict=True) if o["answer"])
    inputs = tmp_path / "q.jsonl"
    inputs.write_text("".join(json.dumps(q) + "\n" for q in asked), encoding="utf-8")
    capsys.readouterr()
    code, stdout, err = run_cli(["predict", str(qa_run.run_dir), "--input", str(inputs)],
                                capsys)
    assert code == 0, err
    assert [json.loads(x)["answer"] for x in stdout.splitlines()] == \
        [o["answer"] for o in out]
    code, _, err = run_cli(["evaluate", str(qa_run.run_dir), "--data", qa_files[2], "--out",
                            str(tmp_path / "ev")], capsys)
    assert code == 0, err
    metrics = json.loads((tmp_path / "ev/test/metrics.json").read_text())
    assert metrics["f1"] == pytest.approx(qa_run.results["splits"]["test"]["f1"])
    with pytest.raises(DataError, match="'question' and 'context'"):
        pred.predict(["Where does Eve live?"])


@pytest.fixture(scope="module")
def qa_bert(tmp_path_factory) -> str:
    """An untrained 1-layer BERT with a WordPiece tokenizer of the questions' words."""
    from lmforge.models.bert import BertConfig, BertModel
    from lmforge.tokenize import train_tokenizer

    folder = tmp_path_factory.mktemp("bert")
    texts = [t for r in _questions(200, 9, 0.0) for t in (r["question"], r["context"])]
    tok = train_tokenizer("wordpiece", texts=texts, vocab_size=200, show_progress=False)
    torch.manual_seed(0)
    BertModel(BertConfig(vocab_size=tok.vocab_size, n_layer=1, n_head=2, d_model=32,
                         max_position=32, head="mlm")).save_pretrained(folder)
    tok.save(folder)
    return str(folder)


def test_resume_continues_exactly(tmp_path, qa_files, qa_bert):
    # a saved tokenizer: the one trained for a scratch encoder is retrained on resume, and
    # HF's WordPiece trainer breaks frequency ties differently from run to run
    common = {"schedule": "constant", "warmup_steps": 0, "eval_every": 10, "ckpt_every": 10}
    bert = {"encoder": None, "encoder_config": {}, "path": qa_bert}
    a = _recipe(tmp_path / "a", qa_files, steps=20, **common)
    a["backbone"] = bert
    finetune(build_finetune_recipe(a), show_progress=False, log=lambda m: None)
    b = _recipe(tmp_path / "b", qa_files, steps=10, **common)
    b["backbone"] = bert
    finetune(build_finetune_recipe(b), show_progress=False, log=lambda m: None)
    b["train"]["max_steps"] = 20
    finetune(build_finetune_recipe(b), resume=True, show_progress=False, log=lambda m: None)
    wa = load_task_model(tmp_path / "a/run/checkpoints/step_0000020").model.state_dict()
    wb = load_task_model(tmp_path / "b/run/checkpoints/step_0000020").model.state_dict()
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


PEOPLE_ZH = ["安娜", "鲍勃", "卡尔", "达娜", "伊娃", "雨果"]
CITIES_ZH = ["巴黎", "罗马", "奥斯陆", "利马", "开罗", "东京"]


def _questions_zh(n: int, seed: int) -> list[dict]:
    """'安娜住在哪里?' about a context of that fact and two filler sentences in random
    order. With every character [UNK] (the English vocabulary of ``qa_bert``) the
    sentences differ only in length, and the answer's place is a guess (37 F1 measured)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        p, c = rng.choice(PEOPLE_ZH), rng.choice(CITIES_ZH)
        sents = [f"{p}住在{c}。", "今天天气很好。", "商店九点开门。"]
        rng.shuffle(sents)
        context = "".join(sents)
        out.append({"id": f"z{seed}-{i}", "question": f"{p}住在哪里?", "context": context,
                    "answers": [{"text": c, "answer_start": context.index(f"{p}住在{c}")
                                 + len(p) + 2}], "is_impossible": False})
    return out


def test_unknown_characters_get_their_own_tokens_and_embedding_rows(tmp_path, qa_bert):
    from transformers import PreTrainedTokenizerFast

    from lmforge.hub import load_pretrained
    from lmforge.tasks.new_characters import add_characters, unknown_characters

    enc, tok = load_pretrained(qa_bert, require_tokenizer=True)
    V, cfg = tok.vocab_size, {"vocab_size": tok.vocab_size}
    english = [t for r in _questions(20, 3, 0.0) for t in (r["question"], r["context"])]
    assert unknown_characters(tok, english) == []
    assert add_characters(enc, cfg, tok, english) == (tok, []) and cfg["vocab_size"] == V
    chinese = [t for r in _questions_zh(20, 3) for t in (r["question"], r["context"])]
    missing = unknown_characters(tok, chinese)
    assert set(chinese[0] + chinese[1]) - {"?"} <= set(missing) and "?" not in missing
    old = enc.embeddings.word.weight.detach().clone()
    grown, chars = add_characters(enc, cfg, tok, chinese + english, seed=0)
    assert chars == missing and grown.vocab_size == cfg["vocab_size"] == V + len(chars)
    assert grown.get_vocab()["住"] == V + chars.index("住")
    assert tok.unk_id in tok.encode(chinese[0]) and grown.unk_id not in grown.encode(chinese[0])
    assert all(grown.encode(t) == tok.encode(t) for t in english)  # known text: same ids
    table = enc.embeddings.word.weight
    assert table.shape == (V + len(chars), old.shape[1]) and torch.equal(table[:V], old)
    new = table[V:].detach()
    gaps = torch.cdist(new, new) + torch.eye(len(chars)) * 1e9
    assert gaps.min() > 0.25 * new.norm(dim=1).mean()  # independent draws: apart
    norms = old[[i for t, i in tok.get_vocab().items() if len(t) == 1]].norm(dim=1)
    assert norms.min() * 0.5 < new.norm(dim=1).mean() < norms.max() * 2  # a character's scale
    assert enc.encode(torch.tensor([grown.encode(chinese[0])])).shape[-1] == old.shape[1]
    grown.save(tmp_path)  # an ordinary tokenizer.json for transformers
    hf = PreTrainedTokenizerFast(tokenizer_file=str(tmp_path / "tokenizer.json"))
    assert hf(chinese[1], add_special_tokens=False)["input_ids"] == grown.encode(chinese[1])


def test_chinese_questions_on_an_english_vocabulary_are_learned_and_reloaded(tmp_path, qa_bert):
    from transformers import PreTrainedTokenizerFast

    from lmforge.data.squad import read_squad

    files = tuple(_squad(tmp_path / f"{s}.json", _questions_zh(n, i))
                  for i, (s, n) in enumerate([("train", 600), ("val", 80), ("test", 100)]))
    raw = _recipe(tmp_path, files, steps=300, lr=2e-3)
    raw["backbone"] = {"path": qa_bert}
    logs: list[str] = []
    run = finetune(build_finetune_recipe(raw), show_progress=False, log=logs.append)
    assert any("characters of the training text were [UNK]" in m for m in logs)
    assert run.results["splits"]["test"]["f1"] >= 90  # all [UNK]: 37
    pred = load_task_model(run.run_dir)
    asked = [{"question": r["question"], "context": r["context"]}
             for r in read_squad(files[2])[:5]]
    assert pred.predict(asked) == run.predictor.predict(asked)
    vocab = pred.tokenizer.vocab_size
    assert pred.model.encoder.embeddings.word.num_embeddings == vocab
    hf = PreTrainedTokenizerFast(tokenizer_file=str(Path(run.results["best_checkpoint"])
                                                    / "tokenizer.json"))
    assert hf(asked[0]["context"], add_special_tokens=False)["input_ids"] == \
        pred.tokenizer.encode(asked[0]["context"])
    assert pred.tokenizer.unk_id not in pred.tokenizer.encode(asked[0]["context"])


def test_span_loss_is_the_mean_of_start_and_end_cross_entropy_without_padding():
    from lmforge.tasks.extractive import SpanObjective

    torch.manual_seed(0)
    logits = torch.randn(2, 6, 2)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    start, end = torch.tensor([2, 0]), torch.tensor([4, 3])
    batch = {"attention_mask": mask, "start_positions": start, "end_positions": end}
    loss, metrics, n = SpanObjective()(lambda b: logits, batch)
    ref = 0.0
    for i in range(2):  # each window alone, its padding cut off
        n_i = int(mask[i].sum())
        for k, y in ((0, start[i]), (1, end[i])):
            ref += -torch.log_softmax(logits[i, :n_i, k], 0)[y] / 4
    assert loss.item() == pytest.approx(float(ref), rel=1e-6) and n == 2


def test_world_questions_read_their_context_page():
    from lmforge.corpora.tasks import render_task_set
    from lmforge.tasks.datasets import load_splits

    raw = {"data": {"world": "qa", "langs": ["en", "zh"],
                    "world_sizes": {"train": 60, "val": 30, "test": 30, "test_unseen": 30}},
           "backbone": {"encoder": "bilstm"}}
    recipe = build_finetune_recipe(raw)
    splits, card, task = load_splits(recipe)
    pages = {p["id"]: p["text"] for p in render_task_set(
        "qa", seed=recipe.run.seed, sizes=raw["data"]["world_sizes"], langs=("en", "zh")
    ).documents}
    assert task == "extract" and card["ceiling"]["test"]["f1"] == 1.0
    recs = [r for s in splits.values() for r in s]
    assert {r["type"] for r in recs} == {"single", "unanswerable", "multihop"}
    for r in recs:
        assert r["context"] == pages[r["context_id"]]
        for a in r["answers"]:
            assert r["context"][a["answer_start"]:a["answer_start"] + len(a["text"])] \
                == a["text"]
        if r["type"] == "multihop":  # the answer is on the bridge's page
            assert r["context_id"] == r["doc_ids"][-1] != r["doc_ids"][0]


def test_bad_squad_and_bad_options_are_one_line_errors(tmp_path, qa_files):
    rows = _questions(20, 5, impossible=0.0)
    rows[3]["answers"][0]["answer_start"] += 1  # no longer the answer's position
    bad = _squad(tmp_path / "bad.json", rows)
    r = subprocess.run([*CLI, "finetune", "qa-extractive-minilm", "--out", str(tmp_path / "r"),
                        "--set", "data.world=null", "--set", f"data.train={bad}"],
                       capture_output=True, text=True, timeout=120)
    msg = r.stderr.strip()
    assert r.returncode == 2 and len(msg.splitlines()) == 1, r.stderr
    assert "bad.json" in msg and "data[0].paragraphs[3].qas[0]" in msg
    jsonl = tmp_path / "q.jsonl"
    jsonl.write_text(json.dumps({"text": "x", "label": "a"}) + "\n", encoding="utf-8")
    from lmforge.tasks.config import TaskDataConfig
    from lmforge.tasks.datasets import read_file

    assert "SQuAD JSON" in one_line_error(DataError, read_file, TaskDataConfig(train="x"),
                                          str(jsonl), "extract")
    for override, message in [({"data": {"doc_stride": 30}}, "data.doc_stride=30"),
                              ({"finetune": {"metric": "accuracy"}}, "finetune.metric"),
                              ({"finetune": {"label_smoothing": 0.1}}, "label_smoothing")]:
        raw = _recipe(tmp_path / message, qa_files, steps=2)
        for section, fields in override.items():
            raw.setdefault(section, {}).update(fields)
        assert message in one_line_error(ConfigError, finetune, build_finetune_recipe(raw),
                                         show_progress=False, log=lambda m: None)


def test_recipes_load():
    for name in ("qa-extractive-minilm", "qa-extractive-bert", "qa-extractive-minilm-zh"):
        r = load_finetune_recipe(name)
        assert r.data.world == "qa" and r.finetune.metric == "f1"


@pytest.mark.slow
def test_minilm_recipe_answers_world_questions(tmp_path):
    r = load_finetune_recipe("qa-extractive-minilm", [
        f"run.out_dir={tmp_path / 'run'}", "train.threads=1",
        "data.world_sizes={train: 1900, val: 200, test: 400, test_unseen: 200}"])
    res = finetune(r, show_progress=False, log=lambda m: None).results["splits"]
    assert res["test"]["HasAns_f1"] >= 90 and res["test"]["f1"] >= 85
    assert res["test_unseen"]["HasAns_f1"] >= 85
