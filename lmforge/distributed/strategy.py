r"""How the trainer spreads one update over the processes of a torchrun launch.

A strategy answers the trainer's few questions: which rows of the batch this process
reads, how the model is wrapped, when gradients are synchronised, how numbers are summed
across processes and whether checkpoints are sharded. :class:`SingleProcess` answers them
for an ordinary run (and changes nothing in it).

**Data parallel** (``ddp``, ``fsdp``): the global micro-batch of update ``s``, micro-batch
``m`` is drawn exactly as one process would draw it (``rng = default_rng([seed, s, m])``,
``batch_size × world_size`` rows) and rank ``r`` keeps rows ``[r b, (r+1) b)``. With
:math:`S_r = \sum_{i \in r} \ell_i` the summed loss and :math:`n_r` the token count of rank
``r``, each rank back-propagates :math:`S_r`; DDP (and FSDP's reduce-scatter) average the
gradients, giving :math:`\frac1N \sum_r \nabla S_r`, and the trainer multiplies by
:math:`N / \sum_r n_r`, so every rank holds

.. math:: g = \frac{\sum_r \nabla S_r}{\sum_r n_r} = \nabla \frac{\sum_i \ell_i}{n},

the gradient of the token-weighted mean over the global batch: the same update as one
process with a ``world_size`` times larger batch, whatever the token counts per rank.

* DDP (:class:`DataParallel`) replicates the model and all-reduces gradients in buckets
  while the backward pass runs.
* FSDP2 (:class:`FullyShardedDataParallel`, ``fully_shard``) keeps 1/N of every
  parameter, gradient and AdamW moment per rank: each block's weights are all-gathered
  just before it runs and freed after; gradients are reduce-scattered. With bf16 autocast
  the all-gathers and compute run in bf16 and the gradient reduction in fp32.

**Tensor parallel** (``tp``) shards the matrices of each block across ranks (see
:mod:`lmforge.distributed.tensor_parallel`); every rank reads the whole batch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError
from .env import DistEnv


class SingleProcess:
    """An ordinary run: one process, nothing to split or synchronise."""

    name = "none"
    distributed = False
    rank, world_size, dp_rank, dp_size = 0, 1, 0, 1
    is_main = True
    shard_eval = False      # evaluate 1/dp of the validation batches, then sum
    sharded_checkpoints = False

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module the training forward runs (``model`` itself, or a wrapper)."""
        return model

    def prepare_optimizer(self, optimizer: Any) -> Any:
        """The optimizer built on the wrapped model, readied for checkpoints."""
        return optimizer

    def local_module(self, model: nn.Module, train_model: nn.Module) -> nn.Module:
        """The module whose parameters this process trains and saves (the model; a
        pipeline stage under ``pp``)."""
        return model

    def eval_model(self, model: nn.Module) -> nn.Module:
        """The module evaluation runs (the model, however it is wrapped or sharded)."""
        return model

    def grad_norm(self, params: list, clip: float | None) -> torch.Tensor:
        """The global gradient norm, after clipping to ``clip`` (when given)."""
        if clip is not None:
            norm = torch.nn.utils.clip_grad_norm_(params, clip, foreach=True)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params], foreach=True)
        full = getattr(norm, "full_tensor", None)  # sharded (DTensor) gradients
        return full() if callable(full) else norm

    def grad_sync(self, train_model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        """A context for one micro-batch's backward: ``sync=False`` lets gradients
        accumulate locally (all but the last micro-batch of an update)."""
        return contextlib.nullcontext()

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the data-parallel ranks (a float64/float32 tensor)."""
        return t

    def split_source(self, source: Any) -> Any:
        return source

    def any_rank(self, flag: bool) -> bool:
        """Is ``flag`` true on any process of the job?"""
        if not self.distributed:
            return flag
        t = torch.tensor([int(flag)], device=self.env.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def describe(self, batch_size: int, grad_accum: int, unit: str) -> str:
        return ""


class DataParallel(SingleProcess):
    """DDP: a full replica per rank, gradients all-reduced (averaged) in backward."""

    name = "ddp"
    distributed = True
    shard_eval = True
    sharded_checkpoints = True

    def __init__(self, env: DistEnv):
        self.env = env
        self.rank = self.dp_rank = env.rank
        self.world_size = self.dp_size = env.world_size
        self.is_main = env.is_main

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.env.device.index] if self.env.device.type == "cuda" else None
        # the buffers (RoPE tables, masks) never change: no broadcast before each forward
        return DistributedDataParallel(model, device_ids=ids, forward_sync_buffers=False)

    def grad_sync(self, train_model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        return contextlib.nullcontext() if sync else train_model.no_sync()

    def all_sum(self, t: torch.Tensor) -> torch.Tensor:
        t = t.clone()
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def split_source(self, source: Any) -> Any:
        return RankSlice(source, self.dp_rank, self.dp_size)

    def all_objects(self, obj: Any) -> list:
        """``obj`` of every rank (picklable), in rank order."""
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def describe(self, batch_size: int, grad_accum: int, unit: str) -> str:
        total = batch_size * grad_accum * self.dp_size
        return (f"{self.name} on {self.world_size} processes ({self.env.backend}): global "
                f"batch {total} = batch_size {batch_size} x grad_accum {grad_accum} x "
                f"world_size {self.dp_size}")


class FullyShardedDataParallel(DataParallel):
    """FSDP2: parameters, gradients and optimizer state sharded 1/N per rank."""

    name = "fsdp"
    shard_eval = False  # every forward all-gathers: all ranks must run the same ones

    def __init__(self, env: DistEnv, param_dtype: torch.dtype | None = None):
        super().__init__(env)
        self.param_dtype = param_dtype

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

        mp = MixedPrecisionPolicy(param_dtype=self.param_dtype, reduce_dtype=torch.float32) \
            if self.param_dtype is not None else MixedPrecisionPolicy()
        for block in repeated_blocks(model):
            fully_shard(block, mp_policy=mp)
        fully_shard(model, mp_policy=mp)
        return model

    def grad_sync(self, train_model: nn.Module, sync: bool) -> contextlib.AbstractContextManager:
        return _requires_gradient_sync(train_model, sync)


class TensorParallel(SingleProcess):
    """Tensor parallel over all ranks: every rank reads the whole batch."""

    name = "tp"
    distributed = True
    sharded_checkpoints = True

    def __init__(self, env: DistEnv):
        self.env = env
        self.rank, self.world_size, self.is_main = env.rank, env.world_size, env.is_main

    def wrap(self, model: nn.Module) -> nn.Module:
        from torch.distributed.device_mesh import init_device_mesh

        from .tensor_parallel import apply_tensor_parallel

        mesh = init_device_mesh(self.env.device.type, (self.world_size,))
        return apply_tensor_parallel(model, mesh)

    def prepare_optimizer(self, optimizer: Any) -> Any:
        """AdamW's moments of the fused (reordered) matrices saved in the one-process
        row order, like the weights (:func:`~.tensor_parallel.tensor_parallel_optimizer`)."""
        from .tensor_parallel import tensor_parallel_optimizer

        return tensor_parallel_optimizer(optimizer)

    def describe(self, batch_size: int, grad_accum: int, unit: str) -> str:
        return (f"tp over {self.world_size} processes ({self.env.backend}): global batch "
                f"{batch_size * grad_accum} = batch_size {batch_size} x grad_accum "
                f"{grad_accum} (every rank reads the whole batch)")


class PipelineParallel(SingleProcess):
    """Pipeline parallel over all ranks: each holds a stage of the GPT's blocks and every
    rank reads the whole batch (:mod:`lmforge.distributed.pipeline`)."""

    name = "pp"
    distributed = True
    sharded_checkpoints = True

    def __init__(self, env: DistEnv, n_microbatches: int, schedule: str):
        self.env = env
        self.rank, self.world_size, self.is_main = env.rank, env.world_size, env.is_main
        self.n_microbatches, self.schedule_name = n_microbatches, schedule

    def wrap(self, model: nn.Module) -> nn.Module:
        from ..models.gpt import GPT
        from .pipeline import build_pipeline

        if not isinstance(model, GPT):
            raise ConfigError(f"train.distributed=pp splits a GPT into stages; "
                              f"{type(model).__name__} is not one")
        self.schedule, self.stage = build_pipeline(model, self.n_microbatches,
                                                   self.schedule_name)
        return self.stage.submod

    def local_module(self, model: nn.Module, train_model: nn.Module) -> nn.Module:
        return train_model

    def grad_norm(self, params: list, clip: float | None) -> torch.Tensor:
        from .pipeline import clip_pipeline_grad_norm_

        return clip_pipeline_grad_norm_(self.stage, clip if clip is not None
                                        else float("inf"))

    def eval_model(self, model: nn.Module) -> nn.Module:
        """A whole copy of the model on every rank, from the stages' weights (evaluation
        and sampling need every block; this costs one model's memory while it runs)."""
        from ..models import build_model
        from ..models.base import assign_state

        plain = build_model(model.config)
        assign_state(plain, self.full_weights(), "the pipeline stages' weights")
        return plain.to(self.env.device)

    def full_weights(self) -> dict[str, torch.Tensor]:
        """Every stage's weights, merged, on every rank (a collective)."""
        mine = {k: v.detach().cpu() for k, v in self.stage.submod.state_dict().items()}
        parts: list[Any] = [None] * self.world_size
        dist.all_gather_object(parts, mine)
        return {k: v for part in parts for k, v in part.items()}

    def describe(self, batch_size: int, grad_accum: int, unit: str) -> str:
        return (f"pp over {self.world_size} stages ({self.env.backend}, "
                f"{self.schedule_name}, {self.n_microbatches} micro-batches): global batch "
                f"{batch_size * grad_accum} = batch_size {batch_size} x grad_accum "
                f"{grad_accum} (every rank reads the whole batch)")


@contextlib.contextmanager
def _requires_gradient_sync(model: Any, sync: bool) -> Iterator[None]:
    model.set_requires_gradient_sync(sync)
    try:
        yield
    finally:
        model.set_requires_gradient_sync(True)


def repeated_blocks(model: nn.Module) -> list[nn.Module]:
    """The elements of every ``nn.ModuleList`` in ``model`` (a Transformer's blocks): the
    units FSDP gathers one at a time."""
    return [m for lst in model.modules() if isinstance(lst, nn.ModuleList) for m in lst]


class RankSlice:
    """Rank ``rank``'s rows of the global micro-batch of a batch source.

    The source draws ``per_rank × size`` rows from the same ``rng`` a single process with
    that batch size would use, and this rank keeps rows ``[rank·b, (rank+1)·b)``; a source
    with ``batch_rows(step, micro, rng, rows)`` (the token shards) reads only those.
    """

    def __init__(self, source: Any, rank: int, size: int):
        per_rank = getattr(source, "batch_size", None)
        if not isinstance(per_rank, int):
            raise ConfigError(f"train.distributed: the batch source {type(source).__name__} "
                              "has no batch_size to split across ranks")
        self.source, self.rank, self.size, self.per_rank = source, rank, size, per_rank
        source.batch_size = per_rank * size
        self.rows = range(rank * per_rank, (rank + 1) * per_rank)

    def __getattr__(self, name: str) -> Any:  # vocab_size, tokens_per_batch, ...
        return getattr(self.source, name)

    def batch(self, step: int, micro: int, rng: Any) -> Any:
        rows_of = getattr(self.source, "batch_rows", None)
        if callable(rows_of):
            return rows_of(step, micro, rng, self.rows)
        return take_rows(self.source.batch(step, micro, rng), self.rows)

    def eval_batches(self) -> Any:
        return self.source.eval_batches()


def take_rows(batch: Any, rows: range) -> Any:
    """Rows ``rows`` of every tensor with a batch dimension in a (nested) batch."""
    if isinstance(batch, torch.Tensor):
        return batch[rows.start: rows.stop] if batch.dim() > 0 else batch
    if isinstance(batch, dict):
        return {k: take_rows(v, rows) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(take_rows(v, rows) for v in batch)
    return batch


STRATEGIES = ("none", "ddp", "fsdp", "tp", "pp")


def make_strategy(name: str, env: DistEnv | None, param_dtype: torch.dtype | None = None,
                  pp_microbatches: int = 4, pp_schedule: str = "1f1b") -> SingleProcess:
    """The strategy for ``train.distributed`` (``env`` is None for ``none``)."""
    if name == "none" or env is None:
        return SingleProcess()
    if name == "ddp":
        return DataParallel(env)
    if name == "fsdp":
        return FullyShardedDataParallel(env, param_dtype)
    if name == "tp":
        return TensorParallel(env)
    if name == "pp":
        return PipelineParallel(env, pp_microbatches, pp_schedule)
    raise ConfigError(f"train.distributed={name!r} is not supported by this trainer; "
                      f"allowed: {', '.join(STRATEGIES)}")


__all__ = ["SingleProcess", "DataParallel", "FullyShardedDataParallel", "TensorParallel",
           "PipelineParallel",
           "RankSlice", "take_rows", "repeated_blocks", "make_strategy", "STRATEGIES"]
