"""Batches of code for the trainer: windows of files, fill-in-the-middle on the fly.

Each file is tokenized whole, ``x_1 .. x_n``, and read in windows of ``W = max_seq_len -
2`` tokens, each example being ``<bos>`` and the window, plus ``<eos>`` when the window
ends the file:

* **training** (:meth:`CodeBatches.batch`): each example draws a file with probability
  proportional to its tokens and a start uniformly from ``0 .. max(0, n - W)`` (a file
  shorter than ``W`` is taken whole); then, with probability ``fim_rate``, the window's
  characters are rearranged (:func:`.fim.fim_example`). Everything is drawn from the
  trainer's per-step rng, so a resumed run sees the same batches;
* **validation** (:meth:`~lmforge.chat.sft.ChatBatches.eval_batches`): the consecutive
  windows of the val files, plain, in an order shuffled once by the seed (so that the
  first ``eval_batches`` batches reach every file), the same at every evaluation.

Every token after ``<bos>`` is a label (:class:`~lmforge.chat.sft.ChatExample` with all
tokens trained), right-padded as in :class:`~lmforge.chat.sft.ChatBatches`.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..chat.sft import ChatBatches, ChatExample
from ..errors import DataError
from .data import CodeFile
from .fim import FimIds, fim_example


class _Tokenized:
    """A file's whole-file tokens and the character where each starts."""

    def __init__(self, tokenizer: Any, f: CodeFile):
        ids, offsets = tokenizer.encode_offsets(f.text)
        self.text = f.text
        self.ids = ids
        self.starts = [s for s, _ in offsets]

    def window(self, start: int, width: int, bos: int, eos: int) -> tuple[list[int], str]:
        """``<bos>`` + ``width`` tokens from ``start`` (+ ``<eos>`` at the end of the file),
        and the characters they spell."""
        end = min(start + width, len(self.ids))
        last = end >= len(self.ids)
        ids = [bos, *self.ids[start:end], *([eos] if last else [])]
        chars = self.text[self.starts[start]:len(self.text) if last else self.starts[end]]
        return ids, chars


def _plain(ids: list[int]) -> ChatExample:
    return ChatExample(ids, [True] * len(ids))


class CodeBatches(ChatBatches):
    """The module docstring's batches: ``train`` files sampled with FIM, ``val`` files
    (or any others) as fixed windows for :meth:`eval_batches`."""

    def __init__(self, tokenizer: Any, files: Sequence[CodeFile], max_seq_len: int,
                 batch_size: int, *, fim: FimIds | None = None, fim_rate: float = 0.0,
                 spm_rate: float = 0.5, seed: int = 0, max_eval_batches: int | None = None):
        if fim_rate > 0 and fim is None:
            raise DataError("fim_rate > 0 needs a tokenizer with the FIM sentinels")
        self.tokenizer, self.fim = tokenizer, fim
        self.fim_rate, self.spm_rate = float(fim_rate), float(spm_rate)
        self.width, self.max_seq_len = max_seq_len - 2, max_seq_len
        self.files = [t for t in (_Tokenized(tokenizer, f) for f in files) if t.ids]
        sizes = np.array([len(t.ids) for t in self.files], dtype=np.float64)
        self.weights = sizes / max(1.0, sizes.sum())
        bos, eos = tokenizer.bos_id, tokenizer.eos_id
        windows = [_plain(t.window(s, self.width, bos, eos)[0]) for t in self.files
                   for s in range(0, len(t.ids), self.width)]
        random.Random(seed).shuffle(windows)
        super().__init__(windows, batch_size, tokenizer.pad_id, max_eval_batches)

    @property
    def tokens(self) -> int:
        """Whole-file tokens of all the files."""
        return sum(len(t.ids) for t in self.files)

    def draw(self, rng: np.random.Generator) -> ChatExample:
        """One training example (module docstring)."""
        t = self.files[int(rng.choice(len(self.files), p=self.weights))]
        start = int(rng.integers(0, max(0, len(t.ids) - self.width) + 1))
        ids, chars = t.window(start, self.width, self.tokenizer.bos_id,
                              self.tokenizer.eos_id)
        if self.fim is not None and rng.random() < self.fim_rate:
            fim_ids = fim_example(self.tokenizer, self.fim, chars, rng, self.spm_rate,
                                  self.max_seq_len)
            if fim_ids is not None:
                ids = fim_ids
        return _plain(ids)

    def batch(self, step: int, micro: int, rng: Any) -> dict:
        return self._collate([self.draw(rng) for _ in range(self.batch_size)])
