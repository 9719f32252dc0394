"""Function calling on ``/v1/chat/completions``: OpenAI's ``tools``, ``tool_choice`` and
``parallel_tool_calls`` in, ``tool_calls`` out, in the tool-call format the server was
started with (``--tool-call-parser``, :mod:`lmforge.serve.tool_parsers`; ``hermes`` by
default).

**In.** ``tools`` is OpenAI's list of ``{"type": "function", "function": {"name",
"description", "parameters"}}``; it reaches the chat template as its ``tools`` variable,
exactly as ``transformers``' ``apply_chat_template(messages, tools=tools)`` passes it, so
the model sees the tool schemas its template writes. A template that never reads
``tools`` cannot show them to the model: a 400 naming ``tools``. ``tool_choice``:

* ``"auto"`` (the default with tools): the model decides, unconstrained;
* ``"none"``: the tools are not rendered and nothing is parsed (a plain chat turn);
* ``"required"``: the reply is one or more calls, each of any of the tools (OpenAI's
  parallel calls); exactly one with ``parallel_tool_calls: false``;
* ``{"type": "function", "function": {"name": N}}``: the reply is one call of ``N``,
  whatever ``parallel_tool_calls`` says.

Under ``"auto"`` the reply is unconstrained; with ``parallel_tool_calls: false`` only the
first call the model writes comes back (the others are dropped, as their text is). A required call starts with the format's prefill
(written into the prompt) and the rest is constrained by grammar to the format's calls
(several written as the format writes them), the arguments following the function's
``parameters`` schema (:mod:`lmforge.serve.tool_parsers`); a schema that cannot be
compiled is a 400 naming ``tools``, and it cannot be combined with a JSON
``response_format``.

**Out.** The format's parser reads the reply (prefill included) into the message's
``tool_calls`` and ``content``; with at least one call ``finish_reason`` is
``tool_calls``. Streams send the reply whole when it ends (one content delta, one
tool-call delta per call), since a call is only known once it is complete.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..generate.structured import compile_schema
from .errors import ApiError
from .tool_parsers import PARSERS, ToolParser


@dataclass(frozen=True)
class ToolUse:
    """What a request asks: the tools to render, the names a call may use, the format
    that reads the reply, for a required call the text the reply is made to start
    with (``prefill``) and the schema the rest follows (``schema``), and whether only the
    first call read comes back (``first_only``: ``auto`` with ``parallel_tool_calls``
    false)."""

    tools: list[dict[str, Any]]
    names: frozenset[str]
    parser: ToolParser
    prefill: str = ""
    schema: dict[str, Any] | None = None
    first_only: bool = False


def check_tools(tools: list[Any] | None, tool_choice: Any,
                parser: ToolParser = PARSERS["hermes"], parallel: bool = True
                ) -> ToolUse | None:
    """The request's tool use in ``parser``'s format, None when it has none (no tools,
    or ``tool_choice: "none"``); ``parallel`` is ``parallel_tool_calls`` (may a
    ``"required"`` reply hold several calls). A malformed tool or choice is a 400 naming
    the field."""
    if tool_choice is not None and not tools:
        raise ApiError("tool_choice needs tools", param="tool_choice")
    if not tools:
        return None
    names = []
    for i, t in enumerate(tools):
        fn = t.get("function") if isinstance(t, dict) else None
        if not isinstance(t, dict) or t.get("type") != "function" or not isinstance(fn, dict):
            raise ApiError(f"tools[{i}] must be {{\"type\": \"function\", \"function\": "
                           "{...}}", param="tools")
        name = fn.get("name")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            raise ApiError(f"tools[{i}].function.name must be 1-64 letters, digits, _ or -",
                           param="tools")
        if "parameters" in fn and not isinstance(fn["parameters"], dict):
            raise ApiError(f"tools[{i}].function.parameters must be a JSON schema object",
                           param="tools")
        names.append(name)
    if len(set(names)) != len(names):
        raise ApiError("tools must have distinct function names", param="tools")
    if tool_choice in (None, "auto"):
        return ToolUse(list(tools), frozenset(names), parser, first_only=not parallel)
    if tool_choice == "none":
        return None
    functions = [t["function"] for t in tools]
    if tool_choice == "required":
        return _required(tools, names, parser, functions, None, parallel)
    fn = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if name not in names:
        raise ApiError("tool_choice must be none, auto, required or {\"type\": \"function\", "
                       "\"function\": {\"name\": <one of the tools>}}", param="tool_choice")
    return _required(tools, names, parser, [functions[names.index(name)]], name, False)


def _required(tools: list[Any], names: list[str], parser: ToolParser,
              functions: list[dict[str, Any]], named: str | None,
              parallel: bool) -> ToolUse:
    """The tool use of a required call of one of ``functions`` (one or more with
    ``parallel``); a 400 naming ``tools`` when their parameters schemas cannot be
    compiled."""
    schema = parser.constraint(functions, named, parallel)
    try:
        compile_schema(schema)
    except ConfigError as e:
        raise ApiError(f"tools: the parameters cannot constrain a call: {e}",
                       param="tools") from None
    return ToolUse(list(tools), frozenset(names), parser, parser.prefill(named), schema)


def template_reads_tools(template: Any) -> bool:
    """Does the chat template use its ``tools`` variable?"""
    return re.search(r"\btools\b", template.template) is not None


def parse_reply(text: str, use: ToolUse) -> tuple[str | None, list[dict[str, Any]]]:
    """``(content, tool_calls)`` of a reply in the request's format; ``text`` includes
    the prefill; only the first call when ``use.first_only``."""
    content, calls = use.parser.parse(text, use.names)
    return content, calls[:1] if use.first_only else calls
