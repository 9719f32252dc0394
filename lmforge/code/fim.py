r"""Fill-in-the-middle (FIM) training and prompts (Bavarian et al. 2022, "Efficient
Training of Language Models to Fill in the Middle").

**The transformation.** With probability ``fim_rate`` a training context of ``n``
characters is cut at two positions drawn uniformly from :math:`\{0, \dots, n\}` and
sorted, :math:`i \le j`, into prefix :math:`p` = ``text[:i]``, middle :math:`m` =
``text[i:j]`` and suffix :math:`s` = ``text[j:]``. Each piece is tokenized on its own,
and the example becomes, with ``<PRE>``, ``<SUF>``, ``<MID>`` the special tokens
:data:`FIM_TOKENS`::

    PSM:  <bos> <PRE> p <SUF> s <MID> m <eos>
    SPM:  <bos> <PRE> <SUF> s <MID> p m <eos>       (with probability spm_rate)

SPM is the paper's variant 2 (also StarCoder's): the prefix comes right before the
middle, so the two join as in ordinary left-to-right text. The ``<eos>`` after the
middle is how the model says that the middle now joins the suffix; generation stops
there. A plain example is ``<bos>`` and the context's tokens (``<eos>`` when the context
ends its file). The loss is the ordinary causal-LM loss on *every* token after
``<bos>``, sentinels, prefix and suffix included, as in the paper: FIM examples teach
filling in, and their prefix and suffix still teach left-to-right prediction.

A rearranged example holds exactly the tokens of the three pieces and the three
sentinels (a permutation of ``p + m + s`` plus ``<PRE> <SUF> <MID>``). When the pieces'
tokens exceed the context (tokenizing three pieces can take a few more tokens than the
whole), the suffix loses its last tokens, as in the paper's implementation; if the suffix
is too short for that, the context stays a plain example.

**Character level, per context window**, and why:

* *characters, not tokens*: a cursor sits between characters. Byte-level BPE merges a
  newline with the next line's indentation (``"\n   "`` then ``" x"``), so a prompt cut
  at a line start ends in tokens that whole-file tokenization never puts at a boundary;
  splitting the characters and tokenizing each piece on its own trains exactly the
  boundaries met at inference (the paper splits characters too);
* *each context window, not each file*: a stdlib file is many windows long, and a file
  split before windowing would leave most windows without sentinels, or with their
  middle cut off (the paper's *context-level* FIM).

**Prompts** (:func:`fim_prompt`) are PSM: ``<bos> <PRE> p <SUF> s <MID>``; the model's
middle is what it generates before ``<eos>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

FIM_TOKENS = ("<|fim_prefix|>", "<|fim_suffix|>", "<|fim_middle|>")


@dataclass(frozen=True)
class FimIds:
    """The ids of the three sentinels in a tokenizer."""

    prefix: int
    suffix: int
    middle: int

    @classmethod
    def of(cls, tokenizer: Any) -> FimIds | None:
        """The sentinels of ``tokenizer``, or None when it lacks them as special tokens
        (a model trained without FIM)."""
        ids = [tokenizer.token_to_id(t) for t in FIM_TOKENS]
        if any(i is None or i not in tokenizer.special_ids for i in ids):
            return None
        return cls(*ids)


def split_points(n: int, rng: np.random.Generator) -> tuple[int, int]:
    """Two cut positions drawn uniformly from ``0..n``, sorted."""
    i, j = sorted(int(x) for x in rng.integers(0, n + 1, size=2))
    return i, j


def arrange(fim: FimIds, prefix: list[int], middle: list[int], suffix: list[int],
            spm: bool) -> list[int]:
    """PSM or SPM order of the module docstring (without ``<bos>`` and ``<eos>``)."""
    if spm:
        return [fim.prefix, fim.suffix, *suffix, fim.middle, *prefix, *middle]
    return [fim.prefix, *prefix, fim.suffix, *suffix, fim.middle, *middle]


def fim_example(tokenizer: Any, fim: FimIds, text: str, rng: np.random.Generator,
                spm_rate: float, max_length: int) -> list[int] | None:
    """``<bos> + arrange(...) + <eos>`` for ``text`` cut at random (module docstring),
    at most ``max_length`` tokens; None when it cannot fit."""
    i, j = split_points(len(text), rng)
    spm = bool(rng.random() < spm_rate)
    p, m, s = (tokenizer.encode(x) for x in (text[:i], text[i:j], text[j:]))
    excess = len(p) + len(m) + len(s) + 5 - max_length  # 5: bos, three sentinels, eos
    if excess > 0:
        if len(s) < excess:
            return None
        s = s[:len(s) - excess]
    return [tokenizer.bos_id, *arrange(fim, p, m, s, spm), tokenizer.eos_id]


def fim_prompt(tokenizer: Any, fim: FimIds, prefix: list[int], suffix: list[int]
               ) -> list[int]:
    """The PSM prompt ``<bos> <PRE> prefix <SUF> suffix <MID>`` (token ids)."""
    return [tokenizer.bos_id, *arrange(fim, prefix, [], suffix, spm=False)]
