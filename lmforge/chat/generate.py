"""Talking to a causal language model: the conversation rendered by its chat template, the
reply generated until the template's end of turn.

**The end of turn** is what the template writes right after an assistant's content:
:func:`end_of_turn` renders a probe conversation and reads it (``<|im_end|>`` for
ChatML, ``</s>`` for Zephyr and Llama 2). When the tokenizer has it as one special token,
generation stops at that token; otherwise the text is a stop string.

**History.** A conversation longer than the model's context loses its oldest turns
(:func:`fit_history`): whole user/assistant exchanges from the start, never the system
message nor the last user turn, until the prompt and ``max_new_tokens`` fit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..errors import DataError
from ..generate.config import GenerationConfig, resolve_config
from ..generate.decode import PromptTooLongError
from ..generate.text import complete_ids, stream_ids
from .messages import check_messages, check_prompt
from .template import ChatTemplate

_PROBE = "\ue010"


def template_variables(tokenizer: Any) -> dict[str, str]:
    """The special tokens a template may read: ``bos_token``, ``eos_token``, ``pad_token``,
    ``unk_token`` (those the tokenizer has)."""
    tokens = getattr(tokenizer, "special_tokens", {}) or {}
    return {f"{role}_token": tok for role, tok in tokens.items()
            if role in ("bos", "eos", "pad", "unk") and tok is not None}


def end_of_turn(template: ChatTemplate, **variables: Any) -> str:
    """The text the template writes right after an assistant's content, up to the first
    line break or space (``""`` if none)."""
    probe = [{"role": "user", "content": "?"}, {"role": "assistant", "content": _PROBE}]
    text = template.render(probe, **variables).text
    after = text[text.index(_PROBE) + 1:] if _PROBE in text else ""
    return after.strip().split()[0] if after.strip() else ""


def prompt_ids(template: ChatTemplate, tokenizer: Any,
               messages: Sequence[Mapping[str, Any]],
               tools: Sequence[Mapping[str, Any]] | None = None, prefill: str = "") -> list[int]:
    """The token ids of the conversation rendered with the generation prompt (special-token
    strings the template writes become their ids), with ``tools`` passed to the template
    and ``prefill`` written as the start of the reply."""
    text = template.render(messages, add_generation_prompt=True, tools=tools,
                           **template_variables(tokenizer)).text
    return tokenizer.encode(text + prefill, allow_special=True)


def fit_history(template: ChatTemplate, tokenizer: Any, messages: list[dict],
                room: int) -> tuple[list[dict], int]:
    """``messages`` without their oldest exchanges until the prompt has at most ``room``
    tokens, and how many messages were dropped (module docstring)."""
    head = [m for m in messages[:1] if m["role"] in ("system", "developer")]
    body = messages[len(head):]
    dropped = 0
    while len(prompt_ids(template, tokenizer, head + body)) > room:
        # drop up to (not including) the next user turn after the first message
        cut = next((i for i in range(1, len(body)) if body[i]["role"] == "user"), None)
        if cut is None:
            raise PromptTooLongError(f"the last user turn alone needs more than the {room} "
                                     "tokens the context leaves; shorten it or lower "
                                     "max_new_tokens")
        body, dropped = body[cut:], dropped + cut
    return head + body, dropped


def chat_stream(model: Any, tokenizer: Any, messages: Sequence[Mapping[str, Any]],
                template: ChatTemplate | None = None, config: GenerationConfig | None = None,
                **overrides: Any) -> Iterator[str]:
    """The assistant's reply to ``messages`` (which must end on a user turn), piece by
    piece. ``template``: the model's (default: lmforge's ChatML)."""
    template = template or ChatTemplate.default()
    config, end_id = reply_stopping(template, tokenizer, resolve_config(config, overrides))
    msgs = check_messages(list(messages))
    check_prompt(msgs)
    msgs, _ = fit_history(template, tokenizer, msgs, _room(model, config))
    return stream_ids(model, tokenizer, prompt_ids(template, tokenizer, msgs), config,
                      eos_id=end_id)


def reply_stopping(template: ChatTemplate, tokenizer: Any, config: GenerationConfig
              ) -> tuple[GenerationConfig, int | None]:
    """``config`` and the id generation stops at: the end of turn when it is one special
    token; otherwise None, and the end of turn joins the stop strings."""
    end = end_of_turn(template, **template_variables(tokenizer))
    end_id = tokenizer.token_to_id(end) if end else None
    if end_id is not None and end_id in tokenizer.special_ids:
        return config, end_id
    if end and end not in config.stop:
        config = resolve_config(config, {"stop": [*config.stop, end]})
    return config, None


def check_causal(model: Any, name: str = "the model") -> None:
    """A :class:`DataError` unless ``model`` is a causal language model (a GPT)."""
    from ..models.gpt import GPT

    if not isinstance(model, GPT):
        raise DataError(f"{name} is a {type(model).__name__}; chat needs a causal language "
                        "model (a GPT: lmforge's, or a GPT-2/Llama folder)")


def _room(model: Any, config: GenerationConfig) -> int:
    check_causal(model)
    room = model.config.max_seq_len - config.max_new_tokens
    if room < 1:
        raise DataError(f"max_new_tokens={config.max_new_tokens} leaves no room for the "
                        f"conversation in the model's {model.config.max_seq_len} positions")
    return room


def replies(model: Any, tokenizer: Any, conversations: Sequence[Sequence[Mapping[str, Any]]],
            template: ChatTemplate | None = None, config: GenerationConfig | None = None,
            **overrides: Any) -> list[str]:
    """The assistant's reply to each conversation, generated in batches (each must end on
    a user turn; see :func:`chat_stream`)."""
    template = template or ChatTemplate.default()
    config, end_id = reply_stopping(template, tokenizer, resolve_config(config, overrides))
    room = _room(model, config)
    ids = []
    for i, messages in enumerate(conversations):
        msgs = check_messages(list(messages), f"conversation {i}")
        check_prompt(msgs, f"conversation {i}")
        ids.append(prompt_ids(template, tokenizer, fit_history(template, tokenizer, msgs,
                                                               room)[0]))
    return [c.text for c in complete_ids(model, tokenizer, ids, config, eos_id=end_id)]


def chat(model: Any, tokenizer: Any, messages: Sequence[Mapping[str, Any]],
         template: ChatTemplate | None = None, config: GenerationConfig | None = None,
         **overrides: Any) -> str:
    """The assistant's whole reply to ``messages`` (see :func:`chat_stream`)."""
    return "".join(chat_stream(model, tokenizer, messages, template, config, **overrides))
