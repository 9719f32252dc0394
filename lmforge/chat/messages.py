"""Conversations in the OpenAI messages shape, checked, and the chat JSONL files that hold
them.

A conversation is a list of messages ``{"role": ..., "content": ...}``:

- ``role`` is one of OpenAI's: ``system``, ``developer``, ``user``, ``assistant``,
  ``tool``;
- ``content`` is a string, or a list of text parts ``[{"type": "text", "text": ...}]``
  (OpenAI's shape; lmforge's models read text only). An assistant message that calls
  tools (``tool_calls``) may have no content (``null``);
- any other key (``name``, ``tool_calls``, ``tool_call_id``, ...) is kept and reaches the
  chat template.

A chat JSONL file (the OpenAI fine-tuning format) has one ``{"messages": [...]}`` object
per line; other fields of the line are kept. Every mistake is a
:class:`~lmforge.errors.DataError` of one line naming the file, the line and the message:
``chat.jsonl:line 3: messages[1]: unknown role 'bot' (allowed: ...)``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ..data.readers import _json_type
from ..data.task_readers import _get, _json_objects, _write_jsonl
from ..errors import DataError

ROLES = ("system", "developer", "user", "assistant", "tool")
#: The roles a model can be asked to answer after (``check_prompt``).
PROMPT_ENDS = ("user", "tool")


def _content(message: Mapping[str, Any], where: str) -> None:
    content = message.get("content")
    if content is None:
        if message["role"] == "assistant" and message.get("tool_calls"):
            return
        raise DataError(f"{where}: field 'content' is missing or null (only an assistant "
                        "message with tool_calls may have no content)")
    if isinstance(content, str):
        return
    if not isinstance(content, list) or not content:
        raise DataError(f"{where}: field 'content' is {_json_type(content)}, expected a "
                        "string or a non-empty list of text parts")
    for i, part in enumerate(content):
        if not (isinstance(part, dict) and part.get("type") == "text"
                and isinstance(part.get("text"), str)):
            got = part.get("type") if isinstance(part, dict) else _json_type(part)
            raise DataError(f"{where}: content[{i}] is not a text part "
                            f'{{"type": "text", "text": ...}} (got {got!r})')


def check_messages(messages: Any, where: str = "messages") -> list[dict]:
    """``messages`` checked against the module docstring's shape, as a new list of dicts.
    ``where`` starts every error message (``chat.jsonl:line 3``)."""
    if not isinstance(messages, list):
        raise DataError(f"{where}: 'messages' is {_json_type(messages)}, expected a list of "
                        "messages")
    if not messages:
        raise DataError(f"{where}: 'messages' is empty, expected at least one message")
    out = []
    for i, m in enumerate(messages):
        at = f"{where}: messages[{i}]"
        if not isinstance(m, Mapping):
            raise DataError(f"{at} is {_json_type(m)}, expected an object with role and "
                            "content")
        role = _get(dict(m), "role", at)
        if role not in ROLES:
            raise DataError(f"{at}: unknown role {role!r} (allowed: {', '.join(ROLES)})")
        _content(m, at)
        out.append(dict(m))
    return out


def check_prompt(messages: Sequence[Mapping[str, Any]], where: str = "messages") -> None:
    """A conversation to generate the next assistant turn for must end on a user turn (or
    a tool result the assistant answers)."""
    if not messages:
        raise DataError(f"{where}: the conversation is empty; to generate a reply it must "
                        "end on a user turn (or a tool result)")
    last = messages[-1]["role"]
    if last not in PROMPT_ENDS:
        raise DataError(f"{where}: the conversation ends on the {last}'s turn; to generate "
                        "a reply it must end on a user turn (or a tool result)")


def text_of(message: Mapping[str, Any]) -> str:
    """A message's content as one string (text parts joined; no content: ``""``)."""
    content = message.get("content")
    if content is None:
        return ""
    return content if isinstance(content, str) else "".join(p["text"] for p in content)


def read_chat_jsonl(path: str | os.PathLike) -> list[dict]:
    """The records of a chat JSONL file, each ``{"messages": [...], ..., "_line": n}``."""
    p = Path(path)
    records = []
    for n, obj in _json_objects(p):
        where = f"{p}:line {n}"
        obj["messages"] = check_messages(_get(obj, "messages", where), where)
        records.append({**obj, "_line": n})
    return records


def write_chat_jsonl(records: Iterable[Mapping[str, Any]], path: str | os.PathLike) -> None:
    """Write ``records`` (each with ``messages``) as chat JSONL, atomically."""
    _write_jsonl((dict(r) for r in records), path)
