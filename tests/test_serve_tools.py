"""Function calling on /v1/chat/completions: tools rendered by a Hermes-style chat
template exactly as transformers renders them, tool calls parsed out of the reply (a
scripted model writes it), tool_choice, streams, and the 400s."""

from __future__ import annotations

import json

import openai
import pytest
import torch
from serve_fixtures import make_model_folder, running

from lmforge.chat.template import ChatTemplate, save_chat_template
from lmforge.generate.structured import REPEAT
from lmforge.serve.app import ServerOptions, build_app
from lmforge.serve.errors import ApiError
from lmforge.serve.models import ModelSpec
from lmforge.serve.tools import check_tools, parse_reply

HERMES = """{%- if tools %}<|im_start|>system
{% if messages[0].role == 'system' %}{{ messages[0].content }}

{% endif %}# Tools

You may call one or more functions to assist with the user query.

<tools>
{%- for tool in tools %}
{{ tool | tojson }}
{%- endfor %}
</tools>

For each function call, return a json object within <tool_call></tool_call> XML tags.<|im_end|>
{% elif messages[0].role == 'system' %}<|im_start|>system
{{ messages[0].content }}<|im_end|>
{% endif %}
{%- for message in messages %}
{%- if message.role == 'user' %}<|im_start|>user
{{ message.content }}<|im_end|>
{% elif message.role == 'assistant' %}<|im_start|>assistant
{% if message.content %}{{ message.content }}{% endif %}
{%- for tc in message.tool_calls or [] %}
<tool_call>
{"name": "{{ tc.function.name }}", "arguments": {{ tc.function.arguments }}}
</tool_call>
{%- endfor %}<|im_end|>
{% elif message.role == 'tool' %}<|im_start|>user
<tool_response>
{{ message.content }}
</tool_response><|im_end|>
{% endif %}
{%- endfor %}
{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                   "required": ["city"]}}},
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}]
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


class Script:
    """Makes the served model write ``text`` greedily: each prefill restarts the script,
    each decode step favours its next token, and the end of turn follows it."""

    def __init__(self, served):
        self.model, self.tok = served.engine.model, served.tokenizer
        self.ids: list[int] = []
        self.pos = 0
        forward = self.model.forward

        def scripted(ids, attention_mask=None, cache=None, last_only=False):
            out = forward(ids, attention_mask=attention_mask, cache=cache, last_only=last_only)
            if ids.shape[-1] > 1:
                self.pos = 0
            target = self.ids[self.pos] if self.pos < len(self.ids) else self.end
            self.pos += 1
            out[..., -1, target] += 1000.0
            return out

        self.model.forward = scripted
        self.end = self.tok.token_to_id("<|im_end|>")

    def write(self, text: str) -> None:
        self.ids = self.tok.encode(text, allow_special=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("tools")
    hermes = make_model_folder(root / "hermes", template=False, max_seq_len=1024)
    save_chat_template(hermes, ChatTemplate(HERMES, "hermes"))
    plain = make_model_folder(root / "plain")
    app = build_app([ModelSpec("hermes", str(hermes)), ModelSpec("plain", str(plain))],
                    ServerOptions(engine={"prefix_cache_tokens": 0}))
    with running(app) as url:
        served = app.state.server.models["hermes"]
        yield (openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0),
               Script(served), served)


CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'


def test_a_tool_call_comes_back_as_tool_calls(server):
    client, script, _ = server
    script.write("Let me check.\n" + CALL)
    r = client.chat.completions.create(model="hermes", messages=ASK, tools=TOOLS,
                                       temperature=0, max_tokens=150)
    choice = r.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content == "Let me check."
    [call] = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}


def test_a_streamed_tool_call_arrives_whole(server):
    client, script, _ = server
    script.write(CALL)
    chunks = list(client.chat.completions.create(model="hermes", messages=ASK, tools=TOOLS,
                                                 temperature=0, max_tokens=150, stream=True))
    calls = [tc for c in chunks for tc in (c.choices[0].delta.tool_calls or [])]
    assert [(tc.index, tc.function.name, json.loads(tc.function.arguments)) for tc in calls] \
        == [(0, "get_weather", {"city": "Paris"})]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_named_tool_choice_starts_the_call_in_the_prompt(server):
    client, script, served = server
    script.write('{"city": "Rome"}}\n</tool_call>')
    r = client.chat.completions.create(
        model="hermes", messages=ASK, tools=TOOLS, temperature=0, max_tokens=40,
        tool_choice={"type": "function", "function": {"name": "get_weather"}})
    [call] = r.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Rome"}
    assert r.choices[0].message.content is None


def test_tools_are_rendered_as_transformers_renders_them(server):
    from transformers.utils.chat_template_utils import render_jinja_template

    client, script, served = server
    script.write("It is sunny.")
    history = ASK + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "call_1", "type": "function", "function": {
            "name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}]
    r = client.chat.completions.create(model="hermes", messages=history, tools=TOOLS,
                                       temperature=0, max_tokens=30)
    assert r.choices[0].message.content == "It is sunny."
    assert r.choices[0].finish_reason == "stop" and not r.choices[0].message.tool_calls
    rendered, _ = render_jinja_template(conversations=[history], tools=TOOLS,
                                        chat_template=HERMES, add_generation_prompt=True)
    ids = served.tokenizer.encode(rendered[0], allow_special=True)
    assert r.usage.prompt_tokens == len(ids)
    # tool_choice none: a plain chat turn, the tools neither rendered nor parsed
    script.write(CALL)
    r = client.chat.completions.create(model="hermes", messages=ASK, tools=TOOLS,
                                       tool_choice="none", temperature=0, max_tokens=150)
    plain, _ = render_jinja_template(conversations=[ASK], chat_template=HERMES,
                                     add_generation_prompt=True)
    assert r.usage.prompt_tokens == len(served.tokenizer.encode(plain[0], allow_special=True))
    assert r.choices[0].message.content == CALL and not r.choices[0].message.tool_calls


def test_tool_errors_are_400s(server):
    client = server[0]
    cases = [({"model": "plain", "tools": TOOLS}, "does not render tools"),
             ({"tools": [{"type": "retrieval"}]}, "tools[0]"),
             ({"tools": TOOLS + TOOLS[:1]}, "distinct"),
             ({"tools": TOOLS, "tool_choice": {"type": "function",
                                               "function": {"name": "nope"}}}, "tool_choice"),
             ({"tool_choice": "auto"}, "needs tools")]
    for extra, fragment in cases:
        kw = {"model": "hermes", "messages": ASK, **extra}
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(**kw)
        assert fragment in e.value.message


def test_parse_reply_rules():
    use = check_tools(TOOLS, None)
    two = CALL + "\n" + CALL.replace("get_weather", "get_time").replace('{"city": "Paris"}', "{}")
    content, calls = parse_reply(two, use)
    assert content is None and [c["function"]["name"] for c in calls] == ["get_weather",
                                                                          "get_time"]
    assert len({c["id"] for c in calls}) == 2
    # bad JSON, an unknown name and non-object arguments stay in the content
    for bad in ('<tool_call>{"name": "get_weather", </tool_call>',
                '<tool_call>{"name": "rm", "arguments": {}}</tool_call>',
                '<tool_call>{"name": "get_weather", "arguments": [1]}</tool_call>'):
        assert parse_reply("hi " + bad, use) == ("hi " + bad, [])
    # arguments as a JSON string, and a block cut off by max_tokens
    content, [call] = parse_reply('<tool_call>{"name": "get_time", "arguments": "{\\"tz\\": '
                                  '\\"UTC\\"}"}', use)
    assert json.loads(call["function"]["arguments"]) == {"tz": "UTC"} and content is None
    assert check_tools(TOOLS, "none") is None
    assert check_tools(TOOLS, "required").prefill == "<tool_call>\n"
    with pytest.raises(ApiError):
        check_tools([{"type": "function", "function": {"name": "a b"}}], None)


def test_parallel_tool_calls_shapes_only_a_required_choice():
    """Several calls are allowed (REPEAT) under required unless parallel_tool_calls is
    false; a named function is the same either way, and auto keeps only the first call
    it reads (tests of the grammars: test_serve_tool_parsers.py)."""
    assert REPEAT in check_tools(TOOLS, "required").schema
    assert REPEAT not in check_tools(TOOLS, "required", parallel=False).schema
    named = {"type": "function", "function": {"name": "get_weather"}}
    assert check_tools(TOOLS, named) == check_tools(TOOLS, named, parallel=False)
    auto, single = check_tools(TOOLS, "auto"), check_tools(TOOLS, "auto", parallel=False)
    assert auto.schema is single.schema is None  # auto is never constrained ...
    two = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
           '\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n'
           '</tool_call>')
    assert [c["function"]["arguments"] for c in parse_reply(two, auto)[1]] == [
        '{"city": "Paris"}', '{"city": "Rome"}']
    # ... but with parallel_tool_calls false only the first call comes back
    content, calls = parse_reply(two, single)
    assert content is None and [c["function"]["arguments"] for c in calls] == [
        '{"city": "Paris"}']


def test_scripted_forward_is_restored_per_request(server):
    """A sanity check of the test's own script: a plain reply is written exactly."""
    client, script, _ = server
    script.write("Paris is sunny.")
    r = client.chat.completions.create(model="hermes", messages=ASK, temperature=0,
                                       max_tokens=20)
    assert r.choices[0].message.content == "Paris is sunny."
    assert torch.is_grad_enabled()
