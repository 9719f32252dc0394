"""Prioritized experience replay (Schaul et al. 2016, proportional variant) on a sum-tree.

Transition ``i`` is drawn with probability ``P(i) = p_i^α / Σ_k p_k^α`` where ``p_i = |δ_i| + ε``
is its last TD error (new transitions get the largest priority seen, so each is replayed at
least once). The bias this introduces is corrected by importance weights
``w_i = (N · P(i))^(−β) / max_j w_j``, with β annealed linearly from ``beta`` to 1 over the run.

The sum-tree is an array of ``2·C`` floats (``C`` a power of two ≥ the capacity): leaf ``i``
lives at ``C + i`` and every inner node holds the sum of its two children, so the root
(node 1) is the total. Setting a leaf and drawing a leaf by prefix sum both cost
``O(log C)``; here both are vectorised over a whole batch with numpy. Sampling is
stratified: the ``k``-th of ``B`` draws is uniform in ``[k/B, (k+1)/B)`` of the total.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .replay import Batch, ReplayBuffer


class SumTree:
    """Leaf values with O(log C) update and prefix-sum search."""

    def __init__(self, capacity: int) -> None:
        self.leaves = 1 << max(0, (capacity - 1).bit_length())
        self.tree = np.zeros(2 * self.leaves)

    @property
    def total(self) -> float:
        return float(self.tree[1])

    def set(self, index: np.ndarray, value: np.ndarray) -> None:
        node = np.asarray(index, dtype=np.int64) + self.leaves
        self.tree[node] = value
        node = np.unique(node // 2)
        while node[0] > 0:
            self.tree[node] = self.tree[2 * node] + self.tree[2 * node + 1]
            node = np.unique(node // 2)

    def get(self, index: np.ndarray) -> np.ndarray:
        return self.tree[np.asarray(index, dtype=np.int64) + self.leaves]

    def find(self, mass: np.ndarray) -> np.ndarray:
        """The leaf whose cumulative interval holds each prefix ``mass`` (in ``[0, total)``)."""
        node = np.ones(len(mass), dtype=np.int64)
        mass = np.array(mass, dtype=np.float64)
        while node[0] < self.leaves:
            left = 2 * node
            go_right = mass >= self.tree[left]
            mass = np.where(go_right, mass - self.tree[left], mass)
            node = np.where(go_right, left + 1, left)
        return node - self.leaves


class PrioritizedReplayBuffer(ReplayBuffer):
    """:class:`ReplayBuffer` that samples by TD-error priority with importance weights."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...], alpha: float = 0.6,
                 beta: float = 0.4, eps: float = 1e-6,
                 obs_dtype: torch.dtype = torch.float32) -> None:
        super().__init__(capacity, obs_shape, obs_dtype)
        self.alpha, self.beta, self.eps = alpha, beta, eps
        self.tree = SumTree(capacity)
        self.max_priority = 1.0

    def add(self, *fields: Tensor) -> Tensor:
        slots = super().add(*fields)
        self.tree.set(slots.numpy(), np.full(len(slots), self.max_priority ** self.alpha))
        return slots

    def sample_indices(self, n: int, generator: torch.Generator) -> Tensor:
        u = torch.rand(n, generator=generator, dtype=torch.float64).numpy()
        total = self.tree.total
        mass = (np.arange(n) + u) * (total / n)
        idx = self.tree.find(np.minimum(mass, np.nextafter(total, 0)))
        return torch.from_numpy(np.minimum(idx, self.size - 1))

    def weights(self, idx: Tensor) -> Tensor:
        """``(N · P(i))^(−β) / max_j w_j`` for the sampled indices."""
        prob = self.tree.get(idx.numpy()) / self.tree.total
        w = (self.size * prob) ** (-self.beta)
        return torch.from_numpy(w / w.max()).float()

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        idx = self.sample_indices(batch_size, generator)
        return self.gather(idx, self.weights(idx))

    def update_priorities(self, indices: Tensor, td_errors: Tensor) -> None:
        p = td_errors.detach().abs().double().numpy() + self.eps
        self.max_priority = max(self.max_priority, float(p.max()))
        self.tree.set(indices.numpy(), p ** self.alpha)

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(priorities=torch.from_numpy(self.tree.get(np.arange(self.size))),
                     max_priority=self.max_priority, beta=self.beta)
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.tree.set(np.arange(self.size), state["priorities"].numpy())
        self.max_priority, self.beta = float(state["max_priority"]), float(state["beta"])
