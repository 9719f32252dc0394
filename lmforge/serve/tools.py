"""Function calling on ``/v1/chat/completions``: OpenAI's ``tools`` and ``tool_choice``
in, ``tool_calls`` out, in the Hermes format (NousResearch Hermes, Qwen2.5 and others;
vLLM's ``hermes`` parser reads the same).

**In.** ``tools`` is OpenAI's list of ``{"type": "function", "function": {"name",
"description", "parameters"}}``; it reaches the chat template as its ``tools`` variable,
exactly as ``transformers``' ``apply_chat_template(messages, tools=tools)`` passes it, so
the model sees the tool schemas its template writes. A template that never reads
``tools`` cannot show them to the model: a 400 naming ``tools``. ``tool_choice``:

* ``"auto"`` (the default with tools): the model decides;
* ``"none"``: the tools are not rendered and nothing is parsed (a plain chat turn);
* ``"required"``: the reply starts with ``<tool_call>\\n`` (written into the prompt, so
  the model continues a call);
* ``{"type": "function", "function": {"name": N}}``: the reply starts with
  ``<tool_call>\\n{"name": "N", "arguments": `` (the model writes the arguments).

**Out.** Each ``<tool_call>{"name": ..., "arguments": {...}}</tool_call>`` block of the
reply (a block cut off by ``max_tokens`` is closed at the end of the text) whose JSON
parses, names a given tool and has object arguments becomes an entry of the message's
``tool_calls``: ``{"id": "call_<24 hex>", "type": "function", "function": {"name",
"arguments": <the arguments as a JSON string>}}``; the text outside the blocks is the
message's ``content`` (``null`` when empty), and ``finish_reason`` is ``tool_calls``. A
block that does not parse stays in the content. Streams send the reply whole when it
ends (one content delta, one tool-call delta per call), since a call is only known once
its block closes.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

from .errors import ApiError

OPEN, CLOSE = "<tool_call>", "</tool_call>"
_BLOCK = re.compile(re.escape(OPEN) + r"(.*?)(?:" + re.escape(CLOSE) + r"|\Z)", re.DOTALL)


@dataclass(frozen=True)
class ToolUse:
    """What a request asks: the tools to render, the names a call may use, and the text
    the reply is made to start with (``prefill``)."""

    tools: list[dict[str, Any]]
    names: frozenset[str]
    prefill: str = ""


def check_tools(tools: list[Any] | None, tool_choice: Any) -> ToolUse | None:
    """The request's tool use, None when it has none (no tools, or ``tool_choice:
    "none"``); a malformed tool or choice is a 400 naming the field."""
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
        return ToolUse(list(tools), frozenset(names))
    if tool_choice == "none":
        return None
    if tool_choice == "required":
        return ToolUse(list(tools), frozenset(names), OPEN + "\n")
    fn = tool_choice.get("function") if isinstance(tool_choice, dict) else None
    name = fn.get("name") if isinstance(fn, dict) else None
    if name not in names:
        raise ApiError("tool_choice must be none, auto, required or {\"type\": \"function\", "
                       "\"function\": {\"name\": <one of the tools>}}", param="tool_choice")
    return ToolUse(list(tools), frozenset(names),
                   OPEN + "\n" + '{"name": ' + json.dumps(name) + ', "arguments": ')


def template_reads_tools(template: Any) -> bool:
    """Does the chat template use its ``tools`` variable?"""
    return re.search(r"\btools\b", template.template) is not None


def parse_reply(text: str, use: ToolUse) -> tuple[str | None, list[dict[str, Any]]]:
    """``(content, tool_calls)`` of a reply (the module docstring's rules); ``text``
    includes the prefill."""
    calls, kept, pos = [], [], 0
    for m in _BLOCK.finditer(text):
        call = _call(m.group(1), use.names)
        if call is None:
            continue
        kept.append(text[pos:m.start()])
        pos = m.end()
        calls.append(call)
    kept.append(text[pos:])
    content = "".join(kept).strip()
    return (content or None), calls


def _call(body: str, names: frozenset[str]) -> dict[str, Any] | None:
    try:
        obj = json.loads(body.strip())
    except json.JSONDecodeError:
        return None
    if not isinstance(obj, dict) or obj.get("name") not in names:
        return None
    args = obj.get("arguments", {})
    if isinstance(args, str):  # some models write the arguments as a JSON string
        try:
            args = json.loads(args)
        except json.JSONDecodeError:
            return None
    if not isinstance(args, dict):
        return None
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
            "function": {"name": obj["name"], "arguments": json.dumps(args, ensure_ascii=False)}}
