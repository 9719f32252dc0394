r"""Reciprocal rank fusion (Cormack, Clarke and Büttcher, SIGIR 2009).

Rankings from different retrievers (BM25 scores and cosine similarities are not on one
scale) are fused by their ranks alone:

.. math::

    \text{RRF}(d) = \sum_{r} \frac{1}{k + \text{rank}_r(d)}, \qquad k = 60,

summed over the rankings :math:`r` that hold :math:`d` (rank 1 is the best; a ranking that
lacks :math:`d` adds nothing, and a repeated item counts at its first rank). The constant
:math:`k` damps the weight of the very top ranks, so that one retriever's rank 1 does not
outvote agreement lower down.

Ties are broken deterministically: a higher score first, then the better (smaller) best
rank, then the earlier ranking (in argument order) that holds that best rank. No two items
tie on all three, since one ranking holds one item at each rank.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TypeVar

from ..errors import ConfigError

__all__ = ["RRF_K", "reciprocal_rank_fusion"]

RRF_K = 60
K = TypeVar("K", bound=Hashable)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[K]], k: float = RRF_K
                           ) -> list[tuple[K, float]]:
    """The items of ``rankings`` as ``(item, RRF score)``, best first (see the module
    docstring)."""
    if isinstance(k, bool) or not isinstance(k, (int, float)) or not k >= 0:
        raise ConfigError(f"the RRF constant k must be a number >= 0 (got {k!r})")
    score: dict[K, float] = {}
    best: dict[K, tuple[int, int]] = {}  # item -> (best rank, index of its ranking)
    for r, ranking in enumerate(rankings):
        seen: set[K] = set()
        for rank, item in enumerate(ranking, 1):
            if item in seen:
                continue
            seen.add(item)
            score[item] = score.get(item, 0.0) + 1.0 / (k + rank)
            best[item] = min(best.get(item, (rank, r)), (rank, r))
    return sorted(score.items(), key=lambda kv: (-kv[1], best[kv[0]]))
