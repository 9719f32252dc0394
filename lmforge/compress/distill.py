r"""Knowledge distillation: a small student learns from a trained teacher's soft targets.

Written by hand (lmforge teaches it). Hinton, Vinyals & Dean (2015): for student logits
:math:`z_s`, teacher logits :math:`z_t` over :math:`V` classes (the vocabulary of a
language model, the labels of a classifier), a temperature :math:`T` and the gold label
:math:`y`, the loss of one unit is::

    p_t = softmax(z_t / T),   q_s = softmax(z_s / T)
    L   = alpha * T^2 * KL(p_t || q_s)  +  (1 - alpha) * CE(y, softmax(z_s))
    KL(p || q) = sum_v p_v (log p_v - log q_v)

and the loss of a batch is its mean over the ``N`` units that have a label (tokens for a
language model, examples for a classifier; ``ignore_index`` marks the others, which count
in neither part). DistilBERT uses ``T = 2``, ``alpha = 0.5`` (its ``alpha_ce``).

**Why T^2.** The soft part's gradient is ``dKL/dz_s = (q_s - p_t) / T``. For large ``T``,
``softmax(z / T) ~ (1 + (z - mean z) / T) / V``, so ``q_s - p_t ~ (z_s - z_t - c) / (T V)``
(``c`` centres the difference) and the gradient shrinks like ``1 / T^2``. Multiplying by
``T^2`` keeps the soft part's gradient the same size whatever ``T`` is, so ``alpha``
weighs the two parts alike at every temperature; at large ``T`` it becomes matching the
centred logits, ``(z_s - z_t - c) / V`` per unit (Hinton et al.'s section 2.1).

**Hidden states** (optional, ``hidden_weight > 0``; DistilBERT's cosine loss, TinyBERT's
projection). The student's hidden state ``h_s`` (width ``d_s``) is mapped to the teacher's
width by ``W_p`` (identity when ``d_s = d_t``, else a learned ``nn.Linear(d_s, d_t,
bias=False)``) and pulled towards the teacher's ``h_t`` in direction::

    L_cos = mean over units of (1 - cos(h_s W_p, h_t))
    total = L + hidden_weight * L_cos

The hidden state is the final (normalised) state a language model's head reads, or, with a
``layer_map`` of ``(student block, teacher block)`` pairs, those blocks' outputs (the
mean of ``L_cos`` over the pairs); for a classifier it is the pooled vector its head reads.

Everything is computed in at least fp32 (bf16 logits under autocast are cast up).
:class:`DistillObjective` plugs the loss into :class:`lmforge.train.Trainer`; the
students and the compatibility check are in :mod:`.distill_students`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..errors import ConfigError, ModelInputError
from .distill_students import check_same_outputs, is_task_model


def _at_least_fp32(x: Tensor) -> Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))


def count_units(labels: Tensor, ignore_index: int = -100) -> int | Tensor:
    """How many units have a label: an ``int`` on the CPU, a 0-d tensor elsewhere (no
    host sync on an accelerator), like :func:`lmforge.nn.losses.token_cross_entropy`."""
    n = (labels != ignore_index).sum()
    return int(n) if labels.device.type == "cpu" else n


def check_distill_settings(temperature: float, alpha: float) -> None:
    """ConfigError unless ``temperature > 0`` and ``0 <= alpha <= 1``."""
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)
            and temperature > 0):
        raise ConfigError(f"distill.temperature must be a number > 0 (got {temperature!r})")
    if not (isinstance(alpha, (int, float)) and 0.0 <= alpha <= 1.0):
        raise ConfigError(f"distill.alpha must be in [0, 1] (got {alpha!r})")


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, labels: Tensor,
                      temperature: float, alpha: float, ignore_index: int = -100
                      ) -> tuple[Tensor, dict[str, Tensor]]:
    """``alpha * T^2 * KL(softmax(z_t/T) || softmax(z_s/T)) + (1 - alpha) * CE(y, z_s)``,
    the mean over the units whose label is not ``ignore_index`` (see the module doc).

    ``student_logits`` and ``teacher_logits`` have one shape ``(..., V)`` ((B, C) for a
    classifier, (B, T, V) for a language model), ``labels`` the leading shape ``(...)``.
    Returns ``(loss, {"soft": T^2 * mean KL, "hard": mean CE})``; a batch without labels
    gives 0 for both.
    """
    check_distill_settings(temperature, alpha)
    if student_logits.shape != teacher_logits.shape:
        raise ModelInputError(f"student logits {tuple(student_logits.shape)} and teacher "
                              f"logits {tuple(teacher_logits.shape)} differ in shape")
    if labels.shape != student_logits.shape[:-1]:
        raise ModelInputError(f"labels {tuple(labels.shape)} must have the logits' leading "
                              f"shape {tuple(student_logits.shape[:-1])}")
    V = student_logits.shape[-1]
    zs = _at_least_fp32(student_logits).reshape(-1, V)                  # (N, V)
    zt = _at_least_fp32(teacher_logits).reshape(-1, V).to(zs.dtype)
    y = labels.reshape(-1)                                              # (N,)
    keep = y != ignore_index
    n = keep.sum().clamp(min=1)
    log_q = F.log_softmax(zs / temperature, dim=-1)
    log_p = F.log_softmax(zt / temperature, dim=-1)
    kl = F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(-1)   # (N,)
    soft = temperature ** 2 * torch.where(keep, kl, 0.0).sum() / n
    hard = F.cross_entropy(zs, y, ignore_index=ignore_index, reduction="sum") / n
    return alpha * soft + (1.0 - alpha) * hard, {"soft": soft, "hard": hard}


def hidden_cosine_loss(student_hidden: Tensor, teacher_hidden: Tensor,
                       keep: Tensor | None = None, projection: nn.Module | None = None
                       ) -> Tensor:
    """``mean(1 - cos(h_s W_p, h_t))`` over the last dimension's vectors, counting only
    those where ``keep`` (the leading shape, bool) is true. ``projection`` is ``W_p``
    (None: identity, which needs equal widths)."""
    hs = student_hidden if projection is None else projection(student_hidden)
    if hs.shape != teacher_hidden.shape:
        raise ModelInputError(f"student hidden states {tuple(hs.shape)} (after the "
                              f"projection) and teacher's {tuple(teacher_hidden.shape)} "
                              "differ in shape")
    hs = _at_least_fp32(hs)
    gap = 1.0 - F.cosine_similarity(hs, _at_least_fp32(teacher_hidden).to(hs.dtype),
                                    dim=-1, eps=1e-8)
    if keep is None:
        return gap.mean()
    return torch.where(keep, gap, 0.0).sum() / keep.sum().clamp(min=1)


def _unwrap(model: nn.Module) -> nn.Module:
    return getattr(model, "_orig_mod", model)  # a torch.compile wrapper's module


def _block_count(model: nn.Module) -> int:
    blocks = getattr(model, "blocks", None)
    if not isinstance(blocks, nn.ModuleList):
        raise ConfigError(f"distill.layer_map needs models with a 'blocks' list (GPT); "
                          f"{type(model).__name__} has none")
    return len(blocks)


def _hidden_width(model: nn.Module, layered: bool) -> int:
    """The width of the hidden state the cosine loss reads (see the module doc)."""
    if is_task_model(model):
        if model.config.task != "classify" or layered:
            raise ConfigError("distill.hidden_weight: a task model's hidden loss reads its "
                              f"pooled vector, so it needs task classify (got "
                              f"{model.config.task}) and no layer_map")
        return model.classifier.in_features
    width = getattr(getattr(model, "config", None), "d_model", None)
    if not isinstance(width, int) or not callable(getattr(model, "encode", None)):
        raise ConfigError(f"distill.hidden_weight: {type(model).__name__} gives no hidden "
                          "states (a GPT or a classify task model does)")
    return width


def _check_distillable_task(cfg: Any) -> None:
    """The soft targets are per-unit distributions: a classifier's or relation model's per
    example, a softmax tagger's per word. A CRF tagger scores whole tag sequences and an
    extractive QA model two position distributions, so neither fits."""
    if cfg.task == "extract" or (cfg.task == "tag" and cfg.head == "crf"):
        what = "an extractive QA model" if cfg.task == "extract" else "a CRF tagger"
        raise ConfigError(f"distill: {what} cannot be distilled yet; allowed: classify, "
                          "relate and tag models with head linear, and language models")


def _lm_forward(model: nn.Module, x: Tensor, blocks: Sequence[int] | None
                ) -> tuple[Tensor, list[Tensor]]:
    """Logits (B, T, V) and hidden states: the final normalised ones (``blocks`` None,
    ``lm_head(encode(x))`` is the forward pass) or the outputs of ``blocks``."""
    if blocks is None:
        h = model.encode(x)                                             # (B, T, d)
        return model.lm_head(h), [h]
    states: dict[int, Tensor] = {}
    hooks = [model.blocks[i].register_forward_hook(
        lambda _m, _a, out, i=i: states.__setitem__(i, out)) for i in set(blocks)]
    try:
        logits = model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return logits, [states[i] for i in blocks]


def _classify_forward(model: nn.Module, batch: dict) -> tuple[Tensor, list[Tensor]]:
    """Logits (B, C) and the pooled vector z (B, d) of a classify task model (its
    forward pass: ``classifier(dropout(pool(hidden)))``)."""
    z = model.pool(model.hidden(batch), batch["attention_mask"])
    return model.classifier(model.drop(z)), [z]


class DistillObjective:
    """The distillation loss as a trainer objective:
    ``Trainer(student, ..., objective=DistillObjective(teacher, ...))``.

    Batches are the student's usual ones: ``{"input_ids", "labels"}`` (or ``(x, y)``) for
    a language model (GPT teacher and student), or a task batch (``input_ids``,
    ``attention_mask``, ``labels``, ...) for :class:`lmforge.tasks.model.TaskModel`
    teacher and student. The teacher runs in eval mode under ``torch.no_grad`` inside the
    trainer's autocast; the metrics are ``soft`` (``T^2`` KL), ``hard`` (CE) and, with
    ``hidden_weight``, ``hidden`` (``L_cos``), logged per step and as ``val_*``.

    ``hidden_weight > 0`` needs ``student`` (for its width). When the widths differ the
    objective owns ``W_p``: the trainer trains it with the student through
    :meth:`extra_parameters` and saves it in each checkpoint's ``optimizer.pt`` through
    :meth:`state_dict` (so resume is exact), while the checkpoint's model folder stays a
    plain student. ``seed`` fixes ``W_p``'s initialisation. (With hidden states, a
    ``torch.compile``-d student runs eagerly: the objective reads inside its forward.)
    """

    name = "distill"

    def __init__(self, teacher: nn.Module, temperature: float = 2.0, alpha: float = 0.5,
                 hidden_weight: float = 0.0, *, student: nn.Module | None = None,
                 layer_map: Sequence[tuple[int, int]] | None = None,
                 ignore_index: int = -100, seed: int = 0):
        check_distill_settings(temperature, alpha)
        if not (isinstance(hidden_weight, (int, float)) and hidden_weight >= 0):
            raise ConfigError(f"distill.hidden_weight must be >= 0 (got {hidden_weight!r})")
        self.teacher = teacher.eval()
        self.temperature, self.alpha = float(temperature), float(alpha)
        self.hidden_weight = float(hidden_weight)
        self.ignore_index = ignore_index
        self.task = is_task_model(teacher)
        if self.task:
            _check_distillable_task(teacher.config)
        self.unit = "ex" if self.task and teacher.config.task in ("classify", "relate") \
            else "tok"
        if student is not None:
            check_same_outputs(teacher, student)
        self.student_blocks = self.teacher_blocks = None
        self.projection: nn.Module = nn.Identity()
        if self.hidden_weight > 0:
            if student is None:
                raise ConfigError("distill.hidden_weight > 0 needs the student "
                                  "(DistillObjective(..., student=model)) for its width")
            self._setup_hidden(student, layer_map, seed)
        elif layer_map is not None:
            raise ConfigError("distill.layer_map is read only with hidden_weight > 0")
        self._device: torch.device | None = None

    def _setup_hidden(self, student: nn.Module, layer_map: Any, seed: int) -> None:
        if layer_map is not None:
            pairs = [tuple(p) for p in layer_map]
            if not pairs or any(len(p) != 2 for p in pairs):
                raise ConfigError("distill.layer_map must be a non-empty list of "
                                  f"(student block, teacher block) pairs (got {layer_map!r})")
            sizes = (_block_count(student), _block_count(self.teacher))
            resolved = []
            for pair in pairs:
                for who, i, size in zip(("student", "teacher"), pair, sizes, strict=True):
                    if not isinstance(i, int) or not -size <= i < size:
                        raise ConfigError(f"distill.layer_map: {who} block {i!r} does not "
                                          f"exist (the {who} has {size} blocks)")
                resolved.append(tuple(i % s for i, s in zip(pair, sizes, strict=True)))
            self.student_blocks = [s for s, _ in resolved]
            self.teacher_blocks = [t for _, t in resolved]
        layered = layer_map is not None
        d_s, d_t = _hidden_width(student, layered), _hidden_width(self.teacher, layered)
        if d_s != d_t:
            self.projection = nn.Linear(d_s, d_t, bias=False)
            nn.init.kaiming_uniform_(self.projection.weight, a=math.sqrt(5),
                                     generator=torch.Generator().manual_seed(seed))

    # ------------------------------------------------------------------ trainer hooks

    def extra_parameters(self, device: torch.device) -> list[nn.Parameter]:
        """The objective's own trainable parameters (``W_p``, if any), on ``device``; the
        teacher moves there too."""
        self._place(torch.device(device))
        return list(self.projection.parameters())

    def state_dict(self) -> dict:
        return {"projection": self.projection.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.projection.load_state_dict(state.get("projection", {}))

    def _place(self, device: torch.device) -> None:
        if self._device != device:
            self.teacher.to(device)
            self.projection.to(device)
            self._device = device

    # ------------------------------------------------------------------ the loss

    def _forward(self, model: nn.Module, inputs: Any, blocks: list[int] | None,
                 hidden: bool) -> tuple[Tensor, list[Tensor]]:
        if not hidden:
            return model(inputs), []
        model = _unwrap(model)
        if self.task:
            return _classify_forward(model, inputs)
        return _lm_forward(model, inputs, blocks)

    def __call__(self, model: nn.Module, batch: Any):
        if self.task:
            inputs, labels = batch, batch["labels"]
        elif isinstance(batch, dict):
            inputs, labels = batch["input_ids"], batch["labels"]
        else:
            inputs, labels = batch
        self._place(labels.device)
        self.teacher.eval()
        hidden = self.hidden_weight > 0
        with torch.no_grad():
            t_logits, t_states = self._forward(self.teacher, inputs, self.teacher_blocks,
                                               hidden)
        s_logits, s_states = self._forward(model, inputs, self.student_blocks, hidden)
        loss, parts = distillation_loss(s_logits, t_logits, labels, self.temperature,
                                        self.alpha, self.ignore_index)
        metrics = {k: v.detach() for k, v in parts.items()}
        if hidden:
            keep = labels != self.ignore_index
            l_cos = torch.stack([hidden_cosine_loss(s, t, keep, self.projection)
                                 for s, t in zip(s_states, t_states, strict=True)]).mean()
            loss = loss + self.hidden_weight * l_cos
            metrics["hidden"] = l_cos.detach()
        return loss, metrics, count_units(labels, self.ignore_index)

    def __repr__(self) -> str:
        return (f"DistillObjective(temperature={self.temperature}, alpha={self.alpha}, "
                f"hidden_weight={self.hidden_weight})")


__all__ = ["DistillObjective", "distillation_loss", "hidden_cosine_loss", "count_units",
           "check_distill_settings"]
