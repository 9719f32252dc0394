"""Task metrics against their references: classification vs scikit-learn, entities vs
seqeval (default and strict modes), relations vs the TACRED formula and sklearn's micro
average; plus the confusion-matrix picture with Chinese labels."""

from __future__ import annotations

import math
import struct
import warnings

import numpy as np
import pytest
import sklearn.metrics as skm
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval import metrics as sq
from seqeval.scheme import IOB1, IOB2, IOBES

from lmforge.data.tags import tag_errors, tags_from_spans
from lmforge.errors import ConfigError, DataError, LmforgeError
from lmforge.eval.classification import (
    accuracy,
    classification_report,
    confusion_json,
    confusion_matrix,
    plot_confusion,
    precision_recall_fscore,
)
from lmforge.eval.entities import entity_report, entity_scores, sentence_spans, spans_scores
from lmforge.eval.relations import relation_scores
from lmforge.viz.fonts import find_cjk_font

pytestmark = [pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning"),
              pytest.mark.filterwarnings("ignore:Mean of empty slice:RuntimeWarning"),
              pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")]

FAST = settings(max_examples=200, deadline=None)
ZD = [0.0, 1.0, float("nan")]


def close(a, b) -> None:
    np.testing.assert_allclose(np.asarray(a, dtype=float), np.asarray(b, dtype=float),
                               rtol=1e-12, atol=1e-12, equal_nan=True)


# --------------------------------------------------------------- classification

INT_LABELS = st.integers(0, 4)
STR_LABELS = st.sampled_from(["正面", "负面", "中性", "other"])


@st.composite
def label_pairs(draw):
    """(y_true, y_pred, labels): small, often missing classes; labels None, a subset, or
    a superset holding labels that occur nowhere."""
    alphabet = draw(st.sampled_from([INT_LABELS, STR_LABELS]))
    n = draw(st.integers(1, 25))
    y_true = draw(st.lists(alphabet, min_size=n, max_size=n))
    y_pred = draw(st.lists(alphabet, min_size=n, max_size=n))
    universe = sorted(set(y_true) | set(y_pred) | {draw(alphabet), draw(alphabet)})
    labels = draw(st.one_of(st.none(), st.lists(st.sampled_from(universe), min_size=1,
                                                unique=True)))
    return y_true, y_pred, labels


@FAST
@given(data=label_pairs(), average=st.sampled_from([None, "micro", "macro", "weighted"]),
       zero_division=st.sampled_from(ZD))
def test_precision_recall_fscore_equals_sklearn(data, average, zero_division):
    y_true, y_pred, labels = data
    ours = precision_recall_fscore(y_true, y_pred, average=average, labels=labels,
                                   zero_division=zero_division)
    ref = skm.precision_recall_fscore_support(y_true, y_pred, average=average, labels=labels,
                                              zero_division=zero_division)
    for a, b in zip(ours[:3], ref[:3], strict=True):
        close(a, b)
    if average is None:
        np.testing.assert_array_equal(ours.support, ref[3])
    else:
        assert ours.support is None and ref[3] is None


@FAST
@given(y=st.lists(st.tuples(st.integers(0, 1), st.integers(0, 1)), min_size=1, max_size=20),
       pos_label=st.sampled_from([0, 1]), zero_division=st.sampled_from(ZD),
       beta=st.sampled_from([0.0, 0.5, 1.0, 2.0, math.inf]))
def test_binary_average_and_beta_equal_sklearn(y, pos_label, zero_division, beta):
    y_true, y_pred = [a for a, _ in y], [b for _, b in y]
    ours = precision_recall_fscore(y_true, y_pred, average="binary", pos_label=pos_label,
                                   beta=beta, zero_division=zero_division)
    ref = skm.precision_recall_fscore_support(y_true, y_pred, average="binary",
                                              pos_label=pos_label, beta=beta,
                                              zero_division=zero_division)
    close(ours[:3], ref[:3])


@pytest.mark.parametrize("labels", [["c"], ["d"], ["c", "d"], ["d", "a"], None])
@pytest.mark.parametrize("average", [None, "micro", "macro", "weighted"])
@pytest.mark.parametrize("zero_division", ZD)
def test_edge_labels_equal_sklearn(labels, average, zero_division):
    # "c" occurs only in y_pred, "d" nowhere: zero supports, zero predictions, and a
    # weighted average whose weights all vanish
    y_true, y_pred = ["a", "a", "b"], ["a", "c", "c"]
    ours = precision_recall_fscore(y_true, y_pred, average=average, labels=labels,
                                   zero_division=zero_division)
    ref = skm.precision_recall_fscore_support(y_true, y_pred, average=average, labels=labels,
                                              zero_division=zero_division)
    for a, b in zip(ours[:3], ref[:3], strict=True):
        close(a, b)


def test_binary_string_labels_and_bad_binary_use():
    y_true, y_pred = ["pos", "neg", "pos", "pos"], ["pos", "pos", "neg", "pos"]
    close(precision_recall_fscore(y_true, y_pred, average="binary", pos_label="pos")[:3],
          skm.precision_recall_fscore_support(y_true, y_pred, average="binary",
                                              pos_label="pos")[:3])
    for kwargs, data in [({}, ([0, 1, 2], [0, 1, 1])),
                         ({"pos_label": "x"}, (y_true, y_pred))]:
        with pytest.raises(ValueError):
            skm.precision_recall_fscore_support(*data, average="binary", **kwargs)
        with pytest.raises(ValueError):
            precision_recall_fscore(*data, average="binary", **kwargs)


def test_recall_divides_by_the_true_count():
    # 3 true "a", 1 predicted "a" (correct): precision 1/1, recall 1/3, not 1/1
    p, r, f, s = precision_recall_fscore(["a", "a", "a", "b"], ["a", "b", "b", "b"],
                                         average=None, labels=["a"])
    assert (p[0], r[0], s[0]) == (1.0, 1 / 3, 3) and f[0] == pytest.approx(0.5)


@FAST
@given(data=label_pairs(), zero_division=st.sampled_from(ZD))
def test_confusion_report_accuracy_equal_sklearn(data, zero_division):
    y_true, y_pred, labels = data
    assert accuracy(y_true, y_pred) == skm.accuracy_score(y_true, y_pred)
    if labels is None or set(labels) & set(y_true):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # sklearn: "a single label"
            ref = skm.confusion_matrix(y_true, y_pred, labels=labels)
        ours = confusion_matrix(y_true, y_pred, labels=labels)
        assert ours.dtype == ref.dtype
        np.testing.assert_array_equal(ours, ref)
    else:  # sklearn refuses labels none of which is true; so do we
        with pytest.raises(ValueError):
            confusion_matrix(y_true, y_pred, labels=labels)
    ours = classification_report(y_true, y_pred, labels=labels, zero_division=zero_division)
    ref = skm.classification_report(y_true, y_pred, labels=labels, output_dict=True,
                                    zero_division=zero_division)
    assert list(ours) == list(ref)
    for key, value in ref.items():
        if isinstance(value, dict):
            assert list(ours[key]) == list(value)
            close(list(ours[key].values()), list(value.values()))
        else:
            close(ours[key], value)


@pytest.mark.parametrize("call", [
    lambda: accuracy([1, 2], [1]),
    lambda: precision_recall_fscore([], []),
    lambda: precision_recall_fscore([1, 2], [1, 2], average="samples"),
    lambda: precision_recall_fscore([1, 2], [1, 2], zero_division="warn"),
    lambda: confusion_matrix([1, 2], [1, 2, 3]),
    lambda: classification_report(["a", 1], ["a", 1]),
    lambda: entity_scores([["O"]], [["O", "O"]]),
    lambda: entity_scores([], []),
    lambda: entity_scores([["B-X"]], [["B-X"]], average="binary"),
    lambda: entity_scores([["B-X"]], [["B-X"]], mode="strict"),
    lambda: entity_scores([["B-X"]], [["B-X"]], scheme="IOB2"),
    lambda: entity_scores([["B-X"]], [["PER"]]),
    lambda: relation_scores(["a"], ["a", "b"]),
])
def test_bad_input_is_a_one_line_value_error(call):
    with pytest.raises(ValueError) as info:
        call()
    assert isinstance(info.value, (DataError, ConfigError))
    assert "\n" not in str(info.value)


def test_plot_confusion_writes_png_with_chinese_labels(tmp_path):
    labels = ["人物", "地点", "组织", "O"]
    m = confusion_matrix(["人物", "地点", "组织", "O", "O"], ["人物", "组织", "组织", "O", "人物"],
                         labels=labels)
    assert find_cjk_font() is not None  # lmforge depends on a packaged CJK font
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph (tofu) would warn
        path = plot_confusion(m, labels, tmp_path / "confusion.png", title="混淆矩阵",
                              normalize=True)
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    assert width > 200 and height > 200
    assert [p.name for p in tmp_path.iterdir()] == ["confusion.png"]  # no temp file left
    assert confusion_json(m, labels) == {"labels": labels, "matrix": m.tolist()}
    with pytest.raises(ValueError):
        plot_confusion(m, labels[:3], tmp_path / "bad.png")


# --------------------------------------------------------------------- entities

BIO_TAGS = ["O", "B-PER", "I-PER", "B-LOC", "I-LOC"]
BIOES_TAGS = BIO_TAGS + ["E-PER", "S-PER", "E-LOC", "S-LOC"]


@st.composite
def tag_pairs(draw, alphabet):
    lengths = draw(st.lists(st.integers(0, 8), min_size=1, max_size=5))
    tags = st.sampled_from(alphabet)
    y_true = [draw(st.lists(tags, min_size=n, max_size=n)) for n in lengths]
    y_pred = [draw(st.lists(tags, min_size=n, max_size=n)) for n in lengths]
    return y_true, y_pred


def seqeval_prf(y_true, y_pred, **kw):
    return tuple(f(y_true, y_pred, **kw) for f in (sq.precision_score, sq.recall_score,
                                                   sq.f1_score))


def same_report(ours, ref):
    assert list(ours) == list(ref)
    for key, row in ref.items():
        close([ours[key][k] for k in ("precision", "recall", "f1-score", "support")],
              [row[k] for k in ("precision", "recall", "f1-score", "support")])


@FAST
@given(data=tag_pairs(BIOES_TAGS), average=st.sampled_from(["micro", "macro", "weighted"]),
       zero_division=st.sampled_from([0.0, 1.0]))
def test_entity_scores_default_mode_equal_seqeval(data, average, zero_division):
    y_true, y_pred = data
    ours = entity_scores(y_true, y_pred, average=average, zero_division=zero_division)
    ref = seqeval_prf(y_true, y_pred, average=average, zero_division=int(zero_division))
    close([ours["precision"], ours["recall"], ours["f1"]], ref)
    same_report(entity_report(y_true, y_pred, zero_division=zero_division),
                sq.classification_report(y_true, y_pred, output_dict=True,
                                         zero_division=int(zero_division)))


@pytest.mark.parametrize("scheme,ref_scheme,alphabet", [("IOB2", IOB2, BIO_TAGS),
                                                        ("IOBES", IOBES, BIOES_TAGS)])
@FAST
@given(data=st.data(), average=st.sampled_from(["micro", "macro", "weighted"]),
       zero_division=st.sampled_from([0.0, 1.0]))
def test_entity_scores_strict_mode_equal_seqeval(scheme, ref_scheme, alphabet, data, average,
                                                 zero_division):
    y_true, y_pred = data.draw(tag_pairs(alphabet))
    ours = entity_scores(y_true, y_pred, mode="strict", scheme=scheme, average=average,
                         zero_division=zero_division)
    ref = seqeval_prf(y_true, y_pred, mode="strict", scheme=ref_scheme, average=average,
                      zero_division=int(zero_division))
    close([ours["precision"], ours["recall"], ours["f1"]], ref)
    same_report(entity_report(y_true, y_pred, mode="strict", scheme=scheme,
                              zero_division=zero_division),
                sq.classification_report(y_true, y_pred, mode="strict", scheme=ref_scheme,
                                         output_dict=True, zero_division=int(zero_division)))


@st.composite
def legal_iob1_sentence(draw, n):
    """Legal IOB1 tags of n tokens (random non-overlapping spans, adjacent ones included)."""
    spans, pos = [], 0
    while pos < n and draw(st.booleans()):
        start = draw(st.integers(pos, n - 1))
        end = draw(st.integers(start + 1, n))
        spans.append((draw(st.sampled_from(["PER", "LOC"])), start, end))
        pos = end
    return tags_from_spans(spans, n, "IOB1")


@FAST
@given(data=st.data(), lengths=st.lists(st.integers(0, 8), min_size=1, max_size=5))
def test_strict_iob1_equals_seqeval_on_legal_sequences(data, lengths):
    y_true = [data.draw(legal_iob1_sentence(n)) for n in lengths]
    y_pred = [data.draw(legal_iob1_sentence(n)) for n in lengths]
    ours = entity_scores(y_true, y_pred, mode="strict", scheme="IOB1")
    ref = seqeval_prf(y_true, y_pred, mode="strict", scheme=IOB1)
    close([ours["precision"], ours["recall"], ours["f1"]], ref)
    assert all(tag_errors(s, "IOB1") == [] for s in y_true + y_pred)


def test_lenient_and_strict_on_the_known_example():
    gold, pred = [["B-X", "I-X", "O"]], [["I-X", "I-X", "O"]]
    assert entity_scores(gold, pred) == {"precision": 1.0, "recall": 1.0, "f1": 1.0}
    assert sq.f1_score(gold, pred) == 1.0
    for scheme, ref_scheme in (("IOB2", IOB2), ("BIOES", IOBES)):
        assert entity_scores(gold, pred, mode="strict", scheme=scheme)["f1"] == 0.0
        assert sq.f1_score(gold, pred, mode="strict", scheme=ref_scheme) == 0.0


def test_strict_mode_rejects_tags_of_another_scheme_like_seqeval():
    gold, pred = [["B-X", "E-X"]], [["S-X", "O"]]
    with pytest.raises(ValueError):
        sq.f1_score(gold, pred, mode="strict", scheme=IOB2)
    with pytest.raises(LmforgeError, match=r"y_true\[0\].*IOB2"):
        entity_scores(gold, pred, mode="strict", scheme="IOB2")


@FAST
@given(data=tag_pairs(BIOES_TAGS), average=st.sampled_from(["micro", "macro", "weighted"]))
def test_spans_scores_equal_entity_scores_on_the_same_spans(data, average):
    y_true, y_pred = data
    gold, pred = sentence_spans(y_true), sentence_spans(y_pred)
    close(list(spans_scores(gold, pred, average=average).values()),
          list(entity_scores(y_true, y_pred, average=average).values()))


def test_spans_scores_on_character_spans():
    gold = [{("PER", 0, 3), ("LOC", 5, 7)}, {("ORG", 0, 4)}]
    pred = [{("PER", 0, 3), ("LOC", 5, 8)}, set()]
    scores = spans_scores(gold, pred)
    assert scores["precision"] == 1 / 2 and scores["recall"] == 1 / 3
    assert scores["f1"] == pytest.approx(2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3))
    with pytest.raises(ValueError, match="span"):
        spans_scores([{("PER", 0)}], [set()])


# -------------------------------------------------------------------- relations

RELATIONS = st.sampled_from(["no_relation", "founded_by", "出生地", "spouse"])


def tacred_reference(y_true, y_pred, negative="no_relation"):
    """The TACRED scorer's micro P/R/F1 (zero denominators give 0 here)."""
    correct = sum(1 for t, p in zip(y_true, y_pred, strict=True) if p == t != negative)
    guessed = sum(1 for p in y_pred if p != negative)
    gold = sum(1 for t in y_true if t != negative)
    precision = correct / guessed if guessed else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


@FAST
@given(y=st.lists(st.tuples(RELATIONS, RELATIONS), min_size=1, max_size=30))
def test_relation_scores_tacred_and_sklearn_micro_coincide(y):
    y_true, y_pred = [a for a, _ in y], [b for _, b in y]
    ours = relation_scores(y_true, y_pred)
    got = [ours["precision"], ours["recall"], ours["f1"]]
    np.testing.assert_allclose(got, tacred_reference(y_true, y_pred), rtol=1e-12)
    relations = sorted((set(y_true) | set(y_pred)) - {"no_relation"})
    if relations:
        ref = skm.precision_recall_fscore_support(y_true, y_pred, average="micro",
                                                  labels=relations, zero_division=0.0)
        close(got, ref[:3])
        per = skm.precision_recall_fscore_support(y_true, y_pred, average=None,
                                                  labels=relations, zero_division=0.0)
        assert list(ours["per_relation"]) == relations
        for i, rel in enumerate(relations):
            row = ours["per_relation"][rel]
            close([row["precision"], row["recall"], row["f1"], row["support"]],
                  [per[0][i], per[1][i], per[2][i], per[3][i]])
    else:
        assert ours["per_relation"] == {} and got == [0.0, 0.0, 0.0]


def test_relation_scores_hand_example():
    y_true = ["spouse", "no_relation", "founded_by", "spouse"]
    y_pred = ["spouse", "spouse", "no_relation", "founded_by"]
    # correct 1; guessed 3 (non-negative predictions); gold 3 (non-negative gold)
    scores = relation_scores(y_true, y_pred)
    assert scores["precision"] == pytest.approx(1 / 3) and scores["recall"] == pytest.approx(1 / 3)
    assert scores["per_relation"]["spouse"] == {"precision": 0.5, "recall": 0.5, "f1": 0.5,
                                                "support": 2}
    # accuracy over all labels would count the negative as a hit; TACRED does not
    other = relation_scores(["Other", "Other", "r"], ["Other", "Other", "s"], negative="Other")
    assert other["f1"] == 0.0 and accuracy(["Other", "Other", "r"],
                                           ["Other", "Other", "s"]) == pytest.approx(2 / 3)
