"""Batch sources: where training and evaluation batches come from.

A batch source has two methods::

    batch(step, micro, rng) -> batch      # training micro-batch ``micro`` of update ``step``
    eval_batches() -> Iterable[batch]     # the fixed, ordered evaluation batches

The trainer calls ``batch`` with ``rng = np.random.default_rng([seed, step, micro])``, so
a training batch is a pure function of ``(seed, step, micro)``: no data-loader position
has to be saved, and a run resumed at step ``k`` sees exactly the batches an
uninterrupted run would. A batch is anything the objective understands (a dict of
tensors for the built-in ones); the trainer moves every tensor in it to the device.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from ..data.shards import TokenShards
from .config import TrainConfig


@runtime_checkable
class BatchSource(Protocol):
    def batch(self, step: int, micro: int, rng: np.random.Generator) -> Any: ...

    def eval_batches(self) -> Iterable[Any]: ...


class LMBatchSource:
    """Causal-LM batches from a split of token shards.

    Training batches are ``batch_size`` random windows of ``block_size + 1`` tokens
    (``TokenShards.sample``); evaluation batches are the first ``max_eval_batches``
    non-overlapping windows in order (``TokenShards.sequential``), the same every time.
    Each batch is ``{"input_ids": x, "labels": y}`` with ``y`` = ``x`` shifted by one.
    """

    def __init__(self, shards: TokenShards | str | Path, batch_size: int, block_size: int,
                 *, split: str = "train", max_eval_batches: int | None = None):
        self.shards = shards if isinstance(shards, TokenShards) else TokenShards(shards, split)
        self.batch_size = int(batch_size)
        self.block_size = int(block_size)
        self.max_eval_batches = max_eval_batches
        self.shards._check_block(self.block_size)

    @classmethod
    def from_config(cls, data_dir: str | Path, split: str, cfg: TrainConfig) -> LMBatchSource:
        """A source with the batch size, block size and eval batch count of ``cfg``."""
        return cls(TokenShards(data_dir, split), cfg.batch_size, cfg.block_size,
                   split=split, max_eval_batches=cfg.eval_batches)

    @property
    def vocab_size(self) -> int:
        return self.shards.vocab_size

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.block_size

    def batch(self, step: int, micro: int, rng: np.random.Generator) -> dict:
        x, y = self.shards.sample(self.batch_size, self.block_size, rng)
        return {"input_ids": x, "labels": y}

    def batch_rows(self, step: int, micro: int, rng: np.random.Generator,
                   rows: range) -> dict:
        """Rows ``rows`` of :meth:`batch` (a rank's share), reading only their windows."""
        x, y = self.shards.sample(self.batch_size, self.block_size, rng, keep=rows)
        return {"input_ids": x, "labels": y}

    def eval_batches(self) -> Iterator[dict]:
        for x, y in self.shards.sequential(self.batch_size, self.block_size,
                                           self.max_eval_batches):
            yield {"input_ids": x, "labels": y}

    def __repr__(self) -> str:
        return (f"LMBatchSource({self.shards.data_dir}, split={self.shards.split!r}, "
                f"batch_size={self.batch_size}, block_size={self.block_size})")
