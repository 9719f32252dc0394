"""Structured outputs: an untrained model constrained by a JSON schema writes documents the
schema accepts (checked by jsonschema_rs, an independent validator), the server's
``response_format`` gives what ``lmforge.generate`` gives for the same seed, streamed or
not, a constrained sequence leaves the others of its batch alone, and bad formats are
400s naming ``response_format``."""

from __future__ import annotations

import json
import re
import sys
import threading

import jsonschema_rs
import openai
import pytest
import torch
from serve_fixtures import make_model_folder, running

from lmforge.chat import ChatTemplate
from lmforge.chat.generate import chat
from lmforge.errors import ConfigError
from lmforge.generate import GenerationConfig, generate_completions, generate_ids
from lmforge.generate.sampling import process_logits
from lmforge.generate.structured import AFTER, REPEAT, JsonConstraint
from lmforge.generate.text import encode_prompt
from lmforge.hub import load_pretrained
from lmforge.serve.app import ServerOptions, build_app
from lmforge.serve.engine import Engine, Request
from lmforge.serve.models import ModelSpec
from lmforge.serve.protocol import CompletionRequest
from lmforge.serve.response_cache import cache_key

SCHEMA = {"type": "object",
          "properties": {"name": {"type": "string", "maxLength": 8},
                         "age": {"type": "integer", "minimum": 18, "maximum": 120},
                         "color": {"enum": ["red", "green", "blue"]},
                         "tags": {"type": "array", "items": {"type": "string", "maxLength": 4},
                                  "maxItems": 3}},
          "required": ["name", "age", "color", "tags"], "additionalProperties": False}
FORMAT = {"type": "json_schema", "json_schema": {"name": "person", "schema": SCHEMA,
                                                  "strict": True}}
MESSAGES = [{"role": "user", "content": "Who lives in Paris?"}]
SEEDS = range(6)
MAX = 120  # enough for any document of SCHEMA, byte-level tokens included


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_model_folder(tmp_path_factory.mktemp("structured") / "tiny", max_seq_len=256)


@pytest.fixture(scope="module")
def tiny(folder):
    return load_pretrained(folder, require_tokenizer=True)


@pytest.fixture(scope="module")
def client(folder):
    app = build_app([ModelSpec("tiny", str(folder))],
                    ServerOptions(engine={"max_running": 4, "prefill_chunk": 16}))
    with running(app) as url:
        yield openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)


def _valid(text: str) -> dict:
    doc = json.loads(text)
    jsonschema_rs.validate(SCHEMA, doc)
    return doc


def walk(schema: dict, tok, vocab_size: int, text: str) -> list[tuple[str, bool]] | None:
    """Feed ``text``'s tokens to a :class:`JsonConstraint` of ``schema``: None when one of
    them is not allowed, else each prefix of the text (empty first) with whether the end
    id is allowed after it."""
    c = JsonConstraint(schema, tok, vocab_size, [tok.eos_id])
    ids = tok.encode(text)
    steps = [("", bool(c.allowed()[tok.eos_id]))]
    for i, t in enumerate(ids):
        if not c.allowed()[t]:
            return None
        c.advance(t)
        steps.append((tok.decode(ids[:i + 1]), bool(c.allowed()[tok.eos_id])))
    return steps


def accepts(schema: dict, tok, vocab_size: int, text: str) -> bool:
    """Is ``text`` a whole output of ``schema`` (every token allowed, then the end)?"""
    steps = walk(schema, tok, vocab_size, text)
    return steps is not None and steps[-1][1]


def test_masking_renormalises_over_the_allowed_tokens():
    logits = torch.randn(2, 10)
    allowed = torch.rand(2, 10) > 0.5
    allowed[:, 0] = True
    probs = torch.softmax(process_logits(logits, GenerationConfig(), allowed=allowed), -1)
    ref = torch.softmax(logits, -1) * allowed
    torch.testing.assert_close(probs, ref / ref.sum(-1, keepdim=True))


def test_untrained_model_writes_valid_documents_only_when_constrained(tiny):
    model, tok = tiny
    for seed in SEEDS:
        c = generate_completions(model, tok, ["Alice lives in"], max_new_tokens=MAX,
                                 temperature=1.0, seed=seed, json_schema=SCHEMA)[0]
        assert c.finish_reason == "eos", c.text
        doc = _valid(c.text)
        assert set(doc) == set(SCHEMA["properties"])
        free = generate_completions(model, tok, ["Alice lives in"], max_new_tokens=MAX,
                                    temperature=1.0, seed=seed)[0]
        with pytest.raises(ValueError):  # the check can fail: random text is not JSON
            json.loads(free.text)


def test_config_errors_are_one_line(tiny, monkeypatch):
    model, _ = tiny
    for bad, fragment in [({"type": "foo"}, "foo"), ("{}", "a dict"),
                          ({"type": "integer", "minimum": 5, "maximum": 2}, "minimum")]:
        with pytest.raises(ConfigError, match=fragment):
            GenerationConfig(json_schema=bad)
    with pytest.raises(ConfigError, match="num_beams"):
        GenerationConfig(json_schema=SCHEMA, num_beams=2)
    with pytest.raises(ConfigError, match="min_new_tokens"):
        GenerationConfig(json_schema=SCHEMA, min_new_tokens=2)
    with pytest.raises(ConfigError, match="needs a tokenizer"):
        generate_ids(model, [[0, 5]], GenerationConfig(json_schema=SCHEMA))
    from lmforge.generate import structured

    monkeypatch.setitem(sys.modules, "llguidance", None)
    structured._compile.cache_clear()
    with pytest.raises(ConfigError, match=r"pip install 'lmforge\[serve\]'") as e:
        GenerationConfig(json_schema={"type": "array"})
    assert "\n" not in str(e.value)
    monkeypatch.undo()
    structured._compile.cache_clear()


def test_chat_response_format_equals_generate_streamed_or_not(client, tiny):
    model, tok = tiny
    for seed in SEEDS[:3]:
        options = {"temperature": 1.0, "seed": seed}
        r = client.chat.completions.create(model="tiny", messages=MESSAGES, max_tokens=MAX,
                                           response_format=FORMAT, **options)
        text = r.choices[0].message.content
        assert r.choices[0].finish_reason == "stop"
        _valid(text)
        assert text == chat(model, tok, MESSAGES, ChatTemplate.default(),
                            max_new_tokens=MAX, json_schema=SCHEMA, **options)
        stream = client.chat.completions.create(model="tiny", messages=MESSAGES,
                                                max_tokens=MAX, response_format=FORMAT,
                                                stream=True, **options)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == text


def test_completions_response_format_and_text_type(client, tiny):
    model, tok = tiny
    options = {"max_tokens": MAX, "temperature": 1.0, "seed": 4}
    r = client.completions.create(model="tiny", prompt="Alice lives in",
                                  extra_body={"response_format": {"type": "json_object"}},
                                  **options)
    ref = generate_completions(model, tok, ["Alice lives in"], max_new_tokens=MAX,
                               temperature=1.0, seed=4, json_schema={"type": "object"})[0]
    assert r.choices[0].text == ref.text and r.choices[0].finish_reason == "stop"
    assert isinstance(json.loads(ref.text), dict)
    plain = client.completions.create(model="tiny", prompt="Alice lives in",
                                      extra_body={"response_format": {"type": "text"}},
                                      **options)
    free = generate_completions(model, tok, ["Alice lives in"], max_new_tokens=MAX,
                                temperature=1.0, seed=4)[0]
    assert plain.choices[0].text == free.text


def test_a_constrained_row_leaves_its_batch_neighbours_alone(tiny):
    """Both sequences are queued before the engine starts, so they decode together."""
    model, tok = tiny
    prompts = ["Alice lives in", "The match"]
    configs = [GenerationConfig(max_new_tokens=MAX, temperature=1.0, seed=2,
                                json_schema=SCHEMA),
               GenerationConfig(max_new_tokens=40, temperature=1.0, seed=2)]
    engine = Engine(model, tok, max_running=4)
    texts, done = ["", ""], [threading.Event(), threading.Event()]

    def emit(i):
        def on(event):
            texts[i] += event.text
            if event.finish_reason is not None:
                done[i].set()
        return on

    for i, (p, cfg) in enumerate(zip(prompts, configs, strict=True)):
        engine.submit(Request(encode_prompt(tok, p), cfg, emit(i), frozenset({tok.eos_id})))
    engine.start()
    try:
        assert all(d.wait(60) for d in done)
    finally:
        engine.close()
    for p, cfg, text in zip(prompts, configs, texts, strict=True):
        assert text == generate_completions(model, tok, [p], cfg)[0].text
    _valid(texts[0])


@pytest.mark.parametrize("fmt, fragment", [
    ({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "foo"}}}, "foo"),
    ({"type": "xml"}, "json_object"),
    ({"type": "json_schema", "json_schema": {"schema": SCHEMA}}, "name"),
    ({"type": "json_schema", "json_schema": {"name": "x"}}, "schema"),
])
def test_bad_formats_are_400_naming_response_format(client, fmt, fragment):
    for call in (lambda: client.chat.completions.create(model="tiny", messages=MESSAGES,
                                                        response_format=fmt),
                 lambda: client.completions.create(model="tiny", prompt="x",
                                                   extra_body={"response_format": fmt})):
        with pytest.raises(openai.BadRequestError) as e:
            call()
        assert e.value.body["param"] == "response_format" and fragment in e.value.message


def test_response_format_is_part_of_the_cache_key():
    def key(**extra):
        return cache_key("completion", "tiny", "1",
                         CompletionRequest(model="tiny", prompt="x", **extra))

    assert key() == key(response_format=None)
    assert key(response_format={"type": "json_object"}) != key()
    assert key(response_format=FORMAT) != key(response_format={"type": "json_object"})


def test_options_that_would_break_the_document_are_400(client):
    for extra, param in [({"ignore_eos": True}, "response_format"),
                         ({"min_tokens": 3}, "min_tokens")]:
        with pytest.raises(openai.BadRequestError) as e:
            client.completions.create(model="tiny", prompt="x",
                                      extra_body={"response_format": FORMAT, **extra})
        assert e.value.body["param"] == param


def test_generate_command_writes_schema_documents_and_refuses_bad_files(folder, tmp_path,
                                                                        capsys):
    from fakes import assert_user_error, run_cli

    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps(SCHEMA))
    code, out, _ = run_cli(["generate", str(folder), "--prompt", "", "--json-schema",
                            str(schema), "--temperature", "1", "--seed", "3",
                            "--max-new-tokens", str(MAX)], capsys)
    assert code == 0
    model, tok = load_pretrained(folder, require_tokenizer=True)
    want = generate_completions(model, tok, [""], max_new_tokens=MAX, temperature=1.0,
                                seed=3, json_schema=SCHEMA)[0].text
    assert out.strip() == want.strip()
    _valid(out)
    (tmp_path / "list.json").write_text("[1]")
    (tmp_path / "bad.json").write_text('{"type": "integer", "minimum": 5, "maximum": 2}')
    for bad, fragment in [("missing.json", "not found"), ("list.json", "JSON object"),
                          ("bad.json", "minimum")]:
        assert_user_error(["generate", str(folder), "--json-schema", str(tmp_path / bad)],
                          capsys, "--json-schema" if bad != "bad.json" else "json_schema",
                          fragment)


DIGIT = {"type": "object", "properties": {"n": {"type": "integer", "minimum": 0, "maximum": 9}},
         "required": ["n"], "additionalProperties": False, AFTER: "!", REPEAT: " and "}
ITEMS = re.compile(r'\{"n": \d\}!( and \{"n": \d\}!)*')  # DIGIT's outputs, by hand


def test_repeat_writes_one_or_more_items_and_may_end_after_each(tiny):
    model, tok = tiny
    vocab = model.config.vocab_size
    steps = walk(DIGIT, tok, vocab, '{"n": 1}! and {"n": 2}! and {"n": 3}!')
    assert [p for p, end in steps if end] == ['{"n": 1}!', '{"n": 1}! and {"n": 2}!',
                                               '{"n": 1}! and {"n": 2}! and {"n": 3}!']
    assert all(end == bool(ITEMS.fullmatch(p)) for p, end in steps)
    for bad in ["", '{"n": 1}! and ', '{"n": 1}! and {"n": 12}!', '{"n": 1}!{"n": 2}!']:
        assert not accepts(DIGIT, tok, vocab, bad), bad
    counts = set()
    for seed in SEEDS:
        c = generate_completions(model, tok, ["Alice lives in"], max_new_tokens=MAX,
                                 temperature=1.0, seed=seed, json_schema=DIGIT)[0]
        assert c.finish_reason == "eos" and ITEMS.fullmatch(c.text), c.text
        counts.add(c.text.count("!"))
    assert max(counts) > 1  # the check can fail: an untrained model may stop after one


def test_after_and_repeat_must_be_strings():
    for word in (AFTER, REPEAT):
        with pytest.raises(ConfigError, match=f"{word} must be a string"):
            GenerationConfig(json_schema={"type": "object", word: 3})
