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
  itself by default: then the penalty is 0);
* with ``top_k`` the actions at ``s`` are ``A_k(s)``, the reference's ``k`` most likely
  tokens, and ``π``, ``π_ref`` in the penalty are renormalised on it (:mod:`.actions`); an
  action outside ``A_k(s)`` is refused.

:class:`TranslationEnv` is the same MDP for a translation model: the state is the source
sentence plus the target prefix (the observation a dict of both), the episode's reference
translation is drawn with the source, and ``R`` is the sentence BLEU / 100 of the target
text against it (:func:`~.rewards.bleu_reward`).

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
from .actions import action_vocab, restrict, state_logits, topk_keep
from .rewards import Reward, bleu_reward


class TextGenerationEnv(gym.Env):
    """Token-by-token generation from ``[bos]`` scored by ``reward`` at the end."""

    metadata = {"render_modes": ["ansi"]}

    def __init__(self, ref: nn.Module, tokenizer, reward: Reward, beta: float = 0.1,
                 max_new_tokens: int = 32, policy: nn.Module | None = None,
                 top_k: int | None = None):
        limit = getattr(ref.config, "max_seq_len", None) or max_new_tokens + 1
        if max_new_tokens < 1 or max_new_tokens + 1 > limit:
            raise ConfigError(f"max_new_tokens must be in [1, {limit - 1}], got "
                              f"{max_new_tokens}")
        self.ref, self.policy = ref.eval(), (policy or ref).eval()
        self.tokenizer, self.reward, self.beta = tokenizer, reward, beta
        self.max_new_tokens, self.top_k = max_new_tokens, top_k
        vocab = action_vocab(ref)
        self.action_space = spaces.Discrete(vocab)
        self.observation_space = spaces.Box(0, vocab - 1, (1 + max_new_tokens,), np.int64)
        self.ids: list[int] = []
        self.src: torch.Tensor | None = None

    def _obs(self) -> np.ndarray:
        out = np.full(1 + self.max_new_tokens, self.tokenizer.pad_id, dtype=np.int64)
        out[:len(self.ids)] = self.ids
        return out

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.ids = [self.tokenizer.bos_id]
        return self._obs(), {"length": 1}

    @torch.no_grad()
    def _logits(self, model: nn.Module) -> torch.Tensor:
        """(V,) logits of ``π(·|s_t)`` at the current state."""
        ids = torch.tensor([self.ids])
        if self.src is None:
            return model(ids, last_only=True)[0, -1].float()
        return state_logits(model, ids, self.src)[0, -1]

    def step(self, action: int):
        if not self.ids:
            raise RuntimeError("call reset() before step()")
        action = int(action)
        z_ref = self._logits(self.ref)
        keep = topk_keep(z_ref, self.top_k)
        if keep is not None and not bool(keep[action]):
            raise ValueError(f"action {action} is not among the reference's top "
                             f"{self.top_k} tokens at this state")
        logp, ref_logp = (float(F.log_softmax(restrict(z, keep), -1)[action])
                          for z in (self._logits(self.policy), z_ref))
        penalty = logp - ref_logp
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


class TranslationEnv(TextGenerationEnv):
    """Translation as the text MDP: ``reset`` draws a ``{"src", "tgt"}`` pair (``options=
    {"index": i}`` picks pair ``i``), the actions write the target, ``R`` is its sentence
    BLEU / 100 against the pair's ``tgt`` (sacrebleu tokenizer ``tokenize``)."""

    def __init__(self, ref: nn.Module, tokenizer, pairs: list[dict], tokenize: str = "13a",
                 beta: float = 0.1, max_new_tokens: int = 32, policy: nn.Module | None = None,
                 top_k: int | None = None):
        super().__init__(ref, tokenizer, bleu_reward([""]), beta, max_new_tokens, policy,
                         top_k)  # the reward is the drawn pair's, set at every reset
        self.pairs, self.tokenize = pairs, tokenize
        self.sources = tokenizer.encode_batch([p["src"] for p in pairs])
        self.pair: dict = {}
        vocab = action_vocab(ref)
        self.observation_space = spaces.Dict({
            "source": spaces.Box(0, vocab - 1, (max(map(len, self.sources)),), np.int64),
            "prefix": self.observation_space})

    def _obs(self):
        source = np.full(self.observation_space["source"].shape, self.tokenizer.pad_id,
                         dtype=np.int64)
        source[:self.src.shape[1]] = self.src[0].numpy()
        return {"source": source, "prefix": super()._obs()}

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        gym.Env.reset(self, seed=seed)
        i = (options or {}).get("index")
        i = int(self.np_random.integers(len(self.pairs))) if i is None else int(i)
        self.pair = self.pairs[i]
        self.src = torch.tensor([self.sources[i]])
        self.reward = bleu_reward([self.pair["tgt"]], self.tokenize)
        self.ids = [self.tokenizer.bos_id]
        return self._obs(), {"length": 1, "index": i}
