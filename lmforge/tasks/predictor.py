"""Load a fine-tuned task model and predict: ``load_task_model(run).predict([...])``.

What :meth:`TaskPredictor.predict` takes and gives, by task:

- classify: texts (or ``{"text", "text_b"}`` pairs) -> ``{"label", "probs": {label: p}}``
- tag: texts (or records with ``tokens``) -> ``{"entities": [{"start", "end", "label",
  "text"}], "tokens", "tags"}`` (character offsets, end exclusive). Texts are split into
  words (English) or characters (Chinese) as the training data was.
- relate: ``{"text", "h": {"name", "pos"}, "t": {...}}`` -> ``{"relation", "probs"}``
- extract: ``{"question", "context"}`` -> ``{"answer", "score", "start", "end"}``
  (:class:`lmforge.tasks.extractive.QAPredictor`)

:meth:`TaskPredictor.evaluate` scores gold records: the task's metrics, the confusion
matrix (classify/relate) and the records the model got wrong.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import CheckpointError, DataError
from .encode import encode_classification, encode_relations, encode_tagging, word_spans
from .evaluation import decide, metrics_for, predict_examples
from .model import TaskModel

if TYPE_CHECKING:
    from ..privacy.keys import KeySource


class TaskPredictor:
    def __init__(self, model: TaskModel, tokenizer):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.cfg = model.config
        self.labels = list(self.cfg.labels)
        self.index = {n: i for i, n in enumerate(self.labels)}

    @property
    def task(self) -> str:
        return self.cfg.task

    # ------------------------------------------------------------------ inputs

    def records(self, inputs: Sequence[str | dict]) -> list[dict]:
        """Inputs as records of the task (texts become records)."""
        out = []
        for i, x in enumerate(inputs):
            if isinstance(x, str):
                if self.task == "relate":
                    raise DataError("relation extraction needs records with text, h and t "
                                    "(OpenNRE JSONL), not plain text")
                x = {"text": x}
            if not isinstance(x, dict) or not isinstance(x.get("text"), str):
                raise DataError(f"input {i + 1}: expected a text or a record with 'text'")
            if not x["text"].strip():
                raise DataError(f"input {i + 1}: the text is empty")
            if self.task == "tag" and "tokens" not in x:
                from ..data.task_readers import auto_tokenize

                x = {**x, "tokens": auto_tokenize(x["text"])}
            out.append(x)
        return out

    def _encode(self, records: list[dict]):
        L = self.cfg.max_length
        if self.task == "classify":
            return encode_classification(records, self.tokenizer, self.index, L)
        if self.task == "relate":
            return encode_relations(records, self.tokenizer, self.index, L,
                                    self.cfg.typed_markers)
        unlabelled = [{k: v for k, v in r.items() if k != "tags"} for r in records]
        return encode_tagging(unlabelled, self.tokenizer, self.index, L)[0]

    # ------------------------------------------------------------------ predict

    def predict(self, inputs: Sequence[str | dict], batch_size: int = 64) -> list[dict]:
        records = self.records(inputs)
        raw = predict_examples(self.model, self._encode(records), self.tokenizer.pad_id,
                               batch_size)
        if self.task == "tag":
            return [self._entities(r, p) for r, p in zip(records, raw, strict=True)]
        out = []
        for p in raw:
            label = decide(p, self.labels, self.cfg.no_relation, self.cfg.threshold) \
                if self.task == "relate" else self.labels[int(p.argmax())]
            key = "relation" if self.task == "relate" else "label"
            out.append({key: label, "probs": {n: round(float(v), 6)
                                              for n, v in zip(self.labels, p, strict=True)}})
        return out

    def _entities(self, r: dict, path: list[int]) -> dict:
        from ..data.tags import repair_tags, spans_from_tags

        tags = repair_tags([self.labels[i] for i in path], self.cfg.scheme)
        offsets = r.get("offsets") or word_spans(r)
        ents = []
        for label, s, e in spans_from_tags(tags, self.cfg.scheme):
            cs, ce = offsets[s][0], offsets[e - 1][1]
            ents.append({"start": cs, "end": ce, "label": label, "text": r["text"][cs:ce]})
        return {"entities": ents, "tokens": r["tokens"], "tags": tags}

    # ------------------------------------------------------------------ evaluate

    def evaluate(self, records: list[dict], batch_size: int = 64) -> dict:
        """``{"metrics", "labels", "confusion" (classify/relate), "errors"}``."""
        field = {"classify": "label", "relate": "relation", "tag": "tags"}[self.task]
        if self.task != "tag":
            unknown = sorted({r[field] for r in records} - set(self.labels))
            if unknown:
                raise DataError(f"label {unknown[0]!r} is not one the model knows "
                                f"({', '.join(self.labels)})")
        preds = self.predict(records, batch_size)
        if self.task == "tag":
            gold = [list(r["tags"]) for r in records]
            pred = [p["tags"] for p in preds]
            unknown = sorted({t for g in gold for t in g} - set(self.labels))
            if unknown:
                raise DataError(f"tag {unknown[0]!r} is not one the model knows "
                                f"({', '.join(self.labels)})")
        else:
            gold = [r[field] for r in records]
            pred = [p[field] for p in preds]
        metrics = metrics_for(self.task, gold, pred, negative=self.cfg.no_relation,
                              scheme=self.cfg.scheme)
        errors = [{**{k: v for k, v in r.items() if k in ("id", "text", "h", "t", "text_b")},
                   "gold": g, "pred": p}
                  for r, g, p in zip(records, gold, pred, strict=True) if g != p]
        out = {"metrics": metrics, "labels": self.labels, "n": len(records),
               "errors": errors}
        if self.task != "tag":
            from ..eval.classification import confusion_matrix

            out["confusion"] = confusion_matrix(gold, pred, labels=self.labels).tolist()
        return out


class ClassicalPredictor(TaskPredictor):
    """The same ``predict``/``evaluate`` for a scikit-learn baseline (classify)."""

    def __init__(self, clf):
        self.clf, self.labels = clf, list(clf.labels)
        self.index = {n: i for i, n in enumerate(self.labels)}
        self.cfg = type("Cfg", (), {"task": "classify", "no_relation": None,
                                    "scheme": "IOB2", "threshold": None})()

    def predict(self, inputs: Sequence[str | dict], batch_size: int = 64) -> list[dict]:
        records = self.records(inputs)
        probs = self.clf.predict_proba([r["text"] for r in records])
        return [{"label": self.labels[int(p.argmax())],
                 "probs": {n: round(float(v), 6) for n, v in zip(self.labels, p, strict=True)}}
                for p in probs]


CLASSICAL_DIR = "classical"


def load_task_model(path: str | Path, device: str = "cpu",
                    key: KeySource | None = None) -> TaskPredictor:
    """A fine-tuning run folder (its best checkpoint), a checkpoint folder, or a run of a
    scikit-learn baseline (``<run>/classical``). ``key`` (else the active one) opens a run
    encrypted at rest: every file is decrypted in memory
    (:mod:`lmforge.privacy.encrypted_io`); an encrypted file without a key raises
    :class:`~lmforge.errors.ConfigError`, a wrong key or a damaged file
    :class:`CheckpointError`."""
    from ..privacy.encrypted_io import using_key

    with using_key(key):
        return _load_task_model(Path(path), device)


def _load_task_model(path: Path, device: str) -> TaskPredictor:
    from ..hub import resolve_model_dir
    from ..models.base import load_model_folder, read_config
    from ..tokenize import Tokenizer

    for folder in (path, path / CLASSICAL_DIR):
        if (folder / "classical.json").is_file():
            from .classical import load_classifier

            return ClassicalPredictor(load_classifier(folder))
    folder = resolve_model_dir(path)
    arch, _ = read_config(folder)
    if arch != "task":
        raise CheckpointError(f"{path} holds a {arch} model, not a fine-tuned task model "
                              "(lmforge finetune makes those)")
    model = load_model_folder(folder, device)
    if not (folder / "tokenizer.json").is_file():
        raise CheckpointError(f"{folder} has no tokenizer.json")
    if model.config.task == "extract":
        from .extractive import QAPredictor

        return QAPredictor(model, Tokenizer.load(folder))
    return TaskPredictor(model, Tokenizer.load(folder))
