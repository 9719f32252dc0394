r"""GloVe (Pennington et al. 2014): weighted least squares on log co-occurrences.

* Co-occurrence (sparse, windows never cross sentences): for each pair of words at distance
  ``k <= window`` in a sentence, ``X_ij += 1/k`` and ``X_ji += 1/k`` (symmetric window;
  a word paired with itself adds ``2/k`` to ``X_ii``, as the reference ``cooccur.c``).
* Objective: ``J = Σ_{X_ij>0} f(X_ij) (w_i·w̃_j + b_i + b̃_j − log X_ij)²`` with
  ``f(x) = min(1, (x / x_max)^α)``, ``x_max = 100``, ``α = 0.75``.
* AdaGrad per parameter: with ``δ = w_i·w̃_j + b_i + b̃_j − log X_ij`` and
  ``g = f(X_ij) δ``, the gradients are ``g w̃_j`` (for ``w_i``), ``g w_i`` (for
  ``w̃_j``) and ``g`` (biases); each parameter moves by ``−η ∇ / sqrt(G)`` where ``G``
  accumulates squared gradients (initialised to 1, as in the reference code).
* Final vectors: ``w + w̃``.

**Streaming co-occurrence** (:func:`cooccurrence_stream`). Sentences (as id arrays) are read
once, in order, and grouped into chunks of about ``chunk_tokens`` tokens. A chunk's
pairs ``(min(i,j), max(i,j))`` are keyed ``i·V + j`` (one entry per unordered pair: the
matrix is symmetric), sorted and summed (``np.unique``-style reduction), and the reduced
run is merged into the accumulated sorted run. Weights are exact integers: with
``L = lcm(1..window)`` a pair at distance ``k`` adds ``L/k`` (``2L/k`` on the diagonal) to
an int64 sum ``S_ij``, and ``X_ij = S_ij / L`` at the end, so the result is the correctly
rounded exact sum ``Σ 1/k`` (while ``S_ij < 2^53``) whatever the chunking and merge order.
``window <= 20`` keeps ``L <= 232,792,560`` so int64 cannot overflow (a pair would need
``4·10^10`` co-occurrences).

Memory bound: one chunk makes at most ``window · n_c`` pairs, ``n_c = max(chunk_tokens,
longest sentence)``, at 16 bytes each (key, weight; about 3× that while sorting); reduced
runs wait in a pending list until they hold as many entries as the accumulated run (or
``window · chunk_tokens``), then all are merged in one sort. So the peak is
``O(nnz + window · n_c)`` entries, where ``nnz`` is the number of distinct pairs (the size
of the result itself), independent of the corpus length; and the merge work is linear in
the number of reduced entries (each merge costs at most twice the pending entries).

**Two passes** (:meth:`GloVe.fit`): the vocabulary needs a first pass over all sentences,
the co-occurrences a second. ``sentences`` must therefore be re-iterable (a list, or an
object whose ``__iter__`` re-reads a file); a one-shot iterator (a generator) raises
:class:`EmbeddingError` unless the vocabulary is given (``fit(sentences, vocab=...)``), in
which case the sentences are read exactly once.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..errors import ConfigError
from .keyed_vectors import KeyedVectors
from .vocab import EmbeddingError, Vocab
from .word2vec import njit

MAX_WINDOW = 20  # lcm(1..20) = 232,792,560: exact int64 weights (see the module docstring)


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
    chunk_tokens: int = 100_000  # tokens per co-occurrence chunk (memory, not results)

    def validate(self) -> None:
        if self.vector_size < 1 or self.window < 1 or self.epochs < 1:
            raise ConfigError("glove: vector_size, window and epochs must be >= 1")
        if self.window > MAX_WINDOW:
            raise ConfigError(f"glove: window must be <= {MAX_WINDOW} (exact integer "
                              f"co-occurrence weights), got {self.window}")
        if self.x_max <= 0 or self.learning_rate <= 0:
            raise ConfigError("glove: x_max and learning_rate must be > 0")
        if self.chunk_tokens < 1:
            raise ConfigError(f"glove: chunk_tokens must be >= 1, got {self.chunk_tokens}")


# ----------------------------------------------------------------- co-occurrence
def _weight_scale(window: int) -> int:
    """``L = lcm(1..window)``: ``L/k`` is an integer for every distance ``k``."""
    if not 1 <= window <= MAX_WINDOW:
        raise ConfigError(f"glove: window must be in 1..{MAX_WINDOW}, got {window}")
    return math.lcm(*range(1, window + 1))


def _sum_by_key(keys: np.ndarray, vals: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct ``keys`` with the sums of their ``vals`` (int64, exact)."""
    if len(keys) == 0:
        return keys, vals
    order = np.argsort(keys, kind="stable")  # timsort: linear on concatenated sorted runs
    keys, vals = keys[order], vals[order]
    first = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1]])
    return keys[first], np.add.reduceat(vals, first)


def _chunk_pairs(tokens: np.ndarray, starts: np.ndarray, window: int, v: int, scale: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Reduced pairs of one chunk: keys ``min·V + max`` and int64 weights ``Σ L/k``
    (doubled on the diagonal) over word pairs ``k <= window`` apart in one sentence."""
    sent = np.repeat(np.arange(len(starts) - 1), np.diff(starts))
    keys, vals = [], []
    for k in range(1, min(window, len(tokens) - 1) + 1):
        a = np.flatnonzero(sent[:-k] == sent[k:])
        i, j = tokens[a].astype(np.int64), tokens[a + k].astype(np.int64)
        lo, hi = np.minimum(i, j), np.maximum(i, j)
        keys.append(lo * v + hi)
        vals.append(np.where(lo == hi, 2 * (scale // k), scale // k).astype(np.int64))
    if not keys:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return _sum_by_key(np.concatenate(keys), np.concatenate(vals))


class _RunMerger:
    """Sum of sorted (key, value) runs: runs wait in ``pending`` until they hold as many
    entries as the merged run (or ``budget``), then all are merged in one sort."""

    def __init__(self, budget: int):
        self.keys = np.empty(0, np.int64)
        self.vals = np.empty(0, np.int64)
        self.pending: list[tuple[np.ndarray, np.ndarray]] = []
        self.pending_n = 0
        self.budget = budget

    def add(self, keys: np.ndarray, vals: np.ndarray) -> None:
        self.pending.append((keys, vals))
        self.pending_n += len(keys)
        if self.pending_n >= max(len(self.keys), self.budget):
            self.merge()

    def merge(self) -> tuple[np.ndarray, np.ndarray]:
        if self.pending:
            ks, vs = zip(*self.pending, strict=True)
            self.keys, self.vals = _sum_by_key(np.concatenate([self.keys, *ks]),
                                               np.concatenate([self.vals, *vs]))
            self.pending, self.pending_n = [], 0
        return self.keys, self.vals


def _token_chunks(id_sentences: Iterable[Sequence[int]], chunk_tokens: int
                  ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Whole sentences grouped into ``(tokens, starts)`` chunks of >= ``chunk_tokens``
    tokens (the last may be shorter); sentences of fewer than 2 words are dropped."""
    parts: list[np.ndarray] = []
    n = 0
    for s in id_sentences:
        s = np.asarray(s, dtype=np.int32)
        if s.ndim != 1:
            raise EmbeddingError(f"a sentence must be a 1-D sequence of word ids, "
                                 f"got shape {s.shape}")
        if len(s) < 2:
            continue
        parts.append(s)
        n += len(s)
        if n >= chunk_tokens:
            yield _concat(parts)
            parts, n = [], 0
    if parts:
        yield _concat(parts)


def _concat(parts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    starts = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in parts], out=starts[1:])
    return np.concatenate(parts), starts


def cooccurrence_stream(id_sentences: Iterable[Sequence[int]], window: int, v: int,
                        chunk_tokens: int = 100_000
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Symmetric 1/distance co-occurrence of word-id sentences, read once in chunks:
    ``(rows, cols, values)`` in row-major (CSR) order, int32, int32, float64.

    ``X_ij = Σ 1/k`` over pairs ``k <= window`` apart, exact (see the module docstring,
    which also states the memory bound ``O(nnz + window · max(chunk_tokens, longest
    sentence))``). Ids must be in ``0..v-1``."""
    scale = _weight_scale(window)
    if chunk_tokens < 1:
        raise ConfigError(f"glove: chunk_tokens must be >= 1, got {chunk_tokens}")
    runs = _RunMerger(budget=window * chunk_tokens)
    for tokens, starts in _token_chunks(id_sentences, chunk_tokens):
        if tokens.min() < 0 or tokens.max() >= v:
            raise EmbeddingError(f"word ids must be in 0..{v - 1}, got "
                                 f"{tokens.min()}..{tokens.max()}")
        runs.add(*_chunk_pairs(tokens, starts, window, v, scale))
    keys, sums = runs.merge()
    if len(keys) == 0:
        raise EmbeddingError("no co-occurring word pairs: sentences are too short")
    return _symmetric(keys, sums, v, scale)


def _symmetric(keys: np.ndarray, sums: np.ndarray, v: int, scale: int
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Both triangles of the upper-triangle sums, ``X = S / L``, in row-major order."""
    i, j = keys // v, keys % v
    off = i != j
    r = np.concatenate([i, j[off]])
    c = np.concatenate([j, i[off]])
    x = np.concatenate([sums, sums[off]]) / scale
    order = np.argsort(r * v + c, kind="stable")
    return r[order].astype(np.int32), c[order].astype(np.int32), x[order]


def cooccurrence(tokens: np.ndarray, starts: np.ndarray, window: int, v: int,
                 chunk_tokens: int = 100_000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`cooccurrence_stream` of an encoded corpus (flat ``tokens`` with sentence
    ``starts``, as ``Vocab.encode`` returns)."""
    sents = (tokens[a:b] for a, b in zip(starts[:-1], starts[1:], strict=True))
    return cooccurrence_stream(sents, window, v, chunk_tokens)


def _encode(sentences: Iterable[Sequence[str]], vocab: Vocab, expected_tokens: int | None
            ) -> Iterator[np.ndarray]:
    """Word ids of each sentence (out-of-vocabulary words dropped); checks at the end
    that the pass saw ``expected_tokens`` tokens (the vocabulary pass's count)."""
    get = vocab.index.get
    n = 0
    for s in sentences:
        n += len(s)
        yield np.array([i for i in map(get, s) if i is not None], dtype=np.int32)
    if expected_tokens is not None and n != expected_tokens:
        raise EmbeddingError(
            f"the sentences changed between the two passes ({expected_tokens} tokens when "
            f"building the vocabulary, {n} when counting co-occurrences); pass a list or "
            "an iterable that yields the same sentences every time")


# ----------------------------------------------------------------- training
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
    """``GloVe(config).fit(sentences)``; vectors ``w + w̃`` in ``.wv``, costs in ``.history``,
    the co-occurrence matrix ``(rows, cols, X)`` in ``.cooc``."""

    def __init__(self, config: GloVeConfig | None = None, **overrides):
        cfg = config or GloVeConfig()
        if overrides:
            cfg = GloVeConfig(**{**asdict(cfg), **overrides})
        cfg.validate()
        self.config = cfg
        self.history: list[float] = []

    def _vocab_pass(self, sentences: Iterable[Sequence[str]], vocab: Vocab | None
                    ) -> tuple[Vocab, int | None]:
        """The vocabulary (first pass, unless given) and the token count to expect."""
        if vocab is not None:
            if not isinstance(vocab, Vocab):
                raise EmbeddingError(f"vocab must be a Vocab, got {type(vocab).__name__}")
            return vocab, None
        if isinstance(sentences, Iterator):
            raise EmbeddingError(
                "GloVe.fit reads the sentences twice (vocabulary, then co-occurrences) but "
                "got a one-shot iterator (a generator?); pass a list or a re-iterable "
                "object, or give the vocabulary: fit(sentences, vocab=Vocab.build(...))")
        cfg = self.config
        vocab = Vocab.build(sentences, cfg.min_count, cfg.max_vocab)
        return vocab, vocab.total_raw

    def fit(self, sentences: Iterable[Sequence[str]], vocab: Vocab | None = None) -> GloVe:
        """Train on token lists. Two passes over ``sentences`` (vocabulary, then
        co-occurrences; it must be re-iterable), or one when ``vocab`` is given."""
        cfg = self.config
        vocab, expected = self._vocab_pass(sentences, vocab)
        rows, cols, x = cooccurrence_stream(_encode(sentences, vocab, expected), cfg.window,
                                            len(vocab), cfg.chunk_tokens)
        self.vocab, self.cooc = vocab, (rows, cols, x)
        self._train(rows, cols, x, len(vocab))
        self.wv = KeyedVectors(vocab.words, (self.w + self.wt).astype(np.float32),
                               counts=vocab.counts)
        return self

    def _train(self, rows: np.ndarray, cols: np.ndarray, x: np.ndarray, v: int) -> None:
        """AdaGrad epochs over the shuffled non-zero entries; sets ``w, wt, b, bt``."""
        cfg = self.config
        d = cfg.vector_size
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
        self.w, self.wt, self.b, self.bt = w, wt, b, bt

__all__ = ["MAX_WINDOW", "GloVe", "GloVeConfig", "cooccurrence", "cooccurrence_stream"]
