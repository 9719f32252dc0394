"""The OpenAI-compatible server on loopback, called by the official ``openai`` client: its
outputs equal ``lmforge generate`` / ``lmforge.chat`` for the same prompt, rules and seed,
alone or batched, streamed or not; errors come in OpenAI's envelope as the client's own
exception types; embeddings equal the sentence encoder's."""

from __future__ import annotations

import concurrent.futures
import json
import time

import httpx
import numpy as np
import openai
import pytest
import torch
from serve_fixtures import make_model_folder, running

from lmforge.chat import ChatTemplate
from lmforge.chat.generate import chat
from lmforge.embeddings.contextual import SentenceEncoder
from lmforge.generate import generate_completions
from lmforge.generate.text import encode_prompt
from lmforge.hub import load_pretrained
from lmforge.serve.app import ServerOptions, build_app
from lmforge.serve.models import ModelSpec

PROMPTS = ["Alice lives in", "今天天气", "Bob asked: where", "The match"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    return {"tiny": make_model_folder(root / "tiny"),
            "plain": make_model_folder(root / "plain", template=False, seed=1)}


@pytest.fixture(scope="module")
def server(folders):
    specs = [ModelSpec("tiny", str(folders["tiny"])), ModelSpec("plain", str(folders["plain"])),
             ModelSpec("minilm", "minilm")]
    options = ServerOptions(engine={"max_running": 4, "prefill_chunk": 16,
                                    "prefix_cache_tokens": 1024},
                            max_body_bytes=64 * 1024)
    app = build_app(specs, options)
    with running(app) as url:
        yield url, app.state.server


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key="none", max_retries=0)


@pytest.fixture(scope="module")
def tiny(folders):
    return load_pretrained(folders["tiny"], require_tokenizer=True)


def _ref(tiny, prompt, **options):
    model, tok = tiny
    return generate_completions(model, tok, [prompt], **options)[0]


def test_models_lists_what_is_served(client):
    ids = {m.id for m in client.models.list().data}
    assert ids == {"tiny", "plain", "minilm"}


@pytest.mark.parametrize("options", [
    {"temperature": 0},
    {"temperature": 1e-30},  # greedy: dividing by it would overflow to inf
    {"temperature": 0.9, "top_p": 0.9, "seed": 7},
    {"temperature": 1.2, "top_k": 30, "seed": 3, "presence_penalty": 0.5,
     "frequency_penalty": 0.8},
])
def test_completion_equals_generate(client, tiny, options):
    extra = {k: v for k, v in options.items() if k == "top_k"}
    body = {k: v for k, v in options.items() if k != "top_k"}
    for prompt in PROMPTS:
        r = client.completions.create(model="tiny", prompt=prompt, max_tokens=24,
                                      extra_body=extra, **body)
        ref = _ref(tiny, prompt, max_new_tokens=24, **options)
        assert r.choices[0].text == ref.text
        assert r.choices[0].finish_reason == ("length" if ref.finish_reason == "length"
                                              else "stop")
        eos = ref.finish_reason == "eos"
        assert r.usage.prompt_tokens == ref.prompt_tokens
        assert r.usage.completion_tokens == len(ref.token_ids) + eos
        assert r.usage.total_tokens == r.usage.prompt_tokens + r.usage.completion_tokens


def test_logit_bias_equals_generate_and_is_validated(client, tiny):
    model, tok = tiny
    target = tok.encode(" the")[-1]
    options = {"temperature": 0.8, "seed": 5, "logit_bias": {target: 8.0, 0: -100.0}}
    for prompt in PROMPTS:
        r = client.completions.create(model="tiny", prompt=prompt, max_tokens=12,
                                      temperature=0.8, seed=5,
                                      logit_bias={str(target): 8, "0": -100})
        ref = _ref(tiny, prompt, max_new_tokens=12, **options)
        assert r.choices[0].text == ref.text
    forced = client.completions.create(model="tiny", prompt=PROMPTS[0], max_tokens=5,
                                       logit_bias={str(target): 100},
                                       extra_body={"ignore_eos": True})
    assert forced.choices[0].text == tok.decode([target] * 5)
    for bias, fragment in (({"x": 1}, "token ids"), ({"1": 101}, "[-100, 100]"),
                           ({str(10**6): 1}, "must lie in")):
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model="tiny", prompt="x", logit_bias=bias)
        assert e.value.body["param"] == "logit_bias" and fragment in e.value.message


def test_batched_requests_equal_each_alone(client, tiny):
    jobs = [(p, s) for p in PROMPTS for s in (1, 2, 3)]

    def call(job):
        p, s = job
        return client.completions.create(model="tiny", prompt=p, max_tokens=20,
                                         temperature=1.0, seed=s).choices[0].text

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        texts = list(pool.map(call, jobs))
    for (p, s), text in zip(jobs, texts, strict=True):
        assert text == _ref(tiny, p, max_new_tokens=20, temperature=1.0, seed=s).text


def test_n_choices_and_prompt_lists(client, tiny):
    r = client.completions.create(model="tiny", prompt=PROMPTS[:2], max_tokens=10, n=2,
                                  temperature=1.0, seed=11)
    assert [c.index for c in r.choices] == [0, 1, 2, 3]
    for c in r.choices:
        prompt, j = PROMPTS[c.index // 2], c.index % 2
        assert c.text == _ref(tiny, prompt, max_new_tokens=10, temperature=1.0,
                              seed=11 + j).text
    assert r.usage.prompt_tokens == sum(len(encode_prompt(tiny[1], p)) for p in PROMPTS[:2])


def test_stream_joins_to_the_completion_and_reports_usage(client):
    kw = dict(model="tiny", prompt="今天天气", max_tokens=30, temperature=0.8, seed=5)
    whole = client.completions.create(**kw)
    chunks = list(client.completions.create(stream=True,
                                            stream_options={"include_usage": True}, **kw))
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    assert chunks[-1].choices == [] and chunks[-1].usage.total_tokens == whole.usage.total_tokens
    finals = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finals[-1] == whole.choices[0].finish_reason and not any(finals[:-1])


def test_stop_strings_never_leak_into_the_stream(client, tiny):
    free = _ref(tiny, "Alice lives in", max_new_tokens=40, temperature=0).text
    stop = free[10:13]  # a string the greedy text contains
    kw = dict(model="tiny", prompt="Alice lives in", max_tokens=40, temperature=0, stop=[stop])
    chunks = [c.choices[0].text for c in client.completions.create(stream=True, **kw)]
    text = "".join(chunks)
    assert text == free[:free.index(stop)]
    assert client.completions.create(**kw).choices[0].finish_reason == "stop"


def test_echo_and_token_id_prompts(client, tiny):
    r = client.completions.create(model="tiny", prompt="Alice lives in", max_tokens=8,
                                  temperature=0, echo=True)
    ref = _ref(tiny, "Alice lives in", max_new_tokens=8, temperature=0)
    assert r.choices[0].text == "Alice lives in" + ref.text
    ids = encode_prompt(tiny[1], "Alice lives in")
    r = client.completions.create(model="tiny", prompt=ids, max_tokens=8, temperature=0)
    assert r.choices[0].text == ref.text


def test_logprobs_are_the_models(client, tiny):
    model, tok = tiny
    r = client.completions.create(model="tiny", prompt="Alice", max_tokens=3, temperature=0,
                                  logprobs=2)
    lp = r.choices[0].logprobs
    ids = encode_prompt(tok, "Alice")
    with torch.no_grad():
        first = torch.log_softmax(model(torch.tensor([ids]))[0, -1], -1)
    assert lp.token_logprobs[0] == pytest.approx(float(first.max()), abs=1e-4)
    assert len(lp.tokens) == 3 and all(len(t) == 2 for t in lp.top_logprobs)


def test_echo_logprobs_score_the_prompt_as_lm_eval_harness_does(client, tiny):
    """lm-evaluation-harness's loglikelihood request: echo, logprobs 1, max_tokens 1 (or
    vLLM's 0): each prompt token's log-probability given the tokens before it (the
    first null), and the best alternatives."""
    model, tok = tiny
    text = "Alice lives in Paris"
    ids = encode_prompt(tok, text)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids]))[0], -1)
    ref = [float(logp[t - 1, ids[t]]) for t in range(1, len(ids))]
    for max_tokens in (0, 1):
        r = client.completions.create(model="tiny", prompt=text, max_tokens=max_tokens,
                                      temperature=0, echo=True, logprobs=1)
        lp = r.choices[0].logprobs
        assert lp.token_logprobs[0] is None and lp.top_logprobs[0] is None
        n = len(ids)  # the bos token first: listed, no width in the text
        assert len(lp.tokens) == n + max_tokens and "".join(lp.tokens[1:n]) == text
        assert lp.text_offset[:n] == [0] + [len("".join(lp.tokens[1:i]))
                                            for i in range(1, n)]
        assert lp.token_logprobs[1:n] == pytest.approx(ref, abs=1e-4)
        assert r.choices[0].text.startswith(text)
        assert r.usage.prompt_tokens == n and r.usage.completion_tokens == max_tokens
        greedy = [max(d.values()) for d in lp.top_logprobs[1:n]]
        assert all(g >= t - 1e-6 for g, t in zip(greedy, lp.token_logprobs[1:n], strict=True))
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt=text, max_tokens=0)
    assert e.value.body["param"] == "max_tokens"


MESSAGES = [{"role": "system", "content": "You answer questions about the world."},
            {"role": "user", "content": "Where does Alice live?"}]


def test_chat_equals_lmforge_chat(client, tiny):
    model, tok = tiny
    for options in ({"temperature": 0}, {"temperature": 0.9, "seed": 4}):
        r = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=24,
                                           **options)
        ref = chat(model, tok, MESSAGES, ChatTemplate.default(), max_new_tokens=24, **options)
        assert r.choices[0].message.content == ref
        assert r.choices[0].message.role == "assistant"
        stream = client.chat.completions.create(model="tiny", messages=MESSAGES,
                                                max_completion_tokens=24, stream=True,
                                                **options)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == ref


def test_chat_logprobs_shape(client):
    r = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=4,
                                       temperature=0, logprobs=True, top_logprobs=3)
    content = r.choices[0].logprobs.content
    assert len(content) == r.usage.completion_tokens
    assert all(len(c.top_logprobs) == 3 and c.logprob <= 0 for c in content)
    assert content[0].top_logprobs[0].logprob == pytest.approx(content[0].logprob)


def test_errors_are_openai_exceptions(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.completions.create(model="nope", prompt="x")
    assert "nope" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="x", temperature=-1)
    assert e.value.body["param"] == "temperature"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="x", extra_body={
            "repetition_penalty": 1e-300})
    assert e.value.body["param"] == "repetition_penalty"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(model="tiny", prompt="x", max_tokens=10_000)
    assert e.value.body["param"] == "max_tokens" and "128" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=[])
    assert e.value.body["param"] == "messages"
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=[{"role": "wizard",
                                                                "content": "hi"}])
    assert "unknown role 'wizard'" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny", messages=[
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}])
    assert "must end on a user turn" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="plain", messages=MESSAGES)
    assert "no chat template" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(model="tiny", input="x")
    assert e.value.body["param"] == "model"


def test_garbage_gets_4xx_envelopes(server):
    url = server[0]
    cases = [
        ("post", "/v1/completions", {"content": b"{not json"}, 400),
        ("post", "/v1/completions", {"json": {"prompt": "x"}}, 400),  # no model
        ("post", "/v1/completions", {"json": {"model": "tiny", "prompt": []}}, 400),
        ("post", "/v1/completions", {"json": {"model": "tiny", "prompt": [10**9]}}, 400),
        ("post", "/v1/completions", {"json": {"model": "tiny", "prompt": "x", "n": 0}}, 400),
        ("post", "/v1/completions", {"json": {"model": "tiny", "prompt": "x",
                                              "stream_options": {"include_usage": True}}},
         400),
        ("post", "/v1/chat/completions", {"json": {"model": "tiny", "messages": "hi"}}, 400),
        ("post", "/v1/chat/completions", {"json": [1, 2]}, 400),
        ("post", "/v1/completions", {"content": b"x" * (65 * 1024)}, 413),
        ("get", "/v1/nothing", {}, 404),
        ("get", "/v1/completions", {}, 405),
    ]
    for method, path, kw, status in cases:
        r = getattr(httpx, method)(url + path, timeout=30, **kw)
        assert r.status_code == status, (path, kw, r.text)
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["message"]


def test_embeddings_equal_the_encoder(client):
    texts = ["今天天气很好", "The weather is nice today."]
    enc = SentenceEncoder.load(None)
    want = enc.encode(texts)
    r = client.embeddings.create(model="minilm", input=texts)  # the client asks for base64
    got = np.array([d.embedding for d in r.data])
    np.testing.assert_allclose(got, want, atol=1e-6)
    r = client.embeddings.create(model="minilm", input=texts[0], encoding_format="float")
    np.testing.assert_allclose(r.data[0].embedding, want[0], atol=1e-6)
    assert r.usage.prompt_tokens > 0


def test_tokenize_and_detokenize(server, tiny):
    url = server[0]
    r = httpx.post(url + "/tokenize", json={"model": "tiny", "prompt": "今天天气"}).json()
    assert r["tokens"] == encode_prompt(tiny[1], "今天天气") and r["count"] == len(r["tokens"])
    back = httpx.post(url + "/detokenize", json={"model": "tiny", "tokens": r["tokens"][1:]})
    assert back.json()["prompt"] == "今天天气"
    r = httpx.post(url + "/tokenize", json={"model": "tiny", "messages": MESSAGES}).json()
    assert r["tokens"][-1] != tiny[1].eos_id and r["count"] > 10


def test_health_ready_and_metrics(server, client):
    url = server[0]
    assert httpx.get(url + "/health").json() == {"status": "ok"}
    assert httpx.get(url + "/ready").status_code == 200
    client.completions.create(model="tiny", prompt="Alice", max_tokens=4, temperature=0)
    text = httpx.get(url + "/metrics").text
    for name in ("time_to_first_token_seconds", "inter_token_latency_seconds",
                 "e2e_request_latency_seconds", "num_requests_running",
                 "num_requests_waiting", "prompt_tokens_total", "generation_tokens_total",
                 "prefix_cache_queries_total", "prefix_cache_hits_total",
                 "request_success_total"):
        assert f"lmforge:{name}" in text, name
    assert 'model_name="tiny",model_version="1"' in text


def test_shared_prefix_hits_the_cache(server, client):
    engine = server[1].models["tiny"].engine
    system = {"role": "system", "content": "Answer briefly. " * 3}
    before = engine.prefix.hits
    for q in ("Where does Alice live?", "Where does Bob work?"):
        r = client.chat.completions.create(model="tiny", messages=[
            system, {"role": "user", "content": q}], max_tokens=2, temperature=0)
    assert engine.prefix.hits - before >= 16
    assert r.usage.prompt_tokens_details.cached_tokens >= 16


def test_disconnect_frees_the_slot(server):
    url, srv = server
    engine = srv.models["tiny"].engine
    with httpx.stream("POST", url + "/v1/completions", timeout=30, json={
            "model": "tiny", "prompt": "Alice", "max_tokens": 100, "stream": True,
            "temperature": 1.0, "ignore_eos": True}) as r:
        for line in r.iter_lines():
            if line.startswith("data: {"):
                assert json.loads(line[6:])["object"] == "text_completion"
                break
    deadline = time.monotonic() + 10
    while engine.num_running and time.monotonic() < deadline:
        time.sleep(0.05)
    assert engine.num_running == 0


def test_overload_is_503_with_retry_after(folders):
    app = build_app([ModelSpec("tiny", str(folders["tiny"]))],
                    ServerOptions(engine={"max_running": 1, "max_waiting": 1}))
    body = {"model": "tiny", "prompt": "Alice", "max_tokens": 120, "ignore_eos": True,
            "stream": True}
    with running(app) as url, httpx.Client(timeout=30) as c:
        engine = app.state.server.models["tiny"].engine
        forward = engine.model.forward

        def slow_forward(*args, **kwargs):  # the two admitted requests outlast the test
            time.sleep(0.05)
            return forward(*args, **kwargs)

        engine.model.forward = slow_forward
        with c.stream("POST", url + "/v1/completions", json=body):
            with c.stream("POST", url + "/v1/completions", json=body):
                while engine.num_waiting < 1:
                    time.sleep(0.01)
                r = c.post(url + "/v1/completions", json=body)
                assert r.status_code == 503 and r.headers["Retry-After"] == "1"
                assert r.json()["error"]["type"] == "service_unavailable"


def test_response_cache_answers_deterministic_requests_again(folders):
    app = build_app([ModelSpec("tiny", str(folders["tiny"]))],
                    ServerOptions(response_cache_entries=4))
    with running(app) as url:
        engine = app.state.server.models["tiny"].engine
        body = {"model": "tiny", "prompt": "Alice", "max_tokens": 6, "temperature": 0}
        first = httpx.post(url + "/v1/completions", json=body)
        made = engine.generated_tokens
        again = httpx.post(url + "/v1/completions", json={**body, "user": "someone else"})
        assert again.headers.get("x-cache") == "hit" and engine.generated_tokens == made
        assert again.json()["choices"] == first.json()["choices"]
        assert again.json()["usage"] == first.json()["usage"]
        assert again.json()["id"] != first.json()["id"]
        sampled = {**body, "temperature": 1.0}  # without a seed: never cached
        for _ in range(2):
            assert "x-cache" not in httpx.post(url + "/v1/completions", json=sampled).headers
        other = {**body, "max_tokens": 7}  # other parameters: another entry
        assert "x-cache" not in httpx.post(url + "/v1/completions", json=other).headers
        seeded = {**body, "temperature": 1.0, "seed": 3}
        httpx.post(url + "/v1/completions", json=seeded)
        assert httpx.post(url + "/v1/completions", json=seeded).headers.get("x-cache") == "hit"
        metrics = httpx.get(url + "/metrics").text
        assert 'lmforge:response_cache_hits_total{model_name="tiny",model_version="1"} 2.0' \
            in metrics


def test_response_cache_serves_and_fills_streams(folders):
    app = build_app([ModelSpec("tiny", str(folders["tiny"]))],
                    ServerOptions(response_cache_entries=8))
    with running(app) as url:
        engine = app.state.server.models["tiny"].engine
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        kw = {"model": "tiny", "prompt": ["Alice", "小明"], "max_tokens": 6, "temperature": 0,
              "n": 2, "logprobs": 2}
        whole = client.completions.create(**kw)
        made = engine.generated_tokens

        def streamed(**extra):
            text, lp, reasons, usage = {}, {}, {}, None
            with client.completions.with_streaming_response.create(
                    **kw, **extra, stream=True, stream_options={"include_usage": True}) as r:
                hit = r.headers.get("x-cache")
                for chunk in r.parse():
                    usage = chunk.usage or usage
                    for c in chunk.choices:
                        text[c.index] = text.get(c.index, "") + c.text
                        lp.setdefault(c.index, []).extend(c.logprobs.tokens if c.logprobs
                                                          else [])
                        reasons[c.index] = c.finish_reason or reasons.get(c.index)
            return hit, text, lp, reasons, usage

        hit, text, lp, reasons, usage = streamed()  # a stream answered from the cache
        assert hit == "hit" and engine.generated_tokens == made
        assert [text[c.index] for c in whole.choices] == [c.text for c in whole.choices]
        assert [lp[c.index] for c in whole.choices] == [c.logprobs.tokens for c in whole.choices]
        assert [reasons[c.index] for c in whole.choices] == [c.finish_reason
                                                             for c in whole.choices]
        assert usage.completion_tokens == whole.usage.completion_tokens
        # a stream that missed fills the cache for whole answers and streams alike
        kw["prompt"] = ["Bob"]
        first = streamed()
        assert first[0] is None
        made = engine.generated_tokens
        again = client.completions.with_raw_response.create(**kw)
        assert again.headers.get("x-cache") == "hit" and engine.generated_tokens == made
        assert [c.text for c in again.parse().choices] == [first[1][i] for i in range(2)]
        assert streamed()[1:] == first[1:]
        # chat: the replayed stream carries the role and the whole content
        chat = {"model": "tiny", "messages": MESSAGES, "max_tokens": 6, "temperature": 0}
        reply = client.chat.completions.create(**chat).choices[0]
        with client.chat.completions.with_streaming_response.create(**chat, stream=True) as r:
            assert r.headers.get("x-cache") == "hit"
            deltas = [c.choices[0] for c in r.parse() if c.choices]
        assert deltas[0].delta.role == "assistant"
        assert "".join(d.delta.content or "" for d in deltas) == reply.message.content
        assert deltas[-1].finish_reason == reply.finish_reason


def test_response_cache_lru_and_ttl():
    from lmforge.serve.response_cache import ResponseCache

    now = [0.0]
    cache = ResponseCache(max_entries=2, ttl=10, clock=lambda: now[0])
    cache.put("a", {"x": 1})
    cache.put("b", {"x": 2})
    assert cache.get("a") == {"x": 1}  # a is now the most recent
    cache.put("c", {"x": 3})  # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("a") == {"x": 1}
    now[0] = 10.5
    assert cache.get("c") is None and len(cache) == 1
    assert (cache.hits, cache.lookups) == (2, 4)


def test_sse_events_stay_one_line_for_line_splitting_clients():
    from lmforge.serve.routes import _sse

    text = "a\u2028b\u2029c\x85d\ne\rf\x0bg\x1ch"  # every break str.splitlines knows
    event = _sse({"text": text})
    assert event.endswith("\n\n") and len(event[:-2].splitlines()) == 1
    assert json.loads(event[len("data: "):])["text"] == text


def test_request_timeout_is_408_and_frees_the_slot(folders):
    app = build_app([ModelSpec("tiny", str(folders["tiny"]))],
                    ServerOptions(request_timeout=0.5))
    with running(app) as url:
        engine = app.state.server.models["tiny"].engine
        forward = engine.model.forward

        def slow_forward(*args, **kwargs):
            time.sleep(0.05)
            return forward(*args, **kwargs)

        engine.model.forward = slow_forward
        body = {"model": "tiny", "prompt": "Alice", "max_tokens": 100, "ignore_eos": True}
        r = httpx.post(url + "/v1/completions", json=body, timeout=30)
        assert r.status_code == 408 and r.json()["error"]["code"] == "timeout"
        with httpx.stream("POST", url + "/v1/completions", json={**body, "stream": True},
                          timeout=30) as s:
            events = [line for line in s.iter_lines() if line.startswith("data: ")]
        assert "timed out" in events[-2] and events[-1] == "data: [DONE]"
        assert engine.num_running == 0
