"""The server's hardening against its own clients and models: the response cache is
per API key, admin loads stay inside ``--model-root``, the public ``/ready`` names no
paths, and a chat template that loops is stopped by its render budget."""

from __future__ import annotations

import logging
import shutil
import time

import httpx
import jinja2.ext
import jinja2.sandbox
import pytest
from serve_fixtures import make_model_folder, running

from lmforge.chat.template import RENDER_SECONDS, ChatTemplate
from lmforge.errors import DataError
from lmforge.serve.app import ServerOptions, build_app
from lmforge.serve.keys import KeyStore
from lmforge.serve.models import ModelSpec
from lmforge.serve.registry import registry_specs

# nested loops of 10^10 passes in all: hours without a budget
NESTED = "{% for a in range(100000) %}{% for b in range(100000) %}{% endfor %}{% endfor %}"
# a macro that calls itself twice: 2^40 calls
DOUBLING = ("{% macro f(n) %}{% if n %}{{ f(n - 1) }}{{ f(n - 1) }}{% endif %}{% endmacro %}"
            "{{ f(40) }}")
CHAT = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"}, {"role": "user", "content": "Bye"}]


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """``registry/tiny/1``, ``roots/allowed/m`` (a copy), ``outside/m`` (a copy beside the
    root), ``roots/allowed/link`` (a link to ``outside/m``), ``roots/evil`` (a copy whose
    chat template loops), and a keys database (admin, two users)."""
    root = tmp_path_factory.mktemp("hardening")
    model = make_model_folder(root / "registry" / "tiny" / "1", max_seq_len=32)
    for dest in ("roots/allowed/m", "outside/m", "roots/evil"):
        shutil.copytree(model, root / dest)
    (root / "roots/evil/chat_template.jinja").write_text(NESTED, encoding="utf-8")
    (root / "roots/allowed/link").symlink_to(root / "outside/m", target_is_directory=True)
    store = KeyStore(root / "serve.db")
    keys = {name: store.create(role, name)[1] for name, role in
            (("root", "admin"), ("a", "user"), ("b", "user"))}
    return root, {name: {"Authorization": f"Bearer {s}"} for name, s in keys.items()}


@pytest.fixture(scope="module")
def server(tree):
    root, keys = tree
    app = build_app(registry_specs(root / "registry"), ServerOptions(
        db=root / "serve.db", registry=root / "registry", model_roots=[root / "roots"],
        response_cache_entries=8))
    with running(app) as url:
        yield url, app, root, keys


def test_the_response_cache_is_per_key(server):
    url, app, _, keys = server
    engine = app.state.server.models["tiny"].engine
    body = {"model": "tiny", "prompt": "Alice", "max_tokens": 6, "temperature": 0}

    def ask(key):
        before = engine.generated_tokens
        r = httpx.post(url + "/v1/completions", json=body, headers=keys[key])
        assert r.status_code == 200, r.text
        return r, engine.generated_tokens > before

    first, generated = ask("a")
    assert "x-cache" not in first.headers and generated
    other, generated = ask("b")  # the same request from another key: its own miss
    assert "x-cache" not in other.headers and generated
    assert other.json()["choices"][0]["text"] == first.json()["choices"][0]["text"]
    again, generated = ask("a")
    assert again.headers.get("x-cache") == "hit" and not generated
    assert again.json()["choices"] == first.json()["choices"]
    metrics = httpx.get(url + "/metrics", headers=keys["root"]).text
    assert 'lmforge:response_cache_hits_total{model_name="tiny",model_version="1"} 1.0' \
        in metrics


def test_admin_loads_stay_inside_the_model_roots(server):
    url, _, root, keys = server

    def load(path):
        return httpx.post(url + "/admin/models", headers=keys["root"], timeout=60,
                          json={"name": "extra", "version": "1", "path": str(path)})

    outside = str(root / "outside")
    for path in (root / "roots/allowed/../../outside/m", root / "roots/allowed/link",
                 root / "outside/m", root / "outside/missing", "/etc"):
        r = load(path)
        assert r.status_code == 403, r.text
        error = r.json()["error"]
        assert error["type"] == "permission_error" and error["param"] == "path"
        assert "--model-root" in error["message"] and str(path) in error["message"]
        if "outside" not in str(path):  # the link: where it resolves is not told
            assert outside not in error["message"]
    assert "extra" not in app_models(url, keys)
    assert load(root / "roots/allowed/m").status_code == 200
    assert load(root / "registry/tiny/1").status_code == 200  # the registry is a root
    assert "extra" in app_models(url, keys)


def app_models(url, keys) -> list[str]:
    r = httpx.get(url + "/admin/models", headers=keys["root"])
    return [m["name"] for m in r.json()["data"]]


def test_a_looping_chat_template_is_a_400_naming_it(server):
    url, _, root, keys = server
    r = httpx.post(url + "/admin/models", headers=keys["root"], timeout=60,
                   json={"name": "evil", "version": "1", "path": str(root / "roots/evil")})
    assert r.status_code == 200, r.text
    start = time.monotonic()
    r = httpx.post(url + "/v1/chat/completions", headers=keys["a"], timeout=60,
                   json={"model": "evil", "messages": CHAT, "max_tokens": 2})
    assert r.status_code == 400, r.text
    message = r.json()["error"]["message"]
    assert "chat_template.jinja" in message and "budget" in message
    assert time.monotonic() - start < 10 * RENDER_SECONDS  # not the hours it would loop
    healthy = httpx.post(url + "/v1/chat/completions", headers=keys["a"],
                         json={"model": "tiny", "messages": CHAT[1:2], "max_tokens": 2})
    assert healthy.status_code == 200, healthy.text


def test_ready_names_a_failed_model_but_not_its_path(tmp_path, tree, caplog):
    from fastapi.testclient import TestClient

    _, keys = tree
    broken = tmp_path / "secret-place" / "broken"
    broken.mkdir(parents=True)
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    db = tmp_path / "serve.db"
    admin = KeyStore(db).create("admin", "root")[1]
    app = build_app([ModelSpec("broken", str(broken), "1")], ServerOptions(db=db))
    with caplog.at_level(logging.INFO, logger="lmforge.serve"), \
            TestClient(app, raise_server_exceptions=False) as client:
        deadline = time.monotonic() + 60
        while (r := client.get("/ready")).json()["status"] == "loading":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert r.status_code == 503 and r.json()["failed"] == ["broken"], r.text
        assert "broken" in r.json()["error"] and "secret-place" not in r.text
        detail = client.get("/admin/models",
                            headers={"Authorization": f"Bearer {admin}"}).json()
        assert detail["load_error"]["name"] == "broken"
        assert detail["load_error"]["error"]  # the detail, for admins only
    logged = caplog.text
    assert "admin loads are unrestricted" in logged  # a keyed server without roots
    assert "loading model broken failed" in logged


def test_an_open_server_keeps_one_shared_response_cache(tree):
    """No keys (loopback, one user): unchanged, a second identical request hits."""
    root, _ = tree
    app = build_app([ModelSpec("tiny", str(root / "registry/tiny/1"), "1")],
                    ServerOptions(response_cache_entries=4))
    body = {"model": "tiny", "prompt": "Bob", "max_tokens": 4, "temperature": 0}
    with running(app) as url:
        first = httpx.post(url + "/v1/completions", json=body)
        again = httpx.post(url + "/v1/completions", json=body)
    assert "x-cache" not in first.headers and again.headers.get("x-cache") == "hit"
    assert again.json()["choices"] == first.json()["choices"]


@pytest.mark.parametrize("template", [NESTED, DOUBLING])
def test_a_looping_template_stops_within_its_budget(template):
    start = time.monotonic()
    with pytest.raises(DataError, match=r"^hostile\.jinja: .*budget"):
        ChatTemplate(template, "hostile.jinja").render(CHAT)
    assert time.monotonic() - start < 3 * RENDER_SECONDS


@pytest.mark.parametrize("template, error", [
    ("{{ 'x' * 10000000000 }}", "'\\*' would build 10000000000 items"),
    ("{{ [0] * 10000000000 }}", "'\\*' would build"),
    ("{{ 7 ** 100000000 }}", "'\\*\\*' would build a number"),
    ("{{ 1 / 0 }}", "ZeroDivisionError"),
    ("{% for m in messages recursive %}{{ loop(messages) }}{% endfor %}", "RecursionError"),
])
def test_oversized_or_failing_expressions_are_one_line_errors(template, error):
    with pytest.raises(DataError, match=error):
        ChatTemplate(template, "hostile.jinja").render(CHAT)


# templates that use loops (filters, loop.index, else), macros, recursion, namespaces
SAFE = [
    "{% for m in messages if m.role != 'system' %}{{ loop.index }}:{{ m.content }}|"
    "{% else %}none{% endfor %}",
    "{% macro turn(m) %}<{{ m.role }}>{{ m.content | trim }}{% endmacro %}"
    "{% for m in messages %}{{ turn(m) }}{% if loop.last %}!{% endif %}{% endfor %}",
    "{% set ns = namespace(n=0) %}{% for m in messages %}{% for c in m.content %}"
    "{% set ns.n = ns.n + 1 %}{% endfor %}{% endfor %}{{ ns.n }} {{ 'ab' * 3 }} {{ 2 ** 10 }}",
    "{% for x in [[1, [2]], 3] recursive %}[{% if x is iterable %}{{ loop(x) }}"
    "{% else %}{{ x }}{% endif %}]{% endfor %}",
]


@pytest.mark.parametrize("template", SAFE)
def test_budgeted_templates_render_as_the_plain_sandbox_does(template):
    plain = jinja2.sandbox.ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    want = plain.from_string(template).render(messages=CHAT)
    assert ChatTemplate(template).render(CHAT).text == want
