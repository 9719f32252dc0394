"""Q-networks: an MLP from the observation to one value per action, optionally dueling.

Plain:   ``Q(s, ·) = W_L σ(… σ(W_1 s + b_1) …) + b_L`` (σ = ReLU), one output per action.

Dueling (Wang et al. 2016): a shared trunk ``h = f(s)`` feeds a state value ``V(h)`` and
advantages ``A(h, a)``, recombined as ``Q(s, a) = V(s) + A(s, a) − mean_a' A(s, a')``.
Subtracting the mean makes the split identifiable (adding ``c`` to V and ``−c`` to A would
otherwise give the same Q) while keeping ``argmax_a Q = argmax_a A``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor, nn


@dataclass
class QNetworkConfig:
    obs_dim: int
    n_actions: int
    hidden: list[int] = field(default_factory=lambda: [256, 256])
    dueling: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


def dueling_aggregate(value: Tensor, advantage: Tensor) -> Tensor:
    """``V + A − mean_a A``: ``value`` is ``(B, 1)``, ``advantage`` ``(B, A)``."""
    return value + advantage - advantage.mean(dim=1, keepdim=True)


def _mlp(sizes: list[int]) -> nn.Sequential:
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class QNetwork(nn.Module):
    """``forward(obs (B, obs_dim)) -> Q (B, n_actions)``."""

    def __init__(self, config: QNetworkConfig) -> None:
        super().__init__()
        self.config = config
        sizes = [config.obs_dim, *config.hidden]
        if config.dueling:
            self.trunk = nn.Sequential(_mlp(sizes), nn.ReLU()) if config.hidden else nn.Identity()
            self.value = nn.Linear(sizes[-1], 1)
            self.advantage = nn.Linear(sizes[-1], config.n_actions)
        else:
            self.q = _mlp([*sizes, config.n_actions])

    def forward(self, obs: Tensor) -> Tensor:
        if self.config.dueling:
            h = self.trunk(obs)
            return dueling_aggregate(self.value(h), self.advantage(h))
        return self.q(obs)

    @torch.no_grad()
    def act(self, obs: Tensor) -> Tensor:
        """The greedy actions ``argmax_a Q(s, a)``."""
        return self.forward(obs).argmax(dim=1)
