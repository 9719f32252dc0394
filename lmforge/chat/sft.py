r"""Supervised fine-tuning (SFT) examples: a conversation rendered by its chat template,
tokenized, with the loss on the assistant's tokens only.

A conversation renders to a text with assistant spans :math:`S` (the template's
``{% generation %}`` blocks). Its tokens :math:`t_1 \dots t_n` cover characters
:math:`[s_i, e_i)`; token :math:`i` is *trained* when its characters overlap a span of
:math:`S`. With :math:`A` the trained tokens, a causal model minimises

.. math::

    \mathcal{L} = -\frac{1}{|A|} \sum_{i \in A,\ i > 1} \log p(t_i \mid t_{<i})

so it learns to write the assistant's turns (and their end-of-turn token), never the
user's or the system's. As a batch: ``input_ids = t_1..t_{n-1}`` and
``labels_i = t_{i+1}`` if :math:`i+1 \in A` else ``-100`` (ignored), what
:class:`~lmforge.train.objectives.CausalLMObjective` reads.

A template without ``{% generation %}`` blocks: each assistant turn's span is found by
rendering prefixes, from the end of ``messages[:k]`` rendered with
``add_generation_prompt=True`` to the end of ``messages[:k+1]``. That needs the first
to be a prefix of the second, which holds for the usual templates; otherwise the template
is refused, with the advice to mark the assistant's text.

**Packing** (:func:`pack`) concatenates examples and cuts them into blocks of
``block_size + 1`` tokens that overlap by one, so that no position is padding and every
token but the very first is a label exactly once; attention then reaches across the
examples of a block, as in TRL's ``packing=True`` with ``padding_free=False``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import DataError
from ..tasks.encode import IGNORE
from ..tokenize import Tokenizer
from .messages import check_messages
from .template import ChatTemplate

_GENERATION_TAG = re.compile(r"\{%-?\s*generation\s*-?%\}")


@dataclass(frozen=True)
class ChatExample:
    """Token ids of a rendered conversation and, per token, whether it is trained."""

    ids: list[int]
    trained: list[bool]

    @property
    def n_trained(self) -> int:
        return sum(self.trained)

    def inputs_and_labels(self) -> tuple[list[int], list[int]]:
        """``(input_ids, labels)`` of the module docstring (one token shorter)."""
        labels = [t if keep else IGNORE for t, keep in zip(self.ids[1:], self.trained[1:],
                                                          strict=True)]
        return self.ids[:-1], labels


def assistant_spans(template: ChatTemplate, messages: Sequence[Mapping[str, Any]],
                    **variables: Any) -> tuple[str, tuple[tuple[int, int], ...]]:
    """The rendered text and the character spans of the assistant's turns: the
    template's ``{% generation %}`` blocks, or prefix renderings (module docstring)."""
    out = template.render(messages, spans=True, **variables)
    if out.spans or _GENERATION_TAG.search(template.template):
        return out.text, out.spans
    spans = []
    for k, m in enumerate(messages):
        if m.get("role") != "assistant":
            continue
        head = template.render(messages[:k], add_generation_prompt=True, **variables).text
        upto = template.render(messages[:k + 1], **variables).text
        if not (upto.startswith(head) and out.text.startswith(upto)):
            raise DataError(f"{template.source}: cannot find the assistant's turn "
                            f"messages[{k}] by rendering prefixes; mark the assistant's text "
                            "in the template with {% generation %} ... {% endgeneration %}")
        spans.append((len(head), len(upto)))
    return out.text, tuple(spans)


def encode_chat(template: ChatTemplate, tokenizer: Tokenizer,
                messages: Sequence[Mapping[str, Any]], max_length: int | None = None,
                where: str = "messages", **variables: Any) -> ChatExample:
    """One conversation as a :class:`ChatExample` (checked first; ``where`` names it in
    errors). Special-token strings the template writes (``<|im_start|>``) become their
    ids. ``max_length`` keeps the first tokens; a conversation left with nothing to train
    on is an error."""
    messages = check_messages(list(messages), where)
    text, spans = assistant_spans(template, messages, **variables)
    ids, offsets = tokenizer.encode_offsets(text, allow_special=True)
    trained = [any(s < b and e > a for a, b in spans) for s, e in offsets]
    if max_length is not None:
        ids, trained = ids[:max_length], trained[:max_length]
    if not any(trained[1:]):
        raise DataError(f"{where}: no assistant tokens to learn from"
                        + (f" in the first {max_length} tokens" if max_length else
                           " (the conversation has no assistant turn)"))
    return ChatExample(ids, trained)


def pack(examples: Iterable[ChatExample], block_size: int) -> list[ChatExample]:
    """Examples concatenated and cut into blocks of ``block_size + 1`` tokens, each
    starting on the previous block's last token (the last, shorter block kept; blocks
    with nothing to learn from dropped)."""
    if block_size < 1:
        raise DataError(f"pack: block_size must be at least 1 (got {block_size})")
    ids: list[int] = []
    trained: list[bool] = []
    for ex in examples:
        ids += ex.ids
        trained += ex.trained
    n = block_size + 1
    blocks = [ChatExample(ids[i:i + n], trained[i:i + n])
              for i in range(0, max(1, len(ids) - 1), block_size)]
    return [b for b in blocks if len(b.ids) > 1 and any(b.trained[1:])]


class ChatBatches:
    """Causal-LM batches of :class:`ChatExample`\\ s for the trainer:
    ``{"input_ids", "labels"}`` (module docstring), right-padded with ``pad_id`` and
    ``-100``. A causal model never attends forward, so padding after a sequence changes
    nothing before it. Training batches draw ``batch_size`` examples with the trainer's
    rng; evaluation batches are the first ``max_eval_batches`` in order."""

    def __init__(self, examples: Sequence[ChatExample], batch_size: int, pad_id: int,
                 max_eval_batches: int | None = None):
        self.examples = [e for e in examples if len(e.ids) > 1]
        if not self.examples:
            raise DataError("SFT: no conversations with tokens to learn from")
        self.batch_size, self.pad_id = int(batch_size), int(pad_id)
        self.max_eval_batches = max_eval_batches

    def _collate(self, rows: Sequence[ChatExample]) -> dict:
        import torch

        pairs = [r.inputs_and_labels() for r in rows]
        width = max(len(x) for x, _ in pairs)
        x = torch.full((len(rows), width), self.pad_id, dtype=torch.long)
        y = torch.full((len(rows), width), IGNORE, dtype=torch.long)
        for i, (ids, labels) in enumerate(pairs):
            x[i, :len(ids)] = torch.tensor(ids)
            y[i, :len(labels)] = torch.tensor(labels)
        return {"input_ids": x, "labels": y}

    def batch(self, step: int, micro: int, rng: Any) -> dict:
        idx = rng.integers(0, len(self.examples), size=self.batch_size)
        return self._collate([self.examples[i] for i in idx])

    def eval_batches(self) -> Iterable[dict]:
        for k, i in enumerate(range(0, len(self.examples), self.batch_size)):
            if self.max_eval_batches is not None and k >= self.max_eval_batches:
                return
            yield self._collate(self.examples[i:i + self.batch_size])
