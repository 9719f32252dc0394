r"""word2vec: skip-gram and CBOW with negative sampling or hierarchical softmax.

Notation: ``v_w`` input ("syn0") vectors, ``u_w`` output vectors, ``σ`` the logistic
function, ``c`` a centre word and ``o`` a context word within the window.

* **Skip-gram** predicts the centre word from each context word (as in the C code): the
  hidden vector is ``h = v_o``.
* **CBOW** predicts the centre word from its ``m`` context words: ``h = (1/m) Σ_o v_o``
  (``cbow_mean``, the default) and the error ``e`` (``∂ log-likelihood/∂h`` times ``α``)
  is added, whole, to every context vector, ``v_o += e`` (C code, gensim's
  ``w2v_fast_sentence_cbow_neg``). With ``cbow_mean=False``, ``h = Σ_o v_o`` and each
  context vector gets ``e/m`` (gensim's rule for the sum: "divide error over summed window
  vectors").
* **Negative sampling**: maximise ``log σ(u_c·h) + Σ_{k=1..K} log σ(−u_{n_k}·h)`` with
  ``n_k`` drawn from the unigram distribution raised to ``ns_exponent`` (0.75), from a
  cumulative table by binary search. A negative equal to ``c`` is skipped. With step ``α``, for each
  target ``t`` with label ``y``: ``g = α (y − σ(u_t·h))``, ``e += g u_t``,
  ``u_t += g h``; finally ``v_o += e`` for the input vector(s).
* **Hierarchical softmax**: ``P(c | h) = Π_j σ((1 − 2 d_j) u_{n_j}·h)`` over the inner
  nodes ``n_j`` on the Huffman path of ``c`` with branch bits ``d_j``; the gradient step is
  ``g = α (1 − d_j − σ(u_{n_j}·h))`` (nodes with ``|u·h| ≥ 6`` are skipped, as in C).
* **Subsampling**: each occurrence of word ``w`` (count ``f``) is kept with probability
  ``(sqrt(f/t) + 1) t/f``, ``t = sample · total`` (dropped words are removed before the
  windows are formed, as in C and gensim).
* **Dynamic window**: for each centre word draw ``b ~ U{0..window−1}`` and use the window
  ``window − b`` (nearer words are used more often).
* **Learning rate**: linear from ``alpha`` to ``min_alpha`` over all ``epochs × tokens``
  (the position of each sentence in the whole run sets its rate). ``alpha = 0.025`` for
  both models, as gensim (the C tool uses 0.05 for CBOW).
* **Initialisation**: input vectors uniform in ``[−1/d, 1/d)`` (gensim ≥ 4.0, fastText;
  the C tool's ``[−0.5/d, 0.5/d)`` scores 3–4 points lower on the world corpus's planted
  analogies at one epoch, for CBOW and skip-gram alike); output vectors zero.

The inner loop is compiled with numba and runs Hogwild (lock-free) over chunks of
sentences on ``workers`` threads; each chunk has its own linear-congruential random
stream (``x ← 25214903917 x + 11``, the C code's generator), so a run is reproducible for
a fixed ``workers=1``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from ..errors import ConfigError
from .keyed_vectors import KeyedVectors
from .vocab import EmbeddingError, Vocab

try:  # numba is a dependency; keep a (very slow) pure-Python fallback for its absence
    import numba
    from numba import njit, prange
    HAVE_NUMBA = True
except ImportError:  # pragma: no cover
    HAVE_NUMBA = False
    numba = None

    def njit(*args, **kwargs):
        if args and callable(args[0]):
            return args[0]
        return lambda f: f

    prange = range

MAX_EXP = 6.0


@dataclass
class Word2VecConfig:
    vector_size: int = 100
    window: int = 5
    sg: bool = True
    hs: bool = False
    negative: int = 5
    ns_exponent: float = 0.75
    sample: float = 1e-3
    alpha: float = 0.025
    min_alpha: float = 1e-4
    min_count: int = 5
    max_vocab: int | None = None
    epochs: int = 5
    workers: int = 2
    seed: int = 1
    cbow_mean: bool = True
    chunk_words: int = 10000

    _label: ClassVar[str] = "word2vec"  # prefix of validation messages

    def validate(self) -> None:
        def bad(msg: str) -> None:
            raise ConfigError(f"{self._label}: {msg}")
        if self.vector_size < 1:
            bad(f"vector_size must be >= 1, got {self.vector_size}")
        if self.window < 1:
            bad(f"window must be >= 1, got {self.window}")
        if self.negative < 0:
            bad(f"negative must be >= 0, got {self.negative}")
        if not self.hs and self.negative == 0:
            bad("use negative > 0 or hs=True (no output layer otherwise)")
        if self.epochs < 1:
            bad(f"epochs must be >= 1, got {self.epochs}")
        if not 0 < self.alpha or self.min_alpha < 0 or self.min_alpha > self.alpha:
            bad(f"need 0 <= min_alpha <= alpha, alpha > 0 (got {self.alpha}, {self.min_alpha})")
        if self.min_count < 1:
            bad(f"min_count must be >= 1, got {self.min_count}")
        if self.max_vocab is not None and self.max_vocab < 2:
            bad(f"max_vocab must be >= 2, got {self.max_vocab}")
        if self.workers < 1:
            bad(f"workers must be >= 1, got {self.workers}")


@njit(inline="always", fastmath=True)
def _lcg(x):
    return x * np.uint64(25214903917) + np.uint64(11)


@njit(inline="always", fastmath=True)
def _dot(a, b):
    s = np.float32(0.0)
    for k in range(a.shape[0]):
        s += a[k] * b[k]
    return s


@njit(inline="always", fastmath=True)
def _out_layer(h, e, word, alpha, syn1neg, syn1, table, codes, points, lengths,
               hs, negative, rng):
    """One prediction of ``word`` from ``h``; accumulates ``∂`` into ``e``; returns rng."""
    d = h.shape[0]
    if hs:
        for j in range(lengths[word]):
            p = points[word, j]
            u = syn1[p]
            f = _dot(h, u)
            if f <= -MAX_EXP or f >= MAX_EXP:
                continue
            g = (np.float32(1.0) - np.float32(codes[word, j])
                 - np.float32(1.0) / (np.float32(1.0) + np.exp(-f))) * alpha
            for k in range(d):
                e[k] += g * u[k]
            for k in range(d):
                u[k] += g * h[k]
    if negative > 0:
        nv = table.shape[0]
        top = np.uint64(table[nv - 1])
        for n in range(negative + 1):
            if n == 0:
                target = word
                label = np.float32(1.0)
            else:
                rng = _lcg(rng)
                r = np.int64((rng >> np.uint64(16)) % top)
                lo = 0
                hi = nv - 1
                while lo < hi:  # first i with table[i] > r
                    mid = (lo + hi) >> 1
                    if table[mid] > r:
                        hi = mid
                    else:
                        lo = mid + 1
                target = lo
                if target == word:
                    continue
                label = np.float32(0.0)
            u = syn1neg[target]
            f = _dot(h, u)
            if f > MAX_EXP:
                g = (label - np.float32(1.0)) * alpha
            elif f < -MAX_EXP:
                g = label * alpha
            else:
                g = (label - np.float32(1.0) / (np.float32(1.0) + np.exp(-f))) * alpha
            for k in range(d):
                e[k] += g * u[k]
            for k in range(d):
                u[k] += g * h[k]
    return rng


@njit(inline="always", fastmath=True, cache=True)
def _decayed_alpha(alpha0, min_alpha, done, total):
    """Linear decay: ``alpha0 - (alpha0 - min_alpha) * done / total``, floored."""
    return np.float32(max(alpha0 - (alpha0 - min_alpha) * (done / total), min_alpha))


@njit(inline="always", fastmath=True, cache=True)
def _subsample(tokens, a, b, keep, rng, buf):
    """Copy ``tokens[a:b]`` into ``buf``, dropping word ``w`` with probability
    ``1 - keep[w]``; returns (kept count, new rng state)."""
    n = 0
    for t in range(a, b):
        w = tokens[t]
        if keep[w] < 1.0:
            rng = _lcg(rng)
            if keep[w] < np.float32(rng & np.uint64(0xFFFF)) / np.float32(65536.0):
                continue
        buf[n] = w
        n += 1
    return n, rng


@njit(inline="always", fastmath=True, cache=True)
def _chunk_rng(seed, c):
    """The starting LCG state of chunk ``c`` (each chunk draws its own stream)."""
    return np.uint64(seed) * np.uint64(1000003) + np.uint64(c) * np.uint64(7919) + np.uint64(1)


@njit(inline="always", fastmath=True, cache=True)
def _sentence(tokens, starts, s, keep, rng, buf, pos, alpha0, min_alpha, done_before,
              total_run):
    """Subsample sentence ``s`` into ``buf`` at the learning rate of corpus position
    ``pos``; returns (alpha, kept count, rng, position after the sentence)."""
    a = starts[s]
    b = starts[s + 1]
    alpha = _decayed_alpha(alpha0, min_alpha, done_before + pos, total_run)
    n, rng = _subsample(tokens, a, b, keep, rng, buf)
    return alpha, n, rng, pos + b - a


@njit(inline="always", fastmath=True, cache=True)
def _window(rng, window, i, n):
    """The dynamic window around position ``i`` of ``n``: ``b ~ U{0..window-1}``, context
    ``[i - window + b, i + window - b]``; returns (lo, hi exclusive, rng)."""
    rng = _lcg(rng)
    red = np.int64(rng % np.uint64(window))
    return max(0, i - window + red), min(n, i + window - red + 1), rng


@njit(parallel=True, fastmath=True, cache=True)
def _train_epoch(syn0, syn1neg, syn1, tokens, starts, chunk_sents, chunk_offsets,
                 keep, table, codes, points, lengths, sg, hs, negative, window,
                 cbow_mean, alpha0, min_alpha, done_before, total_run, seed):
    """One epoch over all chunks (Hogwild). Returns words trained (after subsampling)."""
    n_chunks = chunk_sents.shape[0] - 1
    d = syn0.shape[1]
    trained = np.zeros(n_chunks, dtype=np.int64)
    for c in prange(n_chunks):
        rng = _chunk_rng(seed, c)
        h = np.empty(d, dtype=np.float32)
        e = np.empty(d, dtype=np.float32)
        pos = chunk_offsets[c]
        buf = np.empty(max(1, starts[chunk_sents[c + 1]] - starts[chunk_sents[c]]),
                       dtype=np.int32)
        ntr = 0
        for s in range(chunk_sents[c], chunk_sents[c + 1]):
            alpha, n, rng, pos = _sentence(tokens, starts, s, keep, rng, buf, pos, alpha0,
                                           min_alpha, done_before, total_run)
            ntr += n
            for i in range(n):
                word = buf[i]
                lo, hi, rng = _window(rng, window, i, n)
                if sg:
                    for j in range(lo, hi):
                        if j == i:
                            continue
                        v = syn0[buf[j]]
                        for k in range(d):
                            e[k] = 0.0
                        rng = _out_layer(v, e, word, alpha, syn1neg, syn1, table, codes,
                                         points, lengths, hs, negative, rng)
                        for k in range(d):
                            v[k] += e[k]
                else:
                    cw = 0
                    for k in range(d):
                        h[k] = 0.0
                    for j in range(lo, hi):
                        if j == i:
                            continue
                        v = syn0[buf[j]]
                        for k in range(d):
                            h[k] += v[k]
                        cw += 1
                    if cw == 0:
                        continue
                    inv = np.float32(1.0) / np.float32(cw)
                    if cbow_mean:  # h = mean; every context vector gets the whole e
                        for k in range(d):
                            h[k] *= inv
                    for k in range(d):
                        e[k] = 0.0
                    rng = _out_layer(h, e, word, alpha, syn1neg, syn1, table, codes,
                                     points, lengths, hs, negative, rng)
                    if not cbow_mean:  # h = sum; the error is shared out (gensim)
                        for k in range(d):
                            e[k] *= inv
                    for j in range(lo, hi):
                        if j == i:
                            continue
                        v = syn0[buf[j]]
                        for k in range(d):
                            v[k] += e[k]
        trained[c] = ntr
    return trained.sum()


def _chunks(starts: np.ndarray, chunk_words: int) -> tuple[np.ndarray, np.ndarray]:
    """Sentence boundaries of chunks of about ``chunk_words`` tokens, and their offsets."""
    n_sent = len(starts) - 1
    bounds = [0]
    target = chunk_words
    for s in range(1, n_sent + 1):
        if starts[s] >= target or s == n_sent:
            bounds.append(s)
            target = starts[s] + chunk_words
    if bounds[-1] != n_sent:
        bounds.append(n_sent)
    cs = np.asarray(bounds, dtype=np.int64)
    return cs, starts[cs[:-1]].astype(np.int64)


class Word2Vec:
    """word2vec trainer. ``Word2Vec(config).fit(sentences)``; vectors in ``.wv``.

    ``sentences``: a re-iterable of token lists (it is read twice: vocabulary, then ids).
    """

    def __init__(self, config: Word2VecConfig | None = None, **overrides):
        cfg = config or Word2VecConfig()
        if overrides:
            cfg = Word2VecConfig(**{**asdict(cfg), **overrides})
        cfg.validate()
        self.config = cfg
        self.vocab: Vocab | None = None
        self.wv: KeyedVectors | None = None
        self.stats: dict = {}

    def fit(self, sentences: Sequence[list[str]]) -> Word2Vec:
        cfg = self.config
        t0 = time.perf_counter()
        vocab, tokens, starts = Vocab.build_encoded(list(sentences), cfg.min_count,
                                                    cfg.max_vocab, cfg.window)
        self.vocab = vocab
        if len(tokens) < 2:
            raise EmbeddingError("the corpus has fewer than 2 in-vocabulary tokens")
        t_vocab = time.perf_counter() - t0
        rs = np.random.default_rng(cfg.seed)
        v, d = len(vocab), cfg.vector_size
        syn0 = ((rs.random((v, d), dtype=np.float32) * 2 - 1) / d).astype(np.float32)
        syn1neg = np.zeros((v if cfg.negative else 1, d), dtype=np.float32)
        if cfg.hs:
            codes, points, lengths = vocab.huffman()
            syn1 = np.zeros((v - 1, d), dtype=np.float32)
        else:
            codes = np.zeros((1, 1), np.uint8)
            points = np.zeros((1, 1), np.int32)
            lengths = np.zeros(1, np.int32)
            syn1 = np.zeros((1, d), dtype=np.float32)
        table = vocab.noise_cum(cfg.ns_exponent) if cfg.negative else np.ones(1, np.int64)
        keep = vocab.keep_probs(cfg.sample)
        chunk_sents, chunk_offsets = _chunks(starts, cfg.chunk_words)
        n = len(tokens)
        if HAVE_NUMBA:
            numba.set_num_threads(min(cfg.workers, numba.config.NUMBA_NUM_THREADS))
        trained = 0
        for ep in range(cfg.epochs):
            trained += int(_train_epoch(
                syn0, syn1neg, syn1, tokens, starts, chunk_sents, chunk_offsets, keep,
                table, codes, points, lengths, bool(cfg.sg), bool(cfg.hs), int(cfg.negative),
                int(cfg.window), bool(cfg.cbow_mean), float(cfg.alpha), float(cfg.min_alpha),
                float(ep * n), float(cfg.epochs * n), int(cfg.seed * 7 + ep)))
        if not np.all(np.isfinite(syn0)):
            raise EmbeddingError("training diverged (non-finite vectors); lower alpha")
        elapsed = time.perf_counter() - t0
        self.syn1neg, self.syn1 = syn1neg, syn1
        self.wv = KeyedVectors(vocab.words, syn0, counts=vocab.counts)
        self.stats = {"vocab_size": v, "corpus_tokens": vocab.total_raw,
                      "in_vocab_tokens": n,
                      "trained_tokens": trained, "seconds": elapsed,
                      "vocab_seconds": t_vocab,
                      "words_per_second": vocab.total_raw * cfg.epochs / elapsed}
        return self


def train_word2vec(sentences: Sequence[list[str]], config: Word2VecConfig | None = None,
                   **overrides) -> KeyedVectors:
    """Train word2vec on token lists and return the word vectors."""
    return Word2Vec(config, **overrides).fit(sentences).wv


__all__ = ["HAVE_NUMBA", "Word2Vec", "Word2VecConfig", "train_word2vec"]
