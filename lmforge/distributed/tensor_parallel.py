r"""Tensor parallelism (Megatron-style) for :class:`~lmforge.models.gpt.GPT` with DTensor.

Every weight matrix of a block is split over the ``p`` ranks of a 1-D device mesh, so each
rank holds ``1/p`` of it and does ``1/p`` of the matmul work. ``nn.Linear`` computes
:math:`Y = X W^T`; write it :math:`Y = X A` with :math:`A = W^T` (d_in x d_out).

Column-parallel (``ColwiseParallel``): :math:`A` is split by output columns,
:math:`A = [A_1 | \dots | A_p]`, so :math:`Y = X A = [X A_1 | \dots | X A_p]`; rank
:math:`r` needs the whole input :math:`X` (replicated) and produces the slice
:math:`Y_r = X A_r` with no communication. Used for the fused ``qkv`` projection (a slice
of whole heads) and the MLP's ``up`` (a slice of the hidden units).

Row-parallel (``RowwiseParallel``): :math:`A` is split by input rows,
:math:`A = [A_1; \dots; A_p]`, and its input arrives split by columns,
:math:`X = [X_1 | \dots | X_p]`, so :math:`Y = \sum_r X_r A_r`: each rank computes its
partial product and one all-reduce sums them (the bias is added once, after the sum).
Used for the attention output ``proj`` and the MLP's ``down``.

A column-parallel layer followed by a row-parallel one needs one all-reduce per pair in
the forward pass (and one in the backward pass, on :math:`\partial L / \partial X`):
two per block. Attention is exact per head, and the element-wise GELU / SwiGLU act on
each hidden unit separately, so the slices never need each other.

Fused projections: ``qkv`` stacks :math:`[W_q; W_k; W_v]` (rows), and the SwiGLU ``up``
stacks :math:`[W_{gate}; W_{up}]`. A plain contiguous split would give rank 0 all of
:math:`W_q` and part of :math:`W_k`. :func:`apply_tensor_parallel` therefore permutes the
rows first so that each rank's contiguous slice is :math:`[W_{q,r}; W_{k,r}; W_{v,r}]`
(its :math:`h/p` query heads and :math:`h_{kv}/p` key/value heads) or
:math:`[W_{gate,r}; W_{up,r}]`, and sets each attention module's head counts to the local
``n_head / p`` and ``n_kv_head / p``. With grouped-query attention, query head :math:`j`
reads key/value head :math:`\lfloor j / (h/h_{kv}) \rfloor`; contiguous blocks of heads
keep that pairing on one rank when :math:`p` divides :math:`h_{kv}`.

The permuted order depends on :math:`p`, so it never leaves the model: the state-dict
hooks of the two fused layers give ``state_dict()`` in the single-process row order and
permute what ``load_state_dict`` receives (each an all-gather of that layer's weight),
and :func:`tensor_parallel_optimizer` does the same for the AdamW moments. A checkpoint
(``torch.distributed.checkpoint``, or ``get_model_state_dict(full_state_dict=True)``)
therefore loads into another degree or into one process; :func:`full_grads` gives the
gradients in that order too.

Vocabulary: the token embedding is row-parallel over the vocabulary (rank :math:`r` holds
rows :math:`E_r`; a lookup of a token outside the slice gives zeros, and an all-reduce
sums the one non-zero row into :math:`x_0`). The LM head is column-parallel over the
vocabulary, :math:`z = [h E_1^T | \dots | h E_p^T]`, and its slices are all-gathered so
``forward`` returns the ordinary full logits and the loss is unchanged. With tied
embeddings (GPT-2) both use one weight sharded the same way (rows = vocabulary), so the
head stays the embedding and its gradient is the sum of both uses, as in one process.

Everything else (LayerNorm/RMSNorm, learned positions, the row-parallel biases) is
replicated: a DTensor with the ``Replicate`` placement, identical on every rank (see
:class:`ReplicateParallel`). Every parameter is then a DTensor, so an optimizer (AdamW)
and ``clip_grad_norm_`` see one consistent kind of tensor. Between modules the residual
stream is a plain tensor, the same on every rank.

Limits: :math:`p` must divide ``n_head``, ``n_kv_head`` and ``d_ff``; no dropout (the
replicated residual stream must stay the same on every rank); the model is for training
and whole-sequence forward passes (no KV cache: the cache is sized for all heads).
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Replicate, distribute_module, distribute_tensor
from torch.distributed.tensor.parallel import (
    ColwiseParallel,
    ParallelStyle,
    RowwiseParallel,
    parallelize_module,
)

from ..errors import ConfigError
from ..models.gpt import GPT, GPTConfig


class ReplicateParallel(ParallelStyle):
    """Keep a module whole on every rank: its parameters become ``Replicate`` DTensors, its
    (replicated) input is wrapped as a replicated DTensor and its output unwrapped again.

    The gradient reaching its output is already whole: a column-parallel layer's input
    gradient (each rank's share, from its own heads or units) is all-reduced where that
    layer wraps its input, in ``ColwiseParallel``'s backward."""

    def _apply(self, module: nn.Module, device_mesh: DeviceMesh) -> nn.Module:
        return distribute_module(module, device_mesh, input_fn=self._wrap, output_fn=self._unwrap)

    @staticmethod
    def _wrap(module: nn.Module, inputs: tuple, device_mesh: DeviceMesh) -> tuple:
        return tuple(DTensor.from_local(x, device_mesh, [Replicate()], run_check=False)
                     if isinstance(x, torch.Tensor) else x for x in inputs)

    @staticmethod
    def _unwrap(module: nn.Module, output: DTensor, device_mesh: DeviceMesh) -> torch.Tensor:
        return output.to_local()

    def __repr__(self) -> str:
        return "ReplicateParallel()"


def tensor_parallel_plan(config: GPTConfig) -> dict[str, ParallelStyle]:
    """The plan ``{module FQN pattern: style}`` given to ``parallelize_module``.

    Between modules the residual stream is a plain tensor, the same on every rank; the
    column-parallel outputs are this rank's heads / hidden units (plain local tensors).
    """
    plan: dict[str, ParallelStyle] = {"wte": RowwiseParallel(input_layouts=Replicate())}
    if config.pos == "learned":
        plan["wpe"] = ReplicateParallel()
    plan.update({
        "blocks.*.norm1": ReplicateParallel(),
        "blocks.*.attn.qkv": ColwiseParallel(),
        "blocks.*.attn.proj": RowwiseParallel(),
        "blocks.*.norm2": ReplicateParallel(),
        "blocks.*.mlp.up": ColwiseParallel(),
        "blocks.*.mlp.down": RowwiseParallel(),
        "norm_f": ReplicateParallel(),
        "lm_head": ColwiseParallel(output_layouts=Replicate()),
    })
    return plan


def check_tensor_parallel(config: GPTConfig, degree: int) -> None:
    """Raise :class:`ConfigError` when ``config`` cannot be split over ``degree`` ranks."""
    for field in ("n_head", "n_kv_head", "d_ff"):
        value = getattr(config, field)
        if value % degree:
            raise ConfigError(f"tensor parallel degree {degree} does not divide "
                              f"model.{field}={value}")
    if config.dropout:
        raise ConfigError(f"tensor parallelism needs model.dropout=0 (got {config.dropout}): "
                          "each rank would drop other units of the shared residual stream")


def shard_row_order(sizes: list[int], degree: int) -> torch.Tensor:
    """Row permutation of a fused weight made of stacked blocks of ``sizes`` rows, such
    that the ``degree`` contiguous slices of the permuted weight are, for rank ``r``, the
    ``r``-th slice of every block in turn: ``[q_r; k_r; v_r]``."""
    starts = [sum(sizes[:i]) for i in range(len(sizes))]
    return torch.cat([torch.arange(start + r * size // degree, start + (r + 1) * size // degree)
                      for r in range(degree) for start, size in zip(starts, sizes, strict=True)])


def _permute_rows(linear: nn.Linear, order: torch.Tensor) -> None:
    with torch.no_grad():
        for param in linear.parameters():
            param.copy_(param[order])


def _single_rows(full: torch.Tensor, order: torch.Tensor) -> torch.Tensor:
    """A whole tensor in the sharded row order -> a new one in the single-process order."""
    return torch.empty_like(full).index_copy_(0, order.to(full.device), full)


def _to_single(tensor: DTensor, order: torch.Tensor) -> DTensor:
    """``tensor`` (rows in the sharded order) as a DTensor of the same placements whose
    global rows are in the single-process order (all-gathers, then slices locally)."""
    return distribute_tensor(_single_rows(tensor.full_tensor(), order), tensor.device_mesh,
                             tensor.placements, src_data_rank=None)


def _to_sharded(value: torch.Tensor, like: DTensor, order: torch.Tensor) -> DTensor:
    """``value`` (single-process row order: a full tensor or a DTensor of any placement)
    laid out like ``like`` in the sharded row order."""
    full = value.full_tensor() if isinstance(value, DTensor) else value
    return distribute_tensor(full.to(like.device)[order.to(like.device)], like.device_mesh,
                             like.placements, src_data_rank=None)


def _save_single(module: nn.Module, state_dict: dict, prefix: str, local_metadata) -> None:
    for name, param in module.named_parameters(recurse=False):
        if prefix + name in state_dict:
            state_dict[prefix + name] = _to_single(state_dict[prefix + name],
                                                   param.shard_row_order)


def _load_single(module: nn.Module, state_dict: dict, prefix: str, *args) -> None:
    for name, param in module.named_parameters(recurse=False):
        if prefix + name in state_dict:
            state_dict[prefix + name] = _to_sharded(state_dict[prefix + name], param,
                                                    param.shard_row_order)


def apply_tensor_parallel(model: GPT, mesh: DeviceMesh) -> GPT:
    """Shard ``model`` in place over the 1-D ``mesh`` (see the module docstring); return it.

    Every rank must call this with the same model (the weights of mesh rank 0 are the
    ones scattered). ``model(input_ids)`` then returns the full logits on every rank.
    ``model.state_dict()`` (and so ``torch.distributed.checkpoint``) keeps the
    single-process row order, so a checkpoint moves between tensor-parallel degrees and
    to or from one process; ``state_dict`` and ``load_state_dict`` become collectives.
    Call :func:`tensor_parallel_optimizer` on the optimizer for the same in its state.
    """
    if mesh.ndim != 1:
        raise ConfigError(f"tensor parallelism needs a 1-D device mesh, got {mesh.ndim}-D "
                          "(slice a multi-dimensional mesh first, e.g. mesh['tp'])")
    if isinstance(model.wte.weight, DTensor):
        raise ConfigError("the model is already sharded (apply_tensor_parallel was called)")
    cfg, degree = model.config, mesh.size()
    check_tensor_parallel(cfg, degree)
    fused: list[tuple[nn.Linear, torch.Tensor]] = []
    for block in model.blocks:
        attn = block.attn
        fused.append((attn.qkv, shard_row_order(
            [cfg.n_head * cfg.head_dim] + [cfg.n_kv_head * cfg.head_dim] * 2, degree)))
        attn.n_head, attn.n_kv_head = cfg.n_head // degree, cfg.n_kv_head // degree
        if block.mlp.gated:
            fused.append((block.mlp.up, shard_row_order([cfg.d_ff] * 2, degree)))
    for linear, order in fused:
        _permute_rows(linear, order)
    parallelize_module(model, mesh, tensor_parallel_plan(cfg))
    for linear, order in fused:  # the parameters are new (DTensor) objects now
        for param in linear.parameters():
            param.shard_row_order = order
        linear.register_state_dict_post_hook(_save_single)
        linear.register_load_state_dict_pre_hook(_load_single)
    if cfg.tie_embeddings:  # both became Shard(0) over the vocabulary: share one again
        model.lm_head.weight = model.wte.weight
    return model


def _convert_optimizer_state(optimizer: torch.optim.Optimizer, state_dict: dict,
                             convert) -> dict:
    """``state_dict`` with ``convert(tensor, param, order)`` applied to the state tensors
    of every parameter with a fused (reordered) layout. The ids in ``state_dict`` are
    matched to parameters as ``load_state_dict`` does: group by group, in order (they are
    ints from ``state_dict()``, parameter names from torch.distributed.checkpoint)."""
    state = dict(state_dict["state"])  # new dicts: the inner ones are the live state
    for saved, group in zip(state_dict["param_groups"], optimizer.param_groups, strict=True):
        for pid, param in zip(saved["params"], group["params"], strict=True):
            order = getattr(param, "shard_row_order", None)
            if order is None or pid not in state:
                continue
            state[pid] = {k: convert(v, param, order) if torch.is_tensor(v) and v.dim() else v
                          for k, v in state[pid].items()}
    return {**state_dict, "state": state}


def tensor_parallel_optimizer(optimizer: torch.optim.Optimizer) -> torch.optim.Optimizer:
    """Make ``optimizer.state_dict()`` of a tensor-parallel model hold its per-parameter
    state (AdamW moments) in the single-process row order, and ``load_state_dict`` take
    it so, like the model's state dict; returns ``optimizer``."""
    optimizer.register_state_dict_post_hook(lambda opt, sd: _convert_optimizer_state(
        opt, sd, lambda v, param, order: _to_single(v, order)))
    optimizer.register_load_state_dict_pre_hook(lambda opt, sd: _convert_optimizer_state(
        opt, sd, _to_sharded))
    return optimizer


def full_grads(model: nn.Module) -> dict[str, torch.Tensor]:
    """``{name: whole gradient}`` of every parameter that has one, in the single-process
    layout (a collective: every rank must call it)."""
    grads = {}
    for name, param in model.named_parameters():
        if param.grad is None:
            continue
        grad = param.grad.full_tensor() if isinstance(param.grad, DTensor) else param.grad
        order = getattr(param, "shard_row_order", None)
        # (a replicated tensor's full_tensor() is its local tensor: copy it)
        grads[name] = grad.clone() if order is None else _single_rows(grad, order)
    return grads
