r"""Unstructured magnitude pruning: one-shot, or gradual while fine-tuning (Zhu & Gupta 2017).

**Masks.** For a weight matrix :math:`W` and a sparsity :math:`s \in [0, 1)` the mask
zeroes the :math:`k = \mathrm{round}(s \cdot n)` entries of smallest :math:`|W_{ij}|`
(ties broken by position, so the count is exact)::

    M_ij = 0 for the k smallest |W_ij|, else 1,        W <- W * M

- ``scope="layer"``: every selected matrix gets its own :math:`k` (each ends at sparsity
  ``s`` to within one entry);
- ``scope="global"``: one :math:`k = \mathrm{round}(s \sum n)` over the concatenation of
  all selected matrices (one threshold: layers with small weights lose more).

**Which weights** (``include``): ``"blocks"`` (the default) is the weight of every
``nn.Linear`` inside the repeated blocks of the model (modules under an ``nn.ModuleList``:
GPT ``blocks.*``, BERT ``layers.*``, a task model's ``encoder.layers.*``), so never the
embeddings, the norms, the LM head (tied or not), a pooler or a classifier.
``"all-linear"`` is every ``nn.Linear`` whose weight is not shared with an embedding table
(an untied LM head and task heads included, a tied head never). A list of ``fnmatch``
patterns selects ``nn.Linear`` modules by name (``["blocks.*.mlp.*"]``). Biases are never
pruned.

The mask is multiplied into the weight (``W *= M``): the model keeps plain ``nn.Linear``
layers whose weights hold zeros, with no ``weight_orig`` / ``weight_mask`` left behind
(what ``torch.nn.utils.prune`` followed by ``prune.remove`` gives).

**Gradual schedule** (Zhu & Gupta 2017, eq. 1): starting at step :math:`t_0` with sparsity
:math:`s_i`, pruning every :math:`\Delta t` steps, :math:`n` times, to :math:`s_f`::

    s_t = s_f + (s_i - s_f) (1 - (t - t_0) / (n Δt))^3     for t in {t_0, t_0 + Δt, ..., t_0 + n Δt}

and between two pruning steps the sparsity of the last one (0 before :math:`t_0`,
:math:`s_f` after the last). ``n = 0`` is one-shot: :math:`s_f` at :math:`t_0`.
:class:`PruningCallback` runs it inside :class:`lmforge.train.Trainer`: at every pruning
step it recomputes the masks from the current magnitudes (weights pruned before are zero,
so they stay pruned), and it multiplies the masks in after **every** optimizer update
(the trainer calls ``on_step_end`` right after ``optimizer.step()`` and before evaluating
or checkpointing), so pruned weights are zero in every forward pass, evaluation and
checkpoint. One-shot pruning then fine-tuning is ``SparsitySchedule(s, n_steps=0)``;
gradual pruning while fine-tuning is ``n_steps > 0``.

**Resume.** The masks are not stored: a resumed run rebuilds them from the zeros of the
restored weights (``M = W != 0``), which are the masks of the uninterrupted run unless a
live weight is exactly 0.0 (a floating-point coincidence). So ``--resume`` continues the
same sparsity pattern.

Sparse storage sizes are in :mod:`lmforge.compress.sparse_format`. Zeros in a dense
weight do not make dense CPU kernels faster: the speed of unstructured sparsity needs
sparse kernels; :mod:`lmforge.compress.structured` removes whole heads and neurons.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor, nn

from ..errors import ConfigError
from ..train.callbacks import Callback

Scope = Literal["layer", "global"]
Include = str | Sequence[str]
SCOPES = ("layer", "global")


def check_sparsity(sparsity: float, name: str = "sparsity") -> float:
    """``sparsity`` as a float in [0, 1); :class:`ConfigError` otherwise."""
    if isinstance(sparsity, bool) or not isinstance(sparsity, (int, float)) \
            or not 0.0 <= sparsity < 1.0:
        raise ConfigError(f"{name} must be in [0, 1), got {sparsity!r}")
    return float(sparsity)


def prunable_linears(model: nn.Module, include: Include = "blocks") -> dict[str, nn.Linear]:
    """``{module name: nn.Linear}`` that ``include`` selects (see the module docstring)."""
    tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    linears = {n: m for n, m in model.named_modules()
               if isinstance(m, nn.Linear) and id(m.weight) not in tables}
    if include == "blocks":
        in_blocks = {f"{n}.{i}" for n, m in model.named_modules()
                     if isinstance(m, nn.ModuleList) for i in range(len(m))}
        out = {n: m for n, m in linears.items()
               if any(n.startswith(b + ".") for b in in_blocks)}
    elif include == "all-linear":
        out = linears
    elif isinstance(include, Sequence) and not isinstance(include, str):
        out = {n: m for n, m in linears.items()
               if any(fnmatch.fnmatchcase(n, p) for p in include)}
    else:
        raise ConfigError(f"include must be 'blocks', 'all-linear' or a list of module-name "
                          f"patterns, got {include!r}")
    if not out:
        raise ConfigError(f"include={include!r} selects no nn.Linear layer of this "
                          f"{type(model).__name__}")
    return out


def _smallest(magnitudes: Tensor, k: int) -> Tensor:
    """Boolean mask of the same shape, False at the ``k`` smallest entries."""
    keep = torch.ones(magnitudes.numel(), dtype=torch.bool, device=magnitudes.device)
    order = torch.argsort(magnitudes.flatten(), stable=True)
    keep[order[:k]] = False
    return keep.view_as(magnitudes)


@torch.no_grad()
def magnitude_masks(model: nn.Module, sparsity: float, scope: Scope = "layer",
                    include: Include = "blocks") -> dict[str, Tensor]:
    """``{module name: bool mask}`` (True = keep) zeroing the smallest ``|W|`` of every
    selected ``nn.Linear`` weight, layer by layer or under one global threshold."""
    sparsity = check_sparsity(sparsity)
    if scope not in SCOPES:
        raise ConfigError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
    layers = prunable_linears(model, include)
    if scope == "layer":
        return {n: _smallest(m.weight.abs(), round(sparsity * m.weight.numel()))
                for n, m in layers.items()}
    flat = torch.cat([m.weight.abs().flatten().float() for m in layers.values()])
    keep = _smallest(flat, round(sparsity * flat.numel()))
    sizes = [m.weight.numel() for m in layers.values()]
    return {n: part.view_as(m.weight)
            for (n, m), part in zip(layers.items(), keep.split(sizes), strict=True)}


@torch.no_grad()
def apply_masks(model: nn.Module, masks: dict[str, Tensor]) -> None:
    """``W *= M`` for every ``{module name: mask}`` (in place; plain weights with zeros)."""
    for name, mask in masks.items():
        weight = model.get_submodule(name).weight
        weight.mul_(mask.to(weight.dtype))


def prune_magnitude(model: nn.Module, sparsity: float, scope: Scope = "layer",
                    include: Include = "blocks") -> dict[str, Tensor]:
    """One-shot magnitude pruning: compute the masks, multiply them in, return them."""
    masks = magnitude_masks(model, sparsity, scope, include)
    apply_masks(model, masks)
    return masks


@torch.no_grad()
def sparsity_report(model: nn.Module, include: Include = "blocks") -> dict[str, Any]:
    """Share of exact zeros in the selected weights: ``{"layers": {name: s}, "overall": s,
    "zeros": int, "total": int}``."""
    layers = prunable_linears(model, include)
    zeros = {n: int((m.weight == 0).sum()) for n, m in layers.items()}
    total = sum(m.weight.numel() for m in layers.values())
    return {"layers": {n: zeros[n] / m.weight.numel() for n, m in layers.items()},
            "overall": sum(zeros.values()) / total, "zeros": sum(zeros.values()),
            "total": total}


@dataclass(frozen=True)
class SparsitySchedule:
    """Zhu & Gupta's cubic schedule (module docstring): ``final`` sparsity reached in
    ``n_steps`` pruning steps ``every`` updates apart from ``start`` (``n_steps=0``:
    one-shot at ``start``), beginning at ``initial``."""

    final: float
    initial: float = 0.0
    start: int = 0
    every: int = 1
    n_steps: int = 0

    def __post_init__(self) -> None:
        check_sparsity(self.final, "final sparsity")
        check_sparsity(self.initial, "initial sparsity")
        if self.initial > self.final:
            raise ConfigError(f"initial sparsity {self.initial} must not exceed the final "
                              f"sparsity {self.final}")
        for name, low in (("start", 0), ("every", 1), ("n_steps", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"pruning schedule {name} must be an integer >= {low}, "
                                  f"got {value!r}")

    @property
    def end(self) -> int:
        """The last pruning step, ``t_0 + n Δt``."""
        return self.start + self.n_steps * self.every

    def prunes_at(self, step: int) -> bool:
        """Is ``step`` one of ``t_0, t_0 + Δt, ..., t_0 + n Δt``?"""
        return self.start <= step <= self.end and (step - self.start) % self.every == 0

    def __call__(self, step: int) -> float:
        """The sparsity in force after ``step`` updates."""
        if step < self.start:
            return 0.0
        if self.n_steps == 0 or step >= self.end:
            return self.final
        t = self.start + (step - self.start) // self.every * self.every  # last pruning step
        frac = 1.0 - (t - self.start) / (self.n_steps * self.every)
        return self.final + (self.initial - self.final) * frac ** 3


class PruningCallback(Callback):
    """Magnitude pruning on a :class:`SparsitySchedule` inside a Trainer run (module
    docstring): masks recomputed at each pruning step, multiplied in after every update.
    ``masks`` holds the masks in force (empty before the schedule starts)."""

    def __init__(self, schedule: SparsitySchedule, scope: Scope = "layer",
                 include: Include = "blocks"):
        if not isinstance(schedule, SparsitySchedule):
            raise ConfigError(f"schedule must be a SparsitySchedule, got "
                              f"{type(schedule).__name__}")
        if scope not in SCOPES:
            raise ConfigError(f"scope must be one of {', '.join(SCOPES)}, got {scope!r}")
        self.schedule, self.scope, self.include = schedule, scope, include
        self.model: nn.Module | None = None
        self.masks: dict[str, Tensor] = {}

    def on_train_start(self, trainer: Any) -> None:
        self.model = trainer.model
        step = trainer.step
        if step > 0 and self.schedule(step) > 0:  # resumed: the zeros are the masks
            with torch.no_grad():
                self.masks = {n: m.weight != 0 for n, m in
                              prunable_linears(self.model, self.include).items()}
        self._step(step)

    def on_step_end(self, step: int, metrics: dict) -> None:
        self._step(step)

    def _step(self, step: int) -> None:
        if self.model is None:
            raise ConfigError("PruningCallback.on_train_start was not called; pass the "
                              "callback to the Trainer")
        if self.schedule.prunes_at(step):
            self.masks = magnitude_masks(self.model, self.schedule(step), self.scope,
                                         self.include)
        apply_masks(self.model, self.masks)


__all__ = ["SparsitySchedule", "PruningCallback", "magnitude_masks", "apply_masks",
           "prune_magnitude", "prunable_linears", "sparsity_report", "check_sparsity"]
