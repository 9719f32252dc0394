r"""Decoding rules: from next-token logits to the next token, for a whole batch at once.

Written by hand (generation is what lmforge teaches). Every function takes logits of
shape (B, V), works on the logits' device and returns a new tensor; nothing loops over
the batch in Python (the constraints' bans come in as each row's list of token ids,
written with one indexed store). The rules are applied in this order (as in Hugging
Face):

1. Repetition penalty (CTRL, Keskar et al. 2019): for every token :math:`v` already in
   the row's sequence, :math:`z_v \leftarrow z_v / r` if :math:`z_v > 0` else
   :math:`z_v \cdot r` (with :math:`r > 1` both make :math:`v` less likely).
2. Presence and frequency penalties (OpenAI): with :math:`c_v` the count of :math:`v`
   among the new tokens, :math:`z_v \leftarrow z_v - c_v f - [c_v > 0] p`; then OpenAI's
   ``logit_bias``: :math:`z_v \leftarrow z_v + b_v`.
3. Constraints: :math:`z_v \leftarrow -\infty` for every token :math:`v` the row may not
   produce next: a repeated n-gram, the end of a bad word, ``eos`` before
   ``min_new_tokens`` (:class:`~lmforge.generate.constraints.TokenBans`), and every
   token outside the row's ``allowed`` set (structured outputs: the tokens a JSON
   schema's grammar permits, :mod:`lmforge.generate.structured`), which renormalises the
   distribution over the allowed tokens.
4. Temperature: :math:`p_v = \mathrm{softmax}(z / \tau)_v`. :math:`\tau \to 0` is
   greedy (``argmax``), :math:`\tau = 1` the model's distribution, :math:`\tau > 1`
   flatter.
5. Top-k: keep the :math:`k` largest logits, set the rest to :math:`-\infty`.
6. Top-p (nucleus, Holtzman et al. 2019): sort probabilities descending,
   :math:`p_{(1)} \ge p_{(2)} \ge \dots`; keep the smallest prefix whose mass is
   :math:`\ge p`, i.e. token :math:`(i)` survives iff :math:`\sum_{j<i} p_{(j)} < p`. The
   top token always survives.
7. Sample from the renormalised distribution with a private ``torch.Generator``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .config import GenerationConfig


def apply_repetition_penalty(logits: torch.Tensor, seen: torch.Tensor,
                             penalty: float) -> torch.Tensor:
    """CTRL penalty on the tokens marked in ``seen`` (B, V) bool."""
    if penalty == 1.0:
        return logits
    penalised = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalised, logits)


def ban_tokens(logits: torch.Tensor, banned: Sequence[Sequence[int]]) -> torch.Tensor:
    """``logits`` (B, V) with ``-inf`` at the token ids ``banned[b]`` of each row ``b``."""
    rows = [b for b, ids in enumerate(banned) for _ in ids]
    if not rows:
        return logits
    cols = [i for ids in banned for i in ids]
    index = (torch.tensor(rows, device=logits.device), torch.tensor(cols, device=logits.device))
    return logits.index_put(index, torch.tensor(float("-inf"), device=logits.device))


def apply_count_penalties(logits: torch.Tensor, counts: torch.Tensor, presence: float,
                          frequency: float) -> torch.Tensor:
    """OpenAI's penalties: ``counts`` (B, V) holds how often each token was generated."""
    return logits - counts * frequency - (counts > 0).to(logits.dtype) * presence


def apply_logit_bias(logits: torch.Tensor, bias: dict[int, float]) -> torch.Tensor:
    """``logits`` (B, V) plus ``bias[v]`` at every biased token ``v`` of every row."""
    ids = torch.tensor(list(bias), device=logits.device)
    values = torch.tensor(list(bias.values()), dtype=logits.dtype, device=logits.device)
    return logits.index_add(-1, ids, values.expand(logits.shape[0], -1))


def constrain_logits(logits: torch.Tensor, config: GenerationConfig,
                     seen: torch.Tensor | None = None,
                     banned: Sequence[Sequence[int]] | None = None,
                     counts: torch.Tensor | None = None,
                     allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Rules 1-3 on fp32 logits (B, V): the repetition penalty (``seen``), the presence
    and frequency penalties (``counts`` of the new tokens) and the logit bias, then the
    bans (``banned[b]``: the ids row ``b`` may not produce) and the grammar's mask
    (``allowed`` (B, V) bool: ``-inf`` wherever it is False)."""
    logits = logits.float()
    if seen is not None and config.repetition_penalty != 1.0:
        logits = apply_repetition_penalty(logits, seen, config.repetition_penalty)
    if counts is not None and config.counts_new_tokens:
        logits = apply_count_penalties(logits, counts, config.presence_penalty,
                                       config.frequency_penalty)
    if config.logit_bias:
        logits = apply_logit_bias(logits, config.logit_bias)
    if banned is not None:
        logits = ban_tokens(logits, banned)
    if allowed is not None:
        logits = logits.masked_fill(~allowed, float("-inf"))
    return logits


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits per row (ties at the k-th value are all kept)."""
    if k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]  # (B, 1)
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability mass is >= ``p``."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    mass_before = torch.cumsum(probs, dim=-1) - probs  # sum_{j<i} p_(j)
    drop_sorted = mass_before >= p
    drop_sorted[..., 0] = False  # the top token always stays
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def process_logits(logits: torch.Tensor, config: GenerationConfig,
                   seen: torch.Tensor | None = None,
                   banned: Sequence[Sequence[int]] | None = None,
                   counts: torch.Tensor | None = None,
                   allowed: torch.Tensor | None = None) -> torch.Tensor:
    """Rules 1-6 on fp32 logits (B, V); returns the logits to sample from."""
    logits = constrain_logits(logits, config, seen, banned, counts, allowed)
    if config.greedy:
        return logits
    if config.temperature != 1.0:
        logits = logits / config.temperature
    if config.top_k is not None:
        logits = top_k_filter(logits, config.top_k)
    if config.top_p is not None:
        logits = top_p_filter(logits, config.top_p)
    return logits


def sample_next(logits: torch.Tensor, config: GenerationConfig,
                seen: torch.Tensor | None = None,
                generator: torch.Generator | None = None,
                banned: Sequence[Sequence[int]] | None = None,
                counts: torch.Tensor | None = None,
                allowed: torch.Tensor | None = None) -> torch.Tensor:
    """The next token of each row, (B,) int64: argmax when greedy, else a sample."""
    logits = process_logits(logits, config, seen, banned, counts, allowed)
    if config.greedy:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)
