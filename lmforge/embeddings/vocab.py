"""Vocabulary, tokenisation and the Huffman tree shared by word2vec, GloVe and FastText.

* Counting: ``min_count`` drops rare words, ``max_vocab`` keeps the most frequent ones.
  Words are sorted by count, descending (ties keep first-seen order), as in word2vec's C
  code and gensim.
* Subsampling (Mikolov et al. 2013, the C code's formula, also gensim's): with
  ``t = sample * total``, a word of count ``f`` is kept with probability
  ``p = (sqrt(f / t) + 1) * t / f`` (clipped to 1).
* Huffman tree (hierarchical softmax): repeatedly merge the two least frequent nodes; a
  word's ``code`` is the 0/1 branch path from the root and ``points`` the inner nodes on
  that path (indices into the ``V - 1`` output vectors).
* Tokenisation: English by a word regex; Chinese either by characters or by ``jieba``.
"""

from __future__ import annotations

import heapq
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, LmforgeError


class EmbeddingError(LmforgeError):
    """Invalid embedding input: empty corpus, too small a vocabulary, bad file."""


class WordNotInVocabulary(EmbeddingError, KeyError):
    """A queried word is not in the vocabulary."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "word not in vocabulary"


_EN_RE = re.compile(r"[A-Za-z]+(?:'[A-Za-z]+)?|\d+(?:[.:]\d+)*")
_CJK_RE = re.compile(r"[\u4e00-\u9fff]|[A-Za-z]+|\d+")


def tokenize(text: str, lang: str = "en", zh_mode: str = "char",
             lowercase: bool = False) -> list[str]:
    """Words of ``text``. ``lang="zh"``: ``zh_mode`` is ``"char"`` (one token per Han
    character) or ``"jieba"`` (jieba's word segmentation, punctuation dropped)."""
    if lang == "zh":
        if zh_mode == "jieba":
            from ..tokenize.zh import jieba_words

            toks = [t for t in jieba_words(text) if _CJK_RE.match(t)]
        elif zh_mode == "char":
            toks = _CJK_RE.findall(text)
        else:
            raise EmbeddingError(f"zh_mode must be 'char' or 'jieba', got {zh_mode!r}")
    else:
        toks = _EN_RE.findall(text)
    return [t.lower() for t in toks] if lowercase else toks


def _sentence_starts(lengths: np.ndarray, max_len: int) -> np.ndarray:
    """int64 starts of the non-empty sentences of ``lengths``, each cut into pieces of at
    most ``max_len`` (longer ones split, as the C tool's MAX_SENTENCE_LENGTH does)."""
    lengths = lengths[lengths > 0]
    if lengths.size == 0 or lengths.max() <= max_len:
        return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    starts, pos = [0], 0
    for n in lengths.tolist():
        starts += [pos + a + min(max_len, n - a) for a in range(0, n, max_len)]
        pos += n
    return np.asarray(starts, dtype=np.int64)


@dataclass
class Vocab:
    """Words sorted by count (descending) with their counts."""

    words: list[str]
    counts: np.ndarray  # int64 [V]
    index: dict[str, int]
    total_raw: int  # tokens in the corpus before min_count/max_vocab filtering

    def __len__(self) -> int:
        return len(self.words)

    @classmethod
    def build(cls, sentences: Iterable[list[str]], min_count: int = 5,
              max_vocab: int | None = None) -> Vocab:
        c: Counter = Counter()
        n = 0
        for s in sentences:
            c.update(s)
            n += len(s)
        if n == 0:
            raise DataError("the corpus is empty: no tokens to train on")
        items = [(w, k) for w, k in c.items() if k >= min_count]
        items.sort(key=lambda x: -x[1])  # stable: ties keep first-seen order
        if max_vocab is not None:
            items = items[:max_vocab]
        if not items:
            raise EmbeddingError(f"no word occurs at least min_count={min_count} times "
                                 f"(corpus has {n} tokens, {len(c)} distinct words)")
        words = [w for w, _ in items]
        counts = np.array([k for _, k in items], dtype=np.int64)
        return cls(words, counts, {w: i for i, w in enumerate(words)}, n)

    @classmethod
    def build_encoded(cls, sentences: Sequence[list[str]], min_count: int = 5,
                      max_vocab: int | None = None, window: int = 1, max_len: int = 10000
                      ) -> tuple[Vocab, np.ndarray, np.ndarray]:
        """The vocabulary of :meth:`build` and the corpus as flat int32 ids (out-of-
        vocabulary words dropped) with int64 sentence starts, in one pass over the words.

        Every token gets a provisional id in first-seen order; ``np.bincount`` counts
        them; a stable sort by descending count gives the same vocabulary as ``build``;
        the provisional ids are then remapped and out-of-vocabulary ones dropped. Raises
        ``EmbeddingError`` when the vocabulary is smaller than ``window`` (or 2)."""
        index: dict[str, int] = {}
        first_seen = index.setdefault
        lens = np.fromiter(map(len, sentences), dtype=np.int64, count=len(sentences))
        n = int(lens.sum())
        if n == 0:
            raise DataError("the corpus is empty: no tokens to train on")
        codes = np.fromiter([first_seen(w, len(index)) for s in sentences for w in s],
                            dtype=np.int64, count=n)
        raw_counts = np.bincount(codes)
        order = np.argsort(-raw_counts, kind="stable")
        order = order[raw_counts[order] >= min_count][:max_vocab]
        if order.size == 0:
            raise EmbeddingError(f"no word occurs at least min_count={min_count} times "
                                 f"(corpus has {n} tokens, {len(index)} distinct words)")
        if order.size < max(2, window):
            raise EmbeddingError(
                f"vocabulary of {order.size} word(s) is smaller than the window "
                f"({window}); lower min_count or window, or use a larger corpus")
        words_by_code = list(index)
        words = [words_by_code[c] for c in order.tolist()]
        vocab = cls(words, raw_counts[order].astype(np.int64),
                    {w: i for i, w in enumerate(words)}, n)
        remap = np.full(len(index), -1, dtype=np.int32)
        remap[order] = np.arange(order.size, dtype=np.int32)
        ids = remap[codes]
        kept = ids >= 0
        sent_of = np.repeat(np.arange(len(sentences)), lens)
        new_lens = np.bincount(sent_of[kept], minlength=len(sentences))
        return vocab, ids[kept], _sentence_starts(new_lens, max_len)

    def keep_probs(self, sample: float) -> np.ndarray:
        """Subsampling keep probabilities (1.0 everywhere when ``sample <= 0``)."""
        f = self.counts.astype(np.float64)
        if sample <= 0:
            return np.ones_like(f, dtype=np.float32)
        t = sample * float(f.sum())
        p = (np.sqrt(f / t) + 1.0) * t / f
        return np.minimum(p, 1.0).astype(np.float32)

    def noise_cum(self, exponent: float = 0.75, domain: int = 2**31 - 1) -> np.ndarray:
        """Cumulative unigram^exponent weights scaled to ``domain`` (int64, increasing):
        a negative is the first ``i`` with ``cum[i] > r`` for ``r ~ U{0..domain-1}``, so
        word ``i`` is drawn with probability ``count_i^exponent / Σ_j count_j^exponent``
        (binary search: a small, cache-friendly table, as in gensim)."""
        p = self.counts.astype(np.float64) ** exponent
        cum = np.round(np.cumsum(p) / p.sum() * domain).astype(np.int64)
        cum[-1] = domain
        return cum

    def huffman(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``codes`` uint8 [V, L], ``points`` int32 [V, L], ``lengths`` int32 [V]."""
        return huffman_tree(self.counts)


def huffman_tree(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Huffman codes of words with ``counts``: inner node ``k`` (0..V-2) is created by
    the k-th merge; the root is ``V - 2``. ``points`` are inner node indices."""
    v = len(counts)
    if v < 2:
        raise EmbeddingError("hierarchical softmax needs at least 2 words in the vocabulary")
    heap = [(int(c), i) for i, c in enumerate(counts)]
    heapq.heapify(heap)
    parent = np.zeros(2 * v - 1, dtype=np.int64)
    branch = np.zeros(2 * v - 1, dtype=np.uint8)
    nxt = v
    while len(heap) > 1:
        c1, a = heapq.heappop(heap)
        c2, b = heapq.heappop(heap)
        parent[a] = parent[b] = nxt
        branch[b] = 1
        heapq.heappush(heap, (c1 + c2, nxt))
        nxt += 1
    root = nxt - 1
    paths_c, paths_p = [], []
    for w in range(v):
        code, pts = [], []
        node = w
        while node != root:
            code.append(branch[node])
            node = parent[node]
            pts.append(node - v)
        paths_c.append(code[::-1])
        paths_p.append(pts[::-1])
    maxlen = max(len(c) for c in paths_c)
    codes = np.zeros((v, maxlen), dtype=np.uint8)
    points = np.zeros((v, maxlen), dtype=np.int32)
    lengths = np.zeros(v, dtype=np.int32)
    for w in range(v):
        n = len(paths_c[w])
        codes[w, :n] = paths_c[w]
        points[w, :n] = paths_p[w]
        lengths[w] = n
    return codes, points, lengths


__all__ = ["EmbeddingError", "Vocab", "WordNotInVocabulary", "huffman_tree", "tokenize"]
