"""QA span machinery: windows against a Hugging Face fast tokenizer's overflowing windows
(same ids, token types, offsets), coverage and stride overlap, gold answers mapped back
to exactly their text, and post-processing on hand-made logits (every expected span and
score worked out in the comments)."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from fakes import one_line_error as error

from lmforge.errors import ConfigError, DataError
from lmforge.tasks.qa_spans import encode_qa, make_windows, postprocess_qa

CLS, SEP = 101, 102
Q = [7, 8]                       # a two-token question
LETTERS = "a b c d e f g h i j"  # token k is letter k, characters [2k, 2k + 1)
IDS = list(range(20, 30))
OFFSETS = [(2 * k, 2 * k + 1) for k in range(10)]


def windows(max_length=10, stride=2, answer=None, context_ids=IDS, offsets=OFFSETS):
    return make_windows(Q, context_ids, offsets, cls_id=CLS, sep_id=SEP,
                        max_length=max_length, stride=stride, answer=answer)


def text_of(win, context):
    return context[win.offsets[win.start_position][0]:win.offsets[win.end_position][1]]


# ----------------------------------------------------------------------------- windows


def test_windows_by_hand():
    # room = 10 - 2 - 3 = 5 context tokens; step = room - stride = 3: chunks [0, 5),
    # [3, 8), [6, 10) -- the third reaches the end.
    ws = windows()
    assert [w.input_ids for w in ws] == [
        [CLS, 7, 8, SEP, 20, 21, 22, 23, 24, SEP],
        [CLS, 7, 8, SEP, 23, 24, 25, 26, 27, SEP],
        [CLS, 7, 8, SEP, 26, 27, 28, 29, SEP]]
    assert ws[2].token_type_ids == [0, 0, 0, 0, 1, 1, 1, 1, 1]
    assert ws[1].offsets == [None] * 4 + OFFSETS[3:8] + [None]
    assert all(w.start_position == w.end_position == 0 for w in ws)  # no answer given


def test_answer_labels_by_hand():
    # "d e" = characters [6, 9) = tokens 3..4: in window 0 at positions 4 + 3, 4 + 4;
    # in window 1 (tokens 3..7) at 4 + 0, 4 + 1; not whole in window 2 (tokens 6..9).
    ws = windows(answer=(6, 9))
    assert [(w.start_position, w.end_position) for w in ws] == [(7, 8), (4, 5), (0, 0)]
    assert {text_of(w, LETTERS) for w in ws if w.start_position} == {"d e"}
    # The answer in the last context token of window 0 ("e", token 4): position 8, not
    # the [SEP] at 9 that HF's start search runs on to.
    assert (windows(answer=(8, 9))[0].start_position, windows(answer=(8, 9))[0].end_position
            ) == (8, 8)
    # "e f" (tokens 4..5) is cut by window 0's edge: labelled only in window 1.
    assert [(w.start_position, w.end_position) for w in windows(answer=(8, 11))] == [
        (0, 0), (5, 6), (0, 0)]
    # An answer that cuts a token gets the whole token: "b" of a token "bc" = [2, 4).
    ws = make_windows(Q, [20, 21], [(0, 1), (2, 4)], cls_id=CLS, sep_id=SEP,
                      max_length=10, stride=0, answer=(2, 3))
    assert (ws[0].start_position, ws[0].end_position) == (5, 5)


def test_short_context_is_one_window_and_stride_zero_tiles():
    assert len(windows(max_length=20)) == 1
    ws = windows(stride=0)  # chunks [0, 5), [5, 10): no overlap
    assert [w.offsets[4] for w in ws] == [(0, 1), (10, 11)]


@pytest.mark.parametrize(("kw", "kind", "message"), [
    ({"stride": 5}, ConfigError, "stride=5 must be >= 0 and smaller than the context room "
                                 "of example 0 (5 = max_length"),
    ({"stride": -1}, ConfigError, "stride=-1"),
    ({"max_length": 5}, DataError, "example 0: the question has 2 tokens, which leaves no "
                                   "room for the context in max_length=5"),
    ({"offsets": OFFSETS[:3]}, ConfigError, "10 context ids but 3 offsets"),
])
def test_bad_window_arguments(kw, kind, message):
    assert message in error(kind, windows, **kw)


# ----------------------------------------------------------------------------- real tokenizer

EN = ("The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris. "
      "It is named after the engineer Gustave Eiffel, whose company designed and built "
      "the tower from 1887 to 1889. Locally nicknamed La dame de fer, it was constructed "
      "as the centrepiece of the 1889 World's Fair, and to crown the centennial "
      "anniversary of the French Revolution. It is 330 metres tall.")
ZH = ("埃菲尔铁塔是位于法国巴黎战神广场的锻铁镂空结构铁塔，于1889年建成，得名于设计它"
      "的著名建筑师、结构工程师古斯塔夫·埃菲尔。铁塔是世界著名建筑，也是法国文化象征之一，"
      "巴黎城市地标之一，巴黎最高建筑物。高330米。")


def _record(qid, question, context, answer):
    answers = [] if answer is None else [{"text": answer, "answer_start": context.index(answer)}]
    return {"id": qid, "question": question, "context": context, "answers": answers,
            "is_impossible": answer is None}


RECORDS = [
    _record("en1", "Who designed the tower?", EN, "Gustave Eiffel"),
    _record("en2", "  How tall is it?", EN, "330 metres"),
    _record("en3", "When was the fair?", EN, "1889 World's Fair"),
    _record("en4", "Who painted it?", EN, None),
    _record("zh1", "铁塔在哪里？", ZH, "法国巴黎战神广场"),
    _record("zh2", "铁塔有多高？", ZH, "330米"),
]


@pytest.fixture(scope="module")
def tokenizers():
    transformers = pytest.importorskip("transformers")
    from lmforge.embeddings.contextual import default_model_path
    from lmforge.tokenize import Tokenizer

    path = default_model_path()
    return Tokenizer.load(path), transformers.AutoTokenizer.from_pretrained(str(path))


@pytest.mark.parametrize(("max_length", "stride"), [(24, 4), (32, 8), (48, 0), (384, 128)])
def test_windows_equal_hf_overflowing_tokens(tokenizers, max_length, stride):
    ours, hf = tokenizers
    got = encode_qa(RECORDS, ours, max_length=max_length, stride=stride)
    enc = hf([r["question"].lstrip() for r in RECORDS], [r["context"] for r in RECORDS],
             truncation="only_second", max_length=max_length, stride=stride,
             return_overflowing_tokens=True, return_offsets_mapping=True)
    assert len(got) == len(enc["input_ids"])
    assert [w.example for w in got] == enc["overflow_to_sample_mapping"]
    for i, w in enumerate(got):
        assert w.input_ids == enc["input_ids"][i]
        assert w.token_type_ids == enc["token_type_ids"][i]
        context = [k for k, s in enumerate(enc.sequence_ids(i)) if s == 1]
        assert w.offsets == [tuple(o) if k in context else None
                             for k, o in enumerate(enc["offset_mapping"][i])]


@pytest.mark.parametrize(("max_length", "stride"), [(24, 4), (32, 8), (40, 16)])
def test_windows_cover_overlap_and_map_answers_back(tokenizers, max_length, stride):
    ours, _ = tokenizers
    got = encode_qa(RECORDS, ours, max_length=max_length, stride=stride)
    for k, r in enumerate(RECORDS):
        ws = [w for w in got if w.example == k]
        chunks = [[o for o in w.offsets if o is not None] for w in ws]
        everything = ours.hf.encode(r["context"], add_special_tokens=False).offsets
        assert sorted(set().union(*map(set, chunks))) == everything  # every token covered
        assert all(len(w.input_ids) <= max_length for w in ws)
        for a, b in itertools.pairwise(chunks):  # consecutive windows share `stride` tokens
            assert a[-stride:] == b[:stride] and a[-stride - 1] < b[0]
        labelled = [w for w in ws if w.start_position]
        if r["is_impossible"]:
            assert not labelled
            continue
        ans = r["answers"][0]
        a0, a1 = ans["answer_start"], ans["answer_start"] + len(ans["text"])
        n_answer = sum(o[0] < a1 and o[1] > a0 for o in everything)
        for w in ws:
            inside = [o for o in w.offsets if o is not None]
            whole = inside[0][0] <= a0 and inside[-1][1] >= a1
            assert bool(w.start_position) == whole
            if whole:  # these answers fall on token boundaries: exactly their text
                assert text_of(w, r["context"]) == ans["text"]
        # An answer of at most `stride` tokens cut by one window is whole in the next.
        assert labelled or n_answer > stride


def test_one_hot_logits_give_back_every_answer(tokenizers):
    ours, _ = tokenizers
    got = encode_qa(RECORDS, ours, max_length=32, stride=8)
    starts, ends = [], []
    for w in got:
        s, e = np.full(len(w.input_ids), -5.0), np.full(len(w.input_ids), -5.0)
        s[w.start_position] += 10
        e[w.end_position] += 10
        starts.append(s)
        ends.append(e)
    preds = postprocess_qa(got, starts, ends, [r["context"] for r in RECORDS],
                           with_null=True)
    assert [p.text for p in preds] == [r["answers"][0]["text"] if r["answers"] else ""
                                       for r in RECORDS]


# ----------------------------------------------------------------------------- post-processing

SHORT = "a b c d e"
#            CLS   q    q   SEP   a    b    c    d    e   SEP
START = [5.0, 9.0, 0.0, 0.0, 0.5, 0.0, 3.0, 0.5, 0.0, 0.0]
END = [5.0, 0.0, 0.0, 0.0, 0.0, 4.0, 0.0, 2.0, 0.2, 0.0]


def short_window():
    return make_windows(Q, [20, 21, 22, 23, 24], OFFSETS[:5], cls_id=CLS, sep_id=SEP,
                        max_length=20, stride=0)


def test_best_span_respects_order_and_context():
    # The best start is a question token (9) and the best end [CLS] (5): not context.
    # Pairs (start, end) with end >= start, score s + e:
    #   c-d 3 + 2 = 5, a-b 0.5 + 4 = 4.5, b-b 0 + 4 = 4, c-e 3.2, c-c 3, a-d 2.5, ...
    # c-b (3 + 4 = 7) is higher but ends before it starts.
    [pred] = postprocess_qa(short_window(), [START], [END], [SHORT])
    assert pred.text == "c d"
    assert (pred.nbest[0]["start"], pred.nbest[0]["end"], pred.nbest[0]["score"]) == (4, 7, 5.0)
    assert pred.score_diff is None


def test_n_best_takes_the_top_logits_over_all_positions():
    # n_best = 5: top starts q(9) CLS(5) c(3) a(0.5) d(0.5, tie: lower position first),
    # top ends CLS(5) b(4) d(2) e(0.2) q(0, the first of the zeros). Context pairs:
    #   c-d 5, c-e 3.2, a-b 4.5, a-d 2.5, a-e 0.7, d-d 2.5, d-e 0.7  -> best five:
    [pred] = postprocess_qa(short_window(), [START], [END], [SHORT], n_best=5)
    assert [c["text"] for c in pred.nbest] == ["c d", "a b", "c d e", "a b c d", "d"]
    assert [c["score"] for c in pred.nbest] == pytest.approx([5.0, 4.5, 3.2, 2.5, 2.5])
    z = sum(math.exp(c["score"]) for c in pred.nbest)
    assert [c["probability"] for c in pred.nbest] == pytest.approx(
        [math.exp(c["score"]) / z for c in pred.nbest])
    # n_best = 3: starts q, CLS, c; ends CLS, b, d: only c-d is left.
    [pred] = postprocess_qa(short_window(), [START], [END], [SHORT], n_best=3)
    assert [c["text"] for c in pred.nbest] == ["c d"]
    assert pred.nbest[0]["probability"] == 1.0


def test_max_answer_length():
    # One token only: a 0.5, b 0 + 4 = 4, c 3, d 2.5, e 0.2 -> "b".
    [pred] = postprocess_qa(short_window(), [START], [END], [SHORT], max_answer_length=1)
    assert pred.text == "b"
    assert all(c["text"] in set("abcde") for c in pred.nbest)


def three_windows_logits(cls_logits=(4.0, 4.5, 0.5)):
    """Windows of LETTERS (tokens a-e | d-h | g-j at positions 4..). Best spans:
    w0 b-c 1 + 2 = 3, w1 f-g 2 + 4 = 6, w2 g-h 1 + 1 = 2; all other context logits 0.
    Null scores (CLS start + end): 8, 9, 1 -> the null score is their minimum, 1."""
    ws = windows()
    starts = [np.zeros(len(w.input_ids)) for w in ws]
    ends = [np.zeros(len(w.input_ids)) for w in ws]
    for w, c in enumerate(cls_logits):
        starts[w][0] = ends[w][0] = c
    starts[0][5], ends[0][6] = 1, 2    # b, c
    starts[1][6], ends[1][7] = 2, 4    # f, g
    starts[2][4], ends[2][5] = 1, 1    # g, h
    return ws, starts, ends


def test_windows_of_one_example_are_combined():
    ws, starts, ends = three_windows_logits()
    [pred] = postprocess_qa(ws, starts, ends, [LETTERS])
    assert pred.text == "f g"
    assert pred.nbest[0]["start"] == 10 and pred.nbest[0]["end"] == 13
    # The spans of the three windows are all in the n-best list.
    assert {"b c", "f g", "g h"} <= {c["text"] for c in pred.nbest}


def test_null_score_is_the_minimum_over_windows_and_the_threshold():
    ws, starts, ends = three_windows_logits()
    # null = min(8, 9, 1) = 1; best span 6: diff = 1 - 6 = -5 <= 0 -> answer.
    [pred] = postprocess_qa(ws, starts, ends, [LETTERS], with_null=True)
    assert (pred.text, pred.score_diff) == ("f g", -5.0)
    null = [c for c in pred.nbest if c["start"] is None]
    assert len(null) == 1 and (null[0]["text"], null[0]["score"]) == ("", 1.0)
    assert sum(c["probability"] for c in pred.nbest) == pytest.approx(1.0)
    # "" exactly when diff > threshold.
    assert postprocess_qa(ws, starts, ends, [LETTERS], with_null=True,
                          null_threshold=-5.0)[0].text == "f g"
    assert postprocess_qa(ws, starts, ends, [LETTERS], with_null=True,
                          null_threshold=-5.01)[0].text == ""
    # Every window wants no answer (null = min(8, 9, 7) = 7 > 6): "".
    ws, starts, ends = three_windows_logits((4.0, 4.5, 3.5))
    pred = postprocess_qa(ws, starts, ends, [LETTERS], with_null=True)[0]
    assert (pred.text, pred.score_diff) == ("", 1.0)


def test_null_candidate_is_kept_when_it_falls_out_of_the_n_best():
    ws, starts, ends = three_windows_logits((-9.0, -9.0, -9.0))
    [pred] = postprocess_qa(ws, starts, ends, [LETTERS], with_null=True, n_best=2)
    assert [c["text"] for c in pred.nbest] == ["f g", "b c", ""]


def test_no_candidate_span():
    # n_best = 1: the top start is [CLS] (5 > 3): no pair is in the context.
    s = [10.0] + [0.0] * 9
    [pred] = postprocess_qa(short_window(), [s], [s], [SHORT], n_best=1)
    assert (pred.text, pred.nbest) == ("", [])
    [pred] = postprocess_qa(short_window(), [s], [s], [SHORT], n_best=1, with_null=True)
    assert (pred.text, pred.score_diff, [c["text"] for c in pred.nbest]) == ("", None, [""])


def test_padding_logits_are_ignored():
    pad = [100.0] * 6  # logits past the window's 10 tokens
    [pred] = postprocess_qa(short_window(), [START + pad], [END + pad], [SHORT])
    assert pred.text == "c d"


@pytest.mark.parametrize(("args", "kw", "message"), [
    (([START, START], [END]), {}, "1 windows but 2 start and 1 end logit rows"),
    (([START[:5]], [END]), {}, "window 0 has 10 tokens but 5 start logits"),
    (([START], [END]), {"n_best": 0}, "n_best=0"),
    (([START], [END]), {"max_answer_length": 0}, "max_answer_length=0"),
])
def test_bad_postprocess_arguments(args, kw, message):
    assert message in error(ConfigError, postprocess_qa, short_window(), *args, [SHORT], **kw)
    assert "example 1 has no window" in error(ConfigError, postprocess_qa, short_window(),
                                              [START], [END], [SHORT, SHORT])
