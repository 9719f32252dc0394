"""The task routes on a real server: tiny fine-tuned runs of every task (a few steps each,
one thread) answer ``/v1/classify``, ``/v1/ner``, ``/v1/relations``, ``/v1/qa``,
``/v1/translate`` and ``/v1/summarize`` with exactly what their predictors give when called
directly, batched and with Chinese text; usage counts the tokenizer's tokens; every error
comes in OpenAI's envelope naming the field; the OpenAPI schema documents the routes."""

from __future__ import annotations

import concurrent.futures
from pathlib import Path

import httpx
import pytest
import serve_fixtures
from serve_fixtures import (
    CITIES,
    QUIET,
    make_model_folder,
    ner_run,
    people,
    running,
    sentiment_run,
    seq2seq_run,
    task_run,
    translate_run,
    write_jsonl,
)

from lmforge.data.squad import write_squad
from lmforge.retrieval.ask import rag_input
from lmforge.serve.app import ServerOptions, build_app
from lmforge.serve.audit import AuditLog
from lmforge.serve.keys import KeyStore
from lmforge.serve.models import ModelSpec
from lmforge.tasks import load_task_model
from lmforge.tasks.config import build_finetune_recipe
from lmforge.tasks.finetune import finetune
from lmforge.tasks.rag import open_run_index, rag_records
from lmforge.tasks.seq2seq_predictor import load_seq2seq

TASKS = {"sent": "classify", "pairs": "classify", "baseline": "classify", "ner": "ner",
         "rel": "relations", "squad": "qa", "rag": "qa", "mt": "translate",
         "sum": "summarize", "gpt": "generate"}


def _squad_records() -> list[dict]:
    out = []
    for i, (p, c) in enumerate(people()):
        ctx = f"{p} lives in {c}. The sky is clear today. It rained on Monday."
        out.append({"id": f"q{i}", "question": f"Where does {p} live?", "context": ctx,
                    "answers": [{"text": c, "answer_start": ctx.index(c)}],
                    "is_impossible": False})
    return out


def _relation(p: str, c: str, verb: str = "lives in") -> dict:
    """``p`` lives in (or visited) ``c``: lives_in, else no_relation."""
    text = f"{p} {verb} {c} ."
    return {"text": text, "h": {"name": p, "pos": [0, len(p)]},
            "t": {"name": c, "pos": [text.index(c), text.index(c) + len(c)]},
            "relation": "lives_in" if verb == "lives in" else "no_relation"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("task-runs")
    pairs = [{"text": f"{p} lives in {c}", "text_b": f"{p} is in {c2}",
              "label": "yes" if c == c2 else "no"} for p, c in people() for c2 in CITIES[:2]]
    write_squad(_squad_records(), d / "squad.json")
    docs = [{"document": f"{p} lives in {c}. It rained on Monday.",
             "summary": f"{p} lives in {c}."} for p, c in people()]
    docs += [{"document": f"{p}住在{c}。今天下雨了。", "summary": f"{p}住在{c}。"}
             for p, c in people()]
    # 200 seq2seq steps, not serve_fixtures' 300: with run seeds 0, 1 and 2 the reader
    # still answers both questions and the translator and summarizer write 3 different
    # texts for the 3 inputs (at 100 steps one seed's summarizer wrote one text for all).
    # No loss.png (0.2 s a run): the server never reads it.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(serve_fixtures, "SEQ2SEQ_STEPS", 200)
        mp.setattr("lmforge.train.trainer.plot_loss", lambda *a, **k: True)
        return _train_runs(d, pairs, docs)


def _train_runs(d: Path, pairs: list[dict], docs: list[dict]) -> dict[str, Path]:
    return {
        "sent": sentiment_run(d),  # writes d/sent.jsonl, which the baseline reads too
        "pairs": task_run(d / "pairs", write_jsonl(d / "pairs.jsonl", pairs),
                          data={"text_b_field": "text_b"}),
        "baseline": finetune(build_finetune_recipe(
            {"run": {"out_dir": str(d / "baseline"), "seed": 0},
             "data": {"train": str(d / "sent.jsonl"), "val": str(d / "sent.jsonl")},
             "backbone": {"classical": "tfidf-logreg"}}), **QUIET).run_dir,
        "ner": ner_run(d),
        "rel": task_run(d / "rel", write_jsonl(d / "rel.jsonl", [
            _relation(p, c, verb) for p, c in people() for verb in ("lives in", "visited")])),
        "squad": task_run(d / "squad", str(d / "squad.json"), data={"doc_stride": 8}),
        "rag": seq2seq_run(d / "rag", "answer", str(d / "squad.json"), ["en"],
                           retrieval={"k": 1, "mode": "bm25"}),
        "mt": translate_run(d),
        "sum": seq2seq_run(d / "sum", "summarize", write_jsonl(d / "sum.jsonl", docs),
                           ["en", "zh"]),
        "gpt": make_model_folder(d / "gpt", template=False),
    }


@pytest.fixture(scope="module")
def server(runs, tmp_path_factory):
    """A keyed server (so the audit records usage) of every run; an httpx client with the
    key, and the audit database."""
    db = tmp_path_factory.mktemp("task-db") / "serve.db"
    secret = KeyStore(db).create("user", "tasks")[1]
    app = build_app([ModelSpec(name, str(path)) for name, path in runs.items()],
                    ServerOptions(db=db))
    with running(app) as url, httpx.Client(base_url=url, timeout=60, headers={
            "Authorization": f"Bearer {secret}"}) as client:
        yield client, db


@pytest.fixture(scope="module")
def client(server) -> httpx.Client:
    return server[0]


@pytest.fixture(scope="module")
def predictors(runs) -> dict:
    """The predictors of the runs, loaded apart from the server."""
    return {name: load_seq2seq(path) if name in ("rag", "mt", "sum") else
            load_task_model(path) for name, path in runs.items() if name != "gpt"}


def _ok(client: httpx.Client, route: str, body: dict) -> dict:
    r = client.post(route, json=body)
    assert r.status_code == 200, r.text
    out = r.json()
    assert out["object"] == "list" and out["model"] == body["model"]
    assert [d["index"] for d in out["data"]] == list(range(len(out["data"])))
    return out


def _error(client: httpx.Client, route: str, body: dict, status: int = 400) -> dict:
    """The error of a request that fails with ``status``, checked to be OpenAI's envelope."""
    r = client.post(route, json=body)
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    return error


def _ranked(probs: dict[str, float], top_k: int | None = None) -> list[tuple[str, float]]:
    return sorted(probs.items(), key=lambda kv: -kv[1])[:top_k]


TEXTS = ["the food was great", "the 饭菜 was 差", "the film was awful", "饭菜很好"]


def test_models_list_the_task_of_each_run(client):
    models = {m["id"]: m for m in client.get("/v1/models").json()["data"]}
    assert {name: m["kind"] for name, m in models.items()} == TASKS
    assert all(m["max_model_len"] is None for name, m in models.items() if name != "gpt")


@pytest.mark.parametrize("model, inputs", [
    ("sent", TEXTS),
    ("baseline", TEXTS),
    ("pairs", [{"text_a": "Anna lives in Paris", "text_b": "Anna is in Paris"},
               {"text_a": "王磊 lives in 北京", "text_b": "王磊 is in Rome"}]),
])
def test_classify_equals_the_predictor(client, predictors, model, inputs):
    records = [x if isinstance(x, str) else {"text": x["text_a"], "text_b": x["text_b"]}
               for x in inputs]
    want = predictors[model].predict(records)
    for top_k in (None, 1):
        got = _ok(client, "/v1/classify", {"model": model, "input": inputs, "top_k": top_k})
        assert [d["label"] for d in got["data"]] == [p["label"] for p in want]
        assert [d["score"] for d in got["data"]] == [p["probs"][p["label"]] for p in want]
        assert [list(d["probabilities"].items()) for d in got["data"]] == \
            [_ranked(p["probs"], top_k) for p in want]
    one = _ok(client, "/v1/classify", {"model": model, "input": inputs[1]})["data"]
    assert len(one) == 1 and one[0]["label"] == want[1]["label"]


def test_ner_gives_the_predictors_entities_with_offsets(client, predictors):
    texts = ["Anna lives in 北京 .", "we met 王磊 in Paris today", "安娜住在上海。", "Bob"]
    want = predictors["ner"].predict(texts)
    got = _ok(client, "/v1/ner", {"model": "ner", "input": texts})["data"]
    assert [d["text"] for d in got] == texts
    assert [d["entities"] for d in got] == [
        [{"type": e["label"], "text": e["text"], "start": e["start"], "end": e["end"]}
         for e in p["entities"]] for p in want]
    entities = [(d["text"], e) for d in got for e in d["entities"]]
    assert entities, "the tiny tagger found no entity: nothing was compared"
    assert all(text[e["start"]:e["end"]] == e["text"] for text, e in entities)


def test_relations_read_character_spans(client, predictors):
    rows = [_relation("Anna", "北京"), _relation("王磊", "Rome", "visited"),
            _relation("Carl", "Paris"), _relation("安娜", "上海")]
    rows[2]["h"], rows[2]["t"] = rows[2]["t"], rows[2]["h"]  # the direction matters
    rows[1]["h"]["type"] = "person"
    inputs = [{"text": r["text"],
               "head": {"start": r["h"]["pos"][0], "end": r["h"]["pos"][1],
                        **({"type": r["h"]["type"]} if "type" in r["h"] else {})},
               "tail": {"start": r["t"]["pos"][0], "end": r["t"]["pos"][1]}} for r in rows]
    want = predictors["rel"].predict([{k: r[k] for k in ("text", "h", "t")} for r in rows])
    got = _ok(client, "/v1/relations", {"model": "rel", "input": inputs})["data"]
    assert [(d["relation"], d["score"], list(d["probabilities"].items())) for d in got] == \
        [(p["relation"], p["probs"][p["relation"]], _ranked(p["probs"])) for p in want]


def test_extractive_qa_answers_with_offsets_into_the_context(client, predictors):
    questions = [{"question": r["question"], "context": r["context"]}
                 for r in _squad_records()[::7]]
    want = predictors["squad"].predict(questions)
    got = _ok(client, "/v1/qa", {"model": "squad", "input": questions})["data"]
    assert [{k: d[k] for k in ("answer", "score", "start", "end")} for d in got] == want
    for q, d in zip(questions, got, strict=True):
        if d["start"] is not None:
            assert q["context"][d["start"]:d["end"]] == d["answer"]


def test_generative_qa_reads_the_context_or_retrieves_passages(client, runs, predictors):
    pred = predictors["rag"]
    asked = [{"question": "Where does 安娜 live?", "context": "安娜 lives in Rome."},
             {"question": "Where does Bob live?"}]
    with open_run_index(runs["rag"], pred.retrieval) as index:
        retrieved = rag_records([{"id": "1", "question": asked[1]["question"],
                                  "answers": []}], index, pred.retrieval)[0]["src"]
    assert "Bob lives in" in retrieved
    want = pred.generate([rag_input(asked[0]["question"], [asked[0]["context"]]), retrieved])
    assert all(want), "the tiny reader answered nothing: a weak check"
    got = _ok(client, "/v1/qa", {"model": "rag", "input": asked})["data"]
    assert [d["answer"] for d in got] == want
    assert all(d["score"] is None and d["start"] is None and d["end"] is None for d in got)


@pytest.mark.parametrize("model, route, key", [("mt", "/v1/translate", "translation"),
                                               ("sum", "/v1/summarize", "summary")])
def test_translate_and_summarize_equal_the_predictor(client, predictors, model, route, key):
    texts = ["Anna lives in 北京", "王磊住在上海。今天下雨了。", "Carl lives in Rome. It rained."]
    pred = predictors[model]
    for options, body in [({}, {}), ({"beams": 1, "max_new_tokens": 3},
                                     {"beams": 1, "max_tokens": 3})]:
        want = pred.generate(texts, **options)
        assert len(set(want)) > 1, "the tiny model wrote one text for all: a weak check"
        got = _ok(client, route, {"model": model, "input": texts, **body})["data"]
        assert [d[key] for d in got] == want


def test_concurrent_requests_to_one_model_each_get_their_own_answer(client, predictors):
    want = {t: predictors["sent"].predict([t])[0]["label"] for t in TEXTS}

    def label(text: str) -> str:
        return _ok(client, "/v1/classify", {"model": "sent", "input": text})["data"][0]["label"]

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        assert list(pool.map(label, TEXTS * 3)) == [want[t] for t in TEXTS * 3]


def test_usage_counts_the_tokenizers_tokens(server, predictors):
    client, db = server
    tok = predictors["mt"].tokenizer
    texts = ["Anna lives in 北京", "Bob lives in Rome"]
    r = client.post("/v1/translate", json={"model": "mt", "input": texts},
                    headers={"X-Request-Id": "task-usage-mt"})
    outputs = [d["translation"] for d in r.json()["data"]]
    client.post("/v1/classify", json={"model": "baseline", "input": texts},
                headers={"X-Request-Id": "task-usage-baseline"})
    rows = {row["request_id"]: row for row in AuditLog(db).tail(500)}
    mt, baseline = rows["task-usage-mt"], rows["task-usage-baseline"]
    assert (mt["model"], mt["route"], mt["status"]) == ("mt", "/v1/translate", 200)
    assert mt["prompt_tokens"] == sum(len(tok.encode(t)) for t in texts) > 0
    assert mt["completion_tokens"] == sum(len(tok.encode(t)) for t in outputs)
    assert (baseline["prompt_tokens"], baseline["completion_tokens"]) == (0, 0)  # no tokenizer


def test_a_model_of_another_kind_is_a_400_naming_its_route(client):
    error = _error(client, "/v1/ner", {"model": "sent", "input": "Anna"})
    assert error["param"] == "model" and "/v1/classify" in error["message"]
    error = _error(client, "/v1/translate", {"model": "gpt", "input": "Anna"})
    assert error["param"] == "model" and "/v1/completions" in error["message"]
    error = _error(client, "/v1/completions", {"model": "mt", "prompt": "Anna"})
    assert error["param"] == "model" and "/v1/translate" in error["message"]
    error = _error(client, "/v1/qa", {"model": "rel", "input": {"question": "Who?"}})
    assert error["param"] == "model" and "/v1/relations" in error["message"]


def test_an_unknown_model_is_a_404(client):
    error = _error(client, "/v1/classify", {"model": "nope", "input": "x"}, 404)
    assert (error["param"], error["code"]) == ("model", "model_not_found")


TEXT = "Anna lives in 北京 ."


@pytest.mark.parametrize("route, body, param", [
    ("/v1/classify", {"model": "sent", "input": []}, "input"),
    ("/v1/classify", {"model": "sent", "input": ["x"] * 257}, "input"),
    ("/v1/classify", {"model": "sent", "input": ["good", "  "]}, "input[1]"),
    ("/v1/classify", {"model": "sent", "input": ["x", {"text_a": "a", "text_b": "b"}]},
     "input"),
    ("/v1/classify", {"model": "sent", "input": "x", "top_k": 0}, "top_k"),
    ("/v1/classify", {"model": "sent", "input": ["x", {"text": "x"}]}, "input[1].text_a"),
    ("/v1/ner", {"model": "ner", "input": ["Anna", 3]}, "input[1]"),
    ("/v1/classify", {"model": "pairs", "input": {"text_a": "a", "text_b": ""}},
     "input.text_b"),
    ("/v1/ner", {"model": "ner", "input": ""}, "input"),
    ("/v1/relations", {"model": "rel", "input": [
        {"text": TEXT, "head": {"start": 0, "end": 4}, "tail": {"start": 14, "end": 40}}]},
     "input[0].tail"),
    ("/v1/relations", {"model": "rel", "input": {
        "text": TEXT, "head": {"start": -1, "end": 4}, "tail": {"start": 14, "end": 16}}},
     "input.head.start"),
    ("/v1/relations", {"model": "rel", "input": {"text": TEXT, "head": {"start": 0, "end": 4}}},
     "input.tail"),
    ("/v1/relations", {"model": "rel", "input": [TEXT]}, "input[0]"),
    ("/v1/relations", {"model": "rel", "input": [
        {"text": TEXT, "head": {"start": 4, "end": 4}, "tail": {"start": 14, "end": 16}}]},
     "input[0].head"),
    ("/v1/relations", {"model": "rel", "input": [
        {"text": TEXT, "head": {"start": 0, "end": 4}, "tail": {"start": 14, "end": 16}},
        {"text": TEXT, "head": {"start": 0, "end": 8}, "tail": {"start": 2, "end": 6}}]},
     "input[1].tail"),
    ("/v1/qa", {"model": "squad", "input": [{"question": "Who?", "context": "Anna."},
                                           {"question": "Who?"}]}, "input[1].context"),
    ("/v1/qa", {"model": "squad", "input": {"question": " ", "context": "Anna."}},
     "input.question"),
    ("/v1/translate", {"model": "mt", "input": "Anna", "beams": 17}, "beams"),
    ("/v1/translate", {"model": "mt", "input": ["Anna", "Anna " * 60]}, "input"),  # too long
    ("/v1/summarize", {"model": "sum", "input": ["x"] * 257}, "input"),
])
def test_bad_input_is_a_400_naming_the_field(client, route, body, param):
    assert _error(client, route, body)["param"] == param


def test_openapi_documents_the_routes_and_their_bodies(client):
    schema = client.get("/openapi.json").json()
    components = schema["components"]["schemas"]
    for route, request, response in [
            ("/v1/classify", "ClassifyRequest", "ClassifyResponse"),
            ("/v1/ner", "NerRequest", "NerResponse"),
            ("/v1/relations", "RelationsRequest", "RelationsResponse"),
            ("/v1/qa", "QARequest", "QAResponse"),
            ("/v1/translate", "GenerateRequest", "TranslateResponse"),
            ("/v1/summarize", "GenerateRequest", "SummarizeResponse")]:
        post = schema["paths"][route]["post"]
        body = post["requestBody"]["content"]["application/json"]["schema"]
        assert body["$ref"] == f"#/components/schemas/{request}"
        ok = post["responses"]["200"]["content"]["application/json"]["schema"]
        assert ok["$ref"] == f"#/components/schemas/{response}"
        assert {"model", "input"} <= set(components[request]["properties"])
        assert {"object", "model", "data"} <= set(components[response]["properties"])
    assert {"top_k"} <= set(components["ClassifyRequest"]["properties"])
    assert {"beams", "max_tokens"} <= set(components["GenerateRequest"]["properties"])
    assert {"label", "score", "probabilities"} <= set(components["Classification"]["properties"])
    assert {"start", "end", "type"} <= set(components["Span"]["properties"])
