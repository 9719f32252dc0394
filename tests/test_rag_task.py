"""Generative QA over retrieved passages (the ``answer`` task): a model trained on the
user's SQuAD file answers questions about people it never saw a question about (it has to
read the retrieved page), says "no answer" where the page is silent, its scores are
:func:`lmforge.eval.qa.qa_scores` of its answers, and ``lmforge evaluate`` and
``lmforge qa ask`` use the run's own index."""

from __future__ import annotations

import json
import random
import shutil

import pytest
from fakes import assert_user_error, run_cli, tiny_train

from lmforge.errors import ConfigError
from lmforge.eval.qa import qa_scores
from lmforge.retrieval.ask import rag_input
from lmforge.tasks.rag import NO_ANSWER, counterfactual, squad_collection
from lmforge.tasks.seq2seq import finetune_seq2seq
from lmforge.tasks.seq2seq_config import build_seq2seq_recipe
from lmforge.tasks.seq2seq_predictor import Answerer, load_seq2seq

QUIET = {"show_progress": False, "log": lambda m: None}
CITIES = ["Paris", "Lyon", "Tokyo", "Berlin", "Madrid", "Oslo", "Cairo", "Lima"]
COLOURS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple"]


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(["ka", "lo", "mi", "ru", "te", "so", "na", "vi", "pe", "do"])
                   for _ in range(3)).capitalize()


def _squad(people: list[tuple[str, str, str]], offset: int) -> dict:
    """One article per person: where they live and what they like; three questions each,
    the third (their age) unanswerable."""
    data = []
    for i, (name, city, colour) in enumerate(people):
        context = f"{name} lives in {city}. {name} likes {colour}."
        qas = [{"id": f"q{offset + i}-city", "question": f"Where does {name} live?",
                "answers": [{"text": city, "answer_start": context.index(city)}]},
               {"id": f"q{offset + i}-colour", "question": f"What does {name} like?",
                "answers": [{"text": colour, "answer_start": context.rindex(colour)}]},
               {"id": f"q{offset + i}-age", "question": f"How old is {name}?",
                "answers": [], "is_impossible": True}]
        data.append({"title": name, "paragraphs": [{"context": context, "qas": qas}]})
    return {"version": "v2.0", "data": data}


@pytest.fixture(scope="module")
def squad_files(tmp_path_factory):
    rng = random.Random(0)
    names = sorted({_name(rng) for _ in range(400)})
    rng.shuffle(names)
    people = [(n, rng.choice(CITIES), rng.choice(COLOURS)) for n in names[:300]]
    d = tmp_path_factory.mktemp("rag")
    for split, part, offset in (("train", people[:240], 0), ("dev", people[240:260], 240),
                                ("test", people[260:], 260)):
        (d / f"{split}.json").write_text(json.dumps(_squad(part, offset)), encoding="utf-8")
    return d


def _recipe(out, files, steps=400, **extra) -> dict:
    raw = {
        "task": "answer",
        "run": {"name": "rag", "out_dir": str(out), "seed": 0},
        "data": {"train": str(files / "train.json"), "val": str(files / "dev.json"),
                 "test": [str(files / "test.json")], "langs": ["en"], "max_length": 48,
                 "val_decode": 60},
        "retrieval": {"k": 1, "mode": "bm25"},
        "tokenizer": {"kind": "bpe", "vocab_size": 400},
        "model": {"arch": "transformer", "d_model": 64, "n_head": 4, "n_encoder_layers": 2,
                  "n_decoder_layers": 1, "d_ff": 128, "dropout": 0.0, "norm_first": True,
                  "max_seq_len": 64, "share_embeddings": True},
        "decode": {"beams": 2, "max_new_tokens": 8},
        "label_smoothing": 0.0,
        "train": tiny_train(steps),
    }
    for k, v in extra.items():
        raw[k] = {**raw.get(k, {}), **v}
    return raw


@pytest.mark.slow  # a full recipe, about 25 s: the default suite's budget is spent
def test_reads_the_retrieved_page_for_unseen_people(tmp_path, squad_files, capsys):
    res = finetune_seq2seq(build_seq2seq_recipe(_recipe(tmp_path / "run", squad_files)),
                           **QUIET)
    test = res.results["splits"]["test"]
    # 40 people no training question asked about: 80 answerable, 40 not
    assert test["total"] == 120 and test["HasAns_total"] == 80
    assert test["gold_in_passages"] == 1.0  # BM25 finds each person's page by the name
    assert test["HasAns_f1"] >= 90 and test["NoAns_f1"] >= 95, test
    assert test["answer_in_passages"] >= 0.95
    assert test["ceiling"] is None  # the user's files: no known ceiling

    # the scores are qa_scores of the answers the predictor gives
    answerer = load_seq2seq(tmp_path / "run")
    assert isinstance(answerer, Answerer) and answerer.retrieval.k == 1
    from lmforge.data.squad import read_squad

    records = read_squad(squad_files / "test.json")
    contexts = {r["context"] for r in records}
    hyps = answerer.generate([rag_input(r["question"], [r["context"]]) for r in records])
    assert NO_ANSWER not in hyps and "" in hyps
    want = qa_scores({r["id"]: h for r, h in zip(records, hyps, strict=True)}, records)
    assert test["f1"] == pytest.approx(want["f1"]) and test["exact"] == pytest.approx(
        want["exact"])
    # the run indexed the contexts of its three files, once each
    assert len(squad_collection(records)) == len(contexts) == 40

    # lmforge evaluate retrieves from the run's index and gives the same scores
    code, out, _ = run_cli(["evaluate", str(tmp_path / "run"), "--data",
                            str(squad_files / "test.json"), "--out", str(tmp_path / "ev")],
                           capsys)
    saved = json.loads((tmp_path / "ev/test/metrics.json").read_text())
    assert code == 0 and f"F1 {test['f1']:.2f}" in out
    assert saved["f1"] == pytest.approx(test["f1"])

    # lmforge qa ask reads the run's index with the recipe's k
    person = records[0]
    code, out, _ = run_cli(["qa", "ask", str(tmp_path / "run/index"), "--mode", "generative",
                            "--model", str(tmp_path / "run"), "--question",
                            person["question"], "--json"], capsys)
    result = json.loads(out)
    assert code == 0 and len(result["passages"]) == 1
    assert result["answer"] == person["answers"][0]["text"]
    assert result["source"]["text"] == person["context"]

    # without its index the run cannot be evaluated: one line, exit 2
    shutil.rmtree(tmp_path / "run/index")
    assert_user_error(["evaluate", str(tmp_path / "run"), "--data",
                       str(squad_files / "test.json")], capsys, "the run's index is missing")


def test_counterfactual_copies_can_only_be_answered_by_reading():
    def rec(i, fact, answer, lang="en"):
        ctx = f"P{i} lives in {answer}. {answer} is far." if answer else f"P{i} is here."
        return {"id": f"q{i}", "src": rag_input(f"Where does P{i} live?", [ctx]),
                "tgt": answer or NO_ANSWER, "question": f"Where does P{i} live?",
                "context": ctx, "answers": [{"text": answer, "answer_start": 13}]
                if answer else [], "fact": fact, "lang": lang}

    records = [rec(0, "home", "Paris"), rec(1, "home", "Lyon"), rec(2, "home", "Oslo"),
               rec(3, "year", "1984"), rec(4, "home", None), rec(5, "home", "Rome", "zh")]
    copies = counterfactual(records, 3, seed=0)
    # Paris, Lyon, Oslo: 3 copies each; 1984 and Rome have no other answer in their pool
    assert [c["id"] for c in copies][:3] == ["q0~cf1", "q0~cf2", "q0~cf3"] and len(copies) == 9
    for c in copies:
        orig = records[int(c["id"][1])]
        assert c["tgt"] in {"Paris", "Lyon", "Oslo"} - {orig["tgt"]}
        assert orig["tgt"] not in c["src"] and c["src"].count(c["tgt"]) == 2
        assert c["answers"][0]["text"] == c["tgt"] and c["context"] in c["src"]
    assert counterfactual(records, 3, seed=0) == copies  # seeded


@pytest.mark.parametrize("override, message", [
    ({"data": {"langs": ["en", "de"]}}, "cannot hold de"),
    ({"retrieval": {"max_words": 16, "overlap": 16}}, "must be below"),
    ({"retrieval": {"k": 0}}, "retrieval.k"),
    ({"metric": "bleu"}, "not a answer metric"),
])
def test_recipe_errors_name_the_field(tmp_path, squad_files, override, message):
    raw = _recipe(tmp_path / "r", squad_files)
    for k, v in override.items():
        raw[k] = {**raw[k], **v} if isinstance(v, dict) else v
    with pytest.raises(ConfigError, match=message):
        build_seq2seq_recipe(raw)


def test_world_recipe_reports_types_and_retrieval_beside_the_ceiling(tmp_path):
    from lmforge.tasks.config import load_finetune_recipe

    sizes = {"train": 60, "val": 12, "test": 12, "test_unseen": 12}
    r = load_finetune_recipe("qa-generative-transformer", [
        f"run.out_dir={tmp_path / 'w'}", f"data.world_sizes={json.dumps(sizes)}",
        "train.max_steps=2", "train.eval_every=2", "train.ckpt_every=2", "train.threads=1",
        "model.d_model=32", "model.d_ff=64", "model.n_encoder_layers=1",
        "model.n_decoder_layers=1", "tokenizer.vocab_size=600", "data.max_length=96",
        "model.max_seq_len=128", "decode.beams=1", "decode.max_new_tokens=4"])
    splits = finetune_seq2seq(r, **QUIET).results["splits"]
    assert list(splits) == ["val", "test", "test_unseen"]
    for s in splits.values():
        assert s["ceiling"] == 100.0 and s["total"] == 12
        assert set(s["by_type"]) == {"single", "multihop", "unanswerable"}
        assert 0 <= s["gold_in_passages"] <= 1
    assert (tmp_path / "w/index/docs.sqlite").is_file()


def test_cli_errors(tmp_path, squad_files, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text('{"data": [{"title": "x", "paragraphs": [{"context": "abc", "qas": '
                   '[{"id": "1", "question": "q?", "answers": [{"text": "zz", '
                   '"answer_start": 0}]}]}]}]}', encoding="utf-8")
    assert_user_error(["finetune", "qa-generative-transformer", "--out", str(tmp_path / "o"),
                       "--set", "data.world=null", "--set", f"data.train={bad}"],
                      capsys, "bad.json", "does not match the context")
    assert_user_error(["qa", "ask", str(tmp_path / "none"), "--question", "q?"], capsys,
                      "none")
