"""The splits of a fine-tuning run: a built-in world task set or the user's files.

:func:`load_splits` returns ``{split: records}`` (``train`` and ``val`` always; the world
sets add ``test``, ``test_unseen`` and, for sentiment, ``contrast``; the user's
``data.test`` files are named by their stem) and the set's card (labels, ceilings) when
the world rendered it. Records have the shapes of :mod:`lmforge.data.task_readers`, and
for extractive QA of :func:`lmforge.data.squad.read_squad` (the world's QA questions get
the text of their ``context_id`` page as ``context``: for a multi-hop question the page
that holds the answer).
A user's file without a validation file gives up ``data.val_fraction`` of its training
records (a seeded shuffle) to validation.
"""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

from ..errors import DataError
from .config import FinetuneRecipe, TaskDataConfig


def task_of(recipe: FinetuneRecipe, records: list[dict] | None = None) -> str:
    """classify | tag | relate | extract, from the world set, ``data.task`` or the
    records."""
    from .config import TASK_OF_WORLD

    d = recipe.data
    if d.world is not None:
        return TASK_OF_WORLD[d.world]
    if d.task != "auto":
        return d.task
    fmt = _format(d, d.train)
    if fmt == "conll":
        return "tag"
    if fmt == "squad":
        return "extract"
    if records and "h" in records[0] and "t" in records[0]:
        return "relate"
    if records and "tags" in records[0] or records and "spans" in records[0]:
        return "tag"
    return "classify"


def _format(d: TaskDataConfig, path: str | None) -> str:
    if d.format != "auto":
        return d.format
    suffix = Path(str(path)).suffix.lower()
    if suffix == ".json" and _is_squad(path):
        return "squad"
    return {".conll": "conll", ".txt": "conll", ".bio": "conll", ".csv": "csv",
            ".tsv": "tsv"}.get(suffix, "jsonl")


_SQUAD_KEY = re.compile(r'^\s*\{\s*"(data|version)"\s*:')


def _is_squad(path: str) -> bool:
    """Does the file open a JSON object with a ``data`` or ``version`` key (SQuAD)?"""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return bool(_SQUAD_KEY.match(f.read(256)))
    except (OSError, UnicodeDecodeError):
        return False  # the reader reports what is wrong


def read_file(d: TaskDataConfig, path: str, task: str | None) -> list[dict]:
    """One user file as records of ``task`` (None: decided from the file)."""
    from ..data import task_readers as tr

    fmt = _format(d, path)
    if fmt == "conll":
        return tr.read_conll(path, scheme=d.scheme, on_illegal=d.on_illegal)
    if fmt == "squad" or task == "extract":
        from ..data.squad import read_squad

        if fmt != "squad":
            raise DataError(f"{path}: extractive QA reads SQuAD JSON (an object with 'data'; "
                            "a .json file, or set data.format=squad)")
        return read_squad(path)
    if task is None:
        task = _sniff_jsonl(path) if fmt == "jsonl" else "classify"
    if task == "relate":
        return tr.read_relations(path)
    if task == "tag":
        return tr.read_ner_jsonl(path, scheme=d.scheme)
    return tr.read_classification(path, text_field=d.text_field, label_field=d.label_field,
                                  text_b_field=d.text_b_field, format=fmt)


def _sniff_jsonl(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            first = next((line for line in f if line.strip()), "")
        rec = json.loads(first) if first else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return "classify"  # the reader reports what is wrong, with the line
    if isinstance(rec, dict) and "h" in rec and "t" in rec:
        return "relate"
    if isinstance(rec, dict) and ("spans" in rec or "tags" in rec):
        return "tag"
    return "classify"


def hold_out(records: list, fraction: float, seed: int, path: str, *, min_left: int = 1,
             what: str = "records") -> tuple[list, list]:
    """``(train, val)``: ``max(1, round(fraction * n))`` of the ``n`` records, drawn with
    ``random.Random(seed)``, held out for validation (in the drawn order); the rest keep
    their order. Fewer than ``min_left`` left is a :class:`DataError` naming ``path``."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(records) * fraction))
    if len(records) - n_val < min_left:
        raise DataError(f"{path}: {len(records)} {what} are too few to split off a "
                        "validation share; give data.val")
    return [records[i] for i in sorted(order[n_val:])], [records[i] for i in order[:n_val]]


def load_splits(recipe: FinetuneRecipe) -> tuple[dict[str, list[dict]], dict | None, str]:
    """``(splits, card, task)``; the card is None for user files."""
    d, seed = recipe.data, recipe.run.seed
    if d.world is not None:
        from ..corpora.tasks import render_task_set

        ts = render_task_set(d.world, seed=seed, sizes=d.world_sizes or None,
                             langs=tuple(d.langs))
        splits = {k: list(v) for k, v in ts.splits.items()}
        card = ts.card
        task = task_of(recipe)
        if task == "extract":
            pages = {p["id"]: p["text"] for p in ts.documents}
            splits = {k: [{**r, "context": pages[r["context_id"]]} for r in v]
                      for k, v in splits.items()}
        if task == "tag" and d.scheme != "IOB2":  # the world writes IOB2
            from ..data.tags import convert_tags

            splits = {k: [{**r, "tags": convert_tags(r["tags"], "IOB2", d.scheme)}
                          for r in v] for k, v in splits.items()}
    else:
        task_hint = None if d.task == "auto" else d.task
        train = read_file(d, d.train, task_hint)
        task = task_of(recipe, train)
        if d.val:
            val = read_file(d, d.val, task)
        else:
            train, val = hold_out(train, d.val_fraction, seed, d.train, min_left=2)
        splits = {"train": train, "val": val}
        for path in d.test:
            splits[Path(path).stem] = read_file(d, path, task)
        card = None
    if d.train_limit is not None:
        splits["train"] = splits["train"][: d.train_limit]
    return splits, card, task


def label_names(task: str, records: list[dict], scheme: str, source: str) -> list[str]:
    """The model's labels, from the training records (each needs >= 2 examples: a label
    seen once cannot be both learned and checked)."""
    from ..data.tags import tag_set

    if task == "tag":
        types = {s["label"] for r in records for s in r.get("spans") or []} \
            or {t[2:] for r in records for t in r["tags"] if t != "O"}
        return tag_set(types, scheme)
    field = "relation" if task == "relate" else "label"
    from ..data.task_readers import check_labels

    check_labels(records, field, min_count=2, path=source)
    return sorted({r[field] for r in records})
