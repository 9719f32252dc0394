r"""Pipeline parallelism for :class:`~lmforge.models.gpt.GPT` with ``torch.distributed.pipelining``.

Split: the :math:`L` blocks are cut into ``n_stages`` contiguous runs, one per rank of the
pipeline group (the first ``L mod n_stages`` stages get one block more). Stage 0 also
holds the token (and learned position) embeddings, the last stage the final norm and
the LM head::

    stage 0:      ids (b, T) -> E[ids] (+ P) -> blocks 0..k-1        -> x (b, T, d)
    stage s:      x (b, T, d)               -> blocks k_s..k_{s+1}-1 -> x (b, T, d)
    stage S-1:    x (b, T, d)  -> blocks .. -> Norm -> head          -> logits (b, T, V)

Only the residual stream crosses a stage boundary (one send forward, its gradient one
send back). Every stage registers the RoPE tables (buffers of the model), and the
attention is the plain causal one: a pipelined batch is unpadded
(``attention_mask`` is not supported), exactly as the trainer's packed blocks are.

Micro-batches: a batch of :math:`B` sequences is cut into :math:`M` micro-batches of
:math:`b = B / M`. The loss of micro-batch :math:`m` is its summed token cross-entropy
divided by the token count :math:`N` of the *whole* batch,

.. math::

    \ell_m = \frac{1}{N} \sum_{t \in m} -\log \mathrm{softmax}(z_t)_{y_t},
    \qquad \sum_m \ell_m = \mathcal{L} \ \text{(the full-batch mean)},

so the gradients that the micro-batch backward passes accumulate add up to
:math:`\nabla \mathcal{L}` exactly (with equal micro-batches and no ignored labels this is
the mean of the micro-batch means), the schedule's own ``1/M`` scaling is off, and
``.grad`` accumulates across calls as after ``loss.backward()``.

Schedules (``S`` stages, ``M`` micro-batches, F/B = forward/backward of one micro-batch):

- GPipe: all :math:`M` forwards, then all :math:`M` backwards. Idle fraction (bubble)
  :math:`(S-1)/(M+S-1)`; every stage keeps the activations of all :math:`M` micro-batches.
- 1F1B: after :math:`S-s-1` warm-up forwards, stage :math:`s` alternates one forward and
  one backward. Same bubble, but at most :math:`S` micro-batches' activations are alive
  on a stage (needs :math:`M \ge S`).

Tied embeddings (GPT-2): the head's weight is the embedding :math:`E`, which lives on
stage 0 and on the last stage. Both ranks keep a copy (the last stage takes stage 0's
when the pipeline is built) and after each step the two partial gradients are
all-reduced between those two ranks, :math:`\nabla E = \nabla_{\mathrm{embed}} E + \nabla_{\mathrm{head}} E`,
as in one process; identical gradients and optimizer states keep the copies identical.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.pipelining import PipelineStage, Schedule1F1B, ScheduleGPipe
from torch.distributed.pipelining.schedules import PipelineScheduleSingle

from ..errors import ConfigError, ModelInputError
from ..models.base import check_ids, embed_ids
from ..models.gpt import GPT

SCHEDULES = {"gpipe": ScheduleGPipe, "1f1b": Schedule1F1B}
IGNORE_INDEX = -100


def stage_layers(n_layer: int, n_stages: int) -> list[range]:
    """The block indices of each stage: contiguous, sizes differing by at most one."""
    if not 1 <= n_stages <= n_layer:
        raise ConfigError(f"cannot split model.n_layer={n_layer} blocks into {n_stages} "
                          "pipeline stages (each stage needs at least one block)")
    size, extra = divmod(n_layer, n_stages)
    bounds = [s * size + min(s, extra) for s in range(n_stages + 1)]
    return [range(bounds[s], bounds[s + 1]) for s in range(n_stages)]


class GPTStage(nn.Module):
    """Stage ``index`` of ``n_stages`` of a :class:`GPT`: its modules (shared with
    ``model``, not copied), under the same parameter names as in ``model``.

    ``forward`` maps token ids (stage 0) or the residual stream (later stages) to the
    residual stream, or to logits on the last stage.
    """

    def __init__(self, model: GPT, index: int, n_stages: int):
        super().__init__()
        self.config = cfg = model.config
        self.is_first, self.is_last = index == 0, index == n_stages - 1
        if self.is_first:
            self.wte, self.wpe, self.drop = model.wte, model.wpe, model.drop
        self.blocks = nn.ModuleDict({str(i): model.blocks[i]
                                     for i in stage_layers(cfg.n_layer, n_stages)[index]})
        if self.is_last:
            self.norm_f, self.lm_head = model.norm_f, model.lm_head
        self.rope = cfg.pos == "rope"
        if self.rope:
            self.register_buffer("rope_cos", model.rope_cos, persistent=False)
            self.register_buffer("rope_sin", model.rope_sin, persistent=False)
        self.tied = bool(cfg.tie_embeddings) and n_stages > 1 and (self.is_first
                                                                   or self.is_last)
        # set by build_pipeline / the first pipeline_step
        self.n_microbatches, self.tied_group = 1, None
        self.batch_shape: tuple[int, int] | None = None

    def tied_weight(self) -> nn.Parameter:
        """The embedding matrix that is also the LM head (tied embeddings)."""
        return self.wte.weight if self.is_first else self.lm_head.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[1]
        if self.is_first:  # x: token ids (b, T)
            x = embed_ids(self.wte, x)  # (b, T, d)
            if self.wpe is not None:
                x = x + self.wpe(torch.arange(T, device=x.device))
            x = self.drop(x)
        rope = (self.rope_cos[:T], self.rope_sin[:T]) if self.rope else None  # (T, d_h)
        for name, block in self.blocks.items():
            x = block(x, rope, None, None, int(name))
        if self.is_last:
            x = self.lm_head(self.norm_f(x))  # (b, T, V)
        return x


def causal_lm_loss(logits: torch.Tensor, labels: torch.Tensor, n_tokens: int) -> torch.Tensor:
    """Summed next-token cross-entropy of one micro-batch over the batch's ``n_tokens``."""
    return F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1),
                           ignore_index=IGNORE_INDEX, reduction="sum") / n_tokens


def build_pipeline(model: GPT, n_microbatches: int, schedule: str = "1f1b",
                   group: dist.ProcessGroup | None = None
                   ) -> tuple[PipelineScheduleSingle, PipelineStage]:
    """This rank's stage of ``model`` (one stage per rank of ``group``, default: the world)
    and the ``schedule`` (``"gpipe"`` or ``"1f1b"``) that runs it on ``n_microbatches``.

    Every rank of ``group`` calls this with the same model (a tied embedding is copied
    from stage 0 to the last stage); the stage keeps only its own modules, so the rest
    of ``model`` can be dropped afterwards.
    """
    if schedule not in SCHEDULES:
        raise ConfigError(f"unknown pipeline schedule {schedule!r}; allowed: "
                          + ", ".join(SCHEDULES))
    n_stages, index = dist.get_world_size(group), dist.get_rank(group)
    if n_microbatches < 1 or (schedule == "1f1b" and n_microbatches < n_stages):
        raise ConfigError(f"{n_microbatches} micro-batches are too few for the {schedule} "
                          f"schedule over {n_stages} stages (it needs at least "
                          f"{n_stages if schedule == '1f1b' else 1})")
    submod = GPTStage(model, index, n_stages)
    submod.n_microbatches = n_microbatches
    if submod.tied:  # only the two ranks that hold the embedding and the head join
        ranks = dist.get_process_group_ranks(group or dist.group.WORLD)
        submod.tied_group = dist.new_group([ranks[0], ranks[-1]],
                                           use_local_synchronization=True)
        with torch.no_grad():
            dist.broadcast(submod.tied_weight(), group_src=0, group=submod.tied_group)
    device = next(model.parameters()).device
    stage = PipelineStage(submod, index, n_stages, device, group=group)
    return SCHEDULES[schedule](stage, n_microbatches, loss_fn=causal_lm_loss,
                               scale_grads=False), stage


def _sync_tied_grad(submod: GPTStage, before: torch.Tensor | None) -> None:
    """All-reduce this step's gradient of the tied embedding between the first and the
    last stage (``before``: the gradient accumulated by earlier steps, equal on both)."""
    weight = submod.tied_weight()
    if weight.grad is None:
        weight.grad = torch.zeros_like(weight)
    step_grad = weight.grad if before is None else weight.grad - before
    dist.all_reduce(step_grad, group=submod.tied_group)
    if before is not None:
        weight.grad = before + step_grad


def pipeline_step(schedule: PipelineScheduleSingle, stage: PipelineStage,
                  input_ids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Forward and backward of one batch through the pipeline; every rank of the group
    calls it with the same ``input_ids`` and ``labels`` (B, T) and gets the batch's mean
    loss (a 0-d tensor, broadcast from the last stage). Each stage's parameters receive
    their gradient of that mean in ``.grad``, added to what is there: zero the gradients
    between optimizer steps, and call it once per micro-step to accumulate."""
    B, T = check_ids(input_ids)
    submod: GPTStage = stage.submod
    if labels.shape != input_ids.shape:
        raise ModelInputError(f"labels have shape {tuple(labels.shape)} but input_ids "
                              f"{tuple(input_ids.shape)}")
    # checked on every rank before any communication, so that all ranks stop together
    cfg = submod.config
    if T > cfg.max_seq_len:
        raise ModelInputError(f"sequence length {T} exceeds max_seq_len {cfg.max_seq_len}")
    bad_labels = (labels != IGNORE_INDEX) & ((labels < 0) | (labels >= cfg.vocab_size))
    if bool(((input_ids < 0) | (input_ids >= cfg.vocab_size)).any() | bad_labels.any()):
        raise ModelInputError(f"input_ids or labels hold token ids outside [0, "
                              f"{cfg.vocab_size}) (vocab_size={cfg.vocab_size})")
    if B % submod.n_microbatches:
        raise ConfigError(f"batch size {B} is not divisible by the {submod.n_microbatches} "
                          "pipeline micro-batches")
    # the stages size their send/receive buffers at the first step
    submod.batch_shape = submod.batch_shape or (B, T)
    if submod.batch_shape != (B, T):
        raise ModelInputError(f"this pipeline runs batches of shape {submod.batch_shape}, "
                              f"got {(B, T)} (build another pipeline for another shape)")
    before = None
    if submod.tied and submod.tied_weight().grad is not None:
        before = submod.tied_weight().grad.clone()
    losses: list[torch.Tensor] = []
    args = (input_ids,) if stage.is_first else ()
    last = {}
    if stage.is_last:
        n_tokens = max(int((labels != IGNORE_INDEX).sum()), 1)
        last = {"target": labels, "losses": losses, "loss_kwargs": {"n_tokens": n_tokens}}
    schedule.step(*args, return_outputs=False, **last)
    if submod.tied:
        _sync_tied_grad(submod, before)
    loss = torch.stack(losses).sum().detach() if stage.is_last else torch.zeros(())
    dist.broadcast(loss, group_src=stage.num_stages - 1, group=stage.group)
    return loss


def clip_pipeline_grad_norm_(stage: PipelineStage, max_norm: float) -> torch.Tensor:
    r"""Clip the gradients of the whole pipelined model to global norm ``max_norm``; return
    that norm (the same on every rank), as ``torch.nn.utils.clip_grad_norm_`` on one
    process would.

    Each stage holds only its own gradients, so the squared norms are summed over the
    stages, :math:`\lVert g \rVert = \sqrt{\sum_s \lVert g_s \rVert^2}`; the tied embedding,
    held by the first and the last stage, counts once.
    """
    submod: GPTStage = stage.submod
    duplicate = submod.tied_weight() if submod.tied and not submod.is_first else None
    grads = [p.grad for p in submod.parameters() if p.grad is not None and p is not duplicate]
    squared = torch.nn.utils.get_total_norm(grads).square() if grads else torch.zeros(())
    dist.all_reduce(squared, group=stage.group)
    total = squared.sqrt()
    torch.nn.utils.clip_grads_with_norm_(submod.parameters(), max_norm, total)
    return total
