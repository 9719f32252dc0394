"""Tag schemes: spans <-> tags round trips, legality checks, conlleval repair, and the
constrained-decoding masks, checked exhaustively on small label sets and against seqeval's
chunk reader."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from seqeval.metrics.sequence_labeling import get_entities

from lmforge.data.tags import (
    SCHEMES,
    allowed_transitions,
    convert_tags,
    lenient_spans,
    normalize_scheme,
    repair_tags,
    spans_from_tags,
    split_tag,
    tag_errors,
    tag_set,
    tags_from_spans,
)
from lmforge.errors import ConfigError

TYPES = ["LOC", "PER", "地名"]
ANY_TAG = st.sampled_from(tag_set(TYPES, "BIOES"))


@st.composite
def spans_and_length(draw):
    """Non-overlapping spans (adjacent same-type spans included) and a sentence length."""
    pos, spans = 0, []
    for _ in range(draw(st.integers(0, 6))):
        pos += draw(st.integers(0, 2))
        length = draw(st.integers(1, 4))
        spans.append((draw(st.sampled_from(TYPES)), pos, pos + length))
        pos += length
    return spans, pos + draw(st.integers(0, 2))


def seqeval_chunks(tags):
    """seqeval's default-mode (conlleval) chunks, end exclusive."""
    return [(kind, start, end + 1) for kind, start, end in get_entities(list(tags))]


@pytest.mark.parametrize("scheme", SCHEMES)
@settings(max_examples=200, deadline=None)
@given(data=spans_and_length())
def test_spans_tags_spans_round_trip(scheme, data):
    spans, n = data
    tags = tags_from_spans(spans, n, scheme)
    assert len(tags) == n and tag_errors(tags, scheme) == []
    assert spans_from_tags(tags, scheme) == spans
    assert repair_tags(tags, scheme) == tags  # a legal sequence is left alone


@settings(max_examples=200, deadline=None)
@given(data=spans_and_length())
def test_convert_between_schemes_round_trips(data):
    spans, n = data
    for src, dst in itertools.permutations(SCHEMES, 2):
        tags = tags_from_spans(spans, n, src)
        out = convert_tags(tags, src, dst)
        assert out == tags_from_spans(spans, n, dst)
        assert convert_tags(out, dst, src) == tags


def test_documented_examples():
    assert tags_from_spans([("PER", 0, 2), ("LOC", 3, 5)], 5, "IOB1") == [
        "I-PER", "I-PER", "O", "I-LOC", "I-LOC"]
    assert tags_from_spans([("PER", 0, 2), ("LOC", 3, 5)], 5, "bio") == [
        "B-PER", "I-PER", "O", "B-LOC", "I-LOC"]
    assert tags_from_spans([("PER", 0, 2), ("LOC", 3, 5)], 5, "iobes") == [
        "B-PER", "E-PER", "O", "B-LOC", "E-LOC"]
    three = [("LOC", 2, 3), ("LOC", 3, 4), ("LOC", 4, 5)]
    assert tags_from_spans(three, 5, "IOB1") == ["O", "O", "I-LOC", "B-LOC", "B-LOC"]
    assert tags_from_spans(three, 5, "IOB2") == ["O", "O", "B-LOC", "B-LOC", "B-LOC"]
    assert tags_from_spans(three, 5, "BIOES") == ["O", "O", "S-LOC", "S-LOC", "S-LOC"]
    assert spans_from_tags(["O", "O", "I-LOC", "B-LOC", "B-LOC"], "IOB1") == three


@pytest.mark.parametrize("tags,scheme,positions", [
    (["O", "I-PER", "B-LOC", "I-LOC"], "IOB2", [1]),
    (["I-PER"], "IOB2", [0]),
    (["B-PER", "I-LOC", "I-LOC"], "IOB2", [1]),
    (["B-PER", "E-PER", "S-PER"], "IOB2", [1, 2]),          # BIOES prefixes in IOB2
    (["B-PER", "I-PER", "B-PER", "I-PER", "B-LOC"], "IOB2", []),
    (["B-PER"], "IOB1", [0]),
    (["O", "B-PER", "I-PER"], "IOB1", [1]),
    (["I-PER", "B-LOC"], "IOB1", [1]),
    (["I-PER", "B-PER", "B-PER", "I-LOC", "I-PER"], "IOB1", []),
    (["B-PER", "O"], "BIOES", [1]),                         # B- not closed
    (["B-PER"], "BIOES", [0]),                              # B- at the sentence end
    (["I-PER", "E-PER"], "BIOES", [0]),                     # I- cannot start
    (["O", "E-PER"], "BIOES", [1]),                         # E- opens nothing
    (["B-PER", "E-LOC"], "BIOES", [1]),                     # type changes inside
    (["B-PER", "S-PER"], "BIOES", [1]),
    (["S-PER", "I-PER", "E-PER"], "BIOES", [1]),
    (["B-PER", "I-PER", "I-PER"], "BIOES", [2]),
    (["S-PER", "B-PER", "I-PER", "E-PER", "O", "S-LOC"], "BIOES", []),
    (["O", "X-PER", "B-", "o"], "IOB2", [1, 2, 3]),         # not tags at all
])
def test_tag_errors_positions(tags, scheme, positions):
    errors = tag_errors(tags, scheme)
    assert [pos for pos, _ in errors] == positions
    assert all(isinstance(reason, str) and "\n" not in reason for _, reason in errors)


def test_lenient_reading_equals_seqeval_exhaustively():
    alphabet = ["O", "B-X", "I-X", "E-X", "S-X", "B-Y", "I-Y", "E-Y", "S-Y"]
    for n in range(1, 5):
        for tags in itertools.product(alphabet, repeat=n):
            assert lenient_spans(tags) == seqeval_chunks(tags), tags


@pytest.mark.parametrize("scheme", SCHEMES)
@settings(max_examples=200, deadline=None)
@given(tags=st.lists(ANY_TAG, max_size=12))
def test_repaired_tags_are_legal_and_keep_conlleval_chunks(scheme, tags):
    repaired = repair_tags(tags, scheme)
    assert len(repaired) == len(tags)
    assert tag_errors(repaired, scheme) == []
    assert spans_from_tags(repaired, scheme) == seqeval_chunks(tags)


def test_repair_reads_illegal_starts_as_chunk_starts():
    assert repair_tags(["O", "I-PER", "I-PER", "O"], "IOB2") == ["O", "B-PER", "I-PER", "O"]
    assert repair_tags(["B-PER", "I-LOC"], "IOB2") == ["B-PER", "B-LOC"]
    assert repair_tags(["B-PER", "O", "E-PER"], "BIOES") == ["S-PER", "O", "S-PER"]
    assert repair_tags(["I-PER", "I-PER", "E-PER", "I-PER"], "BIOES") == [
        "B-PER", "I-PER", "E-PER", "S-PER"]
    assert repair_tags(["B-PER", "I-PER"], "IOB1") == ["I-PER", "I-PER"]


@pytest.mark.parametrize("scheme,extra", [("IOB1", ["E-X"]), ("IOB2", ["S-X"]),
                                          ("BIOES", [])])
def test_allowed_transitions_agree_with_tag_errors_exhaustively(scheme, extra):
    labels = tag_set(["X", "Y"], scheme) + extra  # extra: a tag of another scheme
    start, follow, end = allowed_transitions(labels, scheme)
    k = len(labels)
    assert start.dtype == torch.bool and start.shape == (k,) and end.shape == (k,)
    assert follow.shape == (k, k)
    for n in (1, 2, 3):
        for seq in itertools.product(range(k), repeat=n):
            ok = bool(start[seq[0]]) and bool(end[seq[-1]]) and all(
                bool(follow[a, b]) for a, b in itertools.pairwise(seq))
            tags = [labels[i] for i in seq]
            assert ok == (tag_errors(tags, scheme) == []), tags


def test_allowed_transitions_examples():
    labels = ["O", "B-X", "I-X", "B-Y", "I-Y"]
    start, follow, end = allowed_transitions(labels, "IOB2")
    assert start.tolist() == [True, True, False, True, False]
    assert follow[:, 2].tolist() == [False, True, True, False, False]  # into I-X
    assert end.all()
    start, follow, end = allowed_transitions(tag_set(["X"], "BIOES"), "BIOES")
    # O B-X I-X E-X S-X: B-X must be followed by I-X or E-X and cannot end
    assert follow[1].tolist() == [False, False, True, True, False]
    assert end.tolist() == [True, False, False, True, True]
    with pytest.raises(ValueError, match="not a tag"):
        allowed_transitions(["O", "PER"], "IOB2")


def test_split_tag_scheme_names_and_tag_set():
    assert split_tag("B-PER") == ("B", "PER")
    assert split_tag("I-ORG-GPE") == ("I", "ORG-GPE")
    assert split_tag("O") == ("O", None)
    for bad in ("B", "B-", "X-PER", "BPER", "", "o"):
        with pytest.raises(ValueError, match="not a tag"):
            split_tag(bad)
    assert [normalize_scheme(s) for s in ("bio", "IOB2", "iobes", "BIOES", "iob1")] == [
        "IOB2", "IOB2", "BIOES", "BIOES", "IOB1"]
    with pytest.raises(ConfigError, match="IOB1, IOB2"):
        normalize_scheme("bilou")
    assert tag_set(["PER", "LOC", "PER"], "IOB2") == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
    assert tag_set(["LOC"], "BIOES") == ["O", "B-LOC", "I-LOC", "E-LOC", "S-LOC"]


def test_bad_spans_and_illegal_sequences_raise():
    with pytest.raises(ValueError, match="overlap"):
        tags_from_spans([("PER", 0, 2), ("LOC", 1, 3)], 4, "IOB2")
    with pytest.raises(ValueError, match="outside"):
        tags_from_spans([("PER", 2, 5)], 4, "IOB2")
    with pytest.raises(ValueError, match="outside"):
        tags_from_spans([("PER", 2, 2)], 4, "IOB2")
    with pytest.raises(ValueError, match="not a span"):
        tags_from_spans([("", 0, 1)], 4, "IOB2")
    with pytest.raises(ValueError, match="position 1"):
        spans_from_tags(["O", "I-PER"], "IOB2")
    with pytest.raises(ValueError, match="position 0"):
        convert_tags(["B-PER"], "BIOES", "IOB2")
