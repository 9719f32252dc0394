"""Chat JSONL in the OpenAI messages shape: read, written back unchanged, and every mistake
refused with one line naming the file, the line and the message."""

from __future__ import annotations

import json

import pytest

from lmforge.chat import (
    ChatTemplate,
    check_messages,
    check_prompt,
    read_chat_jsonl,
    text_of,
    write_chat_jsonl,
)
from lmforge.errors import DataError

GOOD = [
    {"messages": [{"role": "system", "content": "Answer briefly."},
                  {"role": "user", "content": "Where was Anna born?"},
                  {"role": "assistant", "content": "In Lyon."}], "split": "train"},
    {"messages": [{"role": "user", "content": [{"type": "text", "text": "她住在"},
                                               {"type": "text", "text": "哪里?"}]},
                  {"role": "assistant", "content": None,
                   "tool_calls": [{"id": "c1", "type": "function",
                                   "function": {"name": "lookup", "arguments": "{}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "马德里"},
                  {"role": "assistant", "content": "她住在马德里。"}]},
]


def _write(path, rows) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False))
                            + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_reads_and_writes_back(tmp_path):
    recs = read_chat_jsonl(_write(tmp_path / "chat.jsonl", ["", *GOOD]))
    assert [r["_line"] for r in recs] == [2, 3]
    assert recs[0]["split"] == "train"
    assert text_of(recs[1]["messages"][0]) == "她住在哪里?"
    assert text_of(recs[1]["messages"][1]) == ""
    write_chat_jsonl(recs, tmp_path / "out.jsonl")
    assert [json.loads(x) for x in (tmp_path / "out.jsonl").read_text().splitlines()] == GOOD


@pytest.mark.parametrize("row, error", [
    ({"messages": [{"role": "bot", "content": "hi"}]},
     r"line 1: messages\[0\]: unknown role 'bot' \(allowed: system, developer, user, "
     r"assistant, tool\)$"),
    ({"messages": [{"content": "hi"}]}, r"line 1: messages\[0\]: field 'role' is missing"),
    ({"messages": [{"role": "user"}]}, r"line 1: messages\[0\]: field 'content' is missing"),
    ({"messages": [{"role": "user", "content": 3}]},
     r"field 'content' is a number, expected a string"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     r"content\[0\] is not a text part .* \(got 'image_url'\)"),
    ({"messages": []}, r"line 1: 'messages' is empty"),
    ({"messages": "hi"}, r"line 1: 'messages' is a string, expected a list"),
    ({"conversation": []}, r"line 1: field 'messages' is missing \(fields: conversation\)"),
    ("{not json", r"line 1: invalid JSON"),
    ("[1]", r"line 1: expected a JSON object, got an array"),
])
def test_bad_lines_name_file_line_and_message(tmp_path, row, error):
    path = _write(tmp_path / "bad.jsonl", [row])
    with pytest.raises(DataError, match=error) as e:
        read_chat_jsonl(path)
    assert str(e.value).startswith(f"{path}:line 1") and "\n" not in str(e.value)


def test_empty_file_is_refused(tmp_path):
    with pytest.raises(DataError, match="empty file"):
        read_chat_jsonl(_write(tmp_path / "e.jsonl", [""]))


def test_generating_needs_a_conversation_that_ends_on_a_user_turn():
    msgs = check_messages(GOOD[0]["messages"])
    check_prompt(msgs[:2])
    with pytest.raises(DataError, match="ends on the assistant's turn; to generate a reply "
                                        "it must end on a user turn"):
        check_prompt(msgs)
    with pytest.raises(DataError, match="the conversation is empty"):
        check_prompt([])


def test_checked_messages_render_with_the_default_template():
    msgs = check_messages(GOOD[0]["messages"])
    out = ChatTemplate.default().render(msgs[:2], add_generation_prompt=True)
    assert out.text == ("<|im_start|>system\nAnswer briefly.<|im_end|>\n<|im_start|>user\n"
                        "Where was Anna born?<|im_end|>\n<|im_start|>assistant\n")
