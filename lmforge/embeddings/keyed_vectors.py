r"""Word vectors with similarity queries and the word2vec file formats.

* Cosine similarity ``cos(a, b) = a·b / (|a| |b|)``; queries use unit vectors ``â``.
* ``most_similar(positive, negative)`` (3CosAdd, Mikolov 2013):
  ``argmax_x cos(x, mean(Σ_{p} p̂ − Σ_{n} n̂))`` over words not in the query.
  The analogy "a : b :: c : ?" is ``most_similar([b, c], [a])``.
* ``most_similar_cosmul`` (3CosMul, Levy & Goldberg 2014): cosines shifted to
  ``[0, 1]`` by ``(1 + cos)/2``, then ``argmax_x Π_p cos'(x, p) / (Π_n cos'(x, n) + ε)``
  with ``ε = 1e-6``.
* Formats (as the C tool and gensim write them): a header line ``"V d\n"``; text: one line
  ``word v_1 ... v_d`` per word; binary: ``word`` + space + ``d`` little-endian float32
  + ``\n`` per word. Words are UTF-8 and may not contain whitespace.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..io import atomic_write_bytes
from ..privacy.encrypted_io import read_bytes
from .vocab import EmbeddingError, WordNotInVocabulary


class KeyedVectors:
    """``vectors[i]`` is the vector of ``index_to_key[i]``."""

    def __init__(self, words: Sequence[str], vectors: np.ndarray,
                 counts: np.ndarray | None = None):
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise EmbeddingError(f"{len(words)} words but vectors of shape {vectors.shape}")
        self.index_to_key = list(words)
        self.key_to_index = {w: i for i, w in enumerate(self.index_to_key)}
        if len(self.key_to_index) != len(self.index_to_key):
            raise EmbeddingError("duplicate words in the vocabulary")
        self.vectors = vectors
        self.counts = counts
        self._normed: np.ndarray | None = None

    # ------------------------------------------------------------------ basics
    @property
    def vector_size(self) -> int:
        return self.vectors.shape[1]

    def __len__(self) -> int:
        return len(self.index_to_key)

    def __contains__(self, word: str) -> bool:
        return word in self.key_to_index

    def index(self, word: str) -> int:
        try:
            return self.key_to_index[word]
        except KeyError:
            raise WordNotInVocabulary(f"word {word!r} is not in the vocabulary "
                                      f"({len(self)} words)") from None

    def __getitem__(self, word: str) -> np.ndarray:
        return self.get_vector(word)

    def get_vector(self, word: str, norm: bool = False) -> np.ndarray:
        i = self.index(word)
        return self.normed[i] if norm else self.vectors[i]

    @property
    def normed(self) -> np.ndarray:
        if self._normed is None:
            n = np.linalg.norm(self.vectors, axis=1, keepdims=True)
            self._normed = (self.vectors / np.maximum(n, 1e-12)).astype(np.float32)
        return self._normed

    # ------------------------------------------------------------------ queries
    def similarity(self, a: str, b: str) -> float:
        return float(self.get_vector(a, True) @ self.get_vector(b, True))

    def _vec(self, x) -> np.ndarray:
        if isinstance(x, str):
            return self.get_vector(x, True)
        v = np.asarray(x, dtype=np.float32)
        return v / max(float(np.linalg.norm(v)), 1e-12)

    def _top(self, scores: np.ndarray, exclude: Iterable[int], topn: int
             ) -> list[tuple[str, float]]:
        if isinstance(topn, bool) or not isinstance(topn, int | np.integer) or topn < 1:
            raise EmbeddingError(f"topn must be an integer >= 1, got {topn!r}")
        scores = scores.copy()
        ex = list(exclude)
        scores[ex] = -np.inf
        k = min(topn, len(scores) - len(set(ex)))
        if k <= 0:
            return []
        idx = np.argpartition(-scores, k - 1)[:k]
        idx = idx[np.argsort(-scores[idx], kind="stable")]
        return [(self.index_to_key[i], float(scores[i])) for i in idx]

    @staticmethod
    def _as_list(x) -> list:
        if x is None:
            return []
        if isinstance(x, str | np.ndarray):
            return [x]
        return list(x)

    def most_similar(self, positive=None, negative=None, topn: int = 10
                     ) -> list[tuple[str, float]]:
        """3CosAdd nearest words to ``Σ positive − Σ negative`` (unit vectors)."""
        pos, neg = self._as_list(positive), self._as_list(negative)
        if not pos and not neg:
            raise EmbeddingError("most_similar needs at least one positive or negative word")
        q = np.zeros(self.vector_size, dtype=np.float32)
        for p in pos:
            q += self._vec(p)
        for n in neg:
            q -= self._vec(n)
        q /= max(float(np.linalg.norm(q)), 1e-12)
        ex = [self.index(w) for w in pos + neg if isinstance(w, str)]
        return self._top(self.normed @ q, ex, topn)

    def most_similar_cosmul(self, positive=None, negative=None, topn: int = 10
                            ) -> list[tuple[str, float]]:
        """3CosMul: ``Π_p (1+cos)/2 / (Π_n (1+cos)/2 + 1e-6)``."""
        pos, neg = self._as_list(positive), self._as_list(negative)
        if not pos:
            raise EmbeddingError("most_similar_cosmul needs at least one positive word")
        m = self.normed
        num = np.ones(len(self), dtype=np.float32)
        for p in pos:
            num *= (1.0 + m @ self._vec(p)) / 2.0
        den = np.ones(len(self), dtype=np.float32)
        for n in neg:
            den *= (1.0 + m @ self._vec(n)) / 2.0
        scores = num / (den + 1e-6) if neg else num
        ex = [self.index(w) for w in pos + neg if isinstance(w, str)]
        return self._top(scores, ex, topn)

    def analogy(self, a: str, b: str, c: str, topn: int = 1, method: str = "add"
                ) -> list[tuple[str, float]]:
        """"a is to b as c is to ?" (``method`` "add" = 3CosAdd, "mul" = 3CosMul)."""
        if method == "add":
            return self.most_similar([b, c], [a], topn)
        if method == "mul":
            return self.most_similar_cosmul([b, c], [a], topn)
        raise EmbeddingError(f"analogy method must be 'add' or 'mul', got {method!r}")

    def doesnt_match(self, words: Sequence[str]) -> str:
        """The word farthest from the mean of the (unit) vectors of ``words``."""
        words = list(words)
        if len(words) < 2:
            raise EmbeddingError("doesnt_match needs at least 2 words")
        m = np.stack([self.get_vector(w, True) for w in words])
        mean = m.mean(0)
        mean /= max(float(np.linalg.norm(mean)), 1e-12)
        return words[int(np.argmin(m @ mean))]

    def nearest_neighbors(self, queries: Sequence[str] | np.ndarray, topn: int = 10,
                          exclude_self: bool = True, batch: int = 1024
                          ) -> tuple[np.ndarray, np.ndarray]:
        """Vectorised neighbours of many queries: ``(indices [Q, topn], cosines)``."""
        if isinstance(queries, np.ndarray):
            q = queries.astype(np.float32)
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
            self_idx = None
        else:
            self_idx = np.array([self.index(w) for w in queries], dtype=np.int64)
            q = self.normed[self_idx]
        topn = min(topn, len(self) - (1 if exclude_self and self_idx is not None else 0))
        out_i = np.zeros((len(q), topn), dtype=np.int64)
        out_s = np.zeros((len(q), topn), dtype=np.float32)
        for a in range(0, len(q), batch):
            s = q[a:a + batch] @ self.normed.T
            if exclude_self and self_idx is not None:
                s[np.arange(len(s)), self_idx[a:a + batch]] = -np.inf
            idx = np.argpartition(-s, topn - 1, axis=1)[:, :topn]
            part = np.take_along_axis(s, idx, 1)
            order = np.argsort(-part, axis=1, kind="stable")
            out_i[a:a + batch] = np.take_along_axis(idx, order, 1)
            out_s[a:a + batch] = np.take_along_axis(part, order, 1)
        return out_i, out_s

    # ------------------------------------------------------------------ formats
    def save_word2vec_format(self, path: str | os.PathLike, binary: bool = False) -> None:
        """Write the word2vec text or binary format (atomically)."""
        for w in self.index_to_key:
            if not w or any(ch.isspace() for ch in w):
                raise EmbeddingError(f"word {w!r} contains whitespace; the word2vec format "
                                     "cannot store it")
        v, d = self.vectors.shape
        parts = [f"{v} {d}\n".encode()]
        if binary:
            vecs = self.vectors.astype("<f4")
            for w, row in zip(self.index_to_key, vecs, strict=True):
                parts.append(w.encode("utf-8") + b" " + row.tobytes() + b"\n")
        else:
            for w, row in zip(self.index_to_key, self.vectors, strict=True):
                parts.append((w + " " + " ".join(f"{x:.9g}" for x in row.tolist())
                              + "\n").encode("utf-8"))
        atomic_write_bytes(path, b"".join(parts))

    @classmethod
    def load_word2vec_format(cls, path: str | os.PathLike, binary: bool = False
                             ) -> KeyedVectors:
        """Read a word2vec text or binary file (the C tool's, gensim's or ours), decrypted
        in memory when it is encrypted at rest (the active key:
        :func:`lmforge.privacy.encrypted_io.read_bytes`)."""
        p = Path(path)
        try:
            data = read_bytes(p)
        except OSError as e:
            raise EmbeddingError(f"cannot read vectors file {p}: {e.strerror or e}") from None
        nl = data.find(b"\n")
        try:
            v, d = (int(x) for x in data[:nl].split())
        except ValueError:
            raise EmbeddingError(f"{p}: bad header {data[:nl][:40]!r}; expected "
                                 "'<vocab size> <dimension>'") from None
        if v < 1 or d < 1:
            raise EmbeddingError(f"{p}: bad header: {v} words x {d} dimensions (both must be "
                                 ">= 1)")
        if v * d > len(data):  # every number takes at least one byte (four in binary)
            raise EmbeddingError(f"{p}: the header says {v} words x {d} dimensions, but the "
                                 f"file has only {len(data)} bytes (truncated, or not a "
                                 "word2vec file)")
        words: list[str] = []
        vecs = np.zeros((v, d), dtype=np.float32)
        try:
            if binary:
                pos = nl + 1
                for i in range(v):
                    while data[pos:pos + 1] in (b"\n", b" "):
                        pos += 1
                    sp = data.index(b" ", pos)
                    words.append(data[pos:sp].decode("utf-8"))
                    pos = sp + 1
                    if pos + 4 * d > len(data):
                        raise ValueError("truncated")
                    vecs[i] = np.frombuffer(data, dtype="<f4", count=d, offset=pos)
                    pos += 4 * d
            else:
                lines = data[nl + 1:].decode("utf-8").splitlines()
                lines = [ln for ln in lines if ln.strip()]
                if len(lines) < v:
                    raise ValueError("truncated")
                for i in range(v):
                    parts = lines[i].rstrip().split(" ")
                    if len(parts) != d + 1:
                        raise ValueError(f"line {i + 2} has {len(parts) - 1} numbers")
                    words.append(parts[0])
                    vecs[i] = np.asarray(parts[1:], dtype=np.float32)
        except (ValueError, UnicodeDecodeError) as e:
            raise EmbeddingError(f"{p}: not a valid word2vec "
                                 f"{'binary' if binary else 'text'} file ({e})") from None
        return cls(words, vecs)


__all__ = ["KeyedVectors"]
