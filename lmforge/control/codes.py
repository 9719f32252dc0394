"""Control codes (CTRL, Keskar et al. 2019): one special token per value of each control,
written after ``<bos>`` in a fixed order (sentiment, topic, language) before the text.

The model learns ``p(text | codes)``; a prompt made of codes asks for a text with those
properties. A code left out of a prompt is marginalised by the model itself: training
drops each code of an example with probability ``code_dropout``, so it has also learned
``p(text | some codes)``.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..corpora.tasks.control import CONTROLS
from ..errors import LmforgeError

ORDER = tuple(CONTROLS)  # sentiment, topic, lang


class ControlError(LmforgeError, ValueError):
    """A control string that names an unknown or repeated code."""


def code_token(kind: str, value: str) -> str:
    """The special token of one code: ``<|topic=sport|>``."""
    return f"<|{kind}={value}|>"


def all_code_tokens() -> list[str]:
    """Every code token, in :data:`ORDER` and value order."""
    return [code_token(k, v) for k in ORDER for v in CONTROLS[k]]


def parse_controls(text: str) -> dict[str, str]:
    """``"negative, sport, zh"`` (any order; ``kind=value`` also accepted) to
    ``{"sentiment": "negative", "topic": "sport", "lang": "zh"}``; an unknown value, an
    unknown kind or a kind given twice is a one-line :class:`ControlError`."""
    kind_of = {v: k for k, values in CONTROLS.items() for v in values}
    out: dict[str, str] = {}
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        kind, _, value = part.rpartition("=")
        kind, value = kind.strip(), value.strip()
        if kind and kind not in CONTROLS:
            raise ControlError(f"control {part!r}: unknown kind {kind!r}; kinds: "
                               f"{', '.join(ORDER)}")
        if value not in kind_of or (kind and kind_of[value] != kind):
            known = CONTROLS[kind] if kind else [v for k in ORDER for v in CONTROLS[k]]
            raise ControlError(f"control {part!r}: unknown value; known: {', '.join(known)}")
        kind = kind_of[value]
        if kind in out:
            raise ControlError(f"control {text!r} gives the {kind} twice "
                               f"({out[kind]} and {value})")
        out[kind] = value
    return out


def code_ids(tokenizer, controls: Mapping[str, str]) -> list[int]:
    """``[bos]`` and the ids of the given codes in :data:`ORDER` (the prompt of a text
    with those properties)."""
    ids = [tokenizer.bos_id] if tokenizer.bos_id is not None else []
    for kind in ORDER:
        if kind in controls:
            tid = tokenizer.token_to_id(code_token(kind, controls[kind]))
            if tid is None:
                raise ControlError(f"the tokenizer has no control code "
                                   f"{code_token(kind, controls[kind])}: the model was not "
                                   "trained with control codes")
            ids.append(tid)
    return ids
