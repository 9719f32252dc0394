"""The running batch's KV cache: sequences join and leave it between decode steps.

Written by hand: continuous batching is what the serving engine teaches.

One preallocated :class:`~lmforge.models.gpt.KVCache` of ``slots`` rows and ``width``
columns holds every running sequence. Columns are shared: a decode step writes the new
token of every row at column ``length`` and then ``length`` grows by one. A row's tokens
are contiguous and **end at the current column**; the columns before its first token
are masked out (``attention_mask`` 0), exactly like the left padding of
:mod:`lmforge.generate.decode`, so the model computes positions over real tokens only
and each row gets what it would get alone.

- *Active rows are packed at the front*: rows ``0..n-1`` run. A decode step passes the
  model a view of the first ``n`` rows (no copy), so an idle slot costs nothing.
- *Join*: a sequence prefilled on its own (a one-row cache of its ``P`` tokens) is copied
  into row ``n``, right-aligned so that its last token sits at column ``length - 1``.
  When ``P > length`` every running row first moves ``P - length`` columns right.
- *Leave*: the last active row is moved into the leaving row's place (one row copied).
- *Compact*: when ``length`` reaches ``width``, the columns before the earliest first
  token of any running row are dropped (all rows move left together). Every running
  row is shorter than the model's context (a request never asks past it), so with
  ``width = max_seq_len + margin`` each compaction frees at least ``margin`` columns:
  the copy happens at most once every ``margin`` steps.
"""

from __future__ import annotations

import torch

from ..models.gpt import KVCache


class _RowsView:
    """The first ``n`` rows of a :class:`SlotCache`, shaped like a ``KVCache`` for
    ``GPT.forward``: views, so the model's writes land in the slot cache."""

    def __init__(self, slots: SlotCache, n: int):
        self._slots = slots
        self.k = slots.cache.k[:, :n]
        self.v = slots.cache.v[:, :n]
        self.attention_mask = slots.cache.attention_mask[:n]

    @property
    def length(self) -> int:
        return self._slots.cache.length

    @length.setter
    def length(self, value: int) -> None:
        self._slots.cache.length = value

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        start, end = self.length, self.length + k.shape[2]
        self.k[layer, :, :, start:end] = k
        self.v[layer, :, :, start:end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class SlotCache:
    """``slots`` rows of KV cache with a shared column pointer (module docstring)."""

    def __init__(self, model: torch.nn.Module, slots: int, width: int,
                 dtype: torch.dtype | None = None):
        cfg = model.config
        device = model.wte.weight.device
        self.cache = KVCache(cfg, slots, width, device, dtype or model.wte.weight.dtype)
        self.cache.attention_mask.zero_()
        self.slots, self.width, self.n = slots, width, 0

    @property
    def length(self) -> int:
        return self.cache.length

    def step_view(self) -> _RowsView:
        """The running rows, for one ``model(tokens, cache=view)`` decode step: compacts
        when the columns are used up, and marks the next column real for every row."""
        if self.length == self.width:
            self.compact()
        self.cache.attention_mask[:self.n, self.length] = True
        return _RowsView(self, self.n)

    def join(self, row_cache: KVCache) -> int:
        """Copy a one-row cache of a prefilled sequence into the next free row; return
        the row index."""
        if self.n == self.slots:
            raise RuntimeError("no free slot")  # the engine admits at most `slots` rows
        P = row_cache.length
        if self.n == 0:
            self.cache.length = 0
        if P > self.length:
            self._shift(P - self.length)
        r, end = self.n, self.length
        c = self.cache
        c.k[:, r, :, end - P:end] = row_cache.k[:, 0, :, :P]
        c.v[:, r, :, end - P:end] = row_cache.v[:, 0, :, :P]
        c.attention_mask[r].zero_()
        c.attention_mask[r, end - P:end] = True
        self.n += 1
        return r

    def leave(self, row: int) -> int | None:
        """Free ``row``; the last running row moves into it. Returns the index that moved
        (now ``row``), or None when ``row`` was the last."""
        last = self.n - 1
        self.n -= 1
        if row == last:
            return None
        c, end = self.cache, self.length
        c.k[:, row, :, :end] = c.k[:, last, :, :end]
        c.v[:, row, :, :end] = c.v[:, last, :, :end]
        c.attention_mask[row, :end] = c.attention_mask[last, :end]
        return last

    def first_column(self) -> int:
        """The earliest column any running row uses."""
        valid = self.cache.attention_mask[:self.n, :self.length].any(dim=0)
        return int(valid.nonzero()[0]) if bool(valid.any()) else self.length

    def compact(self) -> None:
        """Drop the columns no running row uses (all rows move left together)."""
        drop = self.first_column()
        if drop == 0:
            return
        c, n, end = self.cache, self.n, self.length
        keep = end - drop
        c.k[:, :n, :, :keep] = c.k[:, :n, :, drop:end].clone()
        c.v[:, :n, :, :keep] = c.v[:, :n, :, drop:end].clone()
        c.attention_mask[:n, :keep] = c.attention_mask[:n, drop:end].clone()
        c.attention_mask[:n, keep:] = False
        c.length = keep

    def _shift(self, d: int) -> None:
        """Move every running row ``d`` columns right (a longer prompt joins; it fits,
        since no prompt is longer than ``width``)."""
        c, n, end = self.cache, self.n, self.length
        if n:
            c.k[:, :n, :, d:d + end] = c.k[:, :n, :, :end].clone()
            c.v[:, :n, :, d:d + end] = c.v[:, :n, :, :end].clone()
            c.attention_mask[:n, d:d + end] = c.attention_mask[:n, :end].clone()
            c.attention_mask[:n, :d] = False
        c.length = end + d
