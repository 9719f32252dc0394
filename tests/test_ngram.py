"""Interpolated (modified) Kneser-Ney n-gram LM: normalisation, an independent reference
implementation, NLTK parity for the single-discount variant, perplexity, sampling, I/O."""

from __future__ import annotations

import json
import math
import random
from collections import Counter

import numpy as np
import pytest

from lmforge.errors import CheckpointError, ConfigError, DataError
from lmforge.models.ngram import BOS, EOS, UNK, NGramLM, modified_kn_discounts

# A small bilingual corpus with repeated n-grams (so counts of 1..4+ all occur).
TOY = [s.split() for s in [
    "the cat sat on the mat",
    "the dog sat on the mat",
    "the cat ate the fish",
    "a dog ate a bone",
    "the cat sat on a mat",
    "a cat sat",
    "the dog ran",
    "the cat ran on the mat",
    "我 看 了 一 本 书",
    "我 看 了 一 部 电影",
    "他 买 了 一 本 书",
    "他 看 了 一 本 书",
    "我 买 了 两 只 猫",
    "",
    "the cat sat on the mat",
]]


# --------------------------------------------------------------------- a corpus with structure
def grammar_corpus(n: int, seed: int) -> list[list[str]]:
    """Sentences from a small stochastic grammar with dependencies two words apart.

    Chinese: a classifier agrees with its noun across an optional adjective
    (一 本 [新] 书, 两 只 [小] 猫), and the verb prefers some classifiers. English: number
    agreement between a noun and its verb across an optional adjective.
    """
    r = random.Random(seed)
    cls_nouns = {"本": ["书", "杂志"], "只": ["猫", "狗", "鸟"], "部": ["电影", "手机"],
                 "杯": ["茶", "咖啡"]}
    verb_cls = {"看": ["本", "部"], "买": ["本", "只", "部", "杯"], "喝": ["杯"], "养": ["只"]}
    out = []
    for _ in range(n):
        if r.random() < 0.5:
            subj = r.choice(["我", "他", "她", "我们"])
            verb = r.choice(list(verb_cls))
            cl = r.choice(verb_cls[verb])
            s = [subj, verb, "了", r.choice(["一", "两", "三"]), cl]
            if r.random() < 0.5:
                s.append(r.choice(["大", "小", "新"]))
            s.append(r.choice(cls_nouns[cl]))
        else:
            plural = r.random() < 0.5
            s = [r.choice(["the", "some"] if plural else ["the", "a"])]
            if r.random() < 0.5:
                s.append(r.choice(["big", "small", "old"]))
            noun = r.choice(["dog", "cat", "bird"])
            s.append(noun + "s" if plural else noun)
            s.append(r.choice(["run", "sleep", "sing"] if plural else ["runs", "sleeps", "sings"]))
            if r.random() < 0.3:
                s += ["in", "the", r.choice(["park", "house"])]
        out.append(s)
    return out


# --------------------------------------------------------------------- independent reference
class ReferenceKN:
    """Interpolated (modified) KN written naively from the definitions: raw counts of every
    order, continuation counts as sets of left neighbours, the recursion as recursion."""

    def __init__(self, sents, order, discount="modified", floor=True):
        self.n, self.floor = order, floor
        self.raw = {k: Counter() for k in range(1, order + 1)}
        words = set()
        for s in sents:
            words.update(s)
            p = [BOS] * (order - 1) + s + [EOS]
            for i in range(order - 1, len(p)):          # n-grams ending at targets
                for k in range(1, order + 1):
                    self.raw[k][tuple(p[i - k + 1:i + 1])] += 1
        self.V = sorted(words) + [EOS, UNK]
        self.a = {order: dict(self.raw[order])}
        for k in range(1, order):
            self.a[k] = {g: len({x[0] for x in self.raw[k + 1] if x[1:] == g})
                         for g in self.raw[k]}
        self.D = {}
        for k in range(1, order + 1):
            if k == 1 and not floor:
                self.D[k] = (0.0, 0.0, 0.0)
            elif discount == "modified":
                nr = Counter(self.a[k].values())
                n1, n2, n3, n4 = nr[1], nr[2], nr[3], nr[4]
                y = n1 / (n1 + 2 * n2)
                self.D[k] = (1 - 2 * y * n2 / n1, 2 - 3 * y * n3 / n2, 3 - 4 * y * n4 / n3)
            else:
                self.D[k] = (discount,) * 3

    def p(self, w, h):
        k = len(h) + 1
        lower = (self.p(w, h[1:]) if h else
                 (1 / len(self.V) if self.floor else 0.0))
        succ = {g[-1]: c for g, c in self.a[k].items() if g[:-1] == h}
        if not succ:
            return lower
        tot = sum(succ.values())
        D = self.D[k]

        def d(c):
            return D[min(c, 3) - 1]

        gamma = sum(d(c) for c in succ.values()) / tot
        c = succ.get(w, 0)
        return (max(c - d(c), 0) if c else 0) / tot + gamma * lower


def contexts_for(lm: NGramLM, n_random: int = 25, seed: int = 0):
    """Every seen context of every length, some random unseen ones, OOV ones, shorter ones."""
    r = random.Random(seed)
    seen = set()
    for g in lm._ngrams:
        for k in range(lm.order):
            seen.add(g[k:-1])
    toks = [BOS, *lm.vocab[:-1]]
    rand = {tuple(r.choice(toks) for _ in range(r.randint(0, lm.order - 1)))
            for _ in range(n_random)}
    oov = {("zzz",) * (lm.order - 1), (BOS, "zzz")[-(lm.order - 1):] if lm.order > 1 else ()}
    return sorted(seen | rand | oov)


# --------------------------------------------------------------------- normalisation
@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("discount", ["modified", 0.75])
@pytest.mark.parametrize("floor", [True, False])
def test_probabilities_sum_to_one(order, discount, floor):
    lm = NGramLM(order, discount, uniform_floor=floor).fit(TOY + grammar_corpus(60, 1))
    assert BOS not in lm.vocab and EOS in lm.vocab and UNK in lm.vocab
    for ctx in contexts_for(lm, n_random=40):
        total = math.fsum(lm.prob(w, ctx) for w in lm.vocab)
        assert total == pytest.approx(1.0, abs=1e-12), ctx
        dist = lm.distribution(ctx)
        assert dist.sum() == pytest.approx(1.0, abs=1e-12)
        np.testing.assert_allclose(dist, [lm.prob(w, ctx) for w in lm.vocab], atol=1e-15)
    assert lm.prob(BOS, [BOS]) == 0.0
    assert lm.prob("never-seen", ["the"]) == lm.prob(UNK, ["the"])
    assert (lm.prob(UNK, ["the"]) > 0) == floor


# --------------------------------------------------------------------- reference implementation
@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("discount", ["modified", 0.6])
def test_matches_naive_reference_implementation(order, discount):
    corpus = TOY * 2 + grammar_corpus(40, 2)    # doubled so n1..n4 > 0: no fallback
    lm = NGramLM(order, discount).fit(corpus)
    ref = ReferenceKN(corpus, order, discount)
    assert lm.fallback_levels == []
    for k in range(1, order + 1):
        assert lm.discounts[k] == pytest.approx(ref.D[k], abs=1e-15)
    for ctx in contexts_for(lm, n_random=15, seed=order)[:60]:
        h = tuple(t if t in lm.vocab or t == BOS else UNK for t in ctx)
        for w in lm.vocab:
            assert lm.prob(w, ctx) == pytest.approx(ref.p(w, h), abs=1e-14), (w, ctx)


def test_modified_discounts_formula_and_fallback():
    # Chen & Goodman with n1..n4 = 10, 5, 3, 2
    y = 10 / 20
    (d1, d2, d3), fb = modified_kn_discounts({1: 10, 2: 5, 3: 3, 4: 2, 7: 1})
    assert (d1, d2, d3) == pytest.approx((1 - 2 * y * 5 / 10, 2 - 3 * y * 3 / 5,
                                          3 - 4 * y * 2 / 3))
    assert not fb
    assert d1 == pytest.approx(y)  # D1 always equals Y
    # no doubletons: Y is undefined, every discount falls back
    assert modified_kn_discounts({1: 4, 3: 1}) == ((0.5, 1.0, 1.5), True)
    # no count-3 n-grams: D3+ is undefined and falls back alone
    (d1, d2, d3), fb = modified_kn_discounts({1: 6, 2: 2})
    assert fb and d3 == 1.5 and d1 == pytest.approx(0.6) and d2 == pytest.approx(2.0)
    # D2 <= 0 (many count-3 n-grams) is out of range and falls back
    (_, d2, _), fb = modified_kn_discounts({1: 2, 2: 1, 3: 50, 4: 1})
    assert fb and d2 == 1.0
    # a tiny corpus records where the fallback was used and still normalises
    lm = NGramLM(3).fit([["a", "b"]])
    assert lm.fallback_levels == [1, 2, 3]
    assert sum(lm.prob(w, ["a"]) for w in lm.vocab) == pytest.approx(1.0)


# --------------------------------------------------------------------- NLTK parity
def _nltk_model(sents, order, discount):
    lm_mod = pytest.importorskip("nltk.lm")
    m = lm_mod.KneserNeyInterpolated(order, discount=discount)
    # Feed NLTK exactly the n-grams our model counts: for each target of the padded
    # sentence <s>^(N-1) w_1..w_m </s>, the k-grams (k = 1..N) that end at it.
    # (NLTK's own padded_everygram_pipeline pads </s> N-1 times and counts n-grams made of
    # padding only, which is a different model.)
    text = []
    for s in sents:
        p = [BOS] * (order - 1) + s + [EOS]
        text.append([tuple(p[i - k + 1:i + 1]) for i in range(order - 1, len(p))
                     for k in range(1, order + 1)])
    m.fit(text, [w for s in sents for w in s] + [BOS, EOS])
    return m


@pytest.mark.parametrize("order", [2, 3, 4])
def test_single_discount_matches_nltk_kneser_ney_interpolated(order):
    """Same model definition as NLTK's KneserNeyInterpolated: raw counts at the highest
    order, continuation counts below, D * N1+(h.) / a(h.) as the backoff weight, full
    backoff for unseen contexts, and (uniform_floor=False) an undiscounted continuation
    unigram at the bottom. Every context (seen, unseen, OOV, shorter) must agree."""
    corpus = TOY + grammar_corpus(12 if order == 4 else 25, 3)   # NLTK is slow at order 4
    d = 0.75
    ref = _nltk_model(corpus, order, d)
    lm = NGramLM(order, d, uniform_floor=False).fit(corpus)
    words = [w for w in lm.vocab if w != UNK] + ["zzz"]
    ctxs = contexts_for(lm, n_random=12, seed=order)
    checked = 0
    for ctx in ctxs:
        for w in words:
            ours, theirs = lm.prob(w, ctx), ref.score(w, list(ctx))
            assert ours == pytest.approx(theirs, abs=1e-12), (w, ctx)
            checked += 1
    assert checked > 500


def test_default_model_differs_from_nltk_only_by_the_uniform_floor():
    """With the uniform floor (our default) every probability changes, but only through
    the unigram level: p = p_nltk + (product of backoff weights) * (p1_ours - p1_nltk)."""
    corpus = TOY
    ref = _nltk_model(corpus, 2, 0.5)
    ours = NGramLM(2, 0.5).fit(corpus)
    nofloor = NGramLM(2, 0.5, uniform_floor=False).fit(corpus)
    for ctx in [("the",), ("cat",), ("zzz",)]:
        h = ctx if ctx[0] in ours.vocab else (UNK,)
        gamma = ours._stats[2][h][1] if h in ours._stats[2] else 1.0
        for w in ours.vocab[:-1]:
            p1_diff = ours.prob(w) - nofloor.prob(w)
            assert ours.prob(w, ctx) == pytest.approx(ref.score(w, list(ctx))
                                                      + gamma * p1_diff, abs=1e-12)


# --------------------------------------------------------------------- perplexity
def test_perplexity_decreases_with_order_on_structured_text():
    train, held = grammar_corpus(3000, 10), grammar_corpus(300, 11)
    ppl = {n: NGramLM(n).fit(train).perplexity(held) for n in (1, 2, 3)}
    assert ppl[1] > ppl[2] > ppl[3], ppl
    assert ppl[2] / ppl[3] > 1.05, ppl     # the two-apart dependencies are worth it
    plain = {n: NGramLM(n, 0.75).fit(train).perplexity(held) for n in (1, 2, 3)}
    assert plain[1] > plain[2] > plain[3], plain
    # OOV words are scored as <unk>: finite with the floor, infinite without it
    lm = NGramLM(2).fit(train)
    assert math.isfinite(lm.perplexity([["the", "zebra", "runs"]]))
    assert NGramLM(2, uniform_floor=False).fit(train).perplexity([["zebra"]]) == math.inf


def test_perplexity_definition():
    lm = NGramLM(2).fit(TOY)
    s = ["the", "cat", "sat"]
    lp = (lm.logprob("the", [BOS]) + lm.logprob("cat", ["the"]) + lm.logprob("sat", ["cat"])
          + lm.logprob(EOS, ["sat"]))
    assert lm.perplexity([s]) == pytest.approx(math.exp(-lp / 4))
    assert lm.sentence_logprob(s) == (pytest.approx(lp), 4)
    with pytest.raises(DataError):
        lm.perplexity([])


# --------------------------------------------------------------------- sampling
def test_sampling_ends_with_eos_and_respects_the_seed():
    train = grammar_corpus(500, 4)
    lm = NGramLM(3).fit(train)
    samples = [lm.sample(seed=i) for i in range(30)]
    for s in samples:
        assert s[-1] == EOS and EOS not in s[:-1] and BOS not in s and UNK not in s
    assert samples == [lm.sample(seed=i) for i in range(30)]
    assert len({tuple(s) for s in samples}) > 10
    rng1, rng2 = np.random.default_rng(5), np.random.default_rng(5)
    assert [lm.sample(rng1) for _ in range(3)] == [lm.sample(rng2) for _ in range(3)]
    assert lm.sample(random.Random(3)) == lm.sample(random.Random(3))
    # a prefix is continued; max_len caps the length
    cont = lm.sample(seed=1, context=["我", "喝", "了", "一"])
    assert cont[0] == "杯" and cont[-1] == EOS
    assert len(lm.sample(seed=0, max_len=2)) <= 2


# --------------------------------------------------------------------- persistence & errors
@pytest.mark.parametrize("discount", ["modified", 0.8])
def test_save_load_round_trip(tmp_path, discount):
    lm = NGramLM(3, discount).fit(TOY)
    path = tmp_path / "lm.json"
    lm.save(path)
    back = NGramLM.load(path)
    assert back.vocab == lm.vocab and back.discounts == lm.discounts
    assert (back.order, back.discount, back.uniform_floor) == (3, discount, True)
    for ctx in contexts_for(lm, n_random=10):
        for w in lm.vocab:
            assert back.prob(w, ctx) == lm.prob(w, ctx)
    assert not list(tmp_path.glob(".*tmp"))   # atomic write left no temp file


def test_load_rejects_bad_files(tmp_path):
    with pytest.raises(CheckpointError, match="no such"):
        NGramLM.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(CheckpointError):
        NGramLM.load(bad)
    bad.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(CheckpointError, match="format"):
        NGramLM.load(bad)
    lm = NGramLM(2).fit(TOY)
    lm.save(bad)
    obj = json.loads(bad.read_text())
    obj["ngrams"][0] = ["a", "b", "c", 1]
    bad.write_text(json.dumps(obj))
    with pytest.raises(CheckpointError, match="malformed"):
        NGramLM.load(bad)


def test_bad_arguments_raise_clear_errors():
    for order in (0, 1.5, True):
        with pytest.raises(ConfigError, match="order"):
            NGramLM(order)
    for d in ("kn", 0.0, 1.5, -1):
        with pytest.raises(ConfigError, match="discount"):
            NGramLM(2, d)
    with pytest.raises(ConfigError, match="fit"):
        NGramLM(2).prob("a")
    with pytest.raises(DataError, match="no sentences"):
        NGramLM(2).fit([])
    with pytest.raises(DataError, match="string"):
        NGramLM(2).fit(["the cat"])
    with pytest.raises(DataError, match="reserved"):
        NGramLM(2).fit([["a", "</s>"]])
    with pytest.raises(TypeError):
        NGramLM(2).fit(TOY).prob("cat", "the")


def test_context_longer_than_order_is_truncated_and_order_one_ignores_it():
    lm = NGramLM(2).fit(TOY)
    assert lm.prob("sat", ["x", "y", "cat"]) == lm.prob("sat", ["cat"])
    uni = NGramLM(1).fit(TOY)
    assert uni.prob("cat", ["the"]) == uni.prob("cat")
    assert uni.vocab == (*sorted({w for s in TOY for w in s}), EOS, UNK)
