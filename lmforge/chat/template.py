r"""Chat templates: the Jinja program that turns a conversation into one prompt string,
rendered as Hugging Face ``transformers``' ``apply_chat_template`` renders it.

A template sees these variables:

- ``messages``: the conversation, ``[{"role": ..., "content": ...}, ...]``;
- ``add_generation_prompt``: True when the text should end where the assistant's next
  turn begins (``<|im_start|>assistant\n`` for ChatML);
- ``tools`` and ``documents`` (None unless given);
- the tokenizer's special tokens (``bos_token``, ``eos_token``, ...) and any other
  keyword the caller passes.

It runs in the same environment as in ``transformers``, so a template from any model
renders the same text here:

- a sandbox whose objects cannot be changed: templates from the Hub are untrusted code;
- ``trim_blocks`` (the newline after a ``{% tag %}`` is dropped) and ``lstrip_blocks``
  (the spaces before a tag on its line are dropped);
- ``{% break %}`` and ``{% continue %}``;
- ``tojson`` as ``json.dumps`` with non-ASCII characters kept (not Jinja's HTML-safe one),
  with its ``indent``, ``separators`` and ``sort_keys``;
- ``raise_exception(message)`` (the template refuses a conversation), ``strftime_now(fmt)``,
  ``dict(...)`` and a ``namespace(...)`` that refuses names starting with ``_``;
- ``{% generation %} ... {% endgeneration %}`` around the text the assistant wrote:
  :meth:`ChatTemplate.render` with ``spans=True`` returns its character spans, which
  supervised fine-tuning turns into the mask of the tokens it learns from.

A template from a model folder may also be hostile in cost: the sandbox bounds ``range``
but not loops nested in loops or macros that call themselves twice. So one render has a
budget: :data:`RENDER_SECONDS` of wall time and :data:`RENDER_STEPS` steps, a step being
one pass through a ``{% for %}`` body or one call the template makes (a macro, a
method, ``caller()``, a loop's recursion); ``*`` may not build a string or list over
:data:`RENDER_CHARS` items, ``**`` a number over :data:`POWER_BITS` bits, and the output
may not exceed :data:`RENDER_CHARS` characters. Past any of them the render stops with a
one-line :class:`~lmforge.errors.DataError`. (A single filter or ``%`` format asked for a
huge width is bounded only by memory.)

``continue_final_message=True`` leaves the last message open: the text stops right after
its content (without the end-of-turn marks the template puts after it), so that the
model continues that message instead of starting a new one.

Where templates are stored, as ``transformers`` stores them
(:func:`load_chat_template`, :func:`save_chat_template`):

- ``chat_template.jinja`` beside ``tokenizer.json`` (what current ``transformers``
  writes and reads first);
- the ``chat_template`` field of ``tokenizer_config.json`` (older versions): a string, or
  a list of ``{"name", "template"}`` of which ``default`` is used unless another is named.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..errors import ConfigError, DataError
from ..privacy.encrypted_io import read_json, read_text, write_json, write_text

#: The file current ``transformers`` writes the template to, beside ``tokenizer.json``.
TEMPLATE_FILE = "chat_template.jinja"
CONFIG_FILE = "tokenizer_config.json"

#: lmforge's own template (ChatML, as Qwen uses it): every turn is
#: ``<|im_start|>ROLE\nCONTENT<|im_end|>\n``; the assistant's content and its
#: ``<|im_end|>`` are the generated text, so the model learns to end its turns.
DEFAULT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['role'] == 'assistant' %}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{{- '\\n' }}"
    "{%- else %}"
    "{{- message['content'] + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)
#: The special tokens :data:`DEFAULT_TEMPLATE` writes.
DEFAULT_TEMPLATE_TOKENS = ("<|im_start|>", "<|im_end|>")

# Private-use characters that bracket a {% generation %} block while spans are tracked.
_OPEN, _CLOSE = "\ue000", "\ue001"
_BRACKETS = re.compile(f"[{_OPEN}{_CLOSE}]")
# Appended to the final message's content to find where it ends (continue_final_message).
# The space after it tells whether the template kept the content's spacing: a template
# that strips the content strips this space too, and then the cut strips the text's end.
_CONTINUE_MARK = "\ue002 "


#: One render's budget (module docstring): wall seconds, steps (loop passes and calls),
#: characters of output or of a repeated string or list, and bits of a power.
RENDER_SECONDS = 1.0
RENDER_STEPS = 1_000_000
RENDER_CHARS = 16 * 1024 * 1024
POWER_BITS = 65536


class _Budget:
    """The steps and time left to the render running in this context."""

    def __init__(self) -> None:
        self.steps, self.deadline = RENDER_STEPS, time.monotonic() + RENDER_SECONDS

    def step(self) -> None:
        self.steps -= 1
        if self.steps < 0 or time.monotonic() > self.deadline:
            raise _jinja().exceptions.TemplateRuntimeError(
                f"it ran past its budget of {RENDER_SECONDS:g} s and {RENDER_STEPS} loop "
                "steps and calls (a template that loops too long)")


_BUDGET: ContextVar[_Budget | None] = ContextVar("lmforge_chat_template_budget",
                                                 default=None)


def _binop_size(operator: str, left: Any, right: Any) -> None:
    """Refuse a ``*`` over :data:`RENDER_CHARS` items or a ``**`` over :data:`POWER_BITS`
    bits before Python builds it."""
    if operator == "*":
        for seq, n in ((left, right), (right, left)):
            if isinstance(seq, (str, list, tuple)) and isinstance(n, int) \
                    and len(seq) * n > RENDER_CHARS:
                raise _jinja().exceptions.TemplateRuntimeError(
                    f"'*' would build {len(seq) * n} items (over {RENDER_CHARS})")
    elif isinstance(left, int) and isinstance(right, int) and right > 0 \
            and max(abs(left).bit_length(), 1) * right > POWER_BITS:
        raise _jinja().exceptions.TemplateRuntimeError(
            f"'**' would build a number over {POWER_BITS} bits")


@dataclass(frozen=True)
class Rendered:
    """A rendered conversation: ``text`` and, with ``spans=True``, the ``[start, end)``
    character spans of its ``{% generation %}`` blocks."""

    text: str
    spans: tuple[tuple[int, int], ...] = ()


def _jinja():
    try:
        import jinja2
        import jinja2.ext
        import jinja2.sandbox
    except ImportError:  # pragma: no cover - jinja2 comes with torch
        raise ConfigError("chat templates need jinja2: pip install 'jinja2>=3.1.6'") from None
    return jinja2


def _tojson(value: Any, ensure_ascii: bool = False, indent: int | str | None = None,
            separators: tuple[str, str] | None = None, sort_keys: bool = False) -> str:
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


def _raise_exception(message: str):
    raise _jinja().exceptions.TemplateError(message)


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _template_dict(*args: Any, **kwargs: Any) -> dict:
    return dict(*args, **kwargs)


def _budgeted_environment(jinja2):
    """``ImmutableSandboxedEnvironment`` that charges the render's :class:`_Budget`: each
    call the template makes is a step, and the code generator adds a call (to
    ``environment.loop_step``) at the top of every ``{% for %}`` body, so every pass is
    one too; ``*`` and ``**`` are checked by :func:`_binop_size`."""
    nodes = jinja2.nodes

    class Generator(jinja2.compiler.CodeGenerator):
        def visit_For(self, node, frame):
            step = nodes.ExprStmt(nodes.Call(nodes.EnvironmentAttribute("loop_step"), [], [],
                                             None, None), lineno=node.lineno)
            super().visit_For(nodes.For(node.target, node.iter, [step, *node.body],
                                        node.else_, node.test, node.recursive,
                                        lineno=node.lineno), frame)

    class Environment(jinja2.sandbox.ImmutableSandboxedEnvironment):
        code_generator_class = Generator
        intercepted_binops = frozenset({"*", "**"})

        def loop_step(self) -> None:
            """Called at each pass of a loop: the call is the step."""

        def call(__self, __context, __obj, *args, **kwargs):  # noqa: N805 - Jinja's names
            budget = _BUDGET.get()
            if budget is not None:
                budget.step()
            return super().call(__context, __obj, *args, **kwargs)

        def call_binop(self, context, operator, left, right):
            _binop_size(operator, left, right)
            return super().call_binop(context, operator, left, right)

    return Environment


@lru_cache(maxsize=1)
def _environment():
    """The sandboxed environment of the module docstring (built once)."""
    jinja2 = _jinja()

    class Generation(jinja2.ext.Extension):
        """``{% generation %}...{% endgeneration %}``: the body, bracketed by
        :data:`_OPEN` / :data:`_CLOSE` while spans are tracked (``_track_generation``)."""

        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            call = self.call_method("_mark", [jinja2.nodes.Name("_track_generation", "load")])
            return jinja2.nodes.CallBlock(call, [], [], body).set_lineno(lineno)

        def _mark(self, track, caller):
            body = caller()
            return f"{_OPEN}{body}{_CLOSE}" if track is True else body

    class Namespace(jinja2.utils.Namespace):
        """Jinja's ``namespace`` without attributes starting with ``_``."""

        def __init__(*args: Any, **kwargs: Any):  # Jinja's signature: namespace(self=...) works
            self, rest = args[0], args[1:]
            attrs = dict(*rest, **kwargs)
            for name in attrs:
                Namespace._check(name)
            jinja2.utils.Namespace.__init__(self, attrs)

        def __setitem__(self, name: str, value: Any) -> None:
            Namespace._check(name)
            jinja2.utils.Namespace.__setitem__(self, name, value)

        @staticmethod
        def _check(name: Any) -> None:
            if isinstance(name, str) and name.startswith("_"):
                raise jinja2.exceptions.SecurityError(
                    f"a chat template cannot set the namespace attribute {name!r}")

    env = _budgeted_environment(jinja2)(
        trim_blocks=True, lstrip_blocks=True, extensions=[Generation, jinja2.ext.loopcontrols])
    env.filters["tojson"] = _tojson
    env.globals.update(raise_exception=_raise_exception, strftime_now=_strftime_now,
                       dict=_template_dict, namespace=Namespace)
    return env


def _plain(value: Any) -> Any:
    """``value`` rebuilt from plain JSON types (str, int, float, bool, None, dict, list):
    a template never sees an object with methods of its own. Pydantic models (the
    ``openai`` client's messages) become their ``model_dump()``; a key whose value is
    None is dropped from a message, as ``transformers`` does."""
    if value is None or type(value) in (str, int, float, bool):
        return value
    for base in (bool, int, float, str):
        if isinstance(value, base):
            return base(value)
    if callable(getattr(value, "model_dump", None)):
        return _plain(value.model_dump())
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    raise DataError(f"a chat template cannot be given a {type(value).__name__} "
                    "(plain text, numbers, lists and dicts only)")


def _spans(text: str) -> tuple[str, tuple[tuple[int, int], ...]]:
    """``text`` without the :data:`_OPEN` / :data:`_CLOSE` brackets, and the spans they
    bracketed, counted in the text without them (a nested block counts once: the outer)."""
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    depth = pos = length = start = 0
    for m in _BRACKETS.finditer(text):
        out.append(text[pos:m.start()])
        length, pos = length + m.start() - pos, m.end()
        if m.group() == _OPEN:
            depth += 1
            start = length if depth == 1 else start
        else:
            depth -= 1
            if depth == 0:
                spans.append((start, length))
    out.append(text[pos:])
    return "".join(out), tuple(spans)


class ChatTemplate:
    """A compiled chat template. ``source`` names where it came from in error messages
    (a file, ``tokenizer_config.json``, or ``"<default>"``)."""

    def __init__(self, template: str, source: str = "<string>"):
        if not isinstance(template, str) or not template.strip():
            raise ConfigError(f"{source}: a chat template must be a non-empty string")
        jinja2 = _jinja()
        self.template, self.source = template, source
        try:
            self._compiled = _environment().from_string(template)
        except jinja2.exceptions.TemplateSyntaxError as e:
            raise ConfigError(f"{source}: chat template line {e.lineno}: {e.message}") from None

    @classmethod
    def default(cls) -> ChatTemplate:
        """lmforge's own template, :data:`DEFAULT_TEMPLATE` (ChatML)."""
        return cls(DEFAULT_TEMPLATE, "<default>")

    def render(self, messages: Sequence[Mapping[str, Any]], *,
               add_generation_prompt: bool = False, continue_final_message: bool = False,
               tools: Sequence[Mapping[str, Any]] | None = None,
               documents: Sequence[Mapping[str, Any]] | None = None, spans: bool = False,
               **variables: Any) -> Rendered:
        """Render one conversation (``variables``: ``bos_token``, ``eos_token``, ... and
        anything else the template reads). A template that refuses the conversation or
        fails is a :class:`DataError` naming :attr:`source` and Jinja's message."""
        if add_generation_prompt and continue_final_message:
            raise ConfigError("add_generation_prompt and continue_final_message cannot both "
                              "be set: one starts a new assistant turn, the other continues "
                              "the last message")
        chat = [{k: v for k, v in m.items() if v is not None} for m in _plain(list(messages))]
        final = None
        if continue_final_message:
            if not chat or not isinstance(chat[-1].get("content"), str):
                raise DataError("continue_final_message: the last message has no text "
                                "content to continue")
            final = chat[-1]["content"]
            chat[-1]["content"] = final + _CONTINUE_MARK
        context = {**_plain(variables), "messages": chat, "tools": _plain(tools),
                   "documents": _plain(documents),
                   "add_generation_prompt": add_generation_prompt,
                   "_track_generation": bool(spans)}
        text = self._render(context, chat)
        if final is not None:
            text = self._cut_after_final(text, final)
        found: tuple[tuple[int, int], ...] = ()
        if spans:
            text, found = _spans(text)
            found = tuple((a, min(b, len(text))) for a, b in found if a < len(text))
        return Rendered(text, found)

    def _render(self, context: dict, chat: list[dict]) -> str:
        jinja2 = _jinja()
        for m in chat:
            for part in (m.get("content"), m.get("role")):
                if isinstance(part, str) and any(c in part for c in (_OPEN, _CLOSE)):
                    raise DataError("a chat message holds U+E000 or U+E001, private-use "
                                    "characters lmforge reserves while rendering")
        budget = _BUDGET.set(_Budget())
        try:
            text = self._compiled.render(**context)
        except jinja2.exceptions.TemplateError as e:
            raise DataError(f"{self.source}: the chat template failed: {e.message or e}"
                            ) from None
        except (TypeError, ValueError, KeyError, AttributeError, IndexError,
                ArithmeticError, RecursionError) as e:
            raise DataError(f"{self.source}: the chat template failed: "
                            f"{type(e).__name__}: {e}") from None
        finally:
            _BUDGET.reset(budget)
        if len(text) > RENDER_CHARS:
            raise DataError(f"{self.source}: the chat template wrote {len(text)} characters "
                            f"(over the budget of {RENDER_CHARS})")
        return text

    def _cut_after_final(self, text: str, final: str) -> str:
        """The text up to the end of the final message's content (module docstring)."""
        at = text.rfind(_CONTINUE_MARK.strip())
        if at < 0 or final.strip() not in text:
            raise DataError(f"{self.source}: continue_final_message: the template does not "
                            "write the last message's content as given")
        kept = text[at:at + len(_CONTINUE_MARK)] == _CONTINUE_MARK
        return text[:at] if kept else text[:at].rstrip()

    def __repr__(self) -> str:
        return f"ChatTemplate(source={self.source!r}, {len(self.template)} characters)"


def read_chat_template(path: str | os.PathLike) -> ChatTemplate:
    """A template file (``.jinja``); a missing or non-UTF-8 file is a one-line error."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"chat template {p} does not exist")
    try:
        return ChatTemplate(read_text(p), str(p))
    except UnicodeDecodeError as e:
        raise ConfigError(f"chat template {p} is not UTF-8 text (byte {e.start})") from None


def load_chat_template(folder: str | os.PathLike, name: str | None = None
                       ) -> ChatTemplate | None:
    """The chat template stored in a model or tokenizer folder, or None if it has none:
    ``chat_template.jinja`` first, else ``tokenizer_config.json``'s ``chat_template``
    (``name`` picks one of a list of named templates; ``default`` otherwise)."""
    folder = Path(folder)
    file = folder / TEMPLATE_FILE
    if file.is_file() and name is None:
        return read_chat_template(file)
    config = folder / CONFIG_FILE
    stored = read_json(config).get("chat_template") if config.is_file() else None
    if stored is None:
        if name is not None:
            raise ConfigError(f"{folder}: no chat template named {name!r} (it has no "
                              "named templates)")
        return None
    where = f"{config}: chat_template"
    if isinstance(stored, str):
        if name is not None:
            raise ConfigError(f"{where} is a single template; it has none named {name!r}")
        return ChatTemplate(stored, where)
    if not isinstance(stored, list) or not all(
            isinstance(t, dict) and isinstance(t.get("name"), str)
            and isinstance(t.get("template"), str) for t in stored):
        raise ConfigError(f"{where} must be a string or a list of {{\"name\", \"template\"}}")
    named = {t["name"]: t["template"] for t in stored}
    want = name or "default"
    if want not in named:
        raise ConfigError(f"{where} has no template named {want!r}; it has "
                          f"{', '.join(sorted(named))}")
    return ChatTemplate(named[want], f"{where}[{want}]")


def save_chat_template(folder: str | os.PathLike, template: ChatTemplate | str) -> Path:
    """Write ``folder/chat_template.jinja`` (atomically) and drop a ``chat_template``
    field from ``tokenizer_config.json``, so that the two can never disagree."""
    text = template.template if isinstance(template, ChatTemplate) else template
    ChatTemplate(text, "the chat template to save")  # refuse one that does not compile
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    write_text(folder / TEMPLATE_FILE, text)
    config = folder / CONFIG_FILE
    if config.is_file():
        cfg = read_json(config)
        if "chat_template" in cfg:
            del cfg["chat_template"]
            write_json(config, cfg)
    return folder / TEMPLATE_FILE
