"""The DQN learner (Mnih et al. 2015) with its standard improvements, written by hand.

One update on a replayed batch ``(s, a, R, s', d, g)`` minimises

    L(θ) = mean_i w_i · ℓ(Q_θ(s_i, a_i) − y_i)

with ``y`` from :mod:`lmforge.rl.targets` (plain or Double DQN, n-step via ``R`` and ``g``),
``ℓ`` the Huber loss (``½x²`` for ``|x| ≤ 1``, ``|x| − ½`` beyond: the gradient of a large TD
error is clipped to ±1) or the squared error, ``w`` the importance weights of prioritized
replay (1 for uniform), then the gradient norm is clipped and Adam steps.

Acting is ε-greedy: with probability ε a uniform action, else ``argmax_a Q_θ(s, a)``; ε falls
linearly from ``exploration_initial_eps`` to ``exploration_final_eps`` over the first
``exploration_fraction`` of the run and stays there. Before ``learning_starts`` transitions
every action is uniform.

The target network ``θ'`` is fixed during a training round (it only moves between rounds,
every ``target_update_interval`` transitions), so the round's ``Q_θ'(s', ·)`` for all its
batches are computed in one forward pass; with uniform replay all indices are drawn at once
too. That gives the same updates as drawing and evaluating batch by batch, with one large
matrix product instead of ``gradient_steps`` small ones.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .networks import QNetwork, QNetworkConfig
from .prioritized import PrioritizedReplayBuffer
from .recipe import DQNConfig
from .replay import Batch, NStepFolder, ReplayBuffer
from .targets import bellman_target, double_dqn_target, polyak_update


def linear_epsilon(t: int, total: int, start: float, end: float, fraction: float) -> float:
    """ε at transition ``t``: linear from ``start`` to ``end`` over ``fraction · total``."""
    span = fraction * total
    if span <= 0:
        return end
    return start + (end - start) * min(1.0, t / span)


class DQN:
    """Online and target Q-networks, replay, optimiser and RNGs of one run."""

    def __init__(self, cfg: DQNConfig, net: QNetworkConfig, num_envs: int, seed: int) -> None:
        self.cfg = cfg
        torch.manual_seed(seed)
        self.q = QNetwork(net)
        self.q_target = copy.deepcopy(self.q)
        self.q_target.requires_grad_(False)
        # fused: one kernel per parameter for the whole Adam update (CPU and CUDA)
        self.opt = torch.optim.Adam(self.q.parameters(), lr=cfg.lr, fused=True)
        if cfg.prioritized:
            self.replay: ReplayBuffer = PrioritizedReplayBuffer(
                cfg.buffer_size, (net.obs_dim,), cfg.per_alpha, cfg.per_beta, cfg.per_eps)
        else:
            self.replay = ReplayBuffer(cfg.buffer_size, (net.obs_dim,))
        self.folder = NStepFolder(cfg.n_step, cfg.gamma, num_envs)
        self.sample_rng = torch.Generator().manual_seed(seed + 1)
        self.explore_rng = np.random.default_rng(seed + 2)
        self.n_actions = net.n_actions
        self.updates = 0

    # ------------------------------------------------------------------ acting

    def epsilon(self, t: int) -> float:
        c = self.cfg
        return linear_epsilon(t, c.total_steps, c.exploration_initial_eps,
                              c.exploration_final_eps, c.exploration_fraction)

    def act(self, obs: np.ndarray, t: int) -> np.ndarray:
        """ε-greedy actions for a ``(n, obs_dim)`` batch of states at transition ``t``."""
        n = obs.shape[0]
        if t < self.cfg.learning_starts:
            return self.explore_rng.integers(self.n_actions, size=n)
        explore = self.explore_rng.random(n) < self.epsilon(t)
        actions = self.explore_rng.integers(self.n_actions, size=n)
        if not explore.all():
            greedy = self.q.act(torch.from_numpy(obs)).numpy()
            actions = np.where(explore, actions, greedy)
        return actions

    def observe(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        """Store one step of every environment (folded into n-step transitions)."""
        done = self.folder.push(obs, action, reward, next_obs, terminated, truncated)
        if done:
            s, a, r, s2, d, g = zip(*done, strict=True)
            self.replay.add(torch.from_numpy(np.stack(s)), torch.tensor(a),
                            torch.tensor(r), torch.from_numpy(np.stack(s2)),
                            torch.tensor(d), torch.tensor(g))

    # ------------------------------------------------------------------ learning

    def loss(self, q_sa: Tensor, target: Tensor, weights: Tensor) -> Tensor:
        if self.cfg.loss == "huber":
            per = F.smooth_l1_loss(q_sa, target, reduction="none")
        else:
            per = F.mse_loss(q_sa, target, reduction="none")
        return (weights * per).mean()

    def _step(self, batch: Batch, next_q_target: Tensor) -> tuple[float, float]:
        c = self.cfg
        if c.double:
            both = self.q(torch.cat([batch.obs, batch.next_obs]))
            q_all, next_q_online = both[:len(batch.obs)], both[len(batch.obs):].detach()
            target = double_dqn_target(batch.reward, batch.discount, batch.terminated,
                                       next_q_target, next_q_online)
        else:
            q_all = self.q(batch.obs)
            target = bellman_target(batch.reward, batch.discount, batch.terminated,
                                    next_q_target)
        q_sa = q_all.gather(1, batch.action.unsqueeze(1)).squeeze(1)
        loss = self.loss(q_sa, target, batch.weights)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if c.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.q.parameters(), c.max_grad_norm)
        self.opt.step()
        self.replay.update_priorities(batch.indices, (q_sa - target).detach())
        self.updates += 1
        return float(loss.detach()), float(q_sa.detach().mean())

    def train_round(self, n_updates: int, progress: float) -> dict:
        """``n_updates`` gradient steps; ``progress`` in [0, 1] anneals PER's β to 1."""
        c, replay = self.cfg, self.replay
        if isinstance(replay, PrioritizedReplayBuffer):
            replay.beta = c.per_beta + (1.0 - c.per_beta) * progress
        losses, qs = [], []
        if isinstance(replay, PrioritizedReplayBuffer):
            for _ in range(n_updates):
                batch = replay.sample(c.batch_size, self.sample_rng)
                with torch.no_grad():
                    next_q = self.q_target(batch.next_obs)
                loss, q = self._step(batch, next_q)
                losses.append(loss)
                qs.append(q)
        else:
            rows = replay.gather(replay.sample_indices(n_updates * c.batch_size,
                                                       self.sample_rng))
            with torch.no_grad():
                next_q_all = self.q_target(rows.next_obs)
            for k in range(n_updates):
                part = slice(k * c.batch_size, (k + 1) * c.batch_size)
                batch = Batch(*(getattr(rows, f)[part] for f in Batch.__dataclass_fields__))
                loss, q = self._step(batch, next_q_all[part])
                losses.append(loss)
                qs.append(q)
        return {"loss": float(np.mean(losses)), "q_mean": float(np.mean(qs))}

    def update_target(self) -> None:
        polyak_update(self.q_target, self.q, self.cfg.tau)

    # ------------------------------------------------------------------ state

    def state_dict(self) -> dict:
        return {"q": self.q.state_dict(), "q_target": self.q_target.state_dict(),
                "opt": self.opt.state_dict(), "replay": self.replay.state_dict(),
                "folder": self.folder.state_dict(),
                "sample_rng": self.sample_rng.get_state(),
                "explore_rng": copy.deepcopy(self.explore_rng.bit_generator.state),
                "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.q.load_state_dict(state["q"])
        self.q_target.load_state_dict(state["q_target"])
        self.opt.load_state_dict(state["opt"])
        self.replay.load_state_dict(state["replay"])
        self.folder.load_state_dict(state["folder"], np.float32)
        self.sample_rng.set_state(state["sample_rng"])
        self.explore_rng.bit_generator.state = state["explore_rng"]
        self.updates = int(state["updates"])
