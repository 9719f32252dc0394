"""GloVe: the co-occurrence weights, the objective decreasing, planted structure."""

import numpy as np
import pytest

from lmforge.corpora import lm_corpus
from lmforge.embeddings import (
    class_purity,
    evaluate_analogies,
    planted_analogies,
    tokenize,
    word_classes,
)
from lmforge.embeddings.glove import GloVe, cooccurrence


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


def test_glove_learns_world_classes():
    sents = [tokenize(d.text) for d in lm_corpus("train", 16000, 0) if d.lang == "en"]
    g = GloVe(vector_size=30, window=5, epochs=15).fit(sents)
    assert g.history[-1] < g.history[0] * 0.5
    assert class_purity(g.wv, word_classes("en", tokenize)) >= 0.9
    r = evaluate_analogies(g.wv, planted_analogies("en", tokenize))["sections"]
    assert r["name-pronoun"]["accuracy"] >= 0.5, r
