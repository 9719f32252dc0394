"""QA metrics on worked examples: every expected number below is computed by hand from
the definitions in :mod:`lmforge.eval.qa` (the working is in the comments). The CMRC
English-run tokenizer is compared with NLTK's, which the CMRC script uses."""

from __future__ import annotations

import pytest
from fakes import one_line_error as error
from nltk.tokenize import NLTKWordTokenizer

from lmforge.errors import ConfigError, DataError
from lmforge.eval.qa import (
    best_threshold,
    cmrc_exact,
    cmrc_f1,
    cmrc_normalize,
    cmrc_tokens,
    longest_common_substring,
    normalize_answer,
    qa_scores,
    question_scores,
    squad_exact,
    squad_f1,
)

# ----------------------------------------------------------------------------- English

NORMALIZED = [
    ("The Eiffel Tower!", "eiffel tower"),
    ("  A  cat and THE hat. ", "cat and hat"),
    ("anthem", "anthem"),              # articles are whole words only
    ("an them", "them"),
    ("1,000 (approx.)", "1000 approx"),
    ("l'amour", "lamour"),             # the apostrophe is deleted, not a space
    ("“Hamlet”", "“hamlet”"),          # curly quotes are not ASCII punctuation
    ("the a an", ""),
    ("", ""),
]


@pytest.mark.parametrize(("text", "expected"), NORMALIZED)
def test_normalize_answer(text, expected):
    assert normalize_answer(text) == expected


# (prediction, gold, EM, F1); T = tokens of the normalized string, c = common (bag).
SQUAD = [
    ("The Eiffel Tower!", "eiffel tower", 1, 1.0),          # both "eiffel tower"
    # T_p = eiffel tower in paris (4), T_g = eiffel tower (2), c = 2:
    # P = 2/4, R = 2/2, F1 = 2 * 1/2 * 1 / (3/2) = 2/3
    ("Eiffel Tower in Paris", "the Eiffel Tower", 0, 2 / 3),
    # T_p = cat and hat (3), T_g = cat hat (2), c = 2: P = 2/3, R = 1, F1 = (4/3)/(5/3)
    ("a cat and the hat", "cat hat", 0, 4 / 5),
    # bag counts: T_p = new new york, T_g = new york: c = min(2,1) + 1 = 2, F1 = 4/5
    ("new new york", "new york", 0, 4 / 5),
    ("Paris France", "France Paris", 0, 1.0),              # a bag: order does not count
    ("1,000 people", "1000 people", 1, 1.0),
    ("anthem", "an them", 0, 0.0),                         # "anthem" vs "them"
    ("“Hamlet”", "Hamlet", 0, 0.0),                        # "“hamlet”" is another token
    # T_p = big red dog (3), T_g = red (1), c = 1: P = 1/3, R = 1, F1 = (2/3)/(4/3) = 1/2
    ("big red dog", "red", 0, 1 / 2),
    ("", "Paris", 0, 0.0),                                 # empty prediction
    ("!!!", "", 1, 1.0),                                   # both empty: agree on no answer
    ("the", "", 1, 1.0),
    ("Paris", "", 0, 0.0),
]


@pytest.mark.parametrize(("pred", "gold", "em", "f1"), SQUAD)
def test_squad_em_and_f1(pred, gold, em, f1):
    assert squad_exact(pred, gold) == em
    assert squad_f1(pred, gold) == pytest.approx(f1, abs=1e-12)
    assert squad_f1(gold, pred) == pytest.approx(f1, abs=1e-12)  # symmetric


# (prediction, gold answers, EM, F1): maxima over the gold answers.
QUESTIONS_EN = [
    ("Broncos", ["Denver Broncos", "The Broncos", "Broncos"], 1, 1.0),
    # vs "denver broncos": P = 1, R = 1/2, F1 = 2/3; vs "broncos": 0 -> max 2/3
    ("Denver", ["Denver Broncos", "The Broncos"], 0, 2 / 3),
    ("", [], 1, 1.0),                  # no-answer question, no-answer prediction
    ("the", [], 1, 1.0),               # normalizes to "": also no answer
    ("Paris", [], 0, 0.0),             # any answer to a no-answer question scores 0
    ("", ["Paris"], 0, 0.0),           # no answer to an answerable question scores 0
    ("", ["The", "!"], 1, 1.0),        # golds that normalize to "" are dropped -> [""]
]


@pytest.mark.parametrize(("pred", "golds", "em", "f1"), QUESTIONS_EN)
def test_question_scores_en(pred, golds, em, f1):
    assert question_scores(pred, golds, "en") == (em, pytest.approx(f1, abs=1e-12))


# ----------------------------------------------------------------------------- Chinese


def test_cmrc_normalize_deletes_only_the_listed_punctuation():
    assert cmrc_normalize(" 《红楼梦》：Cao-Xueqin！ ") == "红楼梦caoxueqin"
    assert cmrc_normalize("上海!") == "上海!"        # ASCII ! is not in the list
    assert cmrc_normalize("2018 年") == "2018 年"     # inner space stays
    assert cmrc_normalize("…上海") == "…上海"         # the list's "……" never matches


TOKENS = [
    ("NBA总冠军", ["nba", "总", "冠", "军"]),
    ("约3.5公里", ["约", "3.5", "公", "里"]),
    ("2018 年", ["2018", "年"]),
    ("e-mail", ["email"]),             # a listed character is deleted inside a run
    ("《红楼梦》", ["红", "楼", "梦"]),
    ("上海!", ["上", "海", "!"]),
    ("iPhone 6s发布", ["iphone", "6s", "发", "布"]),
    ("", []),
]


@pytest.mark.parametrize(("text", "expected"), TOKENS)
def test_cmrc_tokens(text, expected):
    assert cmrc_tokens(text) == expected


# The CMRC script splits the runs with nltk.word_tokenize: for one sentence that is
# NLTKWordTokenizer (word_tokenize first splits sentences with punkt, a data download).
SAME_AS_NLTK = ["3.14", "1,000 people", "hello world.", "$100", "50%", "(a) b", "x, y; z!",
                "v1.2.3", "o'neil", "1.5kg", "no.1", "mr smith", "12:30", "a&b", "@user #1"]
DIFFERENT_FROM_NLTK = [
    ("can't", ["can't"], ["ca", "n't"]),
    ("u.s. army", ["u.s", ".", "army"], ["u.s.", "army"]),  # NLTK splits only a final "."
    ("wait...", ["wait", ".", ".", "."], ["wait", "..."]),
    ('"a"', ['"', "a", '"'], ["``", "a", "''"]),
]


@pytest.mark.parametrize("run", SAME_AS_NLTK)
def test_english_runs_split_as_nltk_does(run):
    # ':' is in the CMRC list, so the script deletes it before NLTK sees the run.
    assert cmrc_tokens(run) == NLTKWordTokenizer().tokenize(run.replace(":", ""))


@pytest.mark.parametrize(("run", "ours", "nltk"), DIFFERENT_FROM_NLTK)
def test_documented_differences_from_nltk(run, ours, nltk):
    assert cmrc_tokens(run) == ours
    assert NLTKWordTokenizer().tokenize(run) == nltk


@pytest.mark.parametrize(("a", "b", "expected"), [
    ("北京大学", "北大", 1),           # a substring, not a subsequence (that would be 2)
    ("abcde", "xbcdy", 3),
    ("abc", "abc", 3),
    ("abc", "xyz", 0),
    ("", "abc", 0),
])
def test_longest_common_substring(a, b, expected):
    assert longest_common_substring(list(a), list(b)) == expected
    assert longest_common_substring(list(b), list(a)) == expected


# (prediction, gold, EM, F1): F1 from the longest common substring l of the tokens.
CMRC = [
    ("北京市", "北京", 0, 4 / 5),        # l = 2, P = 2/3, R = 1, F1 = (4/3)/(5/3)
    ("《红楼梦》", "红楼梦", 1, 1.0),     # 《》 are in the list
    ("2189万", "2189万人", 0, 4 / 5),    # 2189 万 | 2189 万 人: l = 2, P = 1, R = 2/3
    # nba 总 冠 军 | nba 冠 军: l = 2 (冠军), P = 1/2, R = 2/3, F1 = (2/3)/(7/6) = 4/7
    ("NBA总冠军", "nba冠军", 0, 4 / 7),
    ("约3.5公里", "3.5公里", 0, 6 / 7),  # l = 3, P = 3/4, R = 1, F1 = (3/2)/(7/4)
    ("北京大学", "北大", 0, 1 / 3),      # l = 1, P = 1/4, R = 1/2, F1 = (1/4)/(3/4)
    ("e-mail", "email", 1, 1.0),
    ("上海！", "上海", 1, 1.0),          # full-width ！ is in the list
    ("上海!", "上海", 0, 4 / 5),         # ASCII ! is not: l = 2, P = 2/3, R = 1
    ("2018 年", "2018年", 0, 1.0),       # EM keeps the space, the tokens do not see it
    ("iPhone 6s", "iphone6s", 0, 0.0),  # iphone 6s | iphone6s: no common token
    ("", "北京", 0, 0.0),
    ("！", "", 1, 1.0),                  # both empty after normalization
]


@pytest.mark.parametrize(("pred", "gold", "em", "f1"), CMRC)
def test_cmrc_em_and_f1(pred, gold, em, f1):
    assert cmrc_exact(pred, gold) == em
    assert cmrc_f1(pred, gold) == pytest.approx(f1, abs=1e-12)


def test_question_scores_zh():
    assert question_scores("北京市", ["北京", "北京市"], "zh") == (1, 1.0)
    assert question_scores("北京市", ["北京", "北京城区"], "zh-CN") == (0, pytest.approx(0.8))
    assert question_scores("", [], "zh") == (1, 1.0)
    assert question_scores("北京", [], "zh") == (0, 0.0)


# ----------------------------------------------------------------------------- data sets


def rec(qid, context, answers, **kw):
    return {"id": qid, "context": context, "question": "?",
            "answers": [{"text": a, "answer_start": context.find(a)} for a in answers],
            "is_impossible": not answers, **kw}


EN_CONTEXT = "Paris Lyon Marseille Nice Rome new york city"
# Five questions for the threshold search (HasAns: a, b, e; NoAns: c, d).
RECORDS = [rec("a", EN_CONTEXT, ["Paris"]), rec("b", EN_CONTEXT, ["Marseille"]),
           rec("c", EN_CONTEXT, []), rec("d", EN_CONTEXT, []),
           rec("e", EN_CONTEXT, ["new york"])]
PREDS = {"a": "Paris", "b": "Lyon", "c": "Nice", "d": "Rome", "e": "new york city"}
NA_PROBS = {"a": 0.1, "b": 0.6, "c": 0.8, "d": 0.3, "e": 0.2}
# Raw EM: a 1, b 0, c 0, d 0, e 0. Raw F1: a 1, e = (P 2/3, R 1) 4/5, others 0.


def test_scores_of_a_v2_set():
    out = qa_scores(PREDS, RECORDS)
    assert out == pytest.approx({
        "exact": 100 * 1 / 5, "f1": 100 * 1.8 / 5, "total": 5, "missing": 0,
        "HasAns_exact": 100 * 1 / 3, "HasAns_f1": 100 * 1.8 / 3, "HasAns_total": 3,
        "NoAns_exact": 0.0, "NoAns_f1": 0.0, "NoAns_total": 2})


def test_best_threshold_by_hand():
    # Start: every question answered "": score = #NoAns = 2. By increasing q:
    #   a (0.1) +1 -> 3 (best, 0.1); e (0.2) EM +0 -> 3 / F1 +0.8 -> 3.8 (best, 0.2);
    #   d (0.3) NoAns answered "Rome" -1; b (0.6) +0; c (0.8) -1.
    has = {r["id"]: bool(r["answers"]) for r in RECORDS}
    em = {"a": 1, "b": 0, "c": 0, "d": 0, "e": 0}
    f1 = {"a": 1.0, "b": 0.0, "c": 0.0, "d": 0.0, "e": 0.8}
    assert best_threshold(em, NA_PROBS, has, PREDS) == (pytest.approx(60.0), 0.1)
    assert best_threshold(f1, NA_PROBS, has, PREDS) == (pytest.approx(76.0), 0.2)
    # Never better than answering nothing: threshold 0.0 and the NoAns share.
    worse = {"a": "x", "b": "x", "c": "x", "d": "x", "e": "x"}
    assert best_threshold({k: 0 for k in em}, NA_PROBS, has, worse) == (40.0, 0.0)


def test_na_probs_in_qa_scores():
    out = qa_scores(PREDS, RECORDS, na_probs=NA_PROBS)
    assert (out["exact"], out["f1"]) == (pytest.approx(20.0), pytest.approx(36.0))  # 1.0
    assert out["best_exact"] == pytest.approx(60.0) and out["best_exact_thresh"] == 0.1
    assert out["best_f1"] == pytest.approx(76.0) and out["best_f1_thresh"] == 0.2
    # At 0.2, d, b, c (q > 0.2) are answered "": d 1, b 0, c 1 -> EM 3/5, F1 3.8/5.
    at = qa_scores(PREDS, RECORDS, na_probs=NA_PROBS, na_prob_thresh=0.2)
    assert (at["exact"], at["f1"]) == (pytest.approx(60.0), pytest.approx(76.0))
    assert (at["NoAns_exact"], at["HasAns_exact"]) == (100.0, pytest.approx(100 / 3))


def test_language_per_record_or_given():
    zh = rec("z", "北京是中国的首都。", ["北京"])
    en = rec("x", "Beijing is the capital.", ["Beijing"])
    preds = {"z": "北京市", "x": "Beijing city"}
    # zh auto-detected (Han characters): EM 0, F1 4/5; en: EM 0, F1 = P 1/2, R 1 -> 2/3
    out = qa_scores(preds, [zh, en])
    assert out["f1"] == pytest.approx(100 * (4 / 5 + 2 / 3) / 2)
    # The English metric on Chinese: one whitespace token each, F1 0.
    assert qa_scores({"z": "北京市"}, [zh], lang="en")["f1"] == 0.0
    assert qa_scores({"z": "北京市"}, [{**zh, "lang": "en"}])["f1"] == 0.0
    assert qa_scores({"x": "Beijing city"}, [{**en, "lang": "zh-Hans"}])["f1"] == \
        pytest.approx(100 * 2 / 3)  # zh tokens: beijing city | beijing: l 1, P 1/2, R 1


def test_missing_predictions_score_zero():
    out = qa_scores({"a": "Paris"}, RECORDS[:2])
    assert (out["exact"], out["missing"], out["total"]) == (50.0, 1, 2)
    # a no-answer question without a prediction also scores 0 (not "answered ''")
    assert qa_scores({}, [RECORDS[2]])["exact"] == 0.0


def test_bad_arguments():
    assert "for ids not in the data, e.g. 'zz'" in error(
        DataError, qa_scores, {"zz": "x"}, RECORDS)
    assert "prediction for 'a' is int" in error(DataError, qa_scores, {"a": 3}, RECORDS)
    assert "e.g. 'e'" in error(DataError, qa_scores, PREDS, RECORDS,
                               na_probs={k: 0.5 for k in "abcd"})
    assert "lang='de' has no QA metric" in error(ConfigError, qa_scores, PREDS, RECORDS,
                                                 lang="de")
    assert "record 'a': lang='fr'" in error(DataError, qa_scores, {"a": "Paris"},
                                            [{**RECORDS[0], "lang": "fr"}])
    assert "no records" in error(DataError, qa_scores, {}, [])
