"""Task sets rendered from the bilingual world, each with its exact ceiling.

Four labelled sets, every item in English or Chinese (half each), deterministic in the
seed, with splits ``train``, ``val``, ``test`` and ``test_unseen`` (whose people,
cities, organisations and films never occur in the other splits):

* ``sentiment``: reviews labelled positive / negative / neutral by negation, contrast
  and degree words, 1.75% label noise, plus a ``contrast`` split of minimal pairs
  (:mod:`.sentiment`);
* ``topic``: news items in 8 topics, 0.5% label noise (:mod:`.topic`);
* ``ner``: PER/LOC/ORG/TIME/NUM spans, tokens and IOB2 tags (:mod:`.ner`);
* ``relations``: head/tail pairs with born_in, lives_in, works_for, located_in,
  friend_of or no_relation, OpenNRE format (:mod:`.relations`).

Two more have their own record shapes: ``translation`` (parallel pairs,
:mod:`.translation`) and ``qa`` (questions about a shared page collection, answers as
page spans, SQuAD 2.0 with unanswerable and multi-hop questions, :mod:`.qa`), and
``dialogue`` (multi-turn chats about the world's facts, OpenAI messages, :mod:`.dialogue`)
and ``control`` (news items with an opinion, labelled with sentiment, topic and language
codes, judged exactly by the world's rules, :mod:`.control`).

Each set's ``card`` gives the labels, sizes, label and language distributions, the noise
rate and the **ceiling** per split: the best score any model can reach, ``1 - k/n`` when
``k`` of ``n`` labels were flipped on purpose (the noise-free label is a function of the
text), 1.0 otherwise. The entity partition is in :mod:`.entities`.

Usage::

    from lmforge.corpora.tasks import render_task_set, write_task_set
    ts = render_task_set("sentiment", seed=0)        # TaskSet(name, splits, card, clean)
    ts.splits["train"][0]   # {"id", "text", "label", "lang"}
    ts.card["ceiling"]      # {"train": 0.9825, ..., "contrast": 1.0}
    write_task_set(ts, "data/sentiment")   # {split}.jsonl, card.json (+ {split}.conll)
    # qa also writes docs.jsonl (the pages) and {split}.squad.json
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError
from ...io import atomic_write_json, atomic_write_text, ensure_writable_dir
from . import control, dialogue, ner, qa, relations, sentiment, summarization, topic, translation
from .common import DEFAULT_SIZES, SPLITS, TaskSet, check_langs, resolve_sizes
from .synonyms import synonym_sets


@dataclass(frozen=True)
class TaskSpec:
    """A task set's splits, their default sizes, and its renderer
    ``render(seed, sizes, langs)``; ``even``: splits made of pairs; ``per_language``: the
    default sizes are for two languages (one language gets half of each: a set whose
    questions are finite per language, like ``qa``)."""

    name: str
    splits: tuple[str, ...]
    sizes: Mapping[str, int]
    render: Callable[[int, dict[str, int], tuple[str, ...]], TaskSet]
    even: tuple[str, ...] = ()
    check_langs: Callable[[Iterable[str]], tuple[str, ...]] = check_langs
    per_language: bool = False


TASK_SETS: dict[str, TaskSpec] = {
    "sentiment": TaskSpec("sentiment", sentiment.ALL_SPLITS, sentiment.SIZES,
                          sentiment.render, even=("contrast",)),
    "topic": TaskSpec("topic", SPLITS, DEFAULT_SIZES, topic.render),
    "ner": TaskSpec("ner", SPLITS, DEFAULT_SIZES, ner.render),
    "relations": TaskSpec("relations", SPLITS, DEFAULT_SIZES, relations.render),
    "translation": TaskSpec("translation", translation.SPLITS, translation.SIZES,
                            translation.render, check_langs=translation.check_pair),
    "qa": TaskSpec("qa", SPLITS, DEFAULT_SIZES, qa.render, per_language=True),
    "summarization": TaskSpec("summarization", summarization.SPLITS, summarization.SIZES,
                              summarization.render),
    "dialogue": TaskSpec("dialogue", SPLITS, DEFAULT_SIZES, dialogue.render),
    "control": TaskSpec("control", SPLITS, control.SIZES, control.render),
}


def render_task_set(name: str, *, seed: int = 0, sizes: dict[str, int] | None = None,
                    langs: Iterable[str] = ("en", "zh")) -> TaskSet:
    """Render the task set ``name`` (one of :data:`TASK_SETS`).

    ``sizes`` overrides the default number of items of some splits (train 4000, val 500,
    test 1000, test_unseen 1000, for qa half of each per language left out; sentiment's
    contrast 600, an even number); ``langs`` the languages, alternating. Unknown names, splits, languages or bad sizes raise
    :class:`~lmforge.errors.ConfigError`.
    """
    spec = TASK_SETS.get(name)
    if spec is None:
        raise ConfigError(f"unknown task set {name!r}; known: {', '.join(TASK_SETS)}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer; got {seed!r}")
    if sizes is not None and not isinstance(sizes, Mapping):
        raise ConfigError(f"sizes must be a mapping from split to count; got {sizes!r}")
    langs = spec.check_langs(langs)
    defaults = ({k: round(v * len(langs) / 2) for k, v in spec.sizes.items()}
                if spec.per_language else spec.sizes)
    return spec.render(seed, resolve_sizes(spec.splits, defaults, sizes, spec.even), langs)


def _jsonl(records: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)


def _conll(records: list[dict]) -> str:
    """``token tag`` lines, a blank line after each sentence (CoNLL-2003 shape)."""
    return "".join("".join(f"{tok} {tag}\n" for tok, tag in zip(r["tokens"], r["tags"],
                                                                strict=True)) + "\n"
                   for r in records)


def write_task_set(ts: TaskSet, out_dir: str | os.PathLike) -> Path:
    """Write ``{split}.jsonl`` for every split and ``card.json`` (for NER also
    ``{split}.conll``; for QA ``{split}.squad.json`` and the pages, ``docs.jsonl``) into
    ``out_dir``, each file atomically; returns the folder."""
    out = ensure_writable_dir(out_dir)
    for split, records in ts.splits.items():
        atomic_write_text(out / f"{split}.jsonl", _jsonl(records))
        if ts.name == "ner":
            atomic_write_text(out / f"{split}.conll", _conll(records))
        if isinstance(ts, qa.QASet):
            atomic_write_json(out / f"{split}.squad.json", qa.to_squad(ts, split))
    if isinstance(ts, qa.QASet):
        atomic_write_text(out / "docs.jsonl", _jsonl(ts.documents))
    atomic_write_json(out / "card.json", ts.card)
    return out


__all__ = ["TASK_SETS", "TaskSet", "TaskSpec", "render_task_set", "synonym_sets",
           "write_task_set"]
