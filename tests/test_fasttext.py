"""FastText on the world corpus: subword n-grams, FNV-1a hashing, OOV vectors."""

import numpy as np
import pytest

from lmforge.corpora import lm_corpus
from lmforge.embeddings import (
    EmbeddingError,
    FastText,
    FastTextConfig,
    WordNotInVocabulary,
    tokenize,
)
from lmforge.embeddings.fasttext import char_ngrams, fnv1a_32, ngram_buckets
from lmforge.errors import ConfigError, DataError


def _fnv1a_ref(data: bytes) -> int:
    """Textbook FNV-1a, 32 bit (offset basis 0x811C9DC5, prime 0x01000193)."""
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) % (1 << 32)
    return h


@pytest.fixture(scope="module")
def model():
    sents = [tokenize(d.text) for d in lm_corpus("train", 8000, 0) if d.lang == "en"]
    return FastText(vector_size=32, epochs=5, workers=1, seed=3, bucket=100_000,
                    min_count=2).fit(sents)


def test_ngrams_hand_example():
    assert char_ngrams("where", 3, 3) == ["<wh", "whe", "her", "ere", "re>"]
    # by start position, then length; the whole "<ab>" is an n-gram when short enough
    assert char_ngrams("ab", 3, 4) == ["<ab", "<ab>", "ab>"]
    assert char_ngrams("a", 1, 2) == ["<a", "a", "a>"]  # lone markers skipped
    assert char_ngrams("日本", 3, 3) == ["<日本", "日本>"]  # code points, not bytes
    assert len(char_ngrams("strawberries")) == sum(14 - n + 1 for n in range(3, 7))  # 42


def test_fnv1a_matches_reference():
    # published FNV-1a 32-bit test vectors
    assert fnv1a_32("") == 0x811C9DC5
    assert fnv1a_32("a") == 0xE40C292C
    assert fnv1a_32("foobar") == 0xBF9CF968
    for s in ["<wh", "whe", "re>", "<where>", "日本", "naïve"]:
        assert fnv1a_32(s) == _fnv1a_ref(s.encode("utf-8"))
        assert fnv1a_32(s.encode("utf-8")) == fnv1a_32(s)
    assert ngram_buckets("where", 3, 3, 1000) == [
        _fnv1a_ref(g.encode()) % 1000 for g in ["<wh", "whe", "her", "ere", "re>"]]


def test_misspelt_words_find_the_right_word(model):
    kv = model.wv
    pairs = {"strawberies": "strawberries", "journalst": "journalist",
             "umbrelas": "umbrellas", "supermarkt": "supermarket",
             "univeristy": "university", "accountnt": "accountant",
             "basketbal": "basketball", "Barcelna": "Barcelona", "afternon": "afternoon"}
    hits = 0
    for wrong, right in pairs.items():
        assert wrong not in kv and right in kv
        hits += kv.most_similar(wrong, topn=1)[0][0] == right
    assert hits >= len(pairs) - 1, hits
    # similarity against an OOV word works too
    assert kv.similarity("journalst", "journalist") > kv.similarity("journalst", "Tokyo")


def test_vectors_in_and_out_of_vocabulary(model):
    kv = model.wv
    # in-vocabulary: the mean of the word's own vector and its n-gram vectors
    i = kv.index("umbrellas")
    rows = [kv.bucket_rows[b] for b in ngram_buckets("umbrellas", 3, 6, kv.bucket)]
    expect = (kv.vectors_vocab[i] + kv.ngram_vectors[rows].sum(0)) / (1 + len(rows))
    np.testing.assert_allclose(kv["umbrellas"], expect, rtol=1e-4, atol=1e-6)
    # OOV: the mean of its (trained) n-gram vectors, non-zero
    v = kv["umbrellaz"]
    assert v.shape == (32,) and np.linalg.norm(v) > 0 and kv.has_vector("umbrellaz")
    rows = [kv.bucket_rows[b] for b in ngram_buckets("umbrellaz", 3, 6, kv.bucket)]
    rows = [r for r in rows if r >= 0]
    np.testing.assert_allclose(v, kv.ngram_vectors[rows].mean(0), rtol=1e-5)
    # a word none of whose n-grams was seen in training: a clear error
    unseen = [w for w in ["ж", "ъ", "ю", "ф", "щ", "ы", "э"]
              if all(kv.bucket_rows[b] < 0 for b in ngram_buckets(w, 3, 6, kv.bucket))]
    assert unseen
    assert not kv.has_vector(unseen[0])
    with pytest.raises(WordNotInVocabulary, match="none of its character"):
        kv.get_vector(unseen[0])
    with pytest.raises(KeyError):
        kv[unseen[0]]


def test_stats_and_compact_buckets(model):
    st = model.stats
    assert st["vocab_size"] == len(model.wv) and 0 < st["ngram_rows"] <= 100_000
    assert model.wv.ngram_vectors.shape == (st["ngram_rows"], 32)
    assert np.isfinite(model.wv.vectors).all()


def test_bad_input():
    with pytest.raises(ConfigError, match="fasttext"):
        FastText(min_n=4, max_n=3)
    with pytest.raises(ConfigError, match="fasttext"):
        FastText(min_n=0)
    with pytest.raises(ConfigError, match="fasttext"):
        FastText(bucket=0)
    with pytest.raises(ConfigError, match="skip-gram"):
        FastText(sg=False)
    with pytest.raises(ConfigError, match="skip-gram"):
        FastText(hs=True, negative=0)
    with pytest.raises(ConfigError, match="fasttext: vector_size"):
        FastText(vector_size=0)
    with pytest.raises(TypeError):
        FastTextConfig(not_a_field=1)
    with pytest.raises(DataError):
        FastText(min_count=1).fit([[], []])
    with pytest.raises(EmbeddingError, match="smaller than the window"):
        FastText(min_count=1).fit([["a", "b"]])
    with pytest.raises(EmbeddingError):
        char_ngrams("")
    with pytest.raises(EmbeddingError):
        char_ngrams("word", 3, 2)
