"""Tool-call formats (vLLM's ``--tool-call-parser``): how a model writes a function call,
how its reply is read back into OpenAI ``tool_calls``, and how a required call is
constrained. ``lmforge serve --tool-call-parser NAME`` picks one of :data:`PARSERS`:

* ``hermes`` (NousResearch Hermes, Qwen2.5 and others): each call is a block
  ``<tool_call>{"name": N, "arguments": {...}}</tool_call>`` anywhere in the reply (a
  block cut off by ``max_tokens`` is closed at the end of the text).
* ``llama3_json`` (Llama 3.1 and later, JSON tool calling): the reply opens with a JSON
  object ``{"name": N, "parameters": {...}}`` (``"arguments"`` is read too), or has one
  right after ``<|python_tag|>``; several may follow each other, separated by ``;``.
* ``mistral``: ``[TOOL_CALLS]`` followed by a JSON list of ``{"name": N, "arguments":
  {...}}``. ``[TOOL_CALLS]`` is a special token in Mistral's tokenizers, which the reply
  text leaves out, so a reply that opens with such a list is read too.

**Reading.** A call is kept when its JSON parses, names one of the request's tools and
has object arguments (or a JSON string of an object, as some models write); it becomes
``{"id": "call_<24 hex>", "type": "function", "function": {"name", "arguments": <the
arguments as a JSON string>}}``. The text around the calls is the message's ``content``
(stripped, ``null`` when empty); text that does not parse as calls stays in it.

**Constraining.** When a call is required (``tool_choice`` ``"required"`` or naming a
function) the reply starts with :meth:`ToolParser.prefill` (written into the prompt) and
the rest is constrained (:mod:`lmforge.generate.structured`) to what the format writes
next. A call's document is ``{"name": N, A: <N's parameters schema>}`` (``A`` is
``arguments``, ``parameters`` for llama3_json) with ``name`` a ``const`` and ``anyOf``
over the allowed functions (a function without ``parameters`` takes ``{}``).
``"required"`` allows one or more calls, each of any of the tools, written as the format
writes several (OpenAI's parallel calls; exactly one with ``parallel_tool_calls:
false``); a named function allows exactly one call of it:

* ``hermes``: prefill ``<tool_call>\\n``, then a call and ``\\n</tool_call>``, each
  further call in a block of its own after ``\\n`` (``\\n<tool_call>\\n``, a call,
  ``\\n</tool_call>``); for a named ``N``, prefill ``<tool_call>\\n{"name": "N",
  "arguments": ``, then ``N``'s parameters and ``}\\n</tool_call>``;
* ``llama3_json``: no prefill, a call, each further call after ``; ``;
* ``mistral``: prefill ``[TOOL_CALLS]``, then a list of calls (``minItems`` 1; also
  ``maxItems`` 1 when one call is required).
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from ..errors import ConfigError
from ..generate.structured import AFTER, REPEAT

Parsed = tuple[str | None, list[dict[str, Any]]]
NO_PARAMETERS = {"type": "object", "properties": {}, "additionalProperties": False}
_DECODER = json.JSONDecoder()


def tool_call(name: Any, arguments: Any, names: frozenset[str]) -> dict[str, Any] | None:
    """The OpenAI tool call of a parsed ``name`` and ``arguments``, or None when the name
    is not one of ``names`` or the arguments are not an object (nor a JSON string of
    one)."""
    if name not in names:
        return None
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            return None
    if not isinstance(arguments, dict):
        return None
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}


def _json_at(text: str, pos: int) -> tuple[Any, int] | None:
    """The JSON value that starts at ``pos`` (after whitespace) and where it ends, or
    None when none parses there."""
    start = len(text) - len(text[pos:].lstrip())
    try:
        return _DECODER.raw_decode(text, start)
    except json.JSONDecodeError:
        return None


def _content(*pieces: str) -> str | None:
    return "".join(pieces).strip() or None


class ToolParser:
    """A tool-call format (module docstring). ``arguments`` is the key its calls write
    the arguments under."""

    name = ""
    arguments = "arguments"

    def call_schema(self, functions: list[dict[str, Any]]) -> dict[str, Any]:
        """The JSON schema of one call of any of ``functions`` (OpenAI ``function``
        objects)."""
        calls = [{"type": "object",
                  "properties": {"name": {"const": f["name"]},
                                 self.arguments: f.get("parameters", NO_PARAMETERS)},
                  "required": ["name", self.arguments], "additionalProperties": False}
                 for f in functions]
        return calls[0] if len(calls) == 1 else {"anyOf": calls}

    def prefill(self, named: str | None) -> str:
        """The text a required reply starts with (``named``: the function it must call)."""
        return ""

    def constraint(self, functions: list[dict[str, Any]], named: str | None,
                   parallel: bool = False) -> dict[str, Any]:
        """The schema (with :data:`~lmforge.generate.structured.AFTER` and
        :data:`~lmforge.generate.structured.REPEAT`) the reply after :meth:`prefill`
        follows when a call of one of ``functions`` is required: one call, or with
        ``parallel`` (and no ``named`` function) one or more."""
        raise NotImplementedError

    def parse(self, text: str, names: frozenset[str]) -> Parsed:
        """``(content, tool_calls)`` of a reply (``text`` includes the prefill)."""
        raise NotImplementedError


class Hermes(ToolParser):
    name = "hermes"
    OPEN, CLOSE = "<tool_call>", "</tool_call>"
    _BLOCK = re.compile(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + r"|\Z)", re.DOTALL)

    def prefill(self, named: str | None) -> str:
        start = self.OPEN + "\n"
        return start if named is None else start + f'{{"name": {json.dumps(named)}, "arguments": '

    def constraint(self, functions: list[dict[str, Any]], named: str | None,
                   parallel: bool = False) -> dict[str, Any]:
        if named is not None:
            return {**functions[0].get("parameters", NO_PARAMETERS),
                    AFTER: "}\n" + self.CLOSE}
        call = {**self.call_schema(functions), AFTER: "\n" + self.CLOSE}
        return {**call, REPEAT: "\n" + self.prefill(None)} if parallel else call

    def parse(self, text: str, names: frozenset[str]) -> Parsed:
        calls, kept, pos = [], [], 0
        for m in self._BLOCK.finditer(text):
            try:
                obj = json.loads(m.group(1).strip())
            except json.JSONDecodeError:
                continue
            call = (tool_call(obj.get("name"), obj.get("arguments", {}), names)
                    if isinstance(obj, dict) else None)
            if call is None:
                continue
            kept.append(text[pos:m.start()])
            pos = m.end()
            calls.append(call)
        return _content(*kept, text[pos:]), calls


class Llama3Json(ToolParser):
    name = "llama3_json"
    arguments = "parameters"
    TAG = "<|python_tag|>"

    def constraint(self, functions: list[dict[str, Any]], named: str | None,
                   parallel: bool = False) -> dict[str, Any]:
        call = self.call_schema(functions)
        return {**call, REPEAT: "; "} if parallel and named is None else call

    def parse(self, text: str, names: frozenset[str]) -> Parsed:
        head, tag, rest = text.partition(self.TAG)
        if not tag:
            head, rest = "", text
        calls, pos = [], 0
        while (found := _json_at(rest, pos)) is not None:
            obj, end = found
            call = (tool_call(obj.get("name"), obj.get("parameters", obj.get("arguments", {})),
                              names) if isinstance(obj, dict) else None)
            if call is None:
                break
            calls.append(call)
            pos = end
            after = rest[pos:].lstrip()
            if not after.startswith(";"):
                break
            pos = len(rest) - len(after) + 1
        if not calls:
            return _content(text), []
        return _content(head, rest[pos:]), calls


class Mistral(ToolParser):
    name = "mistral"
    TAG = "[TOOL_CALLS]"

    def prefill(self, named: str | None) -> str:
        return self.TAG

    def constraint(self, functions: list[dict[str, Any]], named: str | None,
                   parallel: bool = False) -> dict[str, Any]:
        one = {} if parallel and named is None else {"maxItems": 1}
        return {"type": "array", "items": self.call_schema(functions), "minItems": 1, **one}

    def parse(self, text: str, names: frozenset[str]) -> Parsed:
        head, tag, rest = text.partition(self.TAG)
        if not tag:
            head, rest = "", text
        found = _json_at(rest, 0)
        if found is None:
            return _content(text), []
        items, end = found
        if tag and isinstance(items, dict):  # one call, written without its list
            items = [items]
        if not isinstance(items, list):
            return _content(text), []
        calls = [tool_call(c.get("name"), c.get("arguments", {}), names)
                 if isinstance(c, dict) else None for c in items]
        if not calls or None in calls:
            return _content(text), []
        return _content(head, rest[end:]), calls


PARSERS: dict[str, ToolParser] = {p.name: p for p in (Hermes(), Llama3Json(), Mistral())}


def tool_parser(name: str) -> ToolParser:
    """The parser called ``name``; a ``ConfigError`` naming the choices otherwise."""
    if name not in PARSERS:
        raise ConfigError(f"tool-call parser must be one of {', '.join(PARSERS)}, got "
                          f"{name!r}")
    return PARSERS[name]
