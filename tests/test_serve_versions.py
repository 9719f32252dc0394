"""Model versions: a registry folder, and an admin switch to a new version under load with
zero failed requests (the old version finishes what it started, then unloads)."""

from __future__ import annotations

import json
import threading
import time

import httpx
import pytest
from serve_fixtures import make_model_folder, running

from lmforge.generate import generate
from lmforge.hub import load_pretrained
from lmforge.serve.app import ServerOptions, build_app
from lmforge.serve.keys import KeyStore
from lmforge.serve.registry import registry_specs, resolve, versions

PROMPT = "Alice lives in"


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    root = tmp_path_factory.mktemp("registry")
    for version, seed in (("1", 0), ("2", 5)):
        make_model_folder(root / "tiny" / version, seed=seed)
    return root


def _greedy(folder):
    model, tok = load_pretrained(folder, require_tokenizer=True)
    return generate(model, tok, PROMPT, max_new_tokens=12, temperature=1.0, seed=1)


def test_registry_versions_sort_naturally(tmp_path, registry):
    for v in ("v1.10", "v1.9", "v2"):
        (tmp_path / "m" / v).mkdir(parents=True)
    assert versions(tmp_path, "m") == ["v1.9", "v1.10", "v2"]
    assert [(s.name, s.version) for s in registry_specs(registry)] == [("tiny", "2")]
    assert resolve(registry, "tiny", "1").path.endswith("tiny/1")
    with pytest.raises(Exception, match="no version '7'.*versions: 1, 2"):
        resolve(registry, "tiny", "7")


def test_switch_under_load_fails_no_request(registry, tmp_path):
    want = {"1": _greedy(registry / "tiny" / "1"), "2": _greedy(registry / "tiny" / "2")}
    assert want["1"] != want["2"]
    store = KeyStore(tmp_path / "serve.db")
    admin = {"Authorization": "Bearer " + store.create("admin", "ops")[1]}
    user = {"Authorization": "Bearer " + store.create("user", "app")[1]}
    specs = [resolve(registry, "tiny", "1")]
    app = build_app(specs, ServerOptions(db=tmp_path / "serve.db", registry=registry))
    results, stop = [], threading.Event()

    def client(stream: bool):
        body = {"model": "tiny", "prompt": PROMPT, "max_tokens": 12, "temperature": 1.0,
                "seed": 1, "stream": stream}
        with httpx.Client(base_url=url, headers=user, timeout=60) as c:
            while not stop.is_set():
                start = time.monotonic()
                if stream:
                    with c.stream("POST", "/v1/completions", json=body) as r:
                        text = "".join(
                            json.loads(line[6:])["choices"][0]["text"]
                            for line in r.iter_lines()
                            if line.startswith("data: {")) if r.status_code == 200 else ""
                        status = r.status_code
                else:
                    r = c.post("/v1/completions", json=body)
                    status = r.status_code
                    text = r.json()["choices"][0]["text"] if status == 200 else r.text
                results.append((start, status, text))

    with running(app) as url:
        old_engine = app.state.server.models["tiny"].engine
        threads = [threading.Thread(target=client, args=(i % 2 == 0,)) for i in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.0)
        r = httpx.post(url + "/admin/models", headers=admin, json={"name": "tiny",
                                                                   "version": "2"})
        switched = time.monotonic()
        assert r.status_code == 200 and r.json()["version"] == "2", r.text
        time.sleep(1.5)
        stop.set()
        for t in threads:
            t.join(60)
        models = httpx.get(url + "/v1/models", headers=user).json()["data"]
        assert [(m["id"], m["version"]) for m in models] == [("tiny", "2")]
        listed = httpx.get(url + "/admin/models", headers=admin).json()["data"]
        assert listed[0]["versions"] == ["1", "2"]
        deadline = time.monotonic() + 10
        while old_engine._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not old_engine._thread.is_alive()  # the old version was unloaded
        bad = httpx.post(url + "/admin/models", headers=admin, json={"name": "tiny",
                                                                     "version": "7"})
        assert bad.status_code == 404 and "versions: 1, 2" in bad.json()["error"]["message"]
        assert httpx.delete(url + "/admin/models/tiny", headers=admin).status_code == 200
        gone = httpx.post(url + "/v1/completions", headers=user,
                          json={"model": "tiny", "prompt": "x"})
        assert gone.status_code == 404
    assert len(results) > 10
    assert [s for _, s, _ in results if s != 200] == []
    assert all(text in (want["1"], want["2"]) for _, _, text in results)
    assert any(text == want["1"] for _, _, text in results)
    assert all(text == want["2"] for start, _, text in results if start > switched)
