"""Summarisation metrics against the reference: ``rouge_scores`` and ``pair_scores`` equal
rouge-score's own ``RougeScorer`` (English with the Porter stemmer; Chinese with the
character tokenizer), pair by pair and on average, on fixed and on generated pairs;
Chinese character ROUGE equals hand computations (the LCS worked by hand); the bootstrap
interval is the aggregator's; lead-k splits sentences in both languages; bad input gives
one line."""

from __future__ import annotations

import sys

import numpy as np
import pytest
from fakes import one_line_error as error
from hypothesis import given, settings
from hypothesis import strategies as st

from lmforge.errors import ConfigError, DataError, LmforgeError
from lmforge.eval import summarization as summ
from lmforge.eval.summarization import (
    ChineseCharTokenizer,
    lead_k,
    pair_scores,
    rouge_scores,
    split_sentences,
)

rouge_scorer = pytest.importorskip("rouge_score.rouge_scorer")
scoring = pytest.importorskip("rouge_score.scoring")
TYPES = ["rouge1", "rouge2", "rougeL"]
TOL = 1e-9

EN_PREDS = ["Redwood Systems hired Anna as an engineer in March 2019.", "", "The cat sat.",
            "Profit at Harbor Bank rose by 12% in 2019.", "running runs ran", "Same text",
            "Hiring, hired, hires!"]
EN_REFS = ["Anna joined Redwood Systems in March 2019 as an engineer.", "Not empty.", "",
           "Harbor Bank made 12% more profit in 2019 than the year before.",
           "He runs; she is running.", "Same text", "hire"]
ZH_PREDS = ["红杉系统于二〇一九年三月聘用安娜担任工程师。", "",
            "港湾银行二〇一九年的利润增长了百分之十二。", "GPT-2于二〇一九年发布", "一模一样"]
ZH_REFS = ["安娜于二〇一九年三月加入红杉系统,担任工程师。", "不空",
           "港湾银行二〇一九年的利润比上一年多了百分之十二。", "二〇一九年,GPT-2发布。", "一模一样"]


def reference(preds: list[str], refs: list[str], lang: str) -> list[dict]:
    """rouge-score's scores (0..1) of each pair, with the scorer the docs name."""
    if lang == "zh":
        scorer = rouge_scorer.RougeScorer(TYPES, tokenizer=ChineseCharTokenizer())
    else:
        scorer = rouge_scorer.RougeScorer(TYPES, use_stemmer=True)
    return [scorer.score(r, p) for p, r in zip(preds, refs, strict=True)]


def check_against_reference(preds: list[str], refs: list[str], lang: str) -> dict:
    want = reference(preds, refs, lang)
    ours = pair_scores(preds, refs, lang=lang)
    for o, w in zip(ours, want, strict=True):
        for t in TYPES:
            assert o[t]["precision"] == pytest.approx(100 * w[t].precision, abs=TOL)
            assert o[t]["recall"] == pytest.approx(100 * w[t].recall, abs=TOL)
            assert o[t]["f1"] == pytest.approx(100 * w[t].fmeasure, abs=TOL)
    corpus = rouge_scores(preds, refs, lang=lang)
    for t in TYPES:
        assert corpus[t] == pytest.approx(100 * float(np.mean([w[t].fmeasure for w in want])),
                                          abs=TOL)
    assert corpus["n"] == len(preds) and corpus["aggregation"] == "mean"
    return corpus


@pytest.mark.parametrize("lang,preds,refs", [("en", EN_PREDS, EN_REFS),
                                             ("zh", ZH_PREDS, ZH_REFS)])
def test_fixed_pairs_equal_rouge_score(lang, preds, refs):
    corpus = check_against_reference(preds, refs, lang)
    assert corpus["tokenization"] == {"en": "words+porter", "zh": "chars"}[lang]
    assert corpus["lang"] == lang
    # identical texts score 100, an empty side 0
    scores = pair_scores(preds, refs, lang=lang)
    same = preds.index(next(p for p, r in zip(preds, refs, strict=True) if p == r))
    assert all(scores[same][t]["f1"] == 100 for t in TYPES)
    assert all(scores[1][t]["f1"] == 0 for t in TYPES)


WORDS = ["hired", "hire", "hires", "Hiring", "Anna", "anna", "joined", "Redwood", "Systems",
         "system", "in", "March", "2019", "as", "an", "engineer", "the", "The", "running",
         "runs", "ran", "3-1", "12%", "it's", "don't", "co-op", "A.", "!", "résumé", "naïve",
         ",", "...", "profit", "profits", "rose", "fell"]
SENTENCE = st.lists(st.sampled_from(WORDS), max_size=14).map(" ".join)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(SENTENCE, SENTENCE), min_size=1, max_size=6))
def test_generated_english_pairs_equal_rouge_score(pairs):
    preds, refs = (list(x) for x in zip(*pairs, strict=True))
    check_against_reference(preds, refs, "en")


HAN = "红杉系统安娜聘用加入二〇一九年发布工程师,。 "


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(HAN + "ab1-", max_size=20), st.text(HAN + "ab1-",
                                                                        max_size=20)),
                min_size=1, max_size=6))
def test_generated_chinese_pairs_equal_rouge_score_with_the_char_tokenizer(pairs):
    preds, refs = (list(x) for x in zip(*pairs, strict=True))
    check_against_reference(preds, refs, "zh")


def f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r)


def test_english_by_hand_stems_words():
    # pred tokens: redwood system hire anna (Porter: Systems -> system, hired -> hire)
    # ref tokens:  anna was hire by redwood system ("was", "by": 3 letters or fewer, kept)
    # unigrams: 4 shared -> P 4/4, R 4/6; bigrams: only "redwood system" -> P 1/3, R 1/5;
    # LCS: "redwood system" (2) -> P 2/4, R 2/6
    s = rouge_scores(["Redwood Systems hired Anna."], ["Anna was hired by Redwood Systems."],
                     lang="en")
    assert s["rouge1"] == pytest.approx(100 * f1(1, 4 / 6), abs=TOL)
    assert s["rouge2"] == pytest.approx(100 * f1(1 / 3, 1 / 5), abs=TOL)
    assert s["rougeL"] == pytest.approx(100 * f1(2 / 4, 2 / 6), abs=TOL)


def test_chinese_by_hand_on_characters():
    # pred 红杉系统聘用安娜, ref 安娜加入红杉系统: 8 characters each.
    # unigrams: 红杉系统安娜 shared, 6/8 both ways; bigrams (7 each): 红杉 杉系 系统 安娜 shared;
    # LCS: 红杉系统 (4; 安娜 comes after it in pred, before it in ref) -> 4/8 both ways.
    s = rouge_scores(["红杉系统聘用安娜"], ["安娜加入红杉系统"], lang="zh")
    assert s["rouge1"] == pytest.approx(75.0, abs=TOL)
    assert s["rouge2"] == pytest.approx(100 * 4 / 7, abs=TOL)
    assert s["rougeL"] == pytest.approx(50.0, abs=TOL)
    # pred 二〇一九年,GPT-2发布。 -> 二 〇 一 九 年 gpt 2 发 布 (9 tokens, punctuation dropped)
    # ref  GPT-2于二〇一九年发布  -> gpt 2 于 二 〇 一 九 年 发 布 (10 tokens)
    # unigrams: all 9 of pred -> P 9/9, R 9/10. bigrams (8 and 9): 二〇 〇一 一九 九年 gpt2 发布
    # -> P 6/8, R 6/9. LCS: 二〇一九年发布 (7) beats gpt2发布 (4) -> P 7/9, R 7/10.
    s = rouge_scores(["二〇一九年,GPT-2发布。"], ["GPT-2于二〇一九年发布"], lang="zh-CN")
    assert s["rouge1"] == pytest.approx(100 * f1(1, 9 / 10), abs=TOL)
    assert s["rouge2"] == pytest.approx(100 * f1(6 / 8, 6 / 9), abs=TOL)
    assert s["rougeL"] == pytest.approx(100 * f1(7 / 9, 7 / 10), abs=TOL)
    assert s["lang"] == "zh" and s["tokenization"] == "chars"


def test_char_tokenizer_and_why_it_is_needed():
    assert ChineseCharTokenizer().tokenize("GPT-2是一个Model,二〇一九年！") == [
        "gpt", "2", "是", "一", "个", "model", "二", "〇", "一", "九", "年"]
    # rouge-score's default tokenizer keeps only a-z0-9: Chinese has no tokens at all
    default = rouge_scorer.RougeScorer(TYPES, use_stemmer=True)
    assert default.score("安娜加入红杉系统", "安娜加入红杉系统")["rouge1"].fmeasure == 0
    assert rouge_scores(["安娜加入红杉系统"], ["安娜加入红杉系统"], lang="zh")["rouge1"] == 100


def test_interval_is_the_bootstrap_aggregators():
    preds, refs = EN_PREDS * 3, EN_REFS * 3
    before = np.random.get_state()[1].copy()
    ours = rouge_scores(preds, refs, lang="en", interval=True, n_samples=200, seed=7)
    assert (np.random.get_state()[1] == before).all()  # numpy's global state is restored
    agg = scoring.BootstrapAggregator(confidence_interval=0.95, n_samples=200)
    for s in reference(preds, refs, "en"):
        agg.add_scores(s)
    np.random.seed(7)
    want = agg.aggregate()
    for t in TYPES:
        low, high = ours["interval"][t]
        assert low == pytest.approx(100 * want[t].low.fmeasure, abs=TOL)
        assert high == pytest.approx(100 * want[t].high.fmeasure, abs=TOL)
        assert low <= ours[t] <= high
    again = rouge_scores(preds, refs, lang="en", interval=True, n_samples=200, seed=7)
    assert again == ours
    assert "interval" not in rouge_scores(preds, refs, lang="en")


# ----------------------------------------------------------------------------- lead-k

def test_english_sentences_end_at_a_mark_before_a_space():
    doc = 'Anna paid 3.5 dollars. Was it cheap? Yes! He said "fine." \n\nThe end'
    assert split_sentences(doc, "en") == ["Anna paid 3.5 dollars.", "Was it cheap?", "Yes!",
                                          'He said "fine."', "The end"]
    assert lead_k(doc, 1, "en") == "Anna paid 3.5 dollars."
    assert lead_k(doc, 4, "en") == 'Anna paid 3.5 dollars. Was it cheap? Yes! He said "fine."'
    assert lead_k(doc, 9, "en") == doc.strip()
    assert lead_k("  ", 2, "en") == "" and split_sentences("", "en") == []


def test_chinese_sentences_end_after_a_mark():
    doc = "安娜加入了红杉系统。她很高兴！真的吗?“好。”最后一句"
    assert split_sentences(doc, "zh") == ["安娜加入了红杉系统。", "她很高兴！", "真的吗?", "“好。”",
                                          "最后一句"]
    assert lead_k(doc, 2, "zh") == "安娜加入了红杉系统。她很高兴！"
    assert lead_k("一点五是1.5。第二句。", 1, "zh") == "一点五是1.5。"
    assert lead_k(doc, 5, "zh") == doc


# ----------------------------------------------------------------------------- errors

def test_bad_input_gives_one_line():
    assert "2 predictions but 1 references" in error(DataError, rouge_scores, ["a", "b"],
                                                      ["a"], lang="en")
    assert "empty" in error(DataError, rouge_scores, [], [], lang="en")
    assert "empty" in error(DataError, pair_scores, [], [], lang="zh")
    assert "predictions must be a list" in error(DataError, rouge_scores, "a", ["a"],
                                                 lang="en")
    assert "references[1] is int" in error(DataError, rouge_scores, ["a", "b"], ["a", 3],
                                           lang="en")
    assert "'en'" in error(ConfigError, rouge_scores, ["a"], ["a"], lang="de")
    assert "n_samples" in error(ConfigError, rouge_scores, ["a"], ["a"], lang="en",
                                interval=True, n_samples=0)
    assert "k must be an integer >= 1" in error(ConfigError, lead_k, "A. B.", 0, "en")
    assert "must be a string" in error(DataError, lead_k, None, 1, "en")
    assert "has no ROUGE" in error(ConfigError, split_sentences, "A.", "fr")


def test_missing_rouge_score_names_the_extra(monkeypatch):
    summ._scorer.cache_clear()
    monkeypatch.setitem(sys.modules, "rouge_score.rouge_scorer", None)
    try:
        msg = error(LmforgeError, rouge_scores, ["a"], ["a"], lang="en")
    finally:
        summ._scorer.cache_clear()
    assert "pip install 'lmforge[generation]'" in msg
