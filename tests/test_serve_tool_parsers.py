"""Tool-call formats (``lmforge serve --tool-call-parser``): each parser on hand-written
replies; each format's constraint on hand-written replies of several calls, one and
none (``parallel_tool_calls``); through the openai client, a required or named
``tool_choice`` makes an untrained model write calls in the server's format whose
arguments follow the function's schema (checked by jsonschema_rs, an independent
validator), several only when ``required`` and ``parallel_tool_calls`` allow them;
``auto`` stays unconstrained (a scripted model's reply is parsed as written); a bad
parser name is a one-line error."""

from __future__ import annotations

import json

import jsonschema_rs
import openai
import pytest
from fakes import assert_user_error
from serve_fixtures import make_model_folder, running
from test_serve_tools import ASK, HERMES, Script
from test_structured_output import accepts

from lmforge.chat.template import ChatTemplate, save_chat_template
from lmforge.hub import load_pretrained
from lmforge.serve.app import ServerOptions, build_app
from lmforge.serve.models import ModelSpec
from lmforge.serve.tool_parsers import PARSERS, tool_parser

WEATHER = {"type": "object",
           "properties": {"city": {"type": "string", "maxLength": 8},
                          "unit": {"enum": ["C", "F"]}},
           "required": ["city", "unit"], "additionalProperties": False}
TIME = {"type": "object", "properties": {"hours": {"type": "integer", "minimum": 0,
                                                   "maximum": 23}},
        "required": ["hours"], "additionalProperties": False}
TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": WEATHER}},
         {"type": "function", "function": {"name": "get_time", "parameters": TIME}},
         {"type": "function", "function": {"name": "ping"}}]
SCHEMAS = {"get_weather": WEATHER, "get_time": TIME,
           "ping": {"type": "object", "additionalProperties": False}}
NAMES = frozenset(SCHEMAS)
FUNCTIONS = [t["function"] for t in TOOLS]
CALLS = [("get_weather", {"city": "Oslo", "unit": "C"}), ("ping", {})]
SEEDS = range(4)
MAX = 120  # enough for any call of TOOLS, byte-level tokens included


def _calls(parsed):
    content, calls = parsed
    for c in calls:
        assert c["type"] == "function" and c["id"].startswith("call_")
    return content, [(c["function"]["name"], json.loads(c["function"]["arguments"]))
                     for c in calls]


def test_hermes_reads_tool_call_blocks():
    p = PARSERS["hermes"]
    call = '<tool_call>\n{"name": "get_time", "arguments": {"hours": 3}}\n</tool_call>'
    assert _calls(p.parse("On it. " + call + " Done.", NAMES)) == (
        "On it.  Done.", [("get_time", {"hours": 3})])
    bad = '<tool_call>{"name": "get_time", "arguments": {</tool_call>'
    assert p.parse("hi " + bad, NAMES) == ("hi " + bad, [])


def test_llama3_json_reads_a_json_reply():
    p = PARSERS["llama3_json"]
    assert _calls(p.parse(' {"name": "get_time", "parameters": {"hours": 3}}', NAMES)) == (
        None, [("get_time", {"hours": 3})])
    text = ('Let me look.<|python_tag|>{"name": "get_weather", "arguments": {"city": "Oslo", '
            '"unit": "C"}}; {"name": "ping", "parameters": {}} Thanks.')
    assert _calls(p.parse(text, NAMES)) == ("Let me look. Thanks.", [
        ("get_weather", {"city": "Oslo", "unit": "C"}), ("ping", {})])
    for bad in ('{"name": "get_time", "parameters": {"hours":',  # cut off
                'Sure: {"name": "get_time", "parameters": {}}',  # not the reply's start
                '{"name": "rm", "parameters": {}}', '{"name": "ping", "parameters": 3}'):
        assert p.parse(bad, NAMES) == (bad, [])


def test_mistral_reads_a_list_after_tool_calls():
    p = PARSERS["mistral"]
    text = ('Checking.[TOOL_CALLS][{"name": "get_time", "arguments": {"hours": 1}}, '
            '{"name": "ping", "arguments": "{}"}] ok')
    assert _calls(p.parse(text, NAMES)) == ("Checking. ok", [("get_time", {"hours": 1}),
                                                             ("ping", {})])
    # the special token left out of the text; one call without its list
    assert _calls(p.parse('[{"name": "ping", "arguments": {}}]', NAMES))[1] == [("ping", {})]
    assert _calls(p.parse('[TOOL_CALLS]{"name": "ping", "arguments": {}}', NAMES))[1] == [
        ("ping", {})]
    for bad in ('[TOOL_CALLS][{"name": "ping", "arguments": {}', '[1, 2] are numbers',
                '[TOOL_CALLS][{"name": "ping", "arguments": {}}, {"name": "rm"}]',
                '{"name": "ping", "arguments": {}}'):
        assert p.parse(bad, NAMES) == (bad, [])


def written(parser: str, calls: list[tuple[str, dict]]) -> str:
    """The reply in which ``parser``'s format writes ``calls`` (several as the format
    writes them), opening with the required call's prefill."""
    p = PARSERS[parser]
    docs = [json.dumps({"name": n, p.arguments: a}) for n, a in calls]
    body = {"hermes": "\n</tool_call>\n<tool_call>\n".join(docs) + "\n</tool_call>",
            "llama3_json": "; ".join(docs), "mistral": "[" + ", ".join(docs) + "]"}[parser]
    return p.prefill(None) + body


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = make_model_folder(tmp_path_factory.mktemp("parsers") / "tiny", template=False,
                               max_seq_len=1024)
    save_chat_template(folder, ChatTemplate(HERMES, "hermes"))
    return folder


@pytest.fixture(scope="module")
def tiny(folder):
    return load_pretrained(folder, require_tokenizer=True)


@pytest.mark.parametrize("parser", list(PARSERS))
def test_required_constraints_allow_parallel_calls_unless_told_not_to(tiny, parser):
    model, tok = tiny
    p = PARSERS[parser]

    def ok(named, parallel, text):
        functions = FUNCTIONS if named is None else FUNCTIONS[:1]
        prefill = p.prefill(named)
        assert text.startswith(prefill)
        return accepts(p.constraint(functions, named, parallel), tok,
                       model.config.vocab_size, text[len(prefill):])

    two, one = written(parser, CALLS), written(parser, CALLS[:1])
    bad = written(parser, [CALLS[0], ("get_weather", {"city": "Oslo", "unit": "K"})])
    assert ok(None, True, two) and ok(None, True, one) and ok(None, False, one)
    for parallel in (True, False):
        assert not ok(None, parallel, written(parser, [])), "zero calls"
        assert not ok(None, parallel, bad), "a second call outside its schema"
        assert not ok("get_weather", parallel, written(parser, CALLS[:1] * 2))
        assert ok("get_weather", parallel, one)
    assert not ok(None, False, two)
    assert _calls(p.parse(two, NAMES)) == (None, CALLS)


@pytest.fixture(scope="module", params=list(PARSERS))
def server(request, folder):
    """A server in one format, with the untrained model ``tiny`` and a scripted copy."""
    app = build_app([ModelSpec("tiny", str(folder)), ModelSpec("scripted", str(folder))],
                    ServerOptions(engine={"prefix_cache_tokens": 0},
                                  tool_call_parser=request.param))
    with running(app) as url:
        yield (request.param, openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0),
               Script(app.state.server.models["scripted"]))


@pytest.mark.parametrize("choice", ["required", "get_weather", "ping"])
def test_a_required_call_follows_the_schema(server, choice):
    _, client, _ = server
    named = choice != "required"
    tool_choice = {"type": "function", "function": {"name": choice}} if named else choice
    free, counts = [], set()
    for seed in SEEDS:
        def ask(tool_choice, seed=seed, **extra):
            return client.chat.completions.create(
                model="tiny", messages=ASK, tools=TOOLS, tool_choice=tool_choice,
                temperature=1.0, seed=seed, max_tokens=MAX * 2, **extra).choices[0]

        for parallel in (True, False):
            out = ask(tool_choice, parallel_tool_calls=parallel)
            assert out.finish_reason == "tool_calls", out.message.content
            assert out.message.content is None  # the whole reply is the calls, in the format
            calls = out.message.tool_calls
            assert len(calls) == 1 or parallel and not named
            for call in calls:
                assert call.function.name == choice if named else call.function.name in SCHEMAS
                jsonschema_rs.validate(SCHEMAS[call.function.name],
                                       json.loads(call.function.arguments))
            counts.add(len(calls))
        free.append(ask("auto").message.tool_calls)
    assert free == [None] * len(SEEDS)  # the check can fail: unconstrained, no calls
    assert max(counts) > 1 or named  # the check can fail: the model may stop after one


def test_required_parallel_calls_come_back_in_order(server):
    """A scripted model writes two calls: both come back, or only the first with
    parallel_tool_calls false (the grammar ends the reply there)."""
    parser, client, script = server
    script.write(written(parser, CALLS)[len(PARSERS[parser].prefill(None)):])
    for parallel, want in [(True, CALLS), (False, CALLS[:1])]:
        out = client.chat.completions.create(
            model="scripted", messages=ASK, tools=TOOLS, tool_choice="required",
            parallel_tool_calls=parallel, temperature=0, max_tokens=MAX * 2).choices[0]
        assert out.finish_reason == "tool_calls" and out.message.content is None
        assert [(c.function.name, json.loads(c.function.arguments))
                for c in out.message.tool_calls] == want


def test_required_call_errors_are_400s(server):
    _, client, _ = server
    cases = [({"tools": [{"type": "function", "function": {
        "name": "f", "parameters": {"type": "integer", "minimum": 5, "maximum": 2}}}]},
        "tools"),
        ({"tools": TOOLS, "response_format": {"type": "json_object"}}, "response_format")]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model="tiny", messages=ASK, tool_choice="required",
                                           **extra)
        assert e.value.body["param"] == param, e.value.message


@pytest.mark.parametrize("choice", [None, "auto"])
def test_auto_reads_the_reply_as_written(server, choice):
    parser, client, script = server
    extra = {} if choice is None else {"tool_choice": choice}
    call = {"name": "get_time", PARSERS[parser].arguments: {"hours": 7}}
    written = {"hermes": f"<tool_call>\n{json.dumps(call)}\n</tool_call>",
               "llama3_json": f"<|python_tag|>{json.dumps(call)}",
               "mistral": f"[TOOL_CALLS][{json.dumps(call)}]"}[parser]

    def ask(text):
        script.write(text)
        r = client.chat.completions.create(model="scripted", messages=ASK, tools=TOOLS,
                                           temperature=0, max_tokens=80, **extra)
        return r.choices[0]

    out = ask(written)
    assert out.finish_reason == "tool_calls"
    assert [(c.function.name, json.loads(c.function.arguments))
            for c in out.message.tool_calls] == [("get_time", {"hours": 7})]
    broken = written.replace('"hours": 7', '"hours": ')  # no constraint repairs it
    out = ask(broken)
    assert (out.finish_reason, out.message.content, out.message.tool_calls) == (
        "stop", broken, None)


def test_a_bad_parser_is_a_one_line_error(capsys):
    assert_user_error(["serve", "--tool-call-parser", "xml"], capsys,
                      "must be one of hermes, llama3_json, mistral", "'xml'")
    with pytest.raises(Exception, match="llama3_json"):
        tool_parser("llama3")
