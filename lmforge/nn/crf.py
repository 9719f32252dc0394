r"""A linear-chain conditional random field (CRF) layer for sequence labelling.

Written by hand because it is what lmforge teaches (the CRF on top of a BiLSTM/BERT
tagger). Everything is computed in log space and vectorised over the batch; the only
Python loop runs over time steps.

Notation: a sequence of length :math:`n` with emission scores
:math:`E \in \mathbb{R}^{n \times K}` (one row per time step, one column per tag, usually
the tagger's logits), a transition matrix :math:`T \in \mathbb{R}^{K \times K}`
(:math:`T_{ij}` scores tag :math:`i` followed by tag :math:`j`), start scores
:math:`s \in \mathbb{R}^K` and end scores :math:`e \in \mathbb{R}^K`.

Score of a tag sequence :math:`y = (y_1, \dots, y_n)`::

    score(y) = s[y_1] + sum_{t=1..n} E[t, y_t] + sum_{t=2..n} T[y_{t-1}, y_t] + e[y_n]

The CRF defines :math:`p(y \mid E) = \exp(score(y)) / Z` with the partition function
:math:`Z = \sum_{y'} \exp(score(y'))` over all :math:`K^n` sequences. It is computed in
:math:`O(n K^2)` by the forward algorithm::

    alpha_1(j) = s[j] + E[1, j]
    alpha_t(j) = logsumexp_i( alpha_{t-1}(i) + T[i, j] ) + E[t, j]       t = 2..n
    log Z      = logsumexp_j( alpha_n(j) + e[j] )

The training loss is the negative log-likelihood ``nll(y) = log Z - score(y) >= 0``.

Viterbi decoding replaces logsumexp by max and keeps back-pointers::

    delta_1(j) = s[j] + E[1, j]
    delta_t(j) = max_i( delta_{t-1}(i) + T[i, j] ) + E[t, j],   bp_t(j) = argmax_i(...)
    y_n = argmax_j( delta_n(j) + e[j] ),   y_{t-1} = bp_t(y_t)

Marginals come from forward-backward::

    beta_n(i) = e[i]
    beta_t(i) = logsumexp_j( T[i, j] + E[t+1, j] + beta_{t+1}(j) )       t = n-1..1
    p(y_t = j | E) = exp( alpha_t(j) + beta_t(j) - log Z )

Batches use right padding: ``mask[b, t]`` is True for the first ``len_b`` steps of
sequence ``b`` and False after. Every sequence must have at least one step
(``mask[:, 0]`` all True). At padded steps the recursions simply carry the previous value
forward, so a padded sequence gets exactly the score it would get on its own.

The module call ``crf(emissions, tags, mask)`` is the NLL of each sequence, (B,); the
math itself is :func:`crf_nll`, a function of the three parameters, so that
``torch.func`` can take one sequence's gradient (DP-SGD, :mod:`lmforge.privacy.dp`).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["CRF", "crf_nll", "viterbi"]


class CRF(nn.Module):
    """Linear-chain CRF over ``num_tags`` tags.

    Parameters: ``transitions`` (K, K) with ``transitions[i, j]`` the score of tag ``i``
    followed by tag ``j``; ``start_transitions`` (K,); ``end_transitions`` (K,).

    With ``batch_first=True`` (default) emissions are (B, L, K) and tags/mask (B, L);
    otherwise (L, B, K) and (L, B). ``mask`` may be omitted (all steps valid).
    """

    def __init__(self, num_tags: int, batch_first: bool = True) -> None:
        super().__init__()
        if not isinstance(num_tags, int) or num_tags < 1:
            raise ValueError(f"num_tags must be a positive integer, got {num_tags!r}")
        self.num_tags = num_tags
        self.batch_first = batch_first
        self.start_transitions = nn.Parameter(torch.empty(num_tags))
        self.end_transitions = nn.Parameter(torch.empty(num_tags))
        self.transitions = nn.Parameter(torch.empty(num_tags, num_tags))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        for p in (self.start_transitions, self.end_transitions, self.transitions):
            nn.init.uniform_(p, -0.1, 0.1)

    def extra_repr(self) -> str:
        return f"num_tags={self.num_tags}, batch_first={self.batch_first}"

    # ------------------------------------------------------------------ input checks
    def _prepare(
        self, emissions: torch.Tensor, tags: torch.Tensor | None, mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """Validate and return batch-first (B, L, K) emissions, (B, L) tags and bool mask."""
        if emissions.dim() != 3:
            raise ValueError(
                f"emissions must have 3 dimensions ({'B, L, K' if self.batch_first else 'L, B, K'}),"
                f" got shape {tuple(emissions.shape)}")
        if emissions.size(2) != self.num_tags:
            raise ValueError(f"emissions last dimension must be num_tags={self.num_tags}, "
                             f"got {emissions.size(2)}")
        if not self.batch_first:
            emissions = emissions.transpose(0, 1)
            tags = tags.transpose(0, 1) if tags is not None else None
            mask = mask.transpose(0, 1) if mask is not None else None
        B, L, _ = emissions.shape
        if L == 0:
            raise ValueError("emissions have zero time steps; every sequence needs at least one")
        if mask is None:
            mask = torch.ones(B, L, dtype=torch.bool, device=emissions.device)
        else:
            if mask.shape != (B, L):
                raise ValueError(f"mask must have shape {(B, L)} (batch-first), "
                                 f"got {tuple(mask.shape)}")
            mask = mask.to(device=emissions.device, dtype=torch.bool)
            if not bool(mask[:, 0].all()):
                raise ValueError("mask[:, 0] must be True for every sequence: the first time "
                                 "step cannot be masked (empty sequences are not allowed)")
            if L > 1 and bool((mask[:, 1:] & ~mask[:, :-1]).any()):
                raise ValueError("mask must be right-padded: once False along time it must "
                                 "stay False")
        if tags is not None:
            if tags.shape != (B, L):
                raise ValueError(f"tags must have shape {(B, L)} (batch-first), "
                                 f"got {tuple(tags.shape)}")
            tags = tags.to(emissions.device).long()
            # padded positions may hold anything (e.g. -100); only valid ones are checked
            valid = tags[mask]
            if valid.numel() and (int(valid.min()) < 0 or int(valid.max()) >= self.num_tags):
                raise ValueError(f"tags must lie in [0, {self.num_tags}) at unmasked positions")
            tags = tags.masked_fill(~mask, 0)
        return emissions, tags, mask

    # ------------------------------------------------------------------ scoring
    def score(self, emissions: torch.Tensor, tags: torch.Tensor,
              mask: torch.Tensor | None = None) -> torch.Tensor:
        """Unnormalised log score of ``tags`` for each sequence, shape (B,)."""
        em, tags, mask = self._prepare(emissions, tags, mask)
        return _path_score(em, tags, mask, self.start_transitions, self.transitions,
                           self.end_transitions)

    def log_partition(self, emissions: torch.Tensor,
                      mask: torch.Tensor | None = None) -> torch.Tensor:
        """log Z for each sequence by the forward algorithm, shape (B,)."""
        em, _, mask = self._prepare(emissions, None, mask)
        alpha = _forward_alphas(em, mask, self.start_transitions, self.transitions)[-1]
        return torch.logsumexp(alpha + self.end_transitions, dim=1)

    def forward(self, emissions: torch.Tensor, tags: torch.Tensor,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood ``log Z - score(tags)`` of each sequence, shape (B,).

        The module call, so that hooks on the module (Opacus' per-example gradients) see
        every use of the CRF's parameters in the loss."""
        em, tags, mask = self._prepare(emissions, tags, mask)
        return crf_nll(em, tags, mask, self.start_transitions, self.end_transitions,
                       self.transitions)

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor | None = None,
            reduction: Literal["mean", "sum", "none"] = "mean") -> torch.Tensor:
        """Negative log-likelihood ``log Z - score(tags)`` through the module call.

        ``reduction``: ``'none'`` gives one value per sequence (B,), ``'sum'`` their sum,
        ``'mean'`` their mean over the batch (per sequence, not per token).
        """
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
        # only tensors as arguments: forward hooks record the positional inputs
        out = self(emissions, tags) if mask is None else self(emissions, tags, mask)
        if reduction == "sum":
            return out.sum()
        if reduction == "mean":
            return out.mean()
        return out

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def decode(self, emissions: torch.Tensor, mask: torch.Tensor | None = None,
               allowed: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
               ) -> list[list[int]]:
        """Most likely tag sequence of each sequence (Viterbi), trimmed to its length.

        ``allowed`` = (may start (K,), may follow (K, K), may end (K,)) booleans restricts
        the search to legal sequences (e.g. no ``I-X`` after ``O`` in IOB2)."""
        em, _, mask = self._prepare(emissions, None, mask)
        return viterbi(em, mask, self.start_transitions, self.transitions,
                       self.end_transitions, allowed)

    def marginals(self, emissions: torch.Tensor,
                  mask: torch.Tensor | None = None) -> torch.Tensor:
        """Posterior marginals p(y_t = j | emissions) by forward-backward.

        Returns the emissions' layout ((B, L, K) if ``batch_first``); rows at padded steps
        are zero, rows at valid steps sum to 1.
        """
        em, _, mask = self._prepare(emissions, None, mask)
        B, L, K = em.shape
        alphas = _forward_alphas(em, mask, self.start_transitions, self.transitions)
        log_z = torch.logsumexp(alphas[-1] + self.end_transitions, dim=1)  # (B,)
        beta = self.end_transitions.expand(B, K)
        betas = [beta]
        trans = self.transitions.unsqueeze(0)                          # (1, K, K)
        for t in range(L - 2, -1, -1):
            # beta_t(i) = logsumexp_j T[i, j] + E[t+1, j] + beta_{t+1}(j)
            nxt = torch.logsumexp(trans + (em[:, t + 1] + beta).unsqueeze(1), dim=2)
            beta = torch.where(mask[:, t + 1].unsqueeze(1), nxt, beta)
            betas.append(beta)
        betas.reverse()
        log_marg = torch.stack(alphas, 1) + torch.stack(betas, 1) - log_z[:, None, None]
        marg = torch.where(mask.unsqueeze(2), log_marg.exp(), torch.zeros_like(log_marg))
        return marg if self.batch_first else marg.transpose(0, 1)


def _path_score(em: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor,
                start: torch.Tensor, trans: torch.Tensor, end: torch.Tensor) -> torch.Tensor:
    """score(y) of each sequence (B,) on batch-first ``em`` (B, L, K), ``tags`` (B, L)."""
    L = em.size(1)
    lengths = mask.sum(1)                                          # (B,)
    emit = em.gather(2, tags.unsqueeze(-1)).squeeze(-1)            # (B, L)
    score = start[tags[:, 0]]
    score = score + torch.where(mask, emit, torch.zeros_like(emit)).sum(1)
    if L > 1:
        pairs = trans[tags[:, :-1], tags[:, 1:]]                   # (B, L-1)
        score = score + torch.where(mask[:, 1:], pairs, torch.zeros_like(pairs)).sum(1)
    last = tags.gather(1, (lengths - 1).unsqueeze(1)).squeeze(1)   # (B,)
    return score + end[last]


def _forward_alphas(em: torch.Tensor, mask: torch.Tensor, start: torch.Tensor,
                    trans: torch.Tensor) -> list[torch.Tensor]:
    """alpha_t for t = 1..L, each (B, K); carried unchanged through padding."""
    alpha = start + em[:, 0]                                       # (B, K)
    alphas = [alpha]
    trans = trans.unsqueeze(0)                                     # (1, K, K)
    for t in range(1, em.size(1)):
        # (B, K, 1) + (1, K, K) -> logsumexp over previous tag i -> (B, K)
        nxt = torch.logsumexp(alpha.unsqueeze(2) + trans, dim=1) + em[:, t]
        alpha = torch.where(mask[:, t].unsqueeze(1), nxt, alpha)
        alphas.append(alpha)
    return alphas


def crf_nll(em: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor,
            start_transitions: torch.Tensor, end_transitions: torch.Tensor,
            transitions: torch.Tensor) -> torch.Tensor:
    """``log Z - score(y)`` of each sequence (B,), on inputs :class:`CRF` has checked:
    batch-first ``em`` (B, L, K), ``tags`` (B, L) in [0, K) and a right-padded bool
    ``mask`` (B, L). The parameters are arguments (named as the CRF's) and nothing
    depends on their values in Python, so ``torch.func`` can ``vmap`` it over sequences."""
    alpha = _forward_alphas(em, mask, start_transitions, transitions)[-1]
    log_z = torch.logsumexp(alpha + end_transitions, dim=1)
    return log_z - _path_score(em, tags, mask, start_transitions, transitions,
                               end_transitions)


NEG_INF = -1e4  # a score no legal path reaches, finite so that max/argmax stay defined


@torch.no_grad()
def viterbi(em: torch.Tensor, mask: torch.Tensor, start: torch.Tensor, trans: torch.Tensor,
            end: torch.Tensor, allowed: tuple[torch.Tensor, torch.Tensor, torch.Tensor]
            | None = None) -> list[list[int]]:
    """Viterbi on batch-first emissions ``em`` (B, L, K) with a right-padded ``mask``.

    ``delta_1 = s + E_1``, ``delta_t(j) = max_i delta_{t-1}(i) + T[i, j] + E_t(j)``, best
    last tag ``argmax_j delta_n(j) + e(j)``, then the back-pointers. ``allowed`` adds
    ``NEG_INF`` to every forbidden start, transition and end (constrained decoding).
    Also serves a softmax tagger: log-probabilities as ``em`` and zero ``s``, ``T``, ``e``.
    """
    if allowed is not None:
        ok_s, ok_t, ok_e = (a.to(em.device) for a in allowed)
        start = torch.where(ok_s, start, start.new_tensor(NEG_INF))
        trans = torch.where(ok_t, trans, trans.new_tensor(NEG_INF))
        end = torch.where(ok_e, end, end.new_tensor(NEG_INF))
    B, L, K = em.shape
    score = start + em[:, 0]                                       # (B, K)
    trans = trans.unsqueeze(0)
    identity = torch.arange(K, device=em.device).expand(B, K)
    backptrs = []
    for t in range(1, L):
        best, idx = (score.unsqueeze(2) + trans).max(dim=1)       # (B, K) each
        m = mask[:, t].unsqueeze(1)
        score = torch.where(m, best + em[:, t], score)
        # at padded steps the back-pointer is the identity, so backtracking walks
        # through the padding unchanged and reaches the real last tag
        backptrs.append(torch.where(m, idx, identity))
    cur = (score + end).argmax(dim=1, keepdim=True)                # (B, 1)
    path = [cur]
    for bp in reversed(backptrs):
        cur = bp.gather(1, cur)
        path.append(cur)
    path.reverse()
    tags = torch.cat(path, dim=1).cpu().tolist()                   # (B, L)
    lengths = mask.sum(1).cpu().tolist()
    return [row[:n] for row, n in zip(tags, lengths, strict=True)]
