"""The web UI at ``/`` (:mod:`lmforge.serve.ui`).

Without a browser: the page and its files are public on a keyed server (nothing else is),
with a strict Content-Security-Policy, and out of the OpenAPI schema.

In a real browser (headless Chromium driven by playwright: slow tests), against a keyed
server of a tiny chat GPT, classifier, tagger and translator: the page shows the 401 until
it is given the key, and remembers the key and the language (zh/en); a Chinese question
typed in the chat is answered token by token (the reply grows on screen) with exactly what
``/v1/chat/completions`` gives for the same request; Stop ends a stream and frees the
server's slot; the server's errors are shown; the stream reader joins events cut
anywhere; the classifier's probabilities, the tagger's entities (highlighted at their
offsets) and the translations shown are the API's; model output holding markup is shown as
text and never runs. No request leaves 127.0.0.1 and nothing breaks the CSP. The chat and
NER tabs are saved as docs/img/serve-ui-*.png with LMFORGE_SCREENSHOTS=1."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import urlparse

import httpx
import pytest
import torch
from serve_fixtures import make_model_folder, ner_run, running, sentiment_run, translate_run

from lmforge.chat import ChatTemplate
from lmforge.chat.generate import template_variables
from lmforge.hub import load_pretrained
from lmforge.serve.app import ServerOptions, build_app
from lmforge.serve.keys import KeyStore
from lmforge.serve.models import ModelSpec
from lmforge.serve.ui import HEADERS

try:
    from playwright.sync_api import expect, sync_playwright
except ImportError:  # the browser tests skip
    sync_playwright = None

# The screenshots of docs/serve.md are written there only when asked
# (LMFORGE_SCREENSHOTS=1), so that running the tests does not rewrite tracked files.
DOCS_IMG = Path(__file__).resolve().parents[1] / "docs" / "img"


def _shot(page, tmp_path: Path, name: str) -> None:
    folder = DOCS_IMG if os.environ.get("LMFORGE_SCREENSHOTS") == "1" else tmp_path
    page.screenshot(path=folder / name)
SYSTEM = "你是一个乐于助人的助手。"
QUESTION = "小明住在哪里？"
ANSWERS = {QUESTION: "小明住在北京，他在学校工作。",
           "Where does Alice live?": "Alice lives in Paris. She works for Acme."}
MAX_TOKENS = 40


def chromium() -> str | None:
    """Chromium on PATH, or Debian's /usr/bin/chromium."""
    return shutil.which("chromium") or (
        "/usr/bin/chromium" if os.access("/usr/bin/chromium", os.X_OK) else None)


def test_the_page_alone_is_public_with_a_strict_policy(tmp_path):
    db = tmp_path / "serve.db"
    KeyStore(db).create("user", "ui")
    with running(build_app([], ServerOptions(db=db))) as url:
        for path, kind in [("/", "text/html"), ("/ui/app.js", "javascript"),
                           ("/ui/app.css", "text/css")]:
            r = httpx.get(url + path)
            assert r.status_code == 200 and kind in r.headers["content-type"], path
            assert r.headers["content-security-policy"] == HEADERS["Content-Security-Policy"]
            assert r.headers["cache-control"] == "no-cache"
        assert 'src="ui/app.js"' in httpx.get(url + "/").text
        for path in ("/v1/models", "/metrics", "/nothing", "/ui"):  # "/" opens no other path
            assert httpx.get(url + path).status_code == 401, path
        paths = httpx.get(url + "/openapi.json").json()["paths"]
        assert "/" not in paths and not any(p.startswith("/ui") for p in paths)


# ----------------------------------------------------------------------- in a browser

def chat_folder(folder: Path, steps: int = 150) -> Path:
    """``make_model_folder``'s GPT taught ANSWERS (a few seconds on one core), so the
    chat streams real words, Chinese ones included, rather than random bytes."""
    make_model_folder(folder)
    model, tok = load_pretrained(folder, require_tokenizer=True)
    template = ChatTemplate.default()
    rows = [tok.encode(template.render([
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": q},
        {"role": "assistant", "content": a}], **template_variables(tok)).text,
        allow_special=True) for q, a in ANSWERS.items()]
    ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)
    mask = torch.zeros_like(ids, dtype=torch.bool)
    for i, row in enumerate(rows):
        ids[i, :len(row)], mask[i, :len(row)] = torch.tensor(row), True
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):
        logits = model(ids[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits[mask[:, 1:]], ids[:, 1:][mask[:, 1:]])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A keyed server of the four models; its URL, the key, an httpx client with the key
    (the reference answers) and the chat model's engine."""
    d = tmp_path_factory.mktemp("ui")
    specs = [ModelSpec("chat", str(chat_folder(d / "chat"))),
             ModelSpec("sent", str(sentiment_run(d))), ModelSpec("ner", str(ner_run(d))),
             ModelSpec("mt", str(translate_run(d)))]
    key = KeyStore(d / "serve.db").create("user", "ui")[1]
    app = build_app(specs, ServerOptions(db=d / "serve.db"))
    with running(app) as url, httpx.Client(base_url=url, timeout=60, headers={
            "Authorization": f"Bearer {key}"}) as api:
        yield SimpleNamespace(url=url, key=key, api=api,
                              engine=app.state.server.models["chat"].engine)


@pytest.fixture(scope="module")
def browser():
    if chromium() is None:
        pytest.skip("no chromium (.ci/run installs it: apt-get install chromium "
                    "fonts-noto-cjk)")
    if sync_playwright is None:
        pytest.skip("the playwright Python package is not installed")
    with sync_playwright() as pw:
        # Chromium's sandbox refuses to start as root (CI containers)
        browser = pw.chromium.launch(executable_path=chromium(),
                                     args=["--no-sandbox"] if os.geteuid() == 0 else [])
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh page (its own storage), English, 1000x700. At the end: every request it
    made went to 127.0.0.1 (no CDN, no font service), no script failed and nothing broke
    the Content-Security-Policy."""
    context = browser.new_context(viewport={"width": 1000, "height": 700}, locale="en-US")
    page = context.new_page()
    requests, failures = [], []
    page.on("request", lambda r: requests.append(r.url))
    page.on("pageerror", lambda e: failures.append(str(e)))
    page.on("console", lambda m: failures.append(m.text)
            if "Content Security Policy" in m.text else None)
    yield page
    context.close()
    assert requests and all(urlparse(u).hostname == "127.0.0.1" or u.startswith("data:")
                            for u in requests), requests
    assert failures == []


def open_ui(page, server) -> None:
    """Load the page and give it the key; the model pickers fill."""
    page.goto(server.url)
    page.fill("#api-key", server.key)
    page.press("#api-key", "Tab")  # the change event: stored, models listed again
    expect(page.locator("#chat-model")).to_have_value("chat")


@contextlib.contextmanager
def slowed(engine, seconds: float = 0.1):
    """Each forward pass of ``engine``'s model takes ``seconds`` longer: the tiny model
    would otherwise write a whole reply between two frames of the page."""
    forward = engine.model.forward

    def slow_forward(*args, **kwargs):
        time.sleep(seconds)
        return forward(*args, **kwargs)

    engine.model.forward = slow_forward
    try:
        yield
    finally:
        del engine.model.forward  # the class's own again


# the reply's length at every change of the message list, recorded in the page: a poll
# from Python could miss a short stream's steps
RECORD_LENGTHS = """() => {
    window.lengths = [];
    new MutationObserver(() => {
        const reply = document.querySelector(".message.assistant .content");
        if (reply) window.lengths.push(reply.textContent.length);
    }).observe(document.querySelector("#chat-messages"),
               {subtree: true, childList: true, characterData: true});
}"""


@pytest.mark.slow
@pytest.mark.alone
def test_chat_streams_a_chinese_reply_token_by_token(page, server, tmp_path):
    page.goto(server.url)
    expect(page.locator("#status")).to_contain_text("401")  # public page, keyed API
    page.select_option("#lang", "zh")
    expect(page.locator("#tab-chat")).to_have_text("对话")
    expect(page.locator("#chat-send")).to_have_text("发送")
    assert page.evaluate("document.documentElement.lang") == "zh-CN"
    page.fill("#api-key", server.key)
    page.press("#api-key", "Tab")
    expect(page.locator("#chat-model")).to_have_value("chat")
    expect(page.locator("#status")).to_be_hidden()
    page.reload()  # the language and the key are remembered
    expect(page.locator("#tab-chat")).to_have_text("对话")
    expect(page.locator("#api-key")).to_have_value(server.key)
    expect(page.locator("#chat-model")).to_have_value("chat")

    page.fill("#chat-system", SYSTEM)
    page.fill("#chat-temperature", "0")
    page.fill("#chat-max-tokens", str(MAX_TOKENS))
    page.evaluate(RECORD_LENGTHS)
    with slowed(server.engine):
        page.locator("#chat-input").press_sequentially(QUESTION)
        page.press("#chat-input", "Enter")
        reply = page.locator(".message.assistant")
        expect(reply).to_have_attribute("data-state", "done", timeout=30_000)
    want = server.api.post("/v1/chat/completions", json={
        "model": "chat", "temperature": 0, "top_p": 1, "max_tokens": MAX_TOKENS,
        "messages": [{"role": "system", "content": SYSTEM},
                     {"role": "user", "content": QUESTION}]}).json()
    want = want["choices"][0]["message"]["content"]
    assert want == ANSWERS[QUESTION]  # the taught answer: real Chinese text
    assert page.locator(".message.user .content").text_content() == QUESTION
    assert reply.locator(".content").text_content() == want
    lengths = page.evaluate("window.lengths")
    shown = [n for n in lengths if n > 0]
    assert lengths == sorted(lengths) and shown[-1] == len(want)
    assert len(set(shown)) >= 3, f"the reply did not grow token by token: {lengths}"
    _shot(page, tmp_path, "serve-ui-chat.png")

    page.click("#chat-clear")  # a new chat: the history would not fit the tiny context
    expect(page.locator(".message")).to_have_count(0)
    with slowed(server.engine):  # Stop: the stream ends, and so does its sequence
        page.fill("#chat-input", "Where does Alice live?")
        page.click("#chat-send")
        cut = page.locator(".message.assistant")
        expect(cut.locator(".content")).not_to_have_text("")
        page.click("#chat-stop")
        expect(cut).to_have_attribute("data-state", "stopped")
        expect(page.locator("#chat-send")).to_be_enabled()
        deadline = time.monotonic() + 10
        while server.engine.num_running and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.engine.num_running == 0
    assert len(cut.locator(".content").text_content()) < len(ANSWERS["Where does Alice live?"])

    page.fill("#chat-max-tokens", "10000")  # past the context: the server's 400, shown
    page.fill("#chat-input", QUESTION)
    page.click("#chat-send")
    failed = page.locator(".message.assistant").last
    expect(failed).to_have_attribute("data-state", "error")
    expect(failed.locator(".error")).to_contain_text("maximum context length")
    expect(failed.locator(".error")).to_contain_text("请求失败: 400")


# app.js's reader fed a real stream cut into pieces of n bytes: events, blank lines and
# the UTF-8 of Chinese characters all get cut somewhere
READ_IN_PIECES = """async ([bytes, n]) => {
    const data = Uint8Array.from(bytes);
    const stream = new ReadableStream({start(c) {
        for (let i = 0; i < data.length; i += n) c.enqueue(data.slice(i, i + n));
        c.close();
    }});
    let text = "";
    try {
        await readEvents(new Response(stream), (chunk) => {
            text += chunk.choices[0]?.delta?.content ?? "";
        });
    } catch (error) {
        return {text, error: error.message};
    }
    return {text};
}"""


@pytest.mark.slow
@pytest.mark.alone
def test_the_stream_reader_joins_events_cut_anywhere(page, server):
    page.goto(server.url)
    request = {"model": "chat", "temperature": 0, "max_tokens": MAX_TOKENS,
               "messages": [{"role": "user", "content": QUESTION}]}
    want = server.api.post("/v1/chat/completions", json=request).json()
    want = want["choices"][0]["message"]["content"]
    body = server.api.post("/v1/chat/completions", json={**request, "stream": True}).content
    assert body.endswith(b"data: [DONE]\n\n") and len(want) > 3
    for n in (1, 2, 3, 5, 64):
        assert page.evaluate(READ_IN_PIECES, [list(body), n]) == {"text": want}, n
    crlf = body.replace(b"\n", b"\r\n")  # SSE allows CRLF line ends
    assert page.evaluate(READ_IN_PIECES, [list(crlf), 4]) == {"text": want}
    cut = body[:-len(b"data: [DONE]\n\n")]  # a stream that breaks off is an error
    assert page.evaluate(READ_IN_PIECES, [list(cut), 3]) == {
        "text": want, "error": "the stream ended before [DONE]"}


def _segments(text: str, entities: list[dict]) -> list[list]:
    """``text`` cut at the entities: [node name, its text, its type or None], as the page
    should show it (text nodes and <mark> elements)."""
    out, at = [], 0
    for e in entities:
        if e["start"] > at:
            out.append(["#text", text[at:e["start"]], None])
        out.append(["MARK", text[e["start"]:e["end"]], e["type"]])
        at = e["end"]
    if at < len(text):
        out.append(["#text", text[at:], None])
    return out


def _run(page, task: str, texts: list[str]) -> None:
    page.click(f"#tab-{task}")
    page.fill(f"#{task}-input", "\n".join(texts))
    page.click(f"#{task}-run")  # disables the button until the answer is shown
    expect(page.locator(f"#{task}-run")).to_be_enabled()
    expect(page.locator(f"#{task}-output .result")).to_have_count(len(texts))


@pytest.mark.slow
@pytest.mark.alone
def test_classify_ner_and_translate_show_what_the_api_answers(page, server, tmp_path):
    open_ui(page, server)

    texts = ["the food was great", "the 饭菜 was 差", "饭菜很好"]
    _run(page, "classify", texts)
    want = server.api.post("/v1/classify", json={"model": "sent", "input": texts}).json()
    shown = page.eval_on_selector_all("#classify-output .result", """cards => cards.map(c =>
        Array.from(c.querySelectorAll(".prob"), r => [r.dataset.label, Number(r.dataset.prob)]))""")
    assert shown == [[list(kv) for kv in d["probabilities"].items()] for d in want["data"]]
    tops = page.locator("#classify-output .prob.top .label").all_text_contents()
    assert tops == [d["label"] for d in want["data"]]

    for texts in (["Bob lives in Rome .", "Carl lives in Paris .", "Anna lives in 北京 ."],
                  # the emoji is one code point (the server's offsets), two UTF-16 units (JS's)
                  ["🙂 Bob lives in Rome .", "we met 王磊 in Paris today", "安娜住在上海。"]):
        _run(page, "ner", texts)
        want = server.api.post("/v1/ner", json={"model": "ner", "input": texts}).json()
        want = want["data"]
        assert all(d["entities"] for d in want), "the tiny tagger missed a text"
        shown = page.eval_on_selector_all("#ner-output .ner-text", """lines => lines.map(l =>
            Array.from(l.childNodes, n => [n.nodeName, n.textContent, n.dataset?.type ?? null]))""")
        assert shown == [_segments(d["text"], d["entities"]) for d in want]
        types = sorted({e["type"] for d in want for e in d["entities"]})
        assert page.locator("#ner-types li").all_text_contents() == types
        assert page.locator("#ner-output mark").first.get_attribute("class") == \
            f"ent ent-{want[0]['entities'][0]['type']}"
        if texts[0].startswith("Bob"):
            _shot(page, tmp_path, "serve-ui-ner.png")

    texts = ["Anna lives in 北京", "Bob lives in Rome"]
    _run(page, "translate", texts)
    want = server.api.post("/v1/translate", json={"model": "mt", "input": texts}).json()
    assert page.locator("#translate-output .translation").all_text_contents() == \
        [d["translation"] for d in want["data"]]

    page.fill("#translate-input", "Anna " * 60)  # too long: the server's 400, shown
    page.click("#translate-run")
    expect(page.locator("#translate-error")).to_contain_text("400")


HOSTILE = '<img src=x onerror="window.pwned=1"><script>window.pwned=2</script>'


@pytest.mark.slow
@pytest.mark.alone
def test_model_output_with_markup_is_shown_as_text(page, server):
    """Outputs holding markup (faked by intercepting the API calls) appear as text."""
    open_ui(page, server)
    text = f"{HOSTILE} Anna"
    page.route("**/v1/classify", lambda route: route.fulfill(json={
        "object": "list", "model": "sent", "data": [{
            "index": 0, "label": HOSTILE, "score": 0.75,
            "probabilities": {HOSTILE: 0.75, "neg": 0.25}}]}))
    page.route("**/v1/ner", lambda route: route.fulfill(json={
        "object": "list", "model": "ner", "data": [{"index": 0, "text": text, "entities": [
            {"type": HOSTILE, "text": HOSTILE, "start": 0, "end": len(HOSTILE)}]}]}))
    chunk = {"choices": [{"index": 0, "delta": {"content": HOSTILE}}]}
    page.route("**/v1/chat/completions", lambda route: route.fulfill(
        content_type="text/event-stream",
        body=f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"))

    _run(page, "classify", ["anything"])
    assert page.locator("#classify-output .prob.top .label").text_content() == HOSTILE
    _run(page, "ner", [text])
    mark = page.locator("#ner-output mark")
    assert mark.text_content() == HOSTILE and mark.get_attribute("data-type") == HOSTILE
    assert "<" not in mark.get_attribute("class")
    page.click("#tab-chat")
    page.fill("#chat-input", "hi")
    page.click("#chat-send")
    expect(page.locator(".message.assistant")).to_have_attribute("data-state", "done")
    assert page.locator(".message.assistant .content").text_content() == HOSTILE
    assert page.locator("main img, main script").count() == 0
    assert page.evaluate("window.pwned") is None
