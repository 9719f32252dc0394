"""The temporal-difference targets of DQN and the target-network updates.

For a batch of transitions ``(s, a, R, s', d, g)`` (``R`` the discounted sum of the next
``n`` rewards, ``g = γ^k`` for the ``k <= n`` steps actually taken, ``d = 1`` when the
episode *terminated* inside those steps) the targets are

* DQN (Mnih et al. 2015):           ``y = R + g (1 − d) max_a' Q_target(s', a')``
* Double DQN (van Hasselt 2016):    ``y = R + g (1 − d) Q_target(s', argmax_a' Q_online(s', a'))``

A *truncated* episode (time limit) is not terminal: its last transition keeps ``d = 0`` and
bootstraps from ``s'`` (Pardo et al. 2018); only a real terminal state has value 0.

The target network is updated either by a hard copy every ``C`` environment steps or by
Polyak averaging ``θ' ← τ θ + (1 − τ) θ'`` (``τ = 1`` is the hard copy). Syncing every step
(``C = 1``) makes ``y`` move with the very parameters being fitted: the regression chases
its own output and the point of the target network, a fixed goal for ``C`` steps, is lost
(docs/rl.md shows the run).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def bellman_target(reward: Tensor, discount: Tensor | float, terminated: Tensor,
                   next_q_target: Tensor) -> Tensor:
    """``R + g (1 − d) max_a' Q_target(s', a')``; ``next_q_target`` is ``(B, A)``."""
    return reward + discount * (1.0 - terminated) * next_q_target.max(dim=1).values


def double_dqn_target(reward: Tensor, discount: Tensor | float, terminated: Tensor,
                      next_q_target: Tensor, next_q_online: Tensor) -> Tensor:
    """``R + g (1 − d) Q_target(s', argmax_a' Q_online(s', a'))``: the online network picks
    the action, the target network values it, which removes max-operator overestimation."""
    best = next_q_online.argmax(dim=1, keepdim=True)
    return reward + discount * (1.0 - terminated) * next_q_target.gather(1, best).squeeze(1)


@torch.no_grad()
def polyak_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``θ' ← τ θ + (1 − τ) θ'`` for every parameter and buffer; ``τ = 1`` copies."""
    t_params = list(target.parameters()) + list(target.buffers())
    o_params = list(online.parameters()) + list(online.buffers())
    if tau >= 1.0:
        torch._foreach_copy_(t_params, o_params)
    else:
        torch._foreach_lerp_(t_params, o_params, tau)
