"""Batched episodes of the text MDP and the per-token quantities both learners need.

An episode starts from ``[bos]`` (and, for a translation model, a source sentence ``src``);
action ``a_t`` is the next token, sampled from the policy ``π(·|s_t)`` at temperature 1 (no
top-k/top-p), or from ``π_k(·|s_t)`` on the reference's top-k set ``A_k(s_t)`` when
``top_k`` is set (:mod:`.actions`); it ends when ``a_t = eos`` or after ``max_new_tokens``
actions. A batch of ``B`` episodes is held as ``tokens`` (B, 1 + T):
``tokens[:, 0] = bos`` and ``tokens[:, t + 1] = a_t``, padded after each episode's ``L_i``
actions (the ``eos``, when emitted, is the last action). The state ``s_t`` is
``tokens[:, :t + 1]``, so one causal forward pass over ``tokens`` gives ``π(·|s_t)`` for every
``t`` at once (:func:`~.actions.state_logits`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...generate import GenerationConfig
from ...generate.decode import generate_ids
from .actions import Stepper, restrict, state_logits, topk_keep


@dataclass
class Episodes:
    """``tokens`` (B, 1 + T), ``lengths`` (B,) actions per episode, ``ended`` (B,) whether
    the episode emitted ``eos``; ``texts`` the decoded completions; ``scores`` (B,) the
    sequence-level reward; ``ref_logp`` (B, T) ``log π_ref(a_t|s_t)`` (0 past the end);
    ``src`` (B, S) the right-padded source ids of a translation model (None for a GPT);
    ``keep`` (B, T, V) the action sets ``A_k(s_t)`` (None: the whole vocabulary)."""

    tokens: Tensor
    lengths: Tensor
    ended: Tensor
    texts: list[str]
    scores: Tensor
    ref_logp: Tensor
    src: Tensor | None = None
    keep: Tensor | None = None

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


@torch.no_grad()
def sample_stepwise(policy: nn.Module, ref: nn.Module, n: int, max_new_tokens: int, seed: int,
                    bos_id: int, eos_id: int, top_k: int | None = None,
                    src: Tensor | None = None) -> list[list[int]]:
    """Like :func:`sample_tokens`, one token at a time for all ``n`` rows: from ``π_k`` on
    ``A_k(s_t)`` (the reference is stepped beside the policy for its top-k) and/or given
    the sources ``src`` (n, S) of an encoder-decoder."""
    was_training = policy.training
    policy.eval()
    gen = torch.Generator().manual_seed(seed)
    pol = Stepper(policy, n, max_new_tokens, bos_id, src)
    rfs = Stepper(ref.eval(), n, max_new_tokens, bos_id, src) if top_k is not None else None
    z, z_ref = pol.start(), rfs.start() if rfs else None
    rows: list[list[int]] = [[] for _ in range(n)]
    alive = torch.ones(n, dtype=torch.bool)
    for step in range(max_new_tokens):
        logits = z if z_ref is None else restrict(z, topk_keep(z_ref, top_k))
        a = torch.multinomial(torch.softmax(logits, -1), 1, generator=gen).squeeze(1)
        for i in alive.nonzero().flatten().tolist():
            rows[i].append(int(a[i]))
        alive &= a != eos_id
        if not bool(alive.any()) or step == max_new_tokens - 1:
            break
        z = pol.advance(a)
        z_ref = rfs.advance(a) if rfs else None
    policy.train(was_training)
    return rows


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


def log_probs(model: nn.Module, tokens: Tensor, src: Tensor | None = None,
              keep: Tensor | None = None) -> Tensor:
    """(B, T, V) ``log π(·|s_t)`` for ``t = 0 .. T−1`` (the states before each action), on
    the action sets ``keep`` (B, T, V) when given (``π_k``, renormalised)."""
    return F.log_softmax(restrict(state_logits(model, tokens[:, :-1], src), keep), dim=-1)


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
            max_new_tokens: int, seed: int, top_k: int | None = None,
            src: Tensor | None = None) -> Episodes:
    """Sample ``n`` episodes from ``policy`` (on ``A_k`` with ``top_k``; from the sources
    ``src`` (n, S) of a translation model), score them with ``reward`` (texts → floats,
    the ``i``-th text against episode ``i``'s reference for BLEU) and record
    ``log π_ref`` of every action."""
    bos, eos = tokenizer.bos_id, tokenizer.eos_id
    if top_k is None and src is None:
        rows = sample_tokens(policy, n, max_new_tokens, seed, bos, eos)
    else:
        rows = sample_stepwise(policy, ref, n, max_new_tokens, seed, bos, eos, top_k, src)
    tokens, lengths, ended = pad_episodes(rows, bos, tokenizer.pad_id, eos)
    texts = decode_actions(tokenizer, rows)
    scores = torch.tensor(reward(texts), dtype=torch.float32)
    ep = Episodes(tokens, lengths, ended, texts, scores, torch.zeros(0), src)
    z_ref = state_logits(ref, tokens[:, :-1], src)
    ep.keep = topk_keep(z_ref, top_k)
    ref_logp = F.log_softmax(restrict(z_ref, ep.keep), dim=-1)
    ep.ref_logp = action_log_probs(ref_logp, tokens) * ep.mask
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
