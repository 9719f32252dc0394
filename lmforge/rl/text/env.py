"""The text-generation MDP as a gymnasium environment (one token per step).

* state ``s_t``: ``[bos]`` plus the ``t`` tokens generated so far; the observation is the
  ids padded with ``pad`` to ``1 + max_new_tokens`` (``info["length"]`` = ``1 + t``);
* action: the next token, ``spaces.Discrete(vocab)``;
* the episode ends (``terminated``) at ``eos`` or after ``max_new_tokens`` actions. The
  length limit is part of the task (the position is in the state), so it is a true end,
  not a time-limit truncation, and its text is scored like any other;
* reward (TRL, RL4LMs): ``r_t = −β (log π(a_t|s_t) − log π_ref(a_t|s_t))`` plus the
  sequence score ``R(text)`` at the last step, so ``Σ_t r_t`` has expectation
  ``E[R] − β KL(π ‖ π_ref)`` over episodes. ``π`` is :attr:`policy` (the reference
  itself by default: then the penalty is 0).

The learners do not step this class token by token (they sample whole batches with a KV
cache, :mod:`lmforge.rl.text.rollout`); it is the reference definition, and the tests
check that the batched rewards equal its per-step rewards.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from ...errors import ConfigError
from .rewards import Reward


class TextGenerationEnv(gym.Env):
    """Token-by-token generation from ``[bos]`` scored by ``reward`` at the end."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, ref: nn.Module, tokenizer, reward: Reward, beta: float = 0.1,
                 max_new_tokens: int = 32, policy: nn.Module | None = None):
        if max_new_tokens < 1 or max_new_tokens + 1 > ref.config.max_seq_len:
            raise ConfigError(f"max_new_tokens must be in [1, {ref.config.max_seq_len - 1}]"
                              f", got {max_new_tokens}")
        self.ref, self.policy = ref.eval(), (policy or ref)
        self.tokenizer, self.reward, self.beta = tokenizer, reward, beta
        self.max_new_tokens = max_new_tokens
        vocab = ref.config.vocab_size
        self.action_space = spaces.Discrete(vocab)
        self.observation_space = spaces.Box(0, vocab - 1, (1 + max_new_tokens,), np.int64)
        self.ids: list[int] = []

    def _obs(self) -> np.ndarray:
        out = np.full(1 + self.max_new_tokens, self.tokenizer.pad_id, dtype=np.int64)
        out[:len(self.ids)] = self.ids
        return out

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.ids = [self.tokenizer.bos_id]
        return self._obs(), {"length": 1}

    @torch.no_grad()
    def _logp(self, model: nn.Module, action: int) -> float:
        logits = model(torch.tensor([self.ids]), last_only=True)[0, -1].float()
        return float(F.log_softmax(logits, -1)[action])

    def step(self, action: int):
        if not self.ids:
            raise RuntimeError("call reset() before step()")
        action = int(action)
        penalty = self._logp(self.policy, action) - self._logp(self.ref, action)
        self.ids.append(action)
        n_actions = len(self.ids) - 1
        done = action == self.tokenizer.eos_id or n_actions >= self.max_new_tokens
        reward = -self.beta * penalty
        info: dict = {"length": len(self.ids), "kl_penalty": penalty}
        if done:
            text = self.text()
            info["score"] = self.reward([text])[0]
            info["text"] = text
            reward += info["score"]
        return self._obs(), reward, done, False, info

    def text(self) -> str:
        return self.tokenizer.decode(self.ids[1:], skip_special_tokens=True).strip()

    def render(self) -> str:
        return self.text()
