r"""Muon for the hidden weight matrices, AdamW for the rest (``train.optimizer: muon``).

Muon (Jordan et al. 2024) replaces each hidden matrix's update by the nearest
semi-orthogonal matrix to its momentum, so that every direction of the update moves at
the same rate instead of a few dominant ones. For a weight ``W`` (``m x n``) with
gradient ``G_t``, momentum ``mu`` and learning rate ``lr``::

    B_t = mu B_{t-1} + (1 - mu) G_t                      momentum (an average)
    M_t = (1 - mu) G_t + mu B_t   (Nesterov; plain: M_t = B_t)
    O_t = NS_5(M_t)                                      ~ U V^T, where M_t = U S V^T
    W_t = (1 - lr wd) W_{t-1} - lr * 0.2 sqrt(max(m, n)) * O_t

``NS_5`` is five steps of a quintic Newton-Schulz iteration that pushes every singular
value of ``X`` towards 1 without computing an SVD::

    X_0 = M / ||M||_F                                    (so every singular value <= 1)
    A = X_k X_k^T,   X_{k+1} = a X_k + (b A + c A^2) X_k,   (a, b, c) = (3.4445, -4.7750, 2.0315)

(on the shorter side: ``X`` is transposed first when ``m > n``). The coefficients make
the slope at zero large, so small singular values grow fast; the result has singular
values in about [0.7, 1.2] rather than exactly 1 (all but the very smallest, which stay
small), and that trains as well. The factor
``0.2 sqrt(max(m, n))`` (Liu et al. 2025, "Muon is scalable for LLM training") gives the
update the root-mean-square size of an AdamW update, so the AdamW learning rate, its
schedule and its weight decay carry over unchanged.

Embedding tables, output heads and 1-D gains and biases are not hidden matrices: they
stay with AdamW (:func:`muon_params`).

The Newton-Schulz products run in bf16 when the run trains under bf16 autocast (GPUs,
CPUs whose bf16 matmul is measurably faster: ``precision: auto``) and in fp32 otherwise:
where bf16 is emulated (AVX2-only CPUs) a bf16 iteration would cost seconds a step.
PyTorch's own ``torch.optim.Muon`` always uses bf16, hence this implementation (tested
against it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor, nn

NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def newton_schulz(m: Tensor, steps: int = 5, dtype: torch.dtype = torch.float32,
                  eps: float = 1e-7) -> Tensor:
    """``NS_steps(m)`` of the module doc for a matrix ``(r, c)`` or a stack of matrices
    ``(k, r, c)`` (one batched product per step), computed in ``dtype``, returned in
    ``m.dtype``."""
    a, b, c = NS_COEFFICIENTS
    x = m.to(dtype)
    tall = x.size(-2) > x.size(-1)
    if tall:
        x = x.mT
    if x.dim() == 2:
        x = x / x.norm().clamp_min(eps)
        mm = torch.addmm
    else:
        x = x / torch.linalg.matrix_norm(x, keepdim=True).clamp_min(eps)
        mm = torch.baddbmm
    for _ in range(steps):
        gram = x @ x.mT
        x = mm(x, mm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return (x.mT if tall else x).to(m.dtype)


class Muon(torch.optim.Optimizer):
    """The Muon update of the module doc for 2-D parameters (``lr``, ``weight_decay``,
    ``momentum``, ``nesterov``, ``ns_steps`` per group; ``ns_dtype`` for all)."""

    def __init__(self, params: Iterable, lr: float = 1e-3, weight_decay: float = 0.1,
                 momentum: float = 0.95, nesterov: bool = True, ns_steps: int = 5,
                 ns_dtype: torch.dtype = torch.float32):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum,
                        nesterov=nesterov, ns_steps=ns_steps)
        super().__init__(params, defaults)
        self.ns_dtype = ns_dtype
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(f"Muon updates 2-D matrices only, got a parameter of "
                                     f"shape {tuple(p.shape)}")

    @torch.no_grad()
    def step(self, closure=None):  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, wd, mu = group["lr"], group["weight_decay"], group["momentum"]
            by_shape: dict[tuple, list[tuple[Tensor, Tensor]]] = {}
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.lerp_(g, 1 - mu)
                update = g.lerp(buf, mu) if group["nesterov"] else buf
                by_shape.setdefault(tuple(p.shape), []).append((p, update))
            # Matrices of one shape are orthogonalised together: small products cost
            # their call overhead more than their FLOPs.
            for pairs in by_shape.values():
                params, updates = zip(*pairs, strict=True)
                if len(updates) == 1:
                    orthos = [newton_schulz(updates[0], group["ns_steps"], self.ns_dtype)]
                else:
                    orthos = newton_schulz(torch.stack(updates), group["ns_steps"],
                                           self.ns_dtype).unbind(0)
                for p, ortho in zip(params, orthos, strict=True):
                    p.mul_(1 - lr * wd)
                    p.add_(ortho, alpha=-lr * 0.2 * math.sqrt(max(p.shape)))
        return loss


def muon_params(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(hidden matrices, the rest)``. Hidden matrices are the weights of the
    ``nn.Linear`` layers inside the model's stacked blocks (the children of any
    ``nn.ModuleList``: attention and MLP projections), unless shared with an
    ``nn.Embedding``. Everything else is "the rest": embeddings, output heads and final
    projections (outside the blocks), gains, biases and other tensors."""
    embedded = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    hidden_ids = {id(layer.weight)
                  for stack in model.modules() if isinstance(stack, nn.ModuleList)
                  for layer in stack.modules()
                  if isinstance(layer, nn.Linear) and id(layer.weight) not in embedded
                  and layer.weight.requires_grad}
    hidden, rest, seen = [], [], set()
    for p in model.parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        (hidden if id(p) in hidden_ids else rest).append(p)
    return hidden, rest


class MuonAdamW:
    """One optimizer object for the trainer: :class:`Muon` over the hidden matrices and
    AdamW over the rest (``adamw``, built by the caller with its decay groups; None when
    nothing else trains, as under LoRA, whose adapters are all hidden matrices).
    ``param_groups`` lists both, so setting each group's ``lr`` schedules both alike."""

    def __init__(self, muon: Muon, adamw: torch.optim.Optimizer | None):
        self.muon, self.adamw = muon, adamw
        self._parts = [muon] if adamw is None else [muon, adamw]

    @property
    def param_groups(self) -> list[dict]:
        return [g for part in self._parts for g in part.param_groups]

    def add_adamw_groups(self, groups: list[dict], cfg) -> None:
        """More parameters for the AdamW side (built from ``cfg`` if there was none)."""
        if self.adamw is None:
            from .optim import adamw_over

            self.adamw = adamw_over(groups, cfg)
            self._parts.append(self.adamw)
            return
        for group in groups:
            self.adamw.add_param_group(group)

    def step(self) -> None:
        for part in self._parts:
            part.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self._parts:
            part.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict:
        return {"muon": self.muon.state_dict(),
                "adamw": None if self.adamw is None else self.adamw.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if not isinstance(state, dict) or set(state) != {"muon", "adamw"} \
                or (state["adamw"] is None) != (self.adamw is None):
            raise ValueError("the saved optimizer state is not a Muon + AdamW state of these "
                             "parameters (was the run trained with another "
                             "train.optimizer or finetune.strategy?)")
        self.muon.load_state_dict(state["muon"])
        if self.adamw is not None:
            self.adamw.load_state_dict(state["adamw"])
