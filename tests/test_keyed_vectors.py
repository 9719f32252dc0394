"""KeyedVectors queries and the word2vec text/binary formats (gensim interop)."""

import numpy as np
import pytest

from lmforge.embeddings import EmbeddingError, KeyedVectors, WordNotInVocabulary
from lmforge.errors import LmforgeError


def _kv():
    rng = np.random.default_rng(0)
    words = ["king", "queen", "man", "woman", "东京", "日本", "x_y"]
    return KeyedVectors(words, rng.standard_normal((len(words), 16)).astype(np.float32))


def _brute(kv, pos, neg):
    m = kv.normed
    q = sum(m[kv.index(w)] for w in pos) - sum((m[kv.index(w)] for w in neg), np.zeros(16))
    q = q / np.linalg.norm(q)
    s = m @ q
    for w in pos + neg:
        s[kv.index(w)] = -np.inf
    return kv.index_to_key[int(np.argmax(s))]


def test_queries_match_brute_force():
    kv = _kv()
    assert kv.most_similar(["queen", "man"], ["king"], topn=1)[0][0] == _brute(
        kv, ["queen", "man"], ["king"])
    assert kv.similarity("king", "queen") == pytest.approx(
        float(kv.normed[0] @ kv.normed[1]), rel=1e-5)
    res = kv.most_similar("king", topn=3)
    assert len(res) == 3 and "king" not in [w for w, _ in res]
    assert [s for _, s in res] == sorted([s for _, s in res], reverse=True)
    idx, sims = kv.nearest_neighbors(["king", "东京"], topn=2)
    assert kv.index_to_key[idx[0, 0]] == res[0][0]
    assert sims[0, 0] == pytest.approx(res[0][1], rel=1e-5)
    cm = kv.most_similar_cosmul(["queen", "man"], ["king"], topn=len(kv))
    m = kv.normed
    c = lambda a, b: (1 + m[kv.index(a)] @ m[kv.index(b)]) / 2  # noqa: E731
    w = cm[0][0]
    assert cm[0][1] == pytest.approx(c(w, "queen") * c(w, "man") / (c(w, "king") + 1e-6),
                                     rel=1e-4)
    assert kv.doesnt_match(["king", "queen", "man"]) in {"king", "queen", "man"}


def test_missing_word_is_a_one_line_lmforge_error():
    kv = _kv()
    for call in (lambda: kv["nope"], lambda: kv.similarity("king", "nope"),
                 lambda: kv.most_similar(["nope"]), lambda: kv.analogy("a", "b", "c")):
        with pytest.raises(WordNotInVocabulary) as e:
            call()
        assert isinstance(e.value, LmforgeError) and "\n" not in str(e.value)


@pytest.mark.parametrize("binary", [False, True])
def test_round_trip_own_format(tmp_path, binary):
    kv = _kv()
    p = tmp_path / "v.bin"
    kv.save_word2vec_format(p, binary=binary)
    back = KeyedVectors.load_word2vec_format(p, binary=binary)
    assert back.index_to_key == kv.index_to_key
    np.testing.assert_array_equal(back.vectors, kv.vectors)


@pytest.mark.parametrize("binary", [False, True])
def test_gensim_interop(tmp_path, binary):
    gensim_kv = pytest.importorskip("gensim.models").KeyedVectors
    kv = _kv()
    ours = tmp_path / "ours"
    kv.save_word2vec_format(ours, binary=binary)
    g = gensim_kv.load_word2vec_format(str(ours), binary=binary)
    assert list(g.index_to_key) == kv.index_to_key
    np.testing.assert_array_equal(g.vectors, kv.vectors)
    theirs = tmp_path / "theirs"
    g.save_word2vec_format(str(theirs), binary=binary)
    back = KeyedVectors.load_word2vec_format(theirs, binary=binary)
    assert back.index_to_key == kv.index_to_key
    np.testing.assert_array_equal(back.vectors, kv.vectors)
    # and the same analogy answer as gensim's 3CosAdd / 3CosMul
    assert (g.most_similar(positive=["queen", "man"], negative=["king"], topn=3)[0][0]
            == kv.most_similar(["queen", "man"], ["king"], topn=3)[0][0])
    assert (g.most_similar_cosmul(positive=["queen", "man"], negative=["king"])[0][0]
            == kv.most_similar_cosmul(["queen", "man"], ["king"])[0][0])


def test_bad_files(tmp_path):
    p = tmp_path / "bad.txt"
    p.write_text("not a header\n", encoding="utf-8")
    with pytest.raises(EmbeddingError, match="bad header"):
        KeyedVectors.load_word2vec_format(p)
    p.write_text("2 3\na 1 2 3\n", encoding="utf-8")
    with pytest.raises(EmbeddingError, match="not a valid"):
        KeyedVectors.load_word2vec_format(p)
    with pytest.raises(EmbeddingError, match="cannot read"):
        KeyedVectors.load_word2vec_format(tmp_path / "missing.txt")
    kv = KeyedVectors(["a b"], np.zeros((1, 2)))
    with pytest.raises(EmbeddingError, match="whitespace"):
        kv.save_word2vec_format(tmp_path / "o.txt")
