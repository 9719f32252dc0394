"""Mention replacement for taggers: entities of new lengths made of random tokens.

A tagger trained on a fixed cast learns what its names *are* (which tokens, and how many:
the world's cities are one WordPiece in English and two characters in Chinese) instead
of where names *go*. An unseen name breaks both habits: "Nagoya" is three sub-tokens,
名古屋 three characters. :class:`MentionReplacer` rewrites a training example so that, with
probability ``p`` per entity of an open type (people, places, organisations), the entity
of n words becomes n' ~ U{1, ..., n + 1} words of L ~ U{1, 2, 3} random sub-tokens each
(Dai & Adel 2020 replace mentions with other mentions; here the new mention is random, so
nothing can be memorised). The tags are rebuilt from the spans in the model's scheme, so
B/I/E/S stay legal. Everything is drawn from the batch's generator, so resume stays exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.tags import spans_from_tags, tags_from_spans
from .encode import Encoded

MAX_PIECES = 3  # sub-tokens per replaced word: U{1..MAX_PIECES}


class MentionReplacer:
    """``replacer(example, rng)`` -> the example with some mentions replaced.

    ``labels``: the model's tags (ids index it); ``types``: the entity types replaced;
    ``vocab``: the token ids [low, high) the random sub-tokens come from; ``max_length``:
    an example that would grow past it is left as it is."""

    def __init__(self, labels: Sequence[str], scheme: str, types: set[str], p: float,
                 vocab: tuple[int, int], max_length: int):
        self.labels, self.scheme, self.types = list(labels), scheme, set(types)
        self.index = {t: i for i, t in enumerate(self.labels)}
        self.p, self.vocab, self.max_length = float(p), vocab, int(max_length)

    def __call__(self, ex: Encoded, rng: np.random.Generator) -> Encoded:
        n = len(ex.word_index)
        entities = spans_from_tags([self.labels[t] for t in ex.word_tags], self.scheme)
        chosen = {start: (kind, end) for kind, start, end in entities
                  if kind in self.types and rng.random() < self.p}
        if not chosen:
            return ex
        ends = [*ex.word_index[1:], len(ex.input_ids) - 1]  # a word's sub-tokens end here
        ids = list(ex.input_ids[: ex.word_index[0]])        # [CLS]
        index: list[int] = []                               # first sub-token of each word
        moved: dict[int, int] = {}                          # kept word -> its new position
        spans: list[tuple[str, int, int]] = []
        w = 0
        while w < n:
            if w in chosen:
                kind, end = chosen[w]
                first = len(index)
                for _ in range(int(rng.integers(1, end - w + 2))):
                    index.append(len(ids))
                    pieces = int(rng.integers(1, MAX_PIECES + 1))
                    ids.extend(rng.integers(*self.vocab, size=pieces).tolist())
                spans.append((kind, first, len(index)))
                w = end
                continue
            moved[w] = len(index)
            index.append(len(ids))
            ids.extend(ex.input_ids[ex.word_index[w]: ends[w]])
            w += 1
        ids.append(ex.input_ids[-1])                        # [SEP]
        if len(ids) > self.max_length:
            return ex
        spans += [(kind, moved[start], moved[end - 1] + 1) for kind, start, end in entities
                  if start not in chosen]
        tags = tags_from_spans(spans, len(index), self.scheme)
        return Encoded(ids, None, None, index, [self.index[t] for t in tags], len(index))
