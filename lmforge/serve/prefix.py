"""The prefix cache: keys and values of prompt prefixes that were already computed.

Written by hand (the serving engine is what lmforge teaches). The design is vLLM's
automatic prefix caching without paging: a prompt is cut into blocks of ``block_size``
tokens, and block ``i`` is stored under a key that names the *whole* prefix up to its
end, ``key_i = (key_{i-1}, tokens of block i)``. Two prompts that share their first
``m`` tokens share their first ``floor(m / block_size)`` blocks, so a system prompt, or
the earlier turns of a conversation, is computed once.

Keys and values at a position depend only on the tokens up to it (causal attention), so a
stored block is exact for every prompt that starts with the same tokens. A lookup never
returns the whole prompt: the last token is always run, to get the next-token logits.

The store holds at most ``max_tokens`` tokens (``max_tokens / block_size`` blocks). When
full, the least recently used block that no other stored block extends (a leaf) is
dropped, so a stored chain never has a hole. ``queries`` and ``hits`` count prompt tokens
asked for and found (vLLM's ``prefix_cache_queries`` and ``prefix_cache_hits``).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass
class _Block:
    k: torch.Tensor  # (L, h_kv, block_size, d_h)
    v: torch.Tensor
    parent: tuple | None
    children: int = 0


class PrefixCache:
    """Blocks of keys and values, keyed by the prefix they end (module docstring)."""

    def __init__(self, block_size: int = 16, max_tokens: int = 4096):
        if block_size < 1 or max_tokens < 0:
            raise ValueError("block_size must be >= 1 and max_tokens >= 0")
        self.block_size, self.max_blocks = block_size, max_tokens // block_size
        self._blocks: OrderedDict[tuple, _Block] = OrderedDict()
        self._lock = threading.Lock()
        self.queries = self.hits = 0

    def __len__(self) -> int:
        return len(self._blocks)

    def _keys(self, ids: Sequence[int], n_blocks: int):
        key = None
        for i in range(n_blocks):
            key = (key, tuple(ids[i * self.block_size:(i + 1) * self.block_size]))
            yield key

    def lookup(self, ids: Sequence[int]) -> tuple[int, torch.Tensor | None, torch.Tensor | None]:
        """The longest stored prefix of ``ids`` (leaving at least one token):
        ``(tokens, k, v)`` with ``k, v`` of shape (L, h_kv, tokens, d_h), or ``(0, None,
        None)``."""
        with self._lock:
            self.queries += len(ids)
            found = []
            for key in self._keys(ids, (len(ids) - 1) // self.block_size):
                block = self._blocks.get(key)
                if block is None:
                    break
                self._blocks.move_to_end(key)
                found.append(block)
            n = len(found) * self.block_size
            self.hits += n
        if not found:
            return 0, None, None
        return n, torch.cat([b.k for b in found], dim=2), torch.cat([b.v for b in found], dim=2)

    def store(self, ids: Sequence[int], k: torch.Tensor, v: torch.Tensor) -> None:
        """Remember the full blocks of ``ids``, whose keys and values are ``k, v``
        (L, h_kv, >= len(ids), d_h)."""
        if self.max_blocks == 0:
            return
        bs = self.block_size
        with self._lock:
            parent = None
            for i, key in enumerate(self._keys(ids, len(ids) // bs)):
                if key in self._blocks:
                    self._blocks.move_to_end(key)
                else:
                    if not self._evict(keep=parent):
                        return
                    self._blocks[key] = _Block(k[:, :, i * bs:(i + 1) * bs].clone(),
                                               v[:, :, i * bs:(i + 1) * bs].clone(), parent)
                    if parent is not None:
                        self._blocks[parent].children += 1
                parent = key

    def _evict(self, keep: tuple | None) -> bool:
        """Make room for one block by dropping least recently used leaves other than
        ``keep`` (the block the new one extends); False when there is none to drop."""
        while len(self._blocks) >= self.max_blocks:
            leaf = next((key for key, b in self._blocks.items()
                         if b.children == 0 and key != keep), None)
            if leaf is None:
                return False
            block = self._blocks.pop(leaf)
            if block.parent is not None and block.parent in self._blocks:
                self._blocks[block.parent].children -= 1
        return True
