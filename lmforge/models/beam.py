r"""Greedy search and beam search for any step-by-step decoder.

Written by hand (generation is what lmforge teaches). Nothing here knows the model: a
decoder is two callbacks over ``N = batch_size * beam_size`` rows (``N = batch_size``
for greedy search):

- ``step(tokens)`` feeds the previous token of every row, ``(N,)`` long, advances the
  decoder's state by one position and returns next-token logits ``(N, V)``;
- ``reorder(rows)`` (beam search only) makes row ``r`` of the state a copy of row
  ``rows[r]`` of it, ``(N,)`` long (``KVCache.reorder``, ``index_select`` on an RNN
  state). ``rows[r]`` always lies in the same source's group of ``beam_size`` rows.

Before the first step every row holds the decoder state after the source; rows
``b*K .. b*K + K-1`` belong to source ``b`` (``repeat_interleave``).

Scores (Wu et al. 2016, GNMT length penalty)::

    log P(Y | X) = sum_t log softmax(z_t)[y_t]
    score(Y)     = log P(Y | X) / lp(Y),    lp(Y) = ((5 + |Y|) / 6) ** alpha

``|Y|`` counts the generated tokens including ``eos``; ``alpha = 0`` is the raw
log-probability (which favours short outputs). Token ids in ``banned_ids`` (pad, bos) are
never generated.

**No repeated n-grams** (``no_repeat_ngram_size = n > 0``, as in Hugging Face
``generate``): a row's history is its start token followed by the tokens it generated,
``h_0 .. h_t``. The next token ``y`` gets probability 0 when ``(h_{t-n+2} .. h_t, y)``
already occurs as an n-gram of the history, so no n-gram appears twice in an output.

At every step the ``2K`` best one-token extensions of the live beams of a source are
ranked (by log-probability: all live beams have the same length). An ``eos`` among the top
``K`` ends a hypothesis; the other extensions refill the ``K`` live beams in order. A source
is done when ``K`` hypotheses have ended, or no live beam is left; at ``max_len`` the live
beams are returned unfinished (no ``eos``). With ``K = 1`` this is exactly greedy search.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Hypothesis", "length_penalty", "repeated_ngram_tokens", "split_candidates",
           "greedy_search", "beam_search"]

StepFn = Callable[[Tensor], Tensor]
ReorderFn = Callable[[Tensor], None]


@dataclass
class Hypothesis:
    """One beam-search result: ``tokens`` (after BOS; ends with EOS if it finished)."""

    tokens: list[int]
    score: float  # log_prob / lp(len(tokens))
    log_prob: float


def length_penalty(length: int, alpha: float) -> float:
    """GNMT: ``((5 + length) / 6) ** alpha``."""
    return ((5.0 + length) / 6.0) ** alpha


def repeated_ngram_tokens(history: Sequence[int], n: int) -> list[int]:
    """The tokens ``y`` for which ``(history[-(n-1):], y)`` is an n-gram already in
    ``history`` (every token of ``history`` when ``n = 1``; none while it is shorter
    than ``n - 1``)."""
    if n < 1 or len(history) < n - 1:
        return []
    prefix = tuple(history[len(history) - n + 1:])
    return [history[i + n - 1] for i in range(len(history) - n + 1)
            if tuple(history[i:i + n - 1]) == prefix]


def ban_repeated_ngrams(logits: Tensor, histories: Sequence[Sequence[int]], n: int) -> Tensor:
    """``logits`` (N, V) with ``-inf`` at each row's :func:`repeated_ngram_tokens`
    (in place; ``n = 0`` changes nothing)."""
    if n > 0:
        for row, history in enumerate(histories):
            banned = repeated_ngram_tokens(history, n)
            if banned:
                logits[row, banned] = float("-inf")
    return logits


Candidate = tuple[float, int, int]  # (log P of the extended beam, row, token)


def split_candidates(ranked: Sequence[Candidate], beam_size: int, eos_id: int | None,
                     ends: Container[tuple[int, int]] = ()
                     ) -> tuple[list[Candidate], list[Candidate]]:
    """One source's extensions, ranked best first, split by the rule of the module
    docstring: ``(ended, live)``, the ``eos`` extensions among the first ``beam_size``
    (they end hypotheses) and every other finite extension in order (the first
    ``beam_size`` of them become the live beams). ``ends`` holds further ``(row, token)``
    extensions that end a hypothesis as ``eos`` does (the token stays in it)."""
    ended: list[Candidate] = []
    live: list[Candidate] = []
    for rank, cand in enumerate(ranked):
        if cand[0] == float("-inf"):
            break
        if cand[2] != eos_id and (cand[1], cand[2]) not in ends:
            live.append(cand)
        elif rank < beam_size:
            ended.append(cand)
    return ended, live


def _log_probs(logits: Tensor, banned_ids: Sequence[int],
               histories: Sequence[Sequence[int]] = (), no_repeat: int = 0) -> Tensor:
    logp = torch.log_softmax(logits.float(), dim=-1)  # (N, V)
    if banned_ids:
        logp[:, list(banned_ids)] = float("-inf")
    return ban_repeated_ngrams(logp, histories, no_repeat)


@torch.no_grad()
def greedy_search(step: StepFn, batch_size: int, *, max_len: int, bos_id: int, eos_id: int,
                  pad_id: int, banned_ids: Sequence[int] = (), no_repeat_ngram_size: int = 0,
                  device: torch.device | str = "cpu") -> Tensor:
    """The most likely token at every step -> (B, L) ids after BOS.

    Each row ends with ``eos`` (unless it reached ``max_len``) and is padded with
    ``pad_id`` after it; ``L <= max_len`` (the loop stops once every row has ended).
    """
    if max_len < 1 or no_repeat_ngram_size < 0:
        raise ValueError("max_len must be >= 1 and no_repeat_ngram_size >= 0")
    y = torch.full((batch_size,), bos_id, dtype=torch.long, device=device)
    done = torch.zeros(batch_size, dtype=torch.bool, device=device)
    histories = [[bos_id] for _ in range(batch_size)] if no_repeat_ngram_size else []
    out = []
    for _ in range(max_len):
        logp = _log_probs(step(y), banned_ids, histories, no_repeat_ngram_size)
        y = logp.argmax(dim=-1).masked_fill(done, pad_id)  # (B,)
        for h, tok in zip(histories, y.tolist(), strict=False):
            h.append(tok)
        out.append(y)
        done = done | (y == eos_id)
        if bool(done.all()):
            break
    return torch.stack(out, dim=1)


@torch.no_grad()
def beam_search(step: StepFn, reorder: ReorderFn, batch_size: int, *, beam_size: int,
                max_len: int, bos_id: int, eos_id: int, alpha: float = 0.6, n_best: int = 1,
                banned_ids: Sequence[int] = (), no_repeat_ngram_size: int = 0,
                device: torch.device | str = "cpu") -> list[list[Hypothesis]]:
    """Beam search; for each of the ``batch_size`` sources its ``n_best`` hypotheses,
    best score first (see the module docstring for the rules)."""
    if beam_size < 1 or n_best < 1 or max_len < 1 or no_repeat_ngram_size < 0:
        raise ValueError("beam_size, n_best and max_len must be >= 1, "
                         "no_repeat_ngram_size >= 0")
    B, K = batch_size, beam_size
    scores = torch.full((B, K), float("-inf"), device=device)  # log P of each live beam
    scores[:, 0] = 0.0  # a single live beam at the start (the others would duplicate it)
    tokens: list[list[int]] = [[] for _ in range(B * K)]
    y = torch.full((B * K,), bos_id, dtype=torch.long, device=device)
    finished: list[list[Hypothesis]] = [[] for _ in range(B)]
    done = [False] * B
    for t in range(max_len):
        histories = [[bos_id, *t] for t in tokens] if no_repeat_ngram_size else []
        logp = _log_probs(step(y), banned_ids, histories, no_repeat_ngram_size)  # (B*K, V)
        V = logp.shape[-1]
        cand = (scores.view(-1, 1) + logp).view(B, K * V)  # all extensions of a source
        top_s, top_i = cand.topk(min(2 * K, K * V), dim=1)  # (B, 2K)
        top_s, top_i = top_s.tolist(), top_i.tolist()
        new_scores = torch.full((B, K), float("-inf"))
        parents = torch.arange(B * K).view(B, K)  # default: a dead row keeps its state
        new_tok = torch.full((B, K), eos_id, dtype=torch.long)
        lp = length_penalty(t + 1, alpha)
        for b in range(B):
            if done[b]:
                continue
            ranked = [(s, b * K + idx // V, idx % V)
                      for s, idx in zip(top_s[b], top_i[b], strict=True)]
            ended, live = split_candidates(ranked, K, eos_id)
            finished[b] += [Hypothesis(tokens[row] + [tok], s / lp, s) for s, row, tok in ended]
            for j, (s, row, tok) in enumerate(live[:K]):
                new_scores[b, j], parents[b, j], new_tok[b, j] = s, row, tok
            if len(finished[b]) >= K or not live:
                done[b] = True
                new_scores[b] = float("-inf")
        if all(done):
            break
        rows = parents.view(-1)
        tokens = [tokens[r] + [tk] for r, tk in
                  zip(rows.tolist(), new_tok.view(-1).tolist(), strict=True)]
        reorder(rows.to(device))
        scores = new_scores.to(device)
        y = new_tok.view(-1).to(device)
    else:  # max_len reached: the live beams count, unfinished
        for b in range(B):
            if done[b]:
                continue
            for j in range(K):
                s = float(scores[b, j])
                if s != float("-inf"):
                    toks = tokens[b * K + j]
                    finished[b].append(Hypothesis(toks, s / length_penalty(len(toks), alpha),
                                                  s))
    return [sorted(f, key=lambda h: h.score, reverse=True)[:n_best] for f in finished]
