r"""Soft (KL-regularised) Double DQN for text generation, written by hand.

**Objective.** With a sequence score ``R`` and the reference LM ``π_ref``, maximise
``E_π[R] − β KL(π ‖ π_ref)``, the return of the TRL/RL4LMs per-token reward
``r_t = −β log(π/π_ref)(a_t|s_t) + R·[t = L−1]``. Its optimum is the soft-optimal policy
``π*(a|s) ∝ π_ref(a|s) exp(Q*(s,a)/β)``, where ``Q*`` solves the KL-regularised Bellman
equation (no KL in ``r``: it sits in the soft value)

    Q*(s,a) = R·[end] + γ V*(s'),    V*(s) = β log Σ_a π_ref(a|s) exp(Q*(s,a)/β).

**Parametrisation: the Q-values are the logits.** The Q-network is a GPT copy ``φ`` (raw
logits ``z_φ``), read against the reference's logits ``z_ref``:

    Q_φ(s,a) = β (z_φ(s,a) − z_ref(s,a)).

Then ``V_φ(s) = β log Σ_a π_ref exp(Q_φ/β) = β (LSE z_φ(s) − LSE z_ref(s))`` and
``π_ref exp(Q_φ/β) ∝ softmax(z_φ) = π_φ``: the GPT's own softmax *is* the soft-greedy policy,
so the trained GPT is saved as an ordinary LM whose temperature-1 samples are the learned
policy, and ``Q = V + β (log π_φ − log π_ref)``. At the start ``φ = ref``: ``Q = 0``, the
policy is the LM (KL 0). The level of the logits, which softmax ignores, is what carries
the value ``V``: the Bellman targets pin it, so no separate value head is needed and the
value gets the whole network's capacity (Guo et al. 2021 use the logits as Q the same way).

**Double soft target.** The online network chooses the next-action distribution
``π_on ∝ π_ref exp(Q_on/β)``, the target network values it:

    V̂(s') = Σ_a' π_on(a'|s') [Q_tg(s',a') − β log(π_on(a'|s')/π_ref(a'|s'))]
          = V_tg(s') − β KL(π_on(·|s') ‖ π_tg(·|s')),

(:func:`soft_double_target`; the closed form for this parametrisation is
:func:`dueling_soft_value`). As ``β → 0`` it is van Hasselt's ``Q_tg(s', argmax Q_on)``.

**n-step (path-consistency) target.** For the soft optimum, ``V*(s_k) = r_k − β log(π*/π_ref)
(a_k|s_k) + γ V*(s_{k+1})`` holds for *any* action (Nachum et al. 2017), so replayed
(off-policy) sequences give the n-step target

    y_t = r_t + Σ_{j=1}^{n−1} γ^j (r_{t+j} − β ℓ_tg(t+j)) + γ^n V̂(s_{t+n})·[t+n < L],

``ℓ_tg(k) = log π_tg(a_k|s_k) − log π_ref(a_k|s_k)``, with ``r_k = R`` at the last action and
0 before; the episode's end (``eos`` or the length limit) is terminal. The loss is the Huber
loss between ``Q_φ(s_t, a_t)`` and ``y_t`` over every action of the replayed episodes (one
causal forward pass per batch gives all ``t``). The target network ``(φ', V')`` is a hard
copy every ``C`` updates or a Polyak average (:mod:`lmforge.rl.targets`), never synced at
every update: that would make ``y`` move with the very parameters being fitted.

**Top-k actions and translation.** With ``top_k`` every sum over actions above runs over
``A_k(s)``, the reference's ``k`` most likely tokens, with ``π_ref`` renormalised on it:
``Q_φ = β (z_φ − z_ref)`` on ``A_k(s)``, ``V_φ(s) = β (LSE_{A_k(s)} z_φ − LSE_{A_k(s)} z_ref)``
and ``π_φ,k = softmax`` of ``z_φ`` on ``A_k(s)`` (:mod:`.actions`): the same algebra on a
smaller action set, so the optimum is ``π*_k ∝ π_ref,k exp(Q*/β)`` on ``A_k``. For a
translation model the state also holds the source sentence: the replayed episodes keep it
and every forward pass reads it (:func:`~.actions.state_logits`); nothing else changes.
**Reward offset.** With ``γ = 1`` every episode gets its score ``R`` exactly once, so
training on ``R − c`` shifts ``Q*`` and ``V*`` by ``−c`` everywhere and leaves ``π*``
unchanged. It matters for this parametrisation: ``V_φ(s) = β (LSE z_φ − LSE z_ref)`` is 0 at
``φ = ref`` and must be carried by the level of the logits, a shift of ``V*/β`` nats (up to
20 for a BLEU reward in [0, 1] at ``β = 0.05``); with ``c`` near the reference's mean score
(``dqn.reward_offset``) the values to fit stay near 0.

The networks run in eval mode (no dropout): ``Q = 0`` at ``φ = ref`` and the equality of
``softmax(z_φ)`` with the sampled policy hold only for the deterministic forward pass (the
translation Transformer is trained with dropout 0.1; the quickstart GPT has none).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..targets import polyak_update
from .actions import restrict, state_logits, topk_keep
from .rollout import Episodes, action_log_probs, pad_episodes


def soft_double_target(reward: Tensor, discount: Tensor | float, terminated: Tensor,
                       next_q_target: Tensor, next_q_online: Tensor, next_ref_logp: Tensor,
                       beta: float) -> Tensor:
    """``R + g (1 − d) Σ_a' π_on (Q_tg − β log(π_on/π_ref))`` with
    ``π_on ∝ π_ref exp(Q_on/β)``; the Q tensors and ``log π_ref`` are ``(B, A)``."""
    log_on = F.log_softmax(next_ref_logp + next_q_online / beta, dim=-1)
    value = (log_on.exp() * (next_q_target - beta * (log_on - next_ref_logp))).sum(-1)
    return reward + discount * (1.0 - terminated) * value


def dueling_soft_value(v_target: Tensor, logp_online: Tensor, logp_target: Tensor,
                       beta: float) -> Tensor:
    """``V_tg(s) − β KL(π_on(·|s) ‖ π_tg(·|s))``: the double soft value of
    :func:`soft_double_target` when ``Q = V + β (log π − log π_ref)``."""
    kl = (logp_online.exp() * (logp_online - logp_target)).sum(-1)
    return v_target - beta * kl


class SoftQNetwork(nn.Module):
    """A GPT (or translation model) whose logits are soft Q-values: ``Q = β (z − z_ref)``,
    ``V = β (LSE z − LSE z_ref)``."""

    def __init__(self, gpt: nn.Module, beta: float):
        super().__init__()
        self.gpt, self.beta = gpt, beta

    def forward(self, tokens: Tensor, ref_lse: Tensor, keep: Tensor | None = None,
                src: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``log π(·|s_t)`` (B, 1 + T, V) and ``V(s_t)`` (B, 1 + T) for every prefix, given
        the reference's ``LSE z_ref(s_t)`` (B, 1 + T), on the action sets ``keep``
        (B, 1 + T, V) when given, from the sources ``src`` of a translation model."""
        z = restrict(state_logits(self.gpt, tokens, src), keep)
        lse = torch.logsumexp(z, dim=-1)
        return z - lse.unsqueeze(-1), self.beta * (lse - ref_lse)


class SequenceReplay:
    """A ring buffer of whole episodes (actions, score, ``log π_ref`` of the actions, and
    the source ids of a translation episode), sampled uniformly with its own generator."""

    def __init__(self, capacity: int, seed: int):
        self.capacity = capacity
        self.items: list[dict] = []
        self.pos = 0
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.items)

    def add(self, ep: Episodes, pad_id: int) -> None:
        for i in range(len(ep.texts)):
            n = int(ep.lengths[i])
            item = {"actions": ep.tokens[i, 1:1 + n].clone(), "score": ep.scores[i].clone(),
                    "ref_logp": ep.ref_logp[i, :n].clone()}
            if ep.src is not None:
                item["src"] = ep.src[i][ep.src[i] != pad_id].clone()
            if len(self.items) < self.capacity:
                self.items.append(item)
            else:
                self.items[self.pos] = item
            self.pos = (self.pos + 1) % self.capacity

    def sample(self, batch_size: int, bos_id: int, pad_id: int, eos_id: int
               ) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor | None]:
        """``(tokens (B, 1+T), lengths (B,), scores (B,), ref_logp (B, T), src (B, S))``;
        ``src`` is None for episodes without a source."""
        idx = torch.randint(len(self.items), (batch_size,), generator=self.gen).tolist()
        rows = [self.items[i]["actions"].tolist() for i in idx]
        tokens, lengths, _ = pad_episodes(rows, bos_id, pad_id, eos_id)
        ref = torch.zeros(batch_size, tokens.shape[1] - 1)
        for b, i in enumerate(idx):
            ref[b, :len(rows[b])] = self.items[i]["ref_logp"]
        scores = torch.stack([self.items[i]["score"] for i in idx])
        src = None
        if "src" in self.items[idx[0]]:
            rows_src = [self.items[i]["src"] for i in idx]
            src = torch.full((batch_size, max(len(r) for r in rows_src)), pad_id,
                             dtype=torch.long)
            for b, r in enumerate(rows_src):
                src[b, :len(r)] = r
        return tokens, lengths, scores, ref, src

    def state_dict(self) -> dict:
        return {"items": self.items, "pos": self.pos, "gen": self.gen.get_state()}

    def load_state_dict(self, state: dict) -> None:
        self.items, self.pos = list(state["items"]), int(state["pos"])
        self.gen.set_state(state["gen"])


def nstep_targets(scores: Tensor, lengths: Tensor, ell_target: Tensor, v_boot: Tensor,
                  beta: float, gamma: float, n: int) -> Tensor:
    """(B, T) ``y_t`` of the module docstring; ``ell_target`` (B, T) and ``v_boot`` (B, 1+T)
    are ``ℓ_tg(k)`` and ``V̂(s_k)``."""
    B, T = ell_target.shape
    steps = torch.arange(T).unsqueeze(0)
    mask = (steps < lengths.unsqueeze(1)).float()
    r = torch.zeros(B, T)
    r[torch.arange(B), lengths - 1] = scores
    y = r.clone()
    later = (r - beta * ell_target) * mask
    for j in range(1, min(n, T)):
        y[:, :T - j] += gamma ** j * later[:, j:]
    if n < T:
        boot = (steps[:, :T - n] + n < lengths.unsqueeze(1)).float()
        y[:, :T - n] += gamma ** n * v_boot[:, n:T] * boot
    return y


class SoftDQN:
    """Replay, a target network and Double soft targets around a :class:`SoftQNetwork`."""

    def __init__(self, policy: nn.Module, ref: nn.Module, tokenizer, cfg, beta: float,
                 lr: float, grad_clip: float, seed: int, top_k: int | None = None):
        self.q = SoftQNetwork(policy, beta)
        self.top_k = top_k
        self.target = copy.deepcopy(self.q).requires_grad_(False).eval()
        self.policy, self.ref, self.tok, self.cfg = policy, ref, tokenizer, cfg
        self.beta, self.grad_clip = beta, grad_clip
        self.opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
        self.replay = SequenceReplay(cfg.buffer_episodes, seed)
        self.updates = 0

    def loss(self, tokens: Tensor, lengths: Tensor, scores: Tensor, ref_logp: Tensor,
             src: Tensor | None = None) -> Tensor:
        """Huber loss of ``Q_φ(s_t, a_t)`` against the n-step double soft target."""
        T = tokens.shape[1] - 1
        mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).float()
        with torch.no_grad():
            z_ref = state_logits(self.ref, tokens, src)
            keep = topk_keep(z_ref, self.top_k)
            ref_lse = torch.logsumexp(restrict(z_ref, keep), dim=-1)
        logp_on, v_on = self.q(tokens, ref_lse, keep, src)
        q_sa = v_on[:, :T] + self.beta * (action_log_probs(logp_on[:, :T], tokens) - ref_logp)
        with torch.no_grad():
            logp_tg, v_tg = self.target(tokens, ref_lse, keep, src)
            ell = (action_log_probs(logp_tg[:, :T], tokens) - ref_logp) * mask
            v_boot = dueling_soft_value(v_tg, logp_on.detach(), logp_tg, self.beta) \
                if self.cfg.double else v_tg
            y = nstep_targets(scores - self.cfg.reward_offset, lengths, ell, v_boot,
                              self.beta, self.cfg.gamma, self.cfg.n_step)
        err = F.huber_loss(q_sa, y, reduction="none", delta=self.cfg.huber_delta)
        return (err * mask).sum() / mask.sum()

    def round(self, ep: Episodes) -> dict:
        """Store the new episodes, then ``updates_per_round`` gradient steps."""
        self.replay.add(ep, self.tok.pad_id)
        if len(self.replay) < self.cfg.learning_starts:
            return {}
        self.q.eval()  # no dropout: Q = 0 at φ = ref, and Q is the sampled policy's
        losses = []
        for _ in range(self.cfg.updates_per_round):
            batch = self.replay.sample(self.cfg.batch_size, self.tok.bos_id, self.tok.pad_id,
                                       self.tok.eos_id)
            loss = self.loss(*batch)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(self.q.parameters(), self.grad_clip)
            self.opt.step()
            self.updates += 1
            if self.updates % self.cfg.target_update_every == 0:
                polyak_update(self.target, self.q, self.cfg.tau)
            losses.append(loss.item())
        return {"loss": sum(losses) / len(losses), "updates": self.updates}

    def state_dict(self) -> dict:
        """Everything but the policy weights and the optimizer (saved by the runner)."""
        return {"target": self.target.state_dict(), "replay": self.replay.state_dict(),
                "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.target.load_state_dict(state["target"])
        self.replay.load_state_dict(state["replay"])
        self.updates = int(state["updates"])
