"""The served ``/v1/qa`` of a generative reader keeps its run's index open (issue 14): two
requests open it once and read the passages that searching the index directly gives; a
later add to the index on disk (plain, or encrypted and held in memory) is read by the
next request, which reopens it once; an encrypted index answers with the server's key and
leaves nothing on disk; concurrent requests each get their own answer; the index is closed
when the server stops."""

from __future__ import annotations

import concurrent.futures
import contextlib
import shutil
from pathlib import Path

import httpx
import pytest
from serve_fixtures import people, running
from test_privacy_encrypted_load import KEY, _snapshot, private_tmp  # noqa: F401 (a fixture)
from test_privacy_encrypted_outputs import keys, runs  # noqa: F401 (fixtures)

from lmforge.privacy.crypto import is_encrypted
from lmforge.privacy.encrypted_io import using_key
from lmforge.retrieval.index import Index
from lmforge.serve.app import ServerOptions, build_app
from lmforge.serve.models import ModelSpec
from lmforge.tasks.rag import open_run_index, rag_records
from lmforge.tasks.seq2seq_predictor import Answerer, load_seq2seq

ASKED = [{"question": "Where does Bob live?"}, {"question": "Where does Anna live?"}]
ZOE = {"question": "Where does Zoe live?"}
NEW_DOCS = [{"id": "zoe", "title": "Zoe", "text": "Zoe lives in Oslo."}]


def _direct(run: Path, asked: list[dict], key=None) -> tuple[list[str], list[str]]:
    """The reader's inputs and answers for ``asked`` without a server: the run's index
    searched by :func:`rag_records`, then the predictor's ``generate``."""
    with using_key(key):
        pred = load_seq2seq(run)
        with open_run_index(run, pred.retrieval) as index:
            sources = [r["src"] for r in rag_records(
                [{"id": str(i), **q, "answers": []} for i, q in enumerate(asked)], index,
                pred.retrieval)]
    return sources, pred.generate(sources)


def _spy(monkeypatch) -> dict[str, list]:
    """From now on: the folders ``Index.open`` opens, those ``Index.close`` closes, and the
    texts ``Answerer.generate`` reads."""
    calls: dict[str, list] = {"open": [], "close": [], "read": []}
    open_, close, generate = Index.open.__func__, Index.close, Answerer.generate

    def opened(cls, folder, **kw):
        calls["open"].append(Path(folder))
        return open_(cls, folder, **kw)

    def closed(self):
        calls["close"].append(self.folder)
        close(self)

    def read(self, texts, **options):
        calls["read"] += texts
        return generate(self, texts, **options)

    monkeypatch.setattr(Index, "open", classmethod(opened))
    monkeypatch.setattr(Index, "close", closed)
    monkeypatch.setattr(Answerer, "generate", read)
    return calls


@contextlib.contextmanager
def _serving(run: Path, key_file: str | None = None):
    """A client of a server of ``run`` as ``rag`` (with the key in ``key_file``)."""
    options = ServerOptions(key=None if key_file is None else
                            {"key_file": key_file, "key_env": None, "passphrase_env": None})
    with running(build_app([ModelSpec("rag", str(run))], options)) as url, \
            httpx.Client(base_url=url, timeout=60) as client:
        yield client


def _answers(client: httpx.Client, asked: list[dict]) -> list[str]:
    r = client.post("/v1/qa", json={"model": "rag", "input": asked})
    assert r.status_code == 200, r.text
    return [d["answer"] for d in r.json()["data"]]


def test_requests_share_one_open_index_closed_at_shutdown(runs, monkeypatch):  # noqa: F811
    sources, want = _direct(runs["rag"], ASKED)
    calls = _spy(monkeypatch)
    with _serving(runs["rag"]) as client:
        assert _answers(client, ASKED) == want
        assert _answers(client, ASKED[::-1]) == want[::-1]
        assert calls["open"] == [runs["rag"] / "index"]
        assert calls["close"] == []
    assert calls["read"] == sources + sources[::-1]
    assert calls["close"] == calls["open"]


@pytest.mark.parametrize("name, key", [("rag", None), ("rag-enc", KEY)],
                         ids=["plain", "encrypted"])
def test_passages_added_on_disk_are_read_by_the_next_request(runs, keys, tmp_path,  # noqa: F811
                                                             monkeypatch, name, key):
    run = tmp_path / "run"
    shutil.copytree(runs[name], run)
    calls = _spy(monkeypatch)
    with _serving(run, None if key is None else keys["key"]) as client:
        _answers(client, [ZOE])
        assert "Oslo" not in calls["read"][-1]
        with using_key(key), Index.open(run / "index") as index:
            assert index.add(NEW_DOCS) == 1
        _answers(client, [ZOE])
        _answers(client, [ZOE])
        opens = len(calls["open"])
    [source], _ = _direct(run, [ZOE], key)
    assert "Zoe lives in Oslo." in source
    assert calls["read"][-2:] == [source, source]
    assert opens == 3  # the server opened it, the test added to it, the server reopened it
    if key is not None:
        assert is_encrypted(run / "index" / "docs.sqlite")


def test_an_encrypted_index_answers_with_the_key_and_writes_nothing(
        runs, keys, private_tmp):  # noqa: F811
    _, want = _direct(runs["rag"], ASKED)
    run = runs["rag-enc"]
    before = _snapshot(run)
    with _serving(run, keys["key"]) as client:
        assert _answers(client, ASKED) == want
        assert _answers(client, ASKED) == want
    assert _snapshot(run) == before
    assert is_encrypted(run / "index" / "docs.sqlite")
    assert list(private_tmp.iterdir()) == []


def test_concurrent_requests_each_get_their_own_answer(runs, monkeypatch):  # noqa: F811
    asked = [{"question": f"Where does {p} live?"} for p, _ in people()[::3]]
    want = [_direct(runs["rag"], [q])[1][0] for q in asked]
    calls = _spy(monkeypatch)
    with _serving(runs["rag"]) as client, \
            concurrent.futures.ThreadPoolExecutor(len(asked)) as pool:
        got = list(pool.map(lambda q: _answers(client, [q])[0], asked))
    assert got == want
    assert len(calls["open"]) == 1
