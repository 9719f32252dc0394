r"""FastText: skip-gram over character n-grams (Bojanowski et al. 2017).

Notation as in ``word2vec.py``: ``u_c`` output vectors, ``σ`` the logistic function.

* **Subwords**: a word ``w`` is wrapped in boundary markers, ``<w>``, and ``G_w`` is the
  multiset of its character n-grams of length ``min_n..max_n`` (3..6 by default; the whole
  ``<w>`` is one of them when it is short enough) plus the word itself. For "where" and
  ``n = 3``: ``<wh, whe, her, ere, re>``. Characters are Unicode code points (UTF-8
  sequences); with ``min_n = 1`` the lone markers (the first and the last character of
  ``<w>``) are skipped, as fastText's ``Dictionary::computeSubwords`` does.
* **Hashing** (fastText's ``Dictionary::hash``): an n-gram ``g`` with UTF-8 bytes
  ``b_1..b_m`` goes to bucket ``H(g) mod bucket``, ``H`` a 32-bit FNV-1a in which every
  byte is first sign-extended (C++ ``uint32_t(int8_t(b))``)::

      h ← 2166136261;  per byte: h ← (h xor s(b)) · 16777619 mod 2^32,
      s(b) = b for b < 0x80,  s(b) = b + 0xFFFFFF00 for b ≥ 0x80.

  For ASCII this is the textbook FNV-1a. Different n-grams may share a bucket.
* **Input vector**: ``h_w = (1/|G_w|) Σ_{g∈G_w} z_g`` with ``z_w`` the word's own vector
  and ``z_g`` the bucket vectors; the score of a context word ``c`` is
  ``s(w, c) = h_w · u_c``.
* **Objective** (skip-gram, negative sampling; the centre word ``w`` predicts each
  context word ``c`` in its dynamic window): maximise
  ``log σ(s(w, c)) + Σ_{k=1..K} log σ(−s(w, n_k))``, ``n_k ~ count^0.75``. For each pair
  ``(w, c)`` the bag mean ``h_w`` is recomputed, then for each target ``t`` with label
  ``y``: ``g = α (y − σ(u_t·h_w))``, ``e += g u_t``, ``u_t += g h_w``; finally **every**
  member of the bag gets the whole error, ``z_g += e`` for ``g ∈ G_w`` (fastText's
  ``Model::update`` and gensim's ``fasttext_fast_sentence_sg_neg``). ``e`` is the
  gradient with respect to ``h_w``; the exact gradient with respect to one ``z_g`` would
  be ``e/|G_w|``, but with it ``h_w`` moves only by ``e/|G_w|`` per step, an effective
  learning rate ``|G_w|`` (≈ 40) times smaller than word2vec's, and the vectors stay
  near a common direction (cosine ≈ 0.97 between unrelated words after 5 epochs). With
  fastText's rule ``h_w`` moves by ``e``, as a word2vec input vector does.
* **Initialisation** (fastText, gensim): every ``z`` uniform in ``[−1/d, 1/d)``; the
  output vectors ``u`` are zero.
* Subsampling, the dynamic window, the negative table, the linear learning-rate decay
  and the Hogwild chunking are word2vec's (``Vocab.keep_probs``, ``Vocab.noise_cum``,
  ``word2vec._out_layer``, ``word2vec._chunks``).
* **Vectors after training** (``FastTextKeyedVectors``): an in-vocabulary word gets its
  input vector ``h_w``; an out-of-vocabulary word ``w`` gets
  ``(1/|N_w|) Σ_{g∈N_w} z_g`` over its n-grams ``N_w`` (fastText's ``getWordVector``),
  where a bucket no vocabulary word uses counts as zero (it is never trained; fastText
  leaves it at its small random initialisation). A word none of whose n-grams was seen
  raises ``WordNotInVocabulary``.

Only the buckets used by vocabulary words are allocated (a compact row per used bucket):
the other rows of fastText's ``bucket × d`` matrix are never updated in training, so the
result is the same, with far less memory.

Facebook's ``.bin`` format is read and written by :mod:`lmforge.embeddings.fasttext_bin`.
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
    _chunk_rng,
    _chunks,
    _out_layer,
    _sentence,
    _window,
    njit,
    numba,
    prange,
)

FNV_OFFSET = 2166136261
FNV_PRIME = 16777619
MAX_BUCKET = 2**31 - 1  # the .bin format stores bucket as int32


# ---------------------------------------------------------------------------- hashing
@njit(inline="always", cache=True)
def _ft_step(h, b):
    """One FNV-1a step with fastText's sign extension of byte ``b`` (``h < 2^32``)."""
    x = np.uint64(b)
    if b >= 0x80:
        x |= np.uint64(0xFFFFFF00)
    return ((h ^ x) * np.uint64(FNV_PRIME)) & np.uint64(0xFFFFFFFF)


@njit(cache=True)
def _hash_bytes(data):
    h = np.uint64(FNV_OFFSET)
    for t in range(data.shape[0]):
        h = _ft_step(h, data[t])
    return h


@njit(cache=True)
def _ngram_hashes(data, starts, min_n, max_n, bucket, out, offsets):
    """Bucket ids of the n-grams of each word (fastText's ``computeSubwords``).

    ``data[starts[i]:starts[i+1]]`` holds the UTF-8 bytes of ``<w_i>``. The ids of word
    ``i`` are written to ``out[offsets[i]:offsets[i+1]]``, by start position, then
    length. An n-gram is ``n`` whole UTF-8 sequences; its hash is built byte by byte as
    it grows. Returns the number of ids written."""
    k = 0
    offsets[0] = 0
    for w in range(starts.shape[0] - 1):
        a = starts[w]
        b = starts[w + 1]
        for i in range(a, b):
            if (data[i] & 0xC0) == 0x80:  # continuation byte: not a character start
                continue
            h = np.uint64(FNV_OFFSET)
            j = i
            n = 1
            while j < b and n <= max_n:
                h = _ft_step(h, data[j])
                j += 1
                while j < b and (data[j] & 0xC0) == 0x80:
                    h = _ft_step(h, data[j])
                    j += 1
                if n >= min_n and not (n == 1 and (i == a or j == b)):
                    out[k] = np.int32(h % np.uint64(bucket))
                    k += 1
                n += 1
        offsets[w + 1] = k
    return k


def ft_hash(text: str | bytes) -> int:
    """fastText's hash of the UTF-8 bytes of ``text`` (FNV-1a 32 with sign-extended
    bytes; see the module docstring)."""
    data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
    return int(_hash_bytes(np.frombuffer(data, dtype=np.uint8)))


def _check_ngram_range(min_n: int, max_n: int) -> None:
    if min_n < 1 or max_n < min_n:
        raise EmbeddingError(f"need 1 <= min_n <= max_n, got {min_n}, {max_n}")


def char_ngrams(word: str, min_n: int = 3, max_n: int = 6) -> list[str]:
    """Character n-grams of ``<word>`` of length ``min_n..max_n``, by start position then
    length (fastText's order); duplicates are kept, lone boundary markers skipped."""
    if not isinstance(word, str) or not word:
        raise EmbeddingError(f"expected a non-empty word, got {word!r}")
    _check_ngram_range(min_n, max_n)
    s = "<" + word + ">"
    out = []
    for i in range(len(s)):
        for n in range(min_n, min(max_n, len(s) - i) + 1):
            if n == 1 and (i == 0 or i == len(s) - 1):
                continue
            out.append(s[i:i + n])
    return out


def subword_buckets(words: Sequence[str], min_n: int, max_n: int, bucket: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Bucket ids of the n-grams of many words, compiled: ``(ids int32, offsets int64)``
    with word ``i``'s ids in ``ids[offsets[i]:offsets[i+1]]`` (``ft_hash(g) mod bucket``
    for ``g`` in ``char_ngrams(w)``)."""
    _check_ngram_range(min_n, max_n)
    if not 1 <= bucket <= MAX_BUCKET:
        raise EmbeddingError(f"bucket must be in 1..{MAX_BUCKET}, got {bucket}")
    try:
        encoded = [b"<" + w.encode("utf-8") + b">" for w in words]
    except UnicodeEncodeError as e:
        raise EmbeddingError(f"a word is not valid Unicode text ({e.reason}): "
                             f"{e.object!r}") from None
    lens = np.fromiter(map(len, encoded), dtype=np.int64, count=len(encoded))
    starts = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(lens, out=starts[1:])
    data = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    cap = int((lens * np.minimum(lens, max_n - min_n + 1)).sum())  # ≥ the n-gram count
    out = np.empty(max(cap, 1), dtype=np.int32)
    offsets = np.empty(len(encoded) + 1, dtype=np.int64)
    k = _ngram_hashes(data, starts, int(min_n), int(max_n), int(bucket), out, offsets)
    return out[:k].copy(), offsets


def ngram_buckets(word: str, min_n: int, max_n: int, bucket: int) -> list[int]:
    """Bucket ids of the n-grams of ``word`` (as gensim's ``ft_ngram_hashes``)."""
    if not isinstance(word, str) or not word:
        raise EmbeddingError(f"expected a non-empty word, got {word!r}")
    return subword_buckets([word], min_n, max_n, bucket)[0].tolist()


def _compact_subwords(words: Sequence[str], min_n: int, max_n: int, bucket: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The bag ``G_w`` of every vocabulary word as CSR rows of the compact input matrix
    (``[word vectors; used bucket vectors]``, the word itself first), the bucket → row
    map (``-1`` for buckets no word uses) and the used buckets (ascending; row
    ``len(words) + r`` holds bucket ``used[r]``).

    Returns ``(sub_starts int64, sub_ids int32, bucket_rows int32, used int64)``."""
    v = len(words)
    ids, offsets = subword_buckets(words, min_n, max_n, bucket)
    used, inverse = np.unique(ids, return_inverse=True)
    bucket_rows = np.full(bucket, -1, dtype=np.int32)
    bucket_rows[used] = np.arange(len(used), dtype=np.int32)
    sub_starts = offsets + np.arange(v + 1, dtype=np.int64)  # one more slot per word
    is_word = np.zeros(int(sub_starts[-1]), dtype=bool)
    is_word[sub_starts[:-1]] = True
    sub_ids = np.empty(len(is_word), dtype=np.int32)
    sub_ids[is_word] = np.arange(v, dtype=np.int32)
    sub_ids[~is_word] = v + inverse.reshape(-1).astype(np.int32)
    return sub_starts, sub_ids, bucket_rows, used.astype(np.int64)


# ---------------------------------------------------------------------------- config
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
        if not 1 <= self.bucket <= MAX_BUCKET:
            raise ConfigError(f"fasttext: bucket must be in 1..{MAX_BUCKET}, "
                              f"got {self.bucket}")


# ---------------------------------------------------------------------------- vectors
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

    def _ngram_rows(self, word: str) -> np.ndarray:
        """Rows of ``word``'s n-grams in ``ngram_vectors`` (``-1``: untrained bucket)."""
        return self.bucket_rows[ngram_buckets(word, self.min_n, self.max_n, self.bucket)]

    def has_vector(self, word: str) -> bool:
        return word in self.key_to_index or bool((self._ngram_rows(word) >= 0).any())

    def get_vector(self, word: str, norm: bool = False) -> np.ndarray:
        """In the vocabulary: ``h_w``; otherwise ``(1/|N_w|) Σ_{g∈N_w} z_g`` with
        untrained buckets as zero (fastText's and gensim's OOV vector)."""
        if word in self.key_to_index:
            return super().get_vector(word, norm)
        rows = self._ngram_rows(word)
        seen = rows[rows >= 0]
        if len(seen) == 0:
            raise WordNotInVocabulary(
                f"word {word!r} is not in the vocabulary and none of its character "
                f"{self.min_n}..{self.max_n}-grams was seen in training")
        v = self.ngram_vectors[seen].sum(0) / np.float32(len(rows))
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


# ---------------------------------------------------------------------------- training
@njit(inline="always", fastmath=True)
def _bag_mean(syn0, sub_ids, g0, g1, h):
    """``h = (1/|G|) Σ_{g∈G} syn0[g]`` over ``G = sub_ids[g0:g1]``."""
    d = h.shape[0]
    for k in range(d):
        h[k] = 0.0
    for g in range(g0, g1):
        z = syn0[sub_ids[g]]
        for k in range(d):
            h[k] += z[k]
    inv = np.float32(1.0) / np.float32(g1 - g0)
    for k in range(d):
        h[k] *= inv


@njit(inline="always", fastmath=True)
def _bag_add(syn0, sub_ids, g0, g1, e):
    """``syn0[g] += e`` for every member ``g`` of the bag (duplicates get it twice)."""
    d = e.shape[0]
    for g in range(g0, g1):
        z = syn0[sub_ids[g]]
        for k in range(d):
            z[k] += e[k]


@njit(parallel=True, fastmath=True, cache=True)
def _compose(syn0, sub_starts, sub_ids):
    """``h_w`` of every vocabulary word (rows of the result)."""
    v = sub_starts.shape[0] - 1
    out = np.empty((v, syn0.shape[1]), dtype=np.float32)
    for w in prange(v):
        _bag_mean(syn0, sub_ids, sub_starts[w], sub_starts[w + 1], out[w])
    return out


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
                g0 = sub_starts[word]
                g1 = sub_starts[word + 1]
                for j in range(lo, hi):
                    if j == i:
                        continue
                    _bag_mean(syn0, sub_ids, g0, g1, h)
                    for k in range(d):
                        e[k] = 0.0
                    rng = _out_layer(h, e, buf[j], alpha, syn1neg, syn1, table, codes,
                                     points, lengths, False, negative, rng)
                    _bag_add(syn0, sub_ids, g0, g1, e)
        trained[c] = ntr
    return trained.sum()


def _keyed_vectors(words: Sequence[str], syn0: np.ndarray, sub: tuple, min_n: int,
                   max_n: int, counts: np.ndarray | None) -> FastTextKeyedVectors:
    """``FastTextKeyedVectors`` from the compact input matrix and ``_compact_subwords``."""
    sub_starts, sub_ids, bucket_rows, _used = sub
    v = len(words)
    return FastTextKeyedVectors(words, _compose(syn0, sub_starts, sub_ids), syn0[:v],
                                syn0[v:], bucket_rows, min_n, max_n, counts=counts)


class FastText:
    """FastText trainer. ``FastText(config).fit(sentences)``; vectors in ``.wv``
    (a ``FastTextKeyedVectors``), output vectors in ``.syn1neg``. ``sentences`` is
    re-iterable (read twice)."""

    def __init__(self, config: FastTextConfig | None = None, **overrides):
        cfg = config or FastTextConfig()
        if overrides:
            cfg = FastTextConfig(**{**asdict(cfg), **overrides})
        cfg.validate()
        self.config = cfg
        self.vocab: Vocab | None = None
        self.wv: FastTextKeyedVectors | None = None
        self.syn1neg: np.ndarray | None = None
        self.stats: dict = {}

    def _init_weights(self, rows: int, v: int) -> tuple[np.ndarray, np.ndarray]:
        """``z ~ U[−1/d, 1/d)`` for all input rows, ``u = 0`` (fastText, gensim)."""
        d = self.config.vector_size
        rs = np.random.default_rng(self.config.seed)
        syn0 = (rs.random((rows, d), dtype=np.float32) * 2.0 - 1.0) / np.float32(d)
        return syn0.astype(np.float32), np.zeros((v, d), dtype=np.float32)

    def fit(self, sentences: Sequence[list[str]]) -> FastText:
        cfg = self.config
        t0 = time.perf_counter()
        vocab, tokens, starts = Vocab.build_encoded(list(sentences), cfg.min_count,
                                                    cfg.max_vocab, cfg.window)
        self.vocab = vocab
        if len(tokens) < 2:
            raise EmbeddingError("the corpus has fewer than 2 in-vocabulary tokens")
        sub = _compact_subwords(vocab.words, cfg.min_n, cfg.max_n, cfg.bucket)
        sub_starts, sub_ids, _rows, used = sub
        v = len(vocab)
        syn0, syn1neg = self._init_weights(v + len(used), v)
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
        self.syn1neg = syn1neg
        self.wv = _keyed_vectors(vocab.words, syn0, sub, cfg.min_n, cfg.max_n, vocab.counts)
        elapsed = time.perf_counter() - t0
        self.stats = {"vocab_size": v, "ngram_rows": len(used), "corpus_tokens": vocab.total_raw,
                      "in_vocab_tokens": n, "trained_tokens": trained, "seconds": elapsed,
                      "vocab_seconds": t_vocab,
                      "words_per_second": vocab.total_raw * cfg.epochs / elapsed}
        return self


def train_fasttext(sentences: Sequence[list[str]], config: FastTextConfig | None = None,
                   **overrides) -> FastTextKeyedVectors:
    """Train FastText on token lists and return the vectors."""
    return FastText(config, **overrides).fit(sentences).wv


__all__ = ["FastText", "FastTextConfig", "FastTextKeyedVectors", "char_ngrams", "ft_hash",
           "ngram_buckets", "subword_buckets", "train_fasttext"]
