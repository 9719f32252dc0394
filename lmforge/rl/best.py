"""Keeping the best policy seen by the evaluations during training (``eval.keep_best``).

DQN's greedy policy does not improve monotonically: on CartPole a network that balances for
500 steps can, a few thousand updates later, fall back to a few hundred, and which network a
run ends on depends on the seed. stable-baselines3's ``EvalCallback(best_model_save_path=…)``
and rl-zoo answer this by keeping the network of the best evaluation. This module does the
same:

* each evaluation during training offers the online network with its mean greedy return on
  the *selection* episodes (``eval.during_episodes`` from ``eval.seed``); a score at least as
  high as the best so far replaces it (ties go to the later, longer-trained network);
* at the end the last network is scored on the same selection episodes and kept if it is at
  least as good;
* the kept policy is then reported on separate episodes (``eval.final_seed``), so the choice
  is not judged on the starts it was made on.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class BestPolicy:
    """The weights, step and selection score of the best evaluated network so far."""

    def __init__(self) -> None:
        self.step: int | None = None
        self.score: float | None = None
        self.weights: dict[str, torch.Tensor] | None = None

    def offer(self, step: int, score: float, q: nn.Module) -> bool:
        """Keep ``q`` if ``score`` is at least the best so far; True when it was kept."""
        if self.score is not None and score < self.score:
            return False
        self.step, self.score = step, float(score)
        self.weights = {k: v.detach().clone() for k, v in q.state_dict().items()}
        return True

    def network(self, like: nn.Module) -> nn.Module:
        """A copy of ``like`` holding the kept weights."""
        if self.weights is None:
            raise ValueError("no network has been offered")
        q = copy.deepcopy(like)
        q.load_state_dict(self.weights)
        return q.eval()

    def state_dict(self) -> dict:
        return {"step": self.step, "score": self.score, "weights": self.weights}

    def load_state_dict(self, state: dict | None) -> None:
        """Restore :meth:`state_dict` (None, from a checkpoint written before keep_best
        existed: nothing kept yet)."""
        state = state or {}
        self.step, self.score = state.get("step"), state.get("score")
        self.weights = state.get("weights")
