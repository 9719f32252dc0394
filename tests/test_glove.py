"""GloVe: streamed co-occurrence against a naive exact reference, the objective
decreasing, planted structure."""

from collections import defaultdict
from fractions import Fraction

import numpy as np
import pytest

from lmforge.corpora import lm_corpus
from lmforge.embeddings import (
    EmbeddingError,
    class_purity,
    evaluate_analogies,
    planted_analogies,
    tokenize,
    word_classes,
)
from lmforge.embeddings import glove as glove_mod
from lmforge.embeddings.glove import GloVe, cooccurrence, cooccurrence_stream
from lmforge.errors import ConfigError


def naive_cooccurrence(sentences, window):
    """``{(i, j): X_ij}``: a dict of exact fractions, ``X_ij += 1/k``, ``X_ji += 1/k``
    per pair k <= window apart, rounded to float once at the end."""
    x = defaultdict(Fraction)
    for s in sentences:
        for a in range(len(s)):
            for k in range(1, window + 1):
                if a + k < len(s):
                    i, j = s[a], s[a + k]
                    x[i, j] += Fraction(1, k)
                    x[j, i] += Fraction(1, k)
    return {key: float(val) for key, val in x.items()}


def as_dict(rows, cols, x):
    return {(int(i), int(j)): float(v) for i, j, v in zip(rows, cols, x, strict=True)}


def random_sentences(seed, n=80, v=9, max_len=14):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, v, rng.integers(0, max_len)).tolist() for _ in range(n)]


def test_cooccurrence_inverse_distance():
    toks = np.array([0, 1, 2, 0, 1], dtype=np.int32)
    starts = np.array([0, 3, 5])
    r, c, x = cooccurrence(toks, starts, 2, 3)
    m = np.zeros((3, 3))
    m[r, c] = x
    # sentence 1: (0,1) d1, (1,2) d1, (0,2) d2; sentence 2: (0,1) d1
    assert m[0, 1] == m[1, 0] == pytest.approx(2.0)
    assert m[0, 2] == pytest.approx(0.5) and m[1, 2] == pytest.approx(1.0)
    assert m[0, 0] == 0


@pytest.mark.parametrize("window", [1, 3, 7])
@pytest.mark.parametrize("chunk_tokens", [1, 5, 40, 10**6])
def test_streamed_equals_naive_reference(window, chunk_tokens, monkeypatch):
    merges = []
    real_merge = glove_mod._RunMerger.merge

    def counting_merge(self):
        merges.append(len(self.pending))
        return real_merge(self)

    monkeypatch.setattr(glove_mod._RunMerger, "merge", counting_merge)
    sents = random_sentences(window * 100 + chunk_tokens)
    v = 9
    rows, cols, x = cooccurrence_stream(iter(sents), window, v, chunk_tokens)
    assert as_dict(rows, cols, x) == naive_cooccurrence(sents, window)  # exact floats
    keys = rows.astype(np.int64) * v + cols
    assert (np.diff(keys) > 0).all()  # row-major (CSR) order, no duplicates
    if chunk_tokens <= 5:
        assert sum(1 for p in merges if p) >= 3  # several chunk merges happened


def test_glove_reads_a_file_twice_and_a_generator_once_with_vocab(tmp_path):
    lines = [" ".join(f"w{t}" for t in s) for s in random_sentences(5, n=200, v=12)]
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    class FileSentences:  # re-iterable: every pass re-reads the file
        def __iter__(self):
            with open(path, encoding="utf-8") as f:
                for line in f:
                    yield line.split()

    kw = dict(vector_size=4, window=3, epochs=2, min_count=1, chunk_tokens=50)
    ref = GloVe(**kw).fit([ln.split() for ln in lines])
    streamed = GloVe(**kw).fit(FileSentences())
    for a, b in zip(ref.cooc, streamed.cooc, strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(ref.wv.vectors, streamed.wv.vectors)

    gen = (ln.split() for ln in lines)
    with pytest.raises(EmbeddingError, match="one-shot iterator"):
        GloVe(**kw).fit(gen)
    once = GloVe(**kw).fit((ln.split() for ln in lines), vocab=ref.vocab)
    for a, b in zip(ref.cooc, once.cooc, strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_input_errors():
    class Shrinking:  # yields fewer sentences on the second pass
        def __init__(self):
            self.passes = 0

        def __iter__(self):
            self.passes += 1
            return iter([["a", "b", "c"]] * (10 if self.passes == 1 else 5))

    with pytest.raises(EmbeddingError, match="changed between the two passes"):
        GloVe(min_count=1, window=2).fit(Shrinking())
    with pytest.raises(ConfigError, match="window must be <= 20"):
        GloVe(window=21)
    with pytest.raises(ConfigError, match="chunk_tokens"):
        GloVe(chunk_tokens=0)
    with pytest.raises(EmbeddingError, match=r"word ids must be in 0\.\.2"):
        cooccurrence_stream([[0, 1, 3]], 2, 3)
    with pytest.raises(EmbeddingError, match="no co-occurring"):
        GloVe(min_count=1).fit([["a"], ["b"]])
    with pytest.raises(EmbeddingError, match="must be a Vocab"):
        GloVe(min_count=1).fit([["a", "b"]], vocab={"a": 0})


def test_glove_learns_world_classes():
    sents = [tokenize(d.text) for d in lm_corpus("train", 16000, 0) if d.lang == "en"]
    # chunk_tokens well below the ~80k tokens: the matrix is built from several chunks
    g = GloVe(vector_size=30, window=5, epochs=15, chunk_tokens=20000).fit(sents)
    assert g.history[-1] < g.history[0] * 0.5
    assert class_purity(g.wv, word_classes("en", tokenize)) >= 0.9
    r = evaluate_analogies(g.wv, planted_analogies("en", tokenize))["sections"]
    assert r["name-pronoun"]["accuracy"] >= 0.5, r
