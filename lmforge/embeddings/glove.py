r"""GloVe (Pennington et al. 2014): weighted least squares on log co-occurrences.

* Co-occurrence (sparse, windows never cross sentences): for each pair of words at distance
  ``k <= window`` in a sentence, ``X_ij += 1/k`` and ``X_ji += 1/k`` (symmetric window).
* Objective: ``J = Σ_{X_ij>0} f(X_ij) (w_i·w̃_j + b_i + b̃_j − log X_ij)²`` with
  ``f(x) = min(1, (x / x_max)^α)``, ``x_max = 100``, ``α = 0.75``.
* AdaGrad per parameter: with ``δ = w_i·w̃_j + b_i + b̃_j − log X_ij`` and
  ``g = f(X_ij) δ``, the gradients are ``g w̃_j`` (for ``w_i``), ``g w_i`` (for
  ``w̃_j``) and ``g`` (biases); each parameter moves by ``−η ∇ / sqrt(G)`` where ``G``
  accumulates squared gradients (initialised to 1, as in the reference code).
* Final vectors: ``w + w̃``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ConfigError
from .keyed_vectors import KeyedVectors
from .vocab import EmbeddingError, Vocab
from .word2vec import HAVE_NUMBA, njit

if HAVE_NUMBA:
    pass


@dataclass
class GloVeConfig:
    vector_size: int = 50
    window: int = 10
    x_max: float = 100.0
    alpha: float = 0.75
    learning_rate: float = 0.05
    epochs: int = 25
    min_count: int = 5
    max_vocab: int | None = None
    seed: int = 1

    def validate(self) -> None:
        if self.vector_size < 1 or self.window < 1 or self.epochs < 1:
            raise ConfigError("glove: vector_size, window and epochs must be >= 1")
        if self.x_max <= 0 or self.learning_rate <= 0:
            raise ConfigError("glove: x_max and learning_rate must be > 0")


def cooccurrence(tokens: np.ndarray, starts: np.ndarray, window: int, v: int
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse symmetric co-occurrence with 1/distance weights: ``(rows, cols, values)``.

    Vectorised over the whole encoded corpus (one pass per distance ``k``), duplicates
    summed with ``np.unique``; memory is O(tokens × window) (TODO: block-wise streaming
    for corpora that do not fit)."""
    keys_all, vals_all = [], []
    sent_id = np.searchsorted(starts, np.arange(len(tokens)), side="right") - 1
    for k in range(1, window + 1):
        # pairs (t, t+k) inside one sentence
        a = np.arange(len(tokens) - k)
        ok = sent_id[a] == sent_id[a + k]
        i, j = tokens[a[ok]].astype(np.int64), tokens[a[ok] + k].astype(np.int64)
        keys_all += [i * v + j, j * v + i]
        vals_all += [np.full(len(i), 1.0 / k)] * 2
    if not keys_all:
        raise EmbeddingError("no co-occurring word pairs: sentences are too short")
    keys = np.concatenate(keys_all)
    vals = np.concatenate(vals_all)
    uk, inv = np.unique(keys, return_inverse=True)
    x = np.bincount(inv, weights=vals)
    if len(uk) == 0:
        raise EmbeddingError("no co-occurring word pairs: sentences are too short")
    return (uk // v).astype(np.int32), (uk % v).astype(np.int32), x


@njit(fastmath=True, cache=True)
def _glove_epoch(order, rows, cols, logx, fx, w, wt, b, bt, gw, gwt, gb, gbt, lr):
    d = w.shape[1]
    cost = 0.0
    for n in order:
        i = rows[n]
        j = cols[n]
        diff = b[i] + bt[j] - logx[n]
        for k in range(d):
            diff += w[i, k] * wt[j, k]
        g = fx[n] * diff
        cost += 0.5 * g * diff
        for k in range(d):
            g1 = g * wt[j, k]
            g2 = g * w[i, k]
            w[i, k] -= lr * g1 / np.sqrt(gw[i, k])
            wt[j, k] -= lr * g2 / np.sqrt(gwt[j, k])
            gw[i, k] += g1 * g1
            gwt[j, k] += g2 * g2
        b[i] -= lr * g / np.sqrt(gb[i])
        bt[j] -= lr * g / np.sqrt(gbt[j])
        gb[i] += g * g
        gbt[j] += g * g
    return cost


class GloVe:
    """``GloVe(config).fit(sentences)``; vectors ``w + w̃`` in ``.wv``, costs in ``.history``."""

    def __init__(self, config: GloVeConfig | None = None, **overrides):
        cfg = config or GloVeConfig()
        if overrides:
            cfg = GloVeConfig(**{**asdict(cfg), **overrides})
        cfg.validate()
        self.config = cfg
        self.history: list[float] = []

    def fit(self, sentences: Sequence[list[str]]) -> GloVe:
        cfg = self.config
        vocab = Vocab.build(sentences, cfg.min_count, cfg.max_vocab)
        tokens, starts = vocab.encode(sentences)
        v, d = len(vocab), cfg.vector_size
        rows, cols, x = cooccurrence(tokens, starts, cfg.window, v)
        logx = np.log(x)
        fx = np.minimum(1.0, (x / cfg.x_max) ** cfg.alpha)
        rs = np.random.default_rng(cfg.seed)
        w = ((rs.random((v, d)) - 0.5) / d)
        wt = ((rs.random((v, d)) - 0.5) / d)
        b, bt = np.zeros(v), np.zeros(v)
        gw, gwt, gb, gbt = np.ones((v, d)), np.ones((v, d)), np.ones(v), np.ones(v)
        for _ in range(cfg.epochs):
            order = rs.permutation(len(x))
            cost = _glove_epoch(order, rows, cols, logx, fx, w, wt, b, bt, gw, gwt, gb, gbt,
                                cfg.learning_rate)
            self.history.append(float(cost) / len(x))
        if not np.all(np.isfinite(w)):
            raise EmbeddingError("GloVe diverged (non-finite vectors); lower learning_rate")
        self.vocab, self.w, self.wt, self.b, self.bt = vocab, w, wt, b, bt
        self.cooc = (rows, cols, x)
        self.wv = KeyedVectors(vocab.words, (w + wt).astype(np.float32), counts=vocab.counts)
        return self


__all__ = ["GloVe", "GloVeConfig", "cooccurrence"]
