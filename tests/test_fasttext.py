"""FastText on the world corpus: subword n-grams, fastText's hash (checked against
gensim), OOV vectors, quality against gensim, Facebook's .bin format both ways."""

import os
from collections import Counter

import numpy as np
import pytest
from gensim.models.fasttext import FastText as GensimFastText
from gensim.models.fasttext import (
    compute_ngrams_bytes,
    ft_hash_bytes,
    ft_ngram_hashes,
)
from gensim.models.fasttext import load_facebook_model as gensim_load_model
from gensim.models.fasttext import load_facebook_vectors as gensim_load_vectors
from gensim.models.fasttext import save_facebook_model as gensim_save_model
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.corpora import lm_corpus
from lmforge.embeddings import (
    EmbeddingError,
    FastText,
    FastTextConfig,
    KeyedVectors,
    WordNotInVocabulary,
    class_purity,
    evaluate_analogies,
    planted_analogies,
    tokenize,
    word_classes,
)
from lmforge.embeddings.fasttext import char_ngrams, ft_hash, ngram_buckets, subword_buckets
from lmforge.embeddings.fasttext_bin import (
    load_facebook_model,
    load_facebook_vectors,
    save_facebook_model,
)
from lmforge.errors import ConfigError, DataError

NON_ASCII = ["北京大学", "日本", "中", "café", "naïve", "Ångström", "straße", "😀", "a😀b",
             "👩‍💻", "Ünïcödé", "ё"]
MISSPELT = {"strawberies": "strawberries", "journalst": "journalist",
            "umbrelas": "umbrellas", "supermarkt": "supermarket",
            "univeristy": "university", "accountnt": "accountant",
            "basketbal": "basketball", "Barcelna": "Barcelona", "afternon": "afternoon"}


def _fnv1a_ref(data: bytes) -> int:
    """Textbook FNV-1a, 32 bit (offset basis 0x811C9DC5, prime 0x01000193)."""
    h = 0x811C9DC5
    for byte in data:
        h ^= byte
        h = (h * 0x01000193) % (1 << 32)
    return h


def _world(n_docs: int) -> list[list[str]]:
    return [tokenize(d.text) for d in lm_corpus("train", n_docs, 0) if d.lang == "en"]


@pytest.fixture(scope="module")
def model():
    return FastText(vector_size=32, epochs=5, workers=1, seed=3, bucket=100_000,
                    min_count=2).fit(_world(8000))


@pytest.fixture(scope="module")
def mixed_sents():
    """English, Chinese (characters) and accented copies of English sentences."""
    docs = list(lm_corpus("train", 4000, 0))
    en = [tokenize(d.text) for d in docs if d.lang == "en"]
    zh = [tokenize(d.text, "zh", "char") for d in docs if d.lang == "zh"]
    acc = [[t.replace("o", "ö").replace("a", "å") for t in s] for s in en[:800]]
    return en + zh + acc


@pytest.fixture(scope="module")
def mixed_model(mixed_sents):
    return FastText(vector_size=16, epochs=2, workers=1, seed=1, bucket=20_000,
                    min_count=2).fit(mixed_sents)


# ---------------------------------------------------------------- n-grams and hashing
def test_ngrams_hand_example():
    assert char_ngrams("where", 3, 3) == ["<wh", "whe", "her", "ere", "re>"]
    # by start position, then length; the whole "<ab>" is an n-gram when short enough
    assert char_ngrams("ab", 3, 4) == ["<ab", "<ab>", "ab>"]
    assert char_ngrams("a", 1, 2) == ["<a", "a", "a>"]  # lone markers skipped
    assert char_ngrams("a<b", 1, 1) == ["a", "<", "b"]  # only the boundary markers
    assert char_ngrams("日本", 3, 3) == ["<日本", "日本>"]  # code points, not bytes
    assert len(char_ngrams("strawberries")) == sum(14 - n + 1 for n in range(3, 7))  # 42


def test_hash_is_fnv1a_for_ascii_and_sign_extends_other_bytes():
    # published FNV-1a 32-bit test vectors
    assert ft_hash("") == 0x811C9DC5
    assert ft_hash("a") == 0xE40C292C
    assert ft_hash("foobar") == 0xBF9CF968
    for s in ["<wh", "whe", "re>", "<where>"]:
        assert ft_hash(s) == _fnv1a_ref(s.encode())
    # bytes >= 0x80 are sign-extended (fastText's int8_t cast): not textbook FNV-1a
    for s in NON_ASCII:
        assert ft_hash(s) == ft_hash_bytes(s.encode("utf-8")) != _fnv1a_ref(s.encode("utf-8"))
        assert ft_hash(s.encode("utf-8")) == ft_hash(s)


def _check_against_gensim(word: str, min_n: int, max_n: int, bucket: int) -> None:
    grams = char_ngrams(word, min_n, max_n)
    assert [g.encode("utf-8") for g in grams] == compute_ngrams_bytes(word, min_n, max_n)
    assert [ft_hash(g) for g in grams] == [ft_hash_bytes(g.encode("utf-8")) for g in grams]
    assert ngram_buckets(word, min_n, max_n, bucket) == list(
        ft_ngram_hashes(word, min_n, max_n, bucket))


@pytest.mark.parametrize("min_n,max_n,bucket", [(3, 6, 2_000_000), (1, 2, 97), (2, 4, 1000),
                                                 (1, 12, 2**31 - 1)])
def test_ngram_buckets_match_gensim(min_n, max_n, bucket):
    for w in NON_ASCII + ["where", "strawberries", "a", "x<y>z"]:
        _check_against_gensim(w, min_n, max_n, bucket)


@settings(max_examples=200, deadline=None)
@given(st.text(min_size=1, max_size=12), st.integers(1, 4), st.integers(0, 3),
       st.integers(1, 2_000_000))
def test_ngram_buckets_match_gensim_on_any_text(word, min_n, extra, bucket):
    _check_against_gensim(word, min_n, min_n + extra, bucket)


def test_subword_buckets_batches_words():
    words = NON_ASCII + ["where", "strawberries"]
    ids, offsets = subword_buckets(words, 3, 6, 5000)
    assert len(offsets) == len(words) + 1 and offsets[-1] == len(ids)
    for i, w in enumerate(words):
        assert ids[offsets[i]:offsets[i + 1]].tolist() == ngram_buckets(w, 3, 6, 5000)


# ---------------------------------------------------------------- vectors
def test_misspelt_words_find_the_right_word(model):
    kv = model.wv
    hits = 0
    for wrong, right in MISSPELT.items():
        assert wrong not in kv and right in kv
        hits += kv.most_similar(wrong, topn=1)[0][0] == right
    assert hits >= len(MISSPELT) - 1, hits
    # similarity against an OOV word works too
    assert kv.similarity("journalst", "journalist") > kv.similarity("journalst", "Tokyo")


def test_vectors_in_and_out_of_vocabulary(model):
    kv = model.wv
    # in-vocabulary: the mean of the word's own vector and its n-gram vectors
    i = kv.index("umbrellas")
    rows = [kv.bucket_rows[b] for b in ngram_buckets("umbrellas", 3, 6, kv.bucket)]
    expect = (kv.vectors_vocab[i] + kv.ngram_vectors[rows].sum(0)) / (1 + len(rows))
    np.testing.assert_allclose(kv["umbrellas"], expect, rtol=1e-4, atol=1e-6)
    # OOV: the sum of its trained n-gram vectors over the number of its n-grams
    v = kv["umbrellaz"]
    assert v.shape == (32,) and np.linalg.norm(v) > 0 and kv.has_vector("umbrellaz")
    rows = np.array([kv.bucket_rows[b] for b in ngram_buckets("umbrellaz", 3, 6, kv.bucket)])
    assert (rows < 0).any() and (rows >= 0).any()  # "az>" etc. were never seen
    np.testing.assert_allclose(v, kv.ngram_vectors[rows[rows >= 0]].sum(0) / len(rows),
                               rtol=1e-5, atol=1e-7)
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
    st_ = model.stats
    assert st_["vocab_size"] == len(model.wv) and 0 < st_["ngram_rows"] <= 100_000
    assert model.wv.ngram_vectors.shape == (st_["ngram_rows"], 32)
    assert (model.wv.bucket_rows >= 0).sum() == st_["ngram_rows"]
    assert np.isfinite(model.wv.vectors).all()


# ---------------------------------------------------------------- quality vs gensim
def _mean_cosine(kv: KeyedVectors, pairs: int = 4000) -> float:
    """Mean cosine of random pairs of distinct vocabulary words."""
    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(kv), (2, pairs))
    keep = i != j
    return float((kv.normed[i[keep]] * kv.normed[j[keep]]).sum(1).mean())


def _quality(kv: KeyedVectors) -> dict:
    sec = evaluate_analogies(kv, planted_analogies("en", tokenize))["sections"]
    return {"mean_cos": _mean_cosine(kv), "city": sec["city-country"]["accuracy"],
            "pronoun": sec["name-pronoun"]["accuracy"],
            "purity": class_purity(kv, word_classes("en", tokenize))}


def test_quality_matches_gensim():
    # Measured on these 10k sentences (d=32, window 5, 5 negatives, 3..6-grams, 100k
    # buckets, 5 epochs, 1 worker), seeds 1-4: gensim 4.4 mean cosine 0.381-0.383,
    # city-country 0.33-0.41, name-pronoun 1.0, purity 0.994; lmforge 0.390-0.392,
    # 0.33-0.42, 1.0, 0.994. Before the fix (gradient scaled by 1/|G_w|) lmforge had
    # mean cosine 0.66 and city-country 0.09 here (0.97 and 0.01 on 4k sentences).
    sents = _world(20000)
    kw = dict(vector_size=32, window=5, negative=5, min_n=3, max_n=6, bucket=100_000,
              epochs=5, min_count=2, seed=3, workers=1)
    ours = _quality(FastText(**kw).fit(sents).wv)
    ref_model = GensimFastText(sentences=sents, sg=1, **kw)
    ref = _quality(KeyedVectors(ref_model.wv.index_to_key, ref_model.wv.vectors))
    assert ours["mean_cos"] < 0.5 and ours["mean_cos"] < ref["mean_cos"] + 0.05, (ours, ref)
    assert ours["city"] >= 0.25 and ours["city"] >= ref["city"] - 0.1, (ours, ref)
    assert ours["pronoun"] >= 0.95 and ours["purity"] >= 0.97, (ours, ref)


# ---------------------------------------------------------------- Facebook .bin format
OOV = ["Tökyo", "umbrelläs", "北京人", "😀umbrella", "strawberies", "Barcelnå", "日本語"]


def test_gensim_reads_our_bin(mixed_model, tmp_path):
    path = tmp_path / "ours.bin"
    save_facebook_model(mixed_model, path)
    assert sorted(os.listdir(tmp_path)) == ["ours.bin"]  # no temporary left behind
    ours = mixed_model.wv
    theirs = gensim_load_vectors(str(path))
    assert theirs.index_to_key == ours.index_to_key
    assert any(ord(c) > 127 for w in ours.index_to_key[:200] for c in w)
    np.testing.assert_allclose(theirs.vectors, ours.vectors, rtol=1e-5, atol=1e-6)
    checked = 0
    for w in OOV:
        assert w not in ours
        if ours.has_vector(w):
            np.testing.assert_allclose(theirs[w], ours[w], rtol=1e-5, atol=1e-7)
            checked += 1
    assert checked >= 5
    full = gensim_load_model(str(path))
    np.testing.assert_array_equal(full.syn1neg, mixed_model.syn1neg)
    assert (full.wv.min_n, full.wv.max_n, full.wv.bucket, full.vector_size) == (3, 6, 20_000, 16)


def test_our_bin_round_trips(mixed_model, tmp_path):
    path = tmp_path / "m.bin"
    save_facebook_model(mixed_model, path)
    back = load_facebook_model(path)
    a, b = mixed_model.wv, back.wv
    assert b.index_to_key == a.index_to_key
    np.testing.assert_array_equal(b.bucket_rows, a.bucket_rows)
    np.testing.assert_array_equal(b.ngram_vectors, a.ngram_vectors)
    np.testing.assert_array_equal(b.vectors_vocab, a.vectors_vocab)
    np.testing.assert_allclose(b.vectors, a.vectors, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(back.syn1neg, mixed_model.syn1neg)
    np.testing.assert_array_equal(back.vocab.counts, mixed_model.vocab.counts)
    assert back.vocab.total_raw == mixed_model.vocab.total_raw
    for f in ("vector_size", "window", "negative", "epochs", "min_count", "sample",
              "min_n", "max_n", "bucket"):
        assert getattr(back.config, f) == getattr(mixed_model.config, f), f
    for w in OOV:
        if a.has_vector(w):
            np.testing.assert_array_equal(b[w], a[w])
    assert load_facebook_vectors(path).index_to_key == a.index_to_key


def test_we_read_gensims_bin(mixed_sents, tmp_path):
    g = GensimFastText(sentences=mixed_sents, sg=1, vector_size=16, epochs=1, min_n=2,
                       max_n=5, bucket=20_000, min_count=2, workers=1, seed=1)
    path = tmp_path / "gensim.bin"
    gensim_save_model(g, str(path))
    m = load_facebook_model(path)
    assert m.wv.index_to_key == g.wv.index_to_key
    assert (m.config.vector_size, m.config.min_n, m.config.max_n, m.config.bucket) == (
        16, 2, 5, 20_000)
    np.testing.assert_allclose(m.wv.vectors, g.wv.vectors, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(m.syn1neg, g.syn1neg)
    # OOV: gensim's mean over the word's buckets, with buckets no vocabulary word uses
    # (never trained, still at their random start) counted as zero
    used = np.zeros(g.wv.bucket, dtype=bool)
    for bks in g.wv.buckets_word:
        used[bks] = True
    trained = np.where(used[:, None], g.wv.vectors_ngrams, 0.0)
    for w in OOV:
        bks = ft_ngram_hashes(w, 2, 5, 20_000)
        assert m.wv.has_vector(w) == bool(used[bks].any())
        if used[bks].any():
            np.testing.assert_allclose(m.wv[w], trained[bks].mean(0), rtol=1e-5, atol=1e-7)
    # and where every n-gram is trained, exactly gensim's vector (words seen only once
    # are out of the vocabulary with min_count=2)
    once = [w for w, k in Counter(w for s in mixed_sents for w in s).items() if k == 1]
    whole = [w for w in once if used[ft_ngram_hashes(w, 2, 5, 20_000)].all()]
    assert len(whole) >= 3, whole
    for w in whole:
        np.testing.assert_allclose(m.wv[w], g.wv[w], rtol=1e-5, atol=1e-7)


@pytest.fixture(scope="module")
def tiny_bin(tmp_path_factory):
    sents = [["the", "cat", "sat", "on", "the", "mät", "北京"]] * 30
    m = FastText(vector_size=4, epochs=1, workers=1, min_count=1, bucket=50, window=2).fit(sents)
    path = tmp_path_factory.mktemp("bin") / "tiny.bin"
    save_facebook_model(m, path)
    return m, path.read_bytes()


def test_truncated_or_corrupt_bin_raises_clear_error(tiny_bin, tmp_path):
    _m, data = tiny_bin
    path = tmp_path / "bad.bin"
    cuts = [0, 3, 7, 40, 64, 90, 100, len(data) // 2, len(data) - 17, len(data) - 1]
    for cut in cuts:
        path.write_bytes(data[:cut])
        with pytest.raises(EmbeddingError, match="bad.bin.*truncated"):
            load_facebook_model(path)
    bad = {"magic": b"\0\0\0\0" + data[4:], "trailing": data + b"\0",
           "version": data[:4] + (99).to_bytes(4, "little") + data[8:]}
    for why, blob in bad.items():
        path.write_bytes(blob)
        with pytest.raises(EmbeddingError, match="bad.bin: not a valid fastText"):
            load_facebook_vectors(path)
        assert why
    with pytest.raises(EmbeddingError, match="missing.bin"):
        load_facebook_vectors(tmp_path / "missing.bin")


def test_save_is_atomic_and_checks_words(tiny_bin, tmp_path):
    m, data = tiny_bin
    path = tmp_path / "m.bin"
    path.write_bytes(b"old")
    save_facebook_model(m, path)
    assert path.read_bytes() == data and sorted(os.listdir(tmp_path)) == ["m.bin"]
    bad = FastText(vector_size=4, epochs=1, workers=1, min_count=1, bucket=50,
                   window=2).fit([["a\0b", "c", "d"]] * 5)
    with pytest.raises(EmbeddingError, match="NUL"):
        save_facebook_model(bad, path)
    assert path.read_bytes() == data  # the old file is intact
    with pytest.raises(EmbeddingError, match="not trained"):
        save_facebook_model(FastText(), path)


# ---------------------------------------------------------------- errors
def test_bad_input():
    with pytest.raises(ConfigError, match="fasttext"):
        FastText(min_n=4, max_n=3)
    with pytest.raises(ConfigError, match="fasttext"):
        FastText(min_n=0)
    with pytest.raises(ConfigError, match="fasttext"):
        FastText(bucket=0)
    with pytest.raises(ConfigError, match="fasttext: bucket"):
        FastText(bucket=2**31)
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
    with pytest.raises(EmbeddingError):
        ngram_buckets("", 3, 6, 10)
