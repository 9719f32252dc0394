r"""Retrieval metrics: recall@k (any gold / all gold) and mean reciprocal rank.

For queries :math:`i = 1..n`, each with a ranked list :math:`R_i` of retrieved document
ids (rank 1 first; positions count as given, so a document repeated by several passages
takes several positions) and a non-empty set :math:`G_i` of gold ids, with
:math:`R_i[{:}k]` the first :math:`k` entries:

.. math::

    \text{recall@}k = \frac{1}{n} \sum_i \mathbb{1}\left[G_i \cap R_i[{:}k] \ne
        \emptyset\right] \qquad \text{(a query is found if any gold id is in its top } k)

    \text{all\_recall@}k = \frac{1}{n} \sum_i \mathbb{1}\left[G_i \subseteq
        R_i[{:}k]\right] \qquad \text{(every gold id in the top } k)

    \text{MRR@}k = \frac{1}{n} \sum_i \frac{1}{\text{rank}_i}, \qquad
        \text{rank}_i = \min\{r \le k : R_i[r] \in G_i\}

with :math:`1/\text{rank}_i = 0` when no gold id is within the cutoff :math:`k`
(:math:`k` = None: the whole list). With one gold id per query the two recalls agree.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Sequence

from .classification import MetricInputError, MetricOptionError

__all__ = ["all_recall_at_k", "mrr", "recall_at_k"]


def _check(ranked: Sequence[Sequence[Hashable]], gold: Sequence[Collection[Hashable]],
           k: int | None) -> list[set[Hashable]]:
    """The gold sets, after checking the inputs (one-line errors)."""
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise MetricOptionError(f"k must be an integer >= 1 (got {k!r})")
    if len(ranked) != len(gold):
        raise MetricInputError(f"{len(ranked)} rankings but {len(gold)} gold sets")
    if not ranked:
        raise MetricInputError("no queries to score")
    sets = []
    for i, (r, g) in enumerate(zip(ranked, gold, strict=True)):
        if isinstance(r, str) or isinstance(g, str):
            raise MetricInputError(f"query {i}: rankings and gold sets must be lists of ids, "
                                   "not strings")
        if not g:
            raise MetricInputError(f"query {i}: the gold set is empty")
        sets.append(set(g))
    return sets


def recall_at_k(ranked: Sequence[Sequence[Hashable]], gold: Sequence[Collection[Hashable]],
                k: int) -> float:
    """The share of queries with at least one gold id in their top ``k``."""
    sets = _check(ranked, gold, k)
    return sum(not g.isdisjoint(r[:k]) for r, g in zip(ranked, sets, strict=True)) / len(sets)


def all_recall_at_k(ranked: Sequence[Sequence[Hashable]],
                    gold: Sequence[Collection[Hashable]], k: int) -> float:
    """The share of queries with every gold id in their top ``k``."""
    sets = _check(ranked, gold, k)
    return sum(g.issubset(r[:k]) for r, g in zip(ranked, sets, strict=True)) / len(sets)


def mrr(ranked: Sequence[Sequence[Hashable]], gold: Sequence[Collection[Hashable]],
        k: int | None = None) -> float:
    """Mean over the queries of 1 / the rank of the first gold id within the top ``k``
    (None: anywhere), 0 where there is none."""
    sets = _check(ranked, gold, k)
    total = 0.0
    for r, g in zip(ranked, sets, strict=True):
        total += next((1.0 / rank for rank, d in enumerate(r[:k], 1) if d in g), 0.0)
    return total / len(sets)
