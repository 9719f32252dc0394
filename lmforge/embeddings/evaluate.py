"""Intrinsic evaluation of word vectors.

* **Word similarity** (WordSim-353 style): a TSV of ``word1<TAB>word2<TAB>score`` (a
  header line and ``#`` comments are skipped); the score is Spearman's ``ρ`` between the
  human scores and the cosines, over pairs whose words are both in the vocabulary.
* **Analogies** (Google format): ``: section`` lines, then ``a b c d`` questions; a
  question is correct when the top 3CosAdd (or 3CosMul) answer to "a : b :: c : ?",
  excluding a, b and c, is ``d``. Accuracy is reported per section and in total; questions
  with an out-of-vocabulary word are counted as skipped (as gensim does).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy as np

from ..data.readers import iter_lines
from .keyed_vectors import KeyedVectors
from .vocab import EmbeddingError


def _numbered_lines(path: str | os.PathLike) -> Iterator[tuple[str, str]]:
    """``(where, line)`` for each line of a UTF-8 file, ``where`` = ``"FILE:line N"``;
    a missing or non-UTF-8 file raises :class:`~lmforge.errors.DataError` naming it."""
    for n, line in enumerate(iter_lines(path), 1):
        yield f"{path}:line {n}", line.rstrip("\r\n")


def read_analogies(path_or_text: str | os.PathLike, is_text: bool = False
                   ) -> dict[str, list[tuple[str, ...]]]:
    lines = (((f"line {n}", ln) for n, ln in enumerate(str(path_or_text).splitlines(), 1))
             if is_text else _numbered_lines(path_or_text))
    out: dict[str, list[tuple[str, ...]]] = {}
    sec = "default"
    for where, line in lines:
        line = line.strip()
        if not line:
            continue
        if line.startswith(":"):
            sec = line[1:].strip()
            out.setdefault(sec, [])
            continue
        parts = line.split()
        if len(parts) != 4:
            raise EmbeddingError(f"{where}: an analogy needs 4 words, got {len(parts)}")
        out.setdefault(sec, []).append(tuple(parts))
    return out


def evaluate_analogies(kv: KeyedVectors, sections: dict[str, list[tuple[str, ...]]] | str
                       | os.PathLike, method: str = "add", lowercase: bool = False,
                       batch: int = 512) -> dict:
    """``{"sections": {name: {"correct", "total", "skipped", "accuracy"}}, "accuracy"...}``."""
    if not isinstance(sections, dict):
        sections = read_analogies(sections)
    m = kv.normed
    res: dict = {"sections": {}}
    tc = tt = ts = 0
    for sec, qs in sections.items():
        if lowercase:
            qs = [tuple(w.lower() for w in q) for q in qs]
        ok = [q for q in qs if all(w in kv.key_to_index for w in q)]
        correct = 0
        for a0 in range(0, len(ok), batch):
            part = ok[a0:a0 + batch]
            ix = np.array([[kv.key_to_index[w] for w in q] for q in part], dtype=np.int64)
            A, B, C = m[ix[:, 0]], m[ix[:, 1]], m[ix[:, 2]]
            if method == "add":
                q = B - A + C
                q /= np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
                s = q @ m.T
            elif method == "mul":
                s = ((1 + B @ m.T) / 2) * ((1 + C @ m.T) / 2) / ((1 + A @ m.T) / 2 + 1e-6)
            else:
                raise EmbeddingError(f"method must be 'add' or 'mul', got {method!r}")
            rows = np.arange(len(part))
            for k in range(3):
                s[rows, ix[:, k]] = -np.inf
            correct += int((s.argmax(1) == ix[:, 3]).sum())
        n = len(ok)
        res["sections"][sec] = {"correct": correct, "total": n, "skipped": len(qs) - n,
                                "accuracy": correct / n if n else float("nan")}
        tc, tt, ts = tc + correct, tt + n, ts + len(qs) - n
    res.update(correct=tc, total=tt, skipped=ts, accuracy=tc / tt if tt else float("nan"))
    return res


def read_similarity(path: str | os.PathLike) -> list[tuple[str, str, float]]:
    rows = []
    for n, (where, line) in enumerate(_numbered_lines(path), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if len(parts) < 3:
            raise EmbeddingError(f"{where}: expected word1, word2, score")
        try:
            score = float(parts[2])
        except ValueError:
            if n == 1:
                continue  # header
            raise EmbeddingError(f"{where}: bad score {parts[2]!r}") from None
        if not math.isfinite(score):
            raise EmbeddingError(f"{where}: the score must be a finite number, got {parts[2]!r}")
        rows.append((parts[0], parts[1], score))
    return rows


def evaluate_similarity(kv: KeyedVectors, pairs: list[tuple[str, str, float]] | str
                        | os.PathLike, lowercase: bool = False) -> dict:
    """Spearman ``ρ`` between gold scores and cosines: ``{"spearman", "pairs", "skipped"}``."""
    from scipy.stats import spearmanr

    if not isinstance(pairs, list):
        pairs = read_similarity(pairs)
    gold, pred = [], []
    for a, b, sc in pairs:
        if lowercase:
            a, b = a.lower(), b.lower()
        if a in kv and b in kv:
            gold.append(sc)
            pred.append(kv.similarity(a, b))
    if len(gold) < 2:
        raise EmbeddingError("fewer than 2 similarity pairs are in the vocabulary")
    rho = spearmanr(gold, pred).statistic
    return {"spearman": float(rho), "pairs": len(gold), "skipped": len(pairs) - len(gold)}


def class_purity(kv: KeyedVectors, classes: dict[str, list[str]]) -> float:
    """Share of class words whose nearest neighbour (among all class words) shares it."""
    seen: dict[str, int] = {}
    for ws in classes.values():
        for w in set(ws):
            seen[w] = seen.get(w, 0) + 1
    words = [(w, c) for c, ws in classes.items() for w in dict.fromkeys(ws)
             if w in kv and seen[w] == 1]  # words in two classes are ambiguous: dropped
    if len(words) < 2:
        raise EmbeddingError("fewer than 2 class words are in the vocabulary")
    sub = KeyedVectors([w for w, _ in words], np.stack([kv[w] for w, _ in words]))
    idx, _ = sub.nearest_neighbors([w for w, _ in words], topn=1)
    return float(np.mean([words[i][1] == words[j][1] for i, j in enumerate(idx[:, 0])]))


__all__ = ["class_purity", "evaluate_analogies", "evaluate_similarity", "read_analogies",
           "read_similarity"]
