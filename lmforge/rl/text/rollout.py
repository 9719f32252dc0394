"""Batched episodes of the text MDP and the per-token quantities both learners need.

An episode starts from ``[bos]``; action ``a_t`` is the next token, sampled from the policy
``π(·|s_t)`` at temperature 1 (no top-k/top-p); it ends when ``a_t = eos`` or after
``max_new_tokens`` actions. A batch of ``B`` episodes is held as ``tokens`` (B, 1 + T):
``tokens[:, 0] = bos`` and ``tokens[:, t + 1] = a_t``, padded after each episode's ``L_i``
actions (the ``eos``, when emitted, is the last action). The state ``s_t`` is
``tokens[:, :t + 1]``, so one causal forward pass over ``tokens`` gives ``π(·|s_t)`` for every
``t`` at once.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...generate import GenerationConfig
from ...generate.decode import generate_ids


@dataclass
class Episodes:
    """``tokens`` (B, 1 + T), ``lengths`` (B,) actions per episode, ``ended`` (B,) whether
    the episode emitted ``eos``; ``texts`` the decoded completions; ``scores`` (B,) the
    sequence-level reward; ``ref_logp`` (B, T) ``log π_ref(a_t|s_t)`` (0 past the end)."""

    tokens: Tensor
    lengths: Tensor
    ended: Tensor
    texts: list[str]
    scores: Tensor
    ref_logp: Tensor

    @property
    def mask(self) -> Tensor:
        """(B, T) 1.0 on real actions."""
        T = self.tokens.shape[1] - 1
        return (torch.arange(T).unsqueeze(0) < self.lengths.unsqueeze(1)).float()


def sample_tokens(policy: nn.Module, n: int, max_new_tokens: int, seed: int, bos_id: int,
                  eos_id: int) -> list[list[int]]:
    """``n`` action sequences ``a_0 .. a_{L−1}`` from ``[bos]`` (``eos`` kept when emitted)."""
    cfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=1.0, seed=seed,
                           batch_size=n)
    was_training = policy.training
    policy.eval()
    rows = generate_ids(policy, [[bos_id]] * n, cfg, eos_id=eos_id)
    policy.train(was_training)
    return [r + [eos_id] if len(r) < max_new_tokens else r for r in rows]


def pad_episodes(rows: list[list[int]], bos_id: int, pad_id: int, eos_id: int
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """``(tokens, lengths, ended)`` from action lists."""
    T = max(len(r) for r in rows)
    tokens = torch.full((len(rows), 1 + T), pad_id, dtype=torch.long)
    tokens[:, 0] = bos_id
    for i, r in enumerate(rows):
        tokens[i, 1:1 + len(r)] = torch.tensor(r, dtype=torch.long)
    lengths = torch.tensor([len(r) for r in rows])
    ended = torch.tensor([bool(r) and r[-1] == eos_id for r in rows])
    return tokens, lengths, ended


def log_probs(model: nn.Module, tokens: Tensor) -> Tensor:
    """(B, T, V) ``log π(·|s_t)`` for ``t = 0 .. T−1`` (the states before each action)."""
    return F.log_softmax(model(tokens[:, :-1]).float(), dim=-1)


def action_log_probs(logp: Tensor, tokens: Tensor) -> Tensor:
    """(B, T) ``log π(a_t|s_t)`` from (B, T, V) log-probs."""
    return logp.gather(-1, tokens[:, 1:].unsqueeze(-1)).squeeze(-1)


def step_kl(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """(B, T) exact ``KL(π(·|s_t) ‖ π_ref(·|s_t)) = Σ_a π (log π − log π_ref)``."""
    return (logp.exp() * (logp - ref_logp)).sum(-1)


def decode_actions(tokenizer, rows: list[list[int]]) -> list[str]:
    """The completion text of each episode (special tokens dropped, stripped)."""
    return [tokenizer.decode(r, skip_special_tokens=True).strip() for r in rows]


@torch.no_grad()
def collect(policy: nn.Module, ref: nn.Module, tokenizer, reward, n: int,
            max_new_tokens: int, seed: int) -> Episodes:
    """Sample ``n`` episodes from ``policy``, score them with ``reward`` (texts → floats) and
    record ``log π_ref`` of every action."""
    rows = sample_tokens(policy, n, max_new_tokens, seed, tokenizer.bos_id, tokenizer.eos_id)
    tokens, lengths, ended = pad_episodes(rows, tokenizer.bos_id, tokenizer.pad_id,
                                          tokenizer.eos_id)
    texts = decode_actions(tokenizer, rows)
    scores = torch.tensor(reward(texts), dtype=torch.float32)
    ep = Episodes(tokens, lengths, ended, texts, scores, torch.zeros(0))
    ep.ref_logp = action_log_probs(log_probs(ref, tokens), tokens) * ep.mask
    return ep


def token_rewards(scores: Tensor, lengths: Tensor, logp_a: Tensor, ref_logp_a: Tensor,
                  beta: float) -> Tensor:
    """(B, T) TRL/RL4LMs per-token rewards ``r_t = −β (log π(a_t|s_t) − log π_ref(a_t|s_t))``
    plus the sequence score at the last action ``t = L − 1`` (0 past the end)."""
    B, T = logp_a.shape
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).float()
    r = -beta * (logp_a - ref_logp_a) * mask
    r[torch.arange(B), lengths - 1] += scores
    return r
