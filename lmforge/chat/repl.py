"""``lmforge chat RUN``: a terminal conversation with a model, the reply streamed as it is
generated.

Commands (a line that starts with ``/``):

- ``/reset``: forget the conversation (the system message stays);
- ``/system TEXT``: set the system message (``/system`` alone removes it);
- ``/save FILE``: append the conversation to a chat JSONL file, one
  ``{"messages": [...]}`` line (atomically: the file is rewritten whole);
- ``/help``; ``/exit`` or ``/quit`` (or end of input).

When the conversation outgrows the model's context, its oldest exchanges are dropped
(:func:`~lmforge.chat.generate.fit_history`), and the first time that happens the REPL
says so.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import LmforgeError
from ..generate.config import GenerationConfig
from ..privacy.encrypted_io import read_text, write_text
from .generate import chat_stream, fit_history
from .template import ChatTemplate

HELP = ("/reset  forget the conversation    /system TEXT  set the system message\n"
        "/save FILE  append it to a chat JSONL file    /exit  leave")
DROPPED_NOTE = ("(the conversation is longer than the model's context: the oldest turns "
                "are dropped from now on)")


class ChatSession:
    """The state of one conversation and the commands that change it."""

    def __init__(self, model: Any, tokenizer: Any, template: ChatTemplate | None = None,
                 config: GenerationConfig | None = None, system: str | None = None):
        self.model, self.tokenizer = model, tokenizer
        self.template = template or ChatTemplate.default()
        self.config = config or GenerationConfig()
        self.system = system
        self.history: list[dict] = []
        self.said_dropped = False

    @property
    def messages(self) -> list[dict]:
        head = [{"role": "system", "content": self.system}] if self.system else []
        return head + self.history

    def reply(self, text: str, write: Callable[[str], Any]) -> None:
        """Add the user's ``text``, stream the reply through ``write``, keep both."""
        self.history.append({"role": "user", "content": text})
        room = self.model.config.max_seq_len - self.config.max_new_tokens
        kept, dropped = fit_history(self.template, self.tokenizer, self.messages, room)
        if dropped:
            self.history = kept[1:] if self.system else kept
            if not self.said_dropped:
                write(DROPPED_NOTE + "\n")
                self.said_dropped = True
        pieces = []
        for piece in chat_stream(self.model, self.tokenizer, self.messages, self.template,
                                 self.config):
            pieces.append(piece)
            write(piece)
        write("\n")
        self.history.append({"role": "assistant", "content": "".join(pieces)})

    def save(self, path: str) -> str:
        """Append the conversation to the chat JSONL file ``path``, atomically; with a key
        active (``lmforge chat --key-file``) the file is read decrypted and written
        encrypted (:mod:`lmforge.privacy.encrypted_io`)."""
        p = Path(path).expanduser()
        old = read_text(p) if p.is_file() else ""
        if old and not old.endswith("\n"):
            old += "\n"
        line = json.dumps({"messages": self.messages}, ensure_ascii=False)
        write_text(p, old + line + "\n")
        return f"(saved {len(self.messages)} messages to {p})"

    def command(self, line: str) -> str | None:
        """Run a ``/command``; the text to show, or None to leave."""
        name, _, arg = line[1:].partition(" ")
        arg = arg.strip()
        if name in ("exit", "quit"):
            return None
        if name == "reset":
            self.history, self.said_dropped = [], False
            return "(conversation reset)"
        if name == "system":
            self.system = arg or None
            return f"(system message {'set' if arg else 'removed'})"
        if name == "save":
            return self.save(arg) if arg else "usage: /save FILE"
        if name == "help":
            return HELP
        return f"unknown command /{name}; {HELP}"


def run_repl(session: ChatSession, lines: Iterable[str], write: Callable[[str], Any]) -> None:
    """Read user lines until ``/exit`` or their end; errors are one line and the session
    goes on."""
    for raw in lines:
        line = raw.strip()
        if not line:
            continue
        try:
            if line.startswith("/"):
                shown = session.command(line)
                if shown is None:
                    return
                write(shown + "\n")
            else:
                session.reply(line, write)
        except LmforgeError as e:
            if session.history and session.history[-1]["role"] == "user":
                session.history.pop()
            write(f"error: {e}\n")
