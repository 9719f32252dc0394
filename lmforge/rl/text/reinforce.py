r"""REINFORCE with a baseline on the same KL-penalised return, the on-policy comparison.

Each round samples ``B`` episodes from ``π_θ``; episode ``i`` has the return of the
TRL/RL4LMs per-token rewards (γ = 1)

    G_i = R_i − β Σ_t (log π_θ(a_t|s_t) − log π_ref(a_t|s_t)),

and the policy-gradient step (Williams 1992) descends

    L(θ) = −(1/B) Σ_i (G_i − b) Σ_t log π_θ(a_t|s_t),

with ``G`` held constant and the baseline ``b`` an exponential moving average of the mean
return of earlier rounds (``b ← m b + (1 − m) mean_i G_i``; the first round uses its own
mean). The baseline lowers the variance without biasing the gradient because
``E[∇ log π] = 0``. With ``top_k`` the log-probabilities are those of ``π_k`` on the
reference's top-k sets ``A_k(s_t)`` (:mod:`.actions`); for a translation model they are
conditioned on the episode's source. Written by hand.
"""

from __future__ import annotations

import torch
from torch import nn

from .rollout import Episodes, action_log_probs, log_probs


class Reinforce:
    """One policy-gradient step per round of fresh episodes."""

    def __init__(self, policy: nn.Module, cfg, beta: float, lr: float, grad_clip: float):
        self.policy, self.cfg, self.beta, self.grad_clip = policy, cfg, beta, grad_clip
        self.opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
        self.baseline: float | None = None

    def round(self, ep: Episodes) -> dict:
        self.policy.eval()  # no dropout: the gradient is the sampled policy's
        mask = ep.mask
        logp_a = action_log_probs(log_probs(self.policy, ep.tokens, ep.src, ep.keep),
                                  ep.tokens) * mask
        returns = ep.scores - self.beta * ((logp_a.detach() - ep.ref_logp) * mask).sum(1)
        mean = float(returns.mean())
        b = mean if self.baseline is None else self.baseline
        loss = -((returns - b) * logp_a.sum(1)).mean()
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(self.policy.parameters(), self.grad_clip)
        self.opt.step()
        m = self.cfg.baseline_momentum
        self.baseline = mean if self.baseline is None else m * self.baseline + (1 - m) * mean
        return {"loss": loss.item(), "return": mean, "baseline": b}

    def state_dict(self) -> dict:
        """The baseline (the weights and the optimizer are saved by the runner)."""
        return {"baseline": self.baseline}

    def load_state_dict(self, state: dict) -> None:
        self.baseline = state["baseline"]
