"""Experience replay: a fixed-size ring of transitions, sampled uniformly (Lin 1992; Mnih
et al. 2015), and the n-step folding that turns single steps into n-step transitions.

The buffer holds preallocated tensors; ``add`` writes at the ring position ``pos`` and
wraps to 0 when full, overwriting the oldest transition, so ``size = min(added, capacity)``.
``sample`` draws ``batch_size`` indices uniformly from ``[0, size)`` with replacement, from a
``torch.Generator`` the caller owns (the replay RNG is part of a checkpoint).

A stored transition is ``(s, a, R, s', d, g)``: ``R`` the discounted reward sum of up to
``n`` steps, ``s'`` the state after them, ``d`` whether the episode *terminated* in them,
``g = γ^k`` for the ``k`` steps folded (``k < n`` only at an episode's end).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

FIELDS = ("obs", "action", "reward", "next_obs", "terminated", "discount")


@dataclass
class Batch:
    """A sampled mini-batch; ``weights`` are importance weights (ones for uniform replay)."""

    obs: Tensor
    action: Tensor
    reward: Tensor
    next_obs: Tensor
    terminated: Tensor
    discount: Tensor
    weights: Tensor
    indices: Tensor


class ReplayBuffer:
    """A ring buffer of transitions with uniform sampling."""

    def __init__(self, capacity: int, obs_shape: tuple[int, ...],
                 obs_dtype: torch.dtype = torch.float32) -> None:
        self.capacity = capacity
        self.obs = torch.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.next_obs = torch.zeros((capacity, *obs_shape), dtype=obs_dtype)
        self.action = torch.zeros(capacity, dtype=torch.int64)
        self.reward = torch.zeros(capacity)
        self.terminated = torch.zeros(capacity)
        self.discount = torch.zeros(capacity)
        self.pos = 0
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def add(self, obs: Tensor, action: Tensor, reward: Tensor, next_obs: Tensor,
            terminated: Tensor, discount: Tensor) -> Tensor:
        """Append a batch of ``m`` transitions (wrapping around); returns their slots."""
        m = int(action.shape[0])
        slots = (self.pos + torch.arange(m)) % self.capacity
        for name, value in zip(FIELDS, (obs, action, reward, next_obs, terminated, discount),
                               strict=True):
            getattr(self, name)[slots] = value.to(getattr(self, name).dtype)
        self.pos = (self.pos + m) % self.capacity
        self.size = min(self.size + m, self.capacity)
        return slots

    def sample_indices(self, n: int, generator: torch.Generator) -> Tensor:
        return torch.randint(0, self.size, (n,), generator=generator)

    def gather(self, idx: Tensor, weights: Tensor | None = None) -> Batch:
        return Batch(self.obs[idx], self.action[idx], self.reward[idx], self.next_obs[idx],
                     self.terminated[idx], self.discount[idx],
                     torch.ones(idx.shape[0]) if weights is None else weights, idx)

    def sample(self, batch_size: int, generator: torch.Generator) -> Batch:
        return self.gather(self.sample_indices(batch_size, generator))

    def state_dict(self) -> dict:
        """The filled part of the ring (tensors) and its position."""
        state = {name: getattr(self, name)[:self.size].clone() for name in FIELDS}
        state.update(pos=self.pos, size=self.size)
        return state

    def load_state_dict(self, state: dict) -> None:
        size = int(state["size"])
        for name in FIELDS:
            getattr(self, name)[:size] = state[name]
        self.pos, self.size = int(state["pos"]), size

    def update_priorities(self, indices: Tensor, td_errors: Tensor) -> None:
        """Uniform replay has no priorities."""


class NStepFolder:
    """Folds single steps of ``num_envs`` parallel episodes into n-step transitions.

    For each environment it keeps the last ``n`` steps. Once ``n`` are held, the oldest
    becomes ``(s_t, a_t, Σ_{i<n} γ^i r_{t+i}, s_{t+n}, d, γ^n)``. When an episode ends
    (terminated or truncated) every held step is flushed with the rewards up to the end:
    ``s'`` is the final state, ``g = γ^k`` and ``d`` is 1 only if it *terminated*, so a
    truncated episode still bootstraps from its last state. ``n = 1`` is plain DQN.
    """

    def __init__(self, n: int, gamma: float, num_envs: int) -> None:
        self.n, self.gamma = n, gamma
        self.pending: list[list[tuple]] = [[] for _ in range(num_envs)]

    def push(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
             next_obs: np.ndarray, terminated: np.ndarray, truncated: np.ndarray) -> list:
        """Add one step per environment; returns the finished n-step transitions as
        ``(s, a, R, s', d, g)`` tuples."""
        out = []
        for e, queue in enumerate(self.pending):
            queue.append((obs[e], int(action[e]), float(reward[e])))
            done = bool(terminated[e] or truncated[e])
            while queue and (len(queue) >= self.n or done):
                out.append(self._fold(queue, next_obs[e], bool(terminated[e])))
                queue.pop(0)
        return out

    def _fold(self, queue: list[tuple], last_obs: np.ndarray, terminated: bool) -> tuple:
        ret, g = 0.0, 1.0
        for _, _, r in queue[:self.n]:
            ret += g * r
            g *= self.gamma
        s, a, _ = queue[0]
        return s, a, ret, last_obs, float(terminated), g

    def state_dict(self) -> dict:
        return {"pending": [[(np.asarray(s).tolist(), a, r) for s, a, r in q]
                            for q in self.pending]}

    def load_state_dict(self, state: dict, obs_dtype: np.dtype) -> None:
        self.pending = [[(np.asarray(s, dtype=obs_dtype), a, r) for s, a, r in q]
                        for q in state["pending"]]
