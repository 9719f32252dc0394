r"""FastText: skip-gram over character n-grams (Bojanowski et al. 2017).

Notation as in ``word2vec.py``: ``u_c`` output vectors, ``σ`` the logistic function.

* **Subwords**: a word ``w`` is wrapped in boundary markers, ``<w>``, and ``G_w`` is the
  multiset of its character n-grams of length ``min_n..max_n`` (3..6 by default; the whole
  ``<w>`` is one of them when it is short enough) plus the word itself. For "where" and
  ``n = 3``: ``<wh, whe, her, ere, re>``. Characters are Unicode code points; with
  ``min_n = 1`` the lone markers ``<`` and ``>`` are skipped (as fastText does).
* **Hashing**: an n-gram ``g`` is stored in bucket ``FNV-1a-32(utf8(g)) mod bucket``
  (``h ← 2166136261``; per byte ``h ← (h xor byte) · 16777619 mod 2^32``). Different
  n-grams may share a bucket. For ASCII this is fastText's hash; fastText sign-extends
  bytes ≥ 0x80 before the xor, we use the standard (unsigned) FNV-1a.
* **Input vector**: ``h_w = (1/|G_w|) Σ_{g∈G_w} z_g`` with ``z_w`` the word's own vector
  and ``z_g`` the bucket vectors; the score of a context word ``c`` is
  ``s(w, c) = h_w · u_c = (1/|G_w|) Σ_{g∈G_w} z_g · u_c``.
* **Objective** (skip-gram, negative sampling; the centre word ``w`` predicts each
  context word ``c`` in its dynamic window): maximise
  ``log σ(s(w, c)) + Σ_{k=1..K} log σ(−s(w, n_k))``, ``n_k ~ count^0.75``. For a target
  ``t`` with label ``y``: ``g = α (y − σ(u_t·h_w))``, ``e += g u_t``, ``u_t += g h_w``;
  then every ``z_g += e / |G_w|`` (the exact gradient of the mean; fastText's own
  skip-gram adds the unscaled ``e``) and hence ``h_w += e / |G_w|``.
* Subsampling, the dynamic window, the negative table, the linear learning-rate decay
  and the Hogwild chunking are word2vec's (``Vocab.keep_probs``, ``Vocab.noise_cum``,
  ``word2vec._out_layer``, ``word2vec._chunks``).
* **Vectors after training** (``FastTextKeyedVectors``): an in-vocabulary word gets its
  input vector ``h_w`` (word vector and n-grams); an out-of-vocabulary word gets the mean
  of the vectors of its n-grams whose buckets were trained (the n-grams of some
  vocabulary word). A word none of whose n-grams was seen raises
  ``WordNotInVocabulary`` (its n-gram vectors would be untrained noise).

Only the buckets used by vocabulary words are allocated (a compact row per used bucket):
the other rows of fastText's ``bucket × d`` matrix are never updated in training, so the
result is the same, with far less memory.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from .keyed_vectors import KeyedVectors
from .vocab import EmbeddingError, Vocab, WordNotInVocabulary
from .word2vec import (
    HAVE_NUMBA,
    Word2VecConfig,
    _chunks,
    _decayed_alpha,
    _lcg,
    _out_layer,
    _subsample,
    njit,
    numba,
    prange,
)

FNV_OFFSET = 2166136261
FNV_PRIME = 16777619


def fnv1a_32(text: str | bytes) -> int:
    """32-bit FNV-1a hash of the UTF-8 bytes of ``text``."""
    data = text.encode("utf-8") if isinstance(text, str) else text
    h = FNV_OFFSET
    for b in data:
        h = ((h ^ b) * FNV_PRIME) & 0xFFFFFFFF
    return h


def char_ngrams(word: str, min_n: int = 3, max_n: int = 6) -> list[str]:
    """Character n-grams of ``<word>`` of length ``min_n..max_n``, by start position then
    length (fastText's order); duplicates are kept."""
    if not isinstance(word, str) or not word:
        raise EmbeddingError(f"expected a non-empty word, got {word!r}")
    if min_n < 1 or max_n < min_n:
        raise EmbeddingError(f"need 1 <= min_n <= max_n, got {min_n}, {max_n}")
    s = "<" + word + ">"
    out = []
    for i in range(len(s)):
        for n in range(min_n, max_n + 1):
            if i + n > len(s):
                break
            g = s[i:i + n]
            if n == 1 and g in ("<", ">"):
                continue
            out.append(g)
    return out


def ngram_buckets(word: str, min_n: int, max_n: int, bucket: int) -> list[int]:
    """Bucket ids of the n-grams of ``word``."""
    return [fnv1a_32(g) % bucket for g in char_ngrams(word, min_n, max_n)]


@dataclass
class FastTextConfig(Word2VecConfig):
    """word2vec's settings (skip-gram with negative sampling only) plus subwords."""

    min_n: int = 3
    max_n: int = 6
    bucket: int = 2_000_000

    _label: ClassVar[str] = "fasttext"

    def validate(self) -> None:
        from ..errors import ConfigError
        super().validate()
        if not self.sg or self.hs or self.negative < 1:
            raise ConfigError("fasttext: only skip-gram with negative sampling is "
                              "implemented (sg=True, hs=False, negative >= 1)")
        if self.min_n < 1 or self.max_n < self.min_n:
            raise ConfigError(f"fasttext: need 1 <= min_n <= max_n, got min_n={self.min_n}, "
                              f"max_n={self.max_n}")
        if self.bucket < 1:
            raise ConfigError(f"fasttext: bucket must be >= 1, got {self.bucket}")


class FastTextKeyedVectors(KeyedVectors):
    """``KeyedVectors`` of the vocabulary (rows = ``h_w``) plus n-gram vectors for
    out-of-vocabulary words. ``in`` and ``index`` refer to the vocabulary; use
    ``has_vector`` to ask whether any vector can be built."""

    def __init__(self, words: Sequence[str], vectors: np.ndarray, vectors_vocab: np.ndarray,
                 ngram_vectors: np.ndarray, bucket_rows: np.ndarray, min_n: int,
                 max_n: int, counts: np.ndarray | None = None):
        super().__init__(words, vectors, counts)
        self.vectors_vocab = np.ascontiguousarray(vectors_vocab, dtype=np.float32)
        self.ngram_vectors = np.ascontiguousarray(ngram_vectors, dtype=np.float32)
        self.bucket_rows = bucket_rows  # int32 [bucket]: row in ngram_vectors or -1
        self.min_n, self.max_n = min_n, max_n
        self.bucket = len(bucket_rows)

    def _ngram_rows(self, word: str) -> list[int]:
        rows = self.bucket_rows[ngram_buckets(word, self.min_n, self.max_n, self.bucket)]
        return [int(r) for r in rows if r >= 0]

    def has_vector(self, word: str) -> bool:
        return word in self.key_to_index or bool(self._ngram_rows(word))

    def get_vector(self, word: str, norm: bool = False) -> np.ndarray:
        if word in self.key_to_index:
            return super().get_vector(word, norm)
        rows = self._ngram_rows(word)
        if not rows:
            raise WordNotInVocabulary(
                f"word {word!r} is not in the vocabulary and none of its character "
                f"{self.min_n}..{self.max_n}-grams was seen in training")
        v = self.ngram_vectors[rows].mean(0)
        return v / max(float(np.linalg.norm(v)), 1e-12) if norm else v

    def _resolve(self, items) -> list:
        return [self.get_vector(x) if isinstance(x, str) and x not in self.key_to_index
                else x for x in self._as_list(items)]

    def most_similar(self, positive=None, negative=None, topn: int = 10):
        """As ``KeyedVectors.most_similar``; out-of-vocabulary words are allowed."""
        return super().most_similar(self._resolve(positive), self._resolve(negative), topn)

    def most_similar_cosmul(self, positive=None, negative=None, topn: int = 10):
        return super().most_similar_cosmul(self._resolve(positive),
                                           self._resolve(negative), topn)


@njit(parallel=True, fastmath=True, cache=True)
def _train_epoch_ft(syn0, syn1neg, sub_starts, sub_ids, tokens, starts, chunk_sents,
                    chunk_offsets, keep, table, negative, window, alpha0, min_alpha,
                    done_before, total_run, seed):
    """One skip-gram epoch with subword inputs (Hogwild). Returns words trained."""
    n_chunks = chunk_sents.shape[0] - 1
    d = syn0.shape[1]
    trained = np.zeros(n_chunks, dtype=np.int64)
    syn1 = np.zeros((1, d), dtype=np.float32)  # unused (no hierarchical softmax)
    codes = np.zeros((1, 1), dtype=np.uint8)
    points = np.zeros((1, 1), dtype=np.int32)
    lengths = np.zeros(1, dtype=np.int32)
    for c in prange(n_chunks):
        rng = np.uint64(seed) * np.uint64(1000003) + np.uint64(c) * np.uint64(7919) + np.uint64(1)
        h = np.empty(d, dtype=np.float32)
        e = np.empty(d, dtype=np.float32)
        pos = chunk_offsets[c]
        s0 = chunk_sents[c]
        s1 = chunk_sents[c + 1]
        buf = np.empty(max(1, starts[s1] - starts[s0]), dtype=np.int32)
        ntr = 0
        for s in range(s0, s1):
            a = starts[s]
            b = starts[s + 1]
            alpha = _decayed_alpha(alpha0, min_alpha, done_before + pos, total_run)
            pos += b - a
            n, rng = _subsample(tokens, a, b, keep, rng, buf)
            ntr += n
            for i in range(n):
                word = buf[i]
                rng = _lcg(rng)
                red = np.int64(rng % np.uint64(window))
                lo = max(0, i - window + red)
                hi = min(n, i + window - red + 1)
                g0 = sub_starts[word]
                g1 = sub_starts[word + 1]
                inv = np.float32(1.0) / np.float32(g1 - g0)
                for k in range(d):
                    h[k] = 0.0
                for g in range(g0, g1):
                    z = syn0[sub_ids[g]]
                    for k in range(d):
                        h[k] += z[k]
                for k in range(d):
                    h[k] *= inv
                for j in range(lo, hi):
                    if j == i:
                        continue
                    for k in range(d):
                        e[k] = 0.0
                    rng = _out_layer(h, e, buf[j], alpha, syn1neg, syn1, table, codes,
                                     points, lengths, False, negative, rng)
                    for k in range(d):
                        e[k] *= inv
                    for g in range(g0, g1):
                        z = syn0[sub_ids[g]]
                        for k in range(d):
                            z[k] += e[k]
                    for k in range(d):
                        h[k] += e[k]
        trained[c] = ntr
    return trained.sum()


class FastText:
    """FastText trainer. ``FastText(config).fit(sentences)``; vectors in ``.wv``
    (a ``FastTextKeyedVectors``). ``sentences`` is re-iterable (read twice)."""

    def __init__(self, config: FastTextConfig | None = None, **overrides):
        cfg = config or FastTextConfig()
        if overrides:
            cfg = FastTextConfig(**{**asdict(cfg), **overrides})
        cfg.validate()
        self.config = cfg
        self.vocab: Vocab | None = None
        self.wv: FastTextKeyedVectors | None = None
        self.stats: dict = {}

    def build_vocab(self, sentences) -> Vocab:
        cfg = self.config
        vocab = Vocab.build(sentences, cfg.min_count, cfg.max_vocab)
        if len(vocab) < max(2, cfg.window):
            raise EmbeddingError(
                f"vocabulary of {len(vocab)} word(s) is smaller than the window "
                f"({cfg.window}); lower min_count or window, or use a larger corpus")
        self.vocab = vocab
        return vocab

    def _subwords(self, vocab: Vocab) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CSR subword lists (row ids into the input matrix; the word itself first) and
        the bucket → compact n-gram row map (``-1`` for buckets no word uses)."""
        cfg = self.config
        v = len(vocab)
        bucket_rows = np.full(cfg.bucket, -1, dtype=np.int32)
        n_used = 0
        sub_starts = [0]
        sub_ids: list[int] = []
        for i, w in enumerate(vocab.words):
            sub_ids.append(i)
            for bk in ngram_buckets(w, cfg.min_n, cfg.max_n, cfg.bucket):
                if bucket_rows[bk] < 0:
                    bucket_rows[bk] = n_used
                    n_used += 1
                sub_ids.append(v + int(bucket_rows[bk]))
            sub_starts.append(len(sub_ids))
        return (np.asarray(sub_starts, dtype=np.int64), np.asarray(sub_ids, dtype=np.int32),
                bucket_rows)

    def fit(self, sentences: Sequence[list[str]]) -> FastText:
        cfg = self.config
        t0 = time.perf_counter()
        vocab = self.build_vocab(sentences)
        tokens, starts = vocab.encode(sentences)
        if len(tokens) < 2:
            raise EmbeddingError("the corpus has fewer than 2 in-vocabulary tokens")
        sub_starts, sub_ids, bucket_rows = self._subwords(vocab)
        v, d = len(vocab), cfg.vector_size
        rows = v + int(bucket_rows.max()) + 1
        rs = np.random.default_rng(cfg.seed)
        syn0 = ((rs.random((rows, d), dtype=np.float32) - 0.5) / d).astype(np.float32)
        syn1neg = np.zeros((v, d), dtype=np.float32)
        table = vocab.noise_cum(cfg.ns_exponent)
        keep = vocab.keep_probs(cfg.sample)
        chunk_sents, chunk_offsets = _chunks(starts, cfg.chunk_words)
        t_vocab = time.perf_counter() - t0
        n = len(tokens)
        if HAVE_NUMBA:
            numba.set_num_threads(min(cfg.workers, numba.config.NUMBA_NUM_THREADS))
        trained = 0
        for ep in range(cfg.epochs):
            trained += int(_train_epoch_ft(
                syn0, syn1neg, sub_starts, sub_ids, tokens, starts, chunk_sents,
                chunk_offsets, keep, table, int(cfg.negative), int(cfg.window),
                float(cfg.alpha), float(cfg.min_alpha), float(ep * n),
                float(cfg.epochs * n), int(cfg.seed * 7 + ep)))
        if not np.all(np.isfinite(syn0)):
            raise EmbeddingError("training diverged (non-finite vectors); lower alpha")
        counts = np.diff(sub_starts).astype(np.float32)
        composed = np.add.reduceat(syn0[sub_ids], sub_starts[:-1], axis=0) / counts[:, None]
        self.syn1neg = syn1neg
        self.wv = FastTextKeyedVectors(vocab.words, composed, syn0[:v], syn0[v:],
                                       bucket_rows, cfg.min_n, cfg.max_n,
                                       counts=vocab.counts)
        elapsed = time.perf_counter() - t0
        self.stats = {"vocab_size": v, "ngram_rows": rows - v, "corpus_tokens": vocab.total_raw,
                      "in_vocab_tokens": n, "trained_tokens": trained, "seconds": elapsed,
                      "vocab_seconds": t_vocab,
                      "words_per_second": vocab.total_raw * cfg.epochs / elapsed}
        return self


def train_fasttext(sentences: Sequence[list[str]], config: FastTextConfig | None = None,
                   **overrides) -> FastTextKeyedVectors:
    """Train FastText on token lists and return the vectors."""
    return FastText(config, **overrides).fit(sentences).wv


__all__ = ["FastText", "FastTextConfig", "FastTextKeyedVectors", "char_ngrams",
           "fnv1a_32", "ngram_buckets", "train_fasttext"]
