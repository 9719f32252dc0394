"""MentionReplacer: entities rewritten at new lengths, everything else kept, tags legal."""

from __future__ import annotations

import numpy as np
import pytest

from lmforge.data.tags import spans_from_tags, tag_errors, tag_set, tags_from_spans
from lmforge.tasks.encode import Encoded
from lmforge.tasks.mentions import MentionReplacer

VOCAB = (100, 200)  # random sub-tokens come from here; the text's own ids are < 100


def _example(scheme: str) -> tuple[Encoded, list[str]]:
    """[CLS] Anna Li(2 pieces) lives in New York on May 3 [SEP] with PER, LOC, TIME."""
    labels = tag_set(["PER", "LOC", "TIME"], scheme)
    words = [[10], [11, 12], [13], [14], [15], [16], [17], [18], [19]]
    spans = [("PER", 0, 2), ("LOC", 4, 6), ("TIME", 7, 9)]
    tags = tags_from_spans(spans, len(words), scheme)
    ids, index = [2], []
    for w in words:
        index.append(len(ids))
        ids.extend(w)
    ids.append(3)
    return Encoded(ids, None, None, index, [labels.index(t) for t in tags], len(words)), labels


@pytest.mark.parametrize("scheme", ["IOB2", "BIOES", "IOB1"])
def test_replaced_mentions_keep_the_rest_and_legal_tags(scheme):
    ex, labels = _example(scheme)
    rep = MentionReplacer(labels, scheme, {"PER", "LOC"}, 1.0, VOCAB, 128)
    lengths = set()
    for seed in range(200):
        out = rep(ex, np.random.default_rng(seed))
        tags = [labels[t] for t in out.word_tags]
        assert not tag_errors(tags, scheme)
        spans = spans_from_tags(tags, scheme)
        assert [s[0] for s in spans] == ["PER", "LOC", "TIME"]
        per, loc, time = spans
        lengths.add(per[2] - per[1])
        assert 1 <= per[2] - per[1] <= 3 and 1 <= loc[2] - loc[1] <= 3
        # the new mentions are random tokens; the words outside them are the old ones
        ends = [*out.word_index[1:], len(out.input_ids) - 1]
        words = [out.input_ids[a:b] for a, b in zip(out.word_index, ends, strict=True)]
        assert all(VOCAB[0] <= t < VOCAB[1] for w in words[per[1]:per[2]] for t in w)
        assert all(1 <= len(w) <= 3 for w in words[per[1]:per[2]])
        assert words[per[2]:loc[1]] == [[13], [14]]
        assert words[loc[2]:] == [[17], [18], [19]]       # TIME is not replaced
        assert out.input_ids[0] == 2 and out.input_ids[-1] == 3
        assert out.n_words == len(out.word_index) == len(out.word_tags)
    assert lengths == {1, 2, 3}


def test_nothing_changes_at_p0_past_max_length_or_for_other_types():
    ex, labels = _example("IOB2")
    rng = np.random.default_rng(0)
    assert MentionReplacer(labels, "IOB2", {"PER", "LOC"}, 0.0, VOCAB, 128)(ex, rng) is ex
    assert MentionReplacer(labels, "IOB2", {"ORG"}, 1.0, VOCAB, 128)(ex, rng) is ex
    tight = MentionReplacer(labels, "IOB2", {"PER", "LOC"}, 1.0, VOCAB, len(ex.input_ids) - 3)
    for seed in range(50):
        out = tight(ex, np.random.default_rng(seed))
        assert len(out.input_ids) <= len(ex.input_ids) - 3 or out is ex


def test_same_generator_same_rewrite():
    ex, labels = _example("BIOES")
    rep = MentionReplacer(labels, "BIOES", {"PER", "LOC"}, 0.5, VOCAB, 128)
    a = [rep(ex, np.random.default_rng([3, s])) for s in range(20)]
    b = [rep(ex, np.random.default_rng([3, s])) for s in range(20)]
    assert [x.input_ids for x in a] == [x.input_ids for x in b]
    assert len({tuple(x.input_ids) for x in a}) > 5
