r"""The loss, the predictions and the metrics of the understanding tasks.

**Loss.** classify/relate, and tag with the softmax head: cross-entropy over the labelled
positions, with optional class weights :math:`w_c` and label smoothing :math:`\epsilon`
(the target puts :math:`1-\epsilon` on the gold class and :math:`\epsilon/C` on every
class, ``torch.nn.functional.cross_entropy`` semantics)::

    L = sum_i w_{y_i} CE(q_eps(y_i), softmax(z_i)) / sum_i w_{y_i}

``balanced`` weights are :math:`w_c = N / (C \cdot N_c)` (scikit-learn's). Tag with the
CRF head: the mean negative log-likelihood per sentence, ``log Z - score(y)``.

**Predictions.** classify/relate: the softmax probabilities and the arg-max label; for
relate with a ``threshold``, the negative label unless the best other relation reaches
it. tag: the Viterbi path over legal tag sequences, one tag per word (words cut off by
``max_length`` are tagged ``O``).

**Metrics** (:mod:`lmforge.eval`): classify: accuracy and P/R/F1 (macro, micro,
weighted); tag: entity-level P/R/F1, seqeval's default (conlleval) mode and strict mode;
relate: micro P/R/F1 over the relations other than the negative one (TACRED), and
accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .encode import IGNORE, Encoded, collate

_PRF = [f"{m}_{a}" for a in ("macro", "micro", "weighted")
        for m in ("precision", "recall", "f1")]
TASK_METRICS = {
    "classify": ("accuracy", *_PRF),
    "tag": ("entity_precision", "entity_recall", "entity_f1", "entity_f1_strict"),
    "relate": ("accuracy", "relation_precision", "relation_recall", "relation_f1"),
}


class TaskObjective:
    """``objective(model, batch) -> (loss, {"accuracy": ...}, n)`` for the trainer. ``n``
    counts examples (``unit = "ex"``), or labelled tokens for a softmax tagger (``"tok"``)."""

    name = "task"

    def __init__(self, task: str, weights: torch.Tensor | None = None,
                 label_smoothing: float = 0.0, crf: bool = False):
        self.task, self.weights, self.label_smoothing = task, weights, label_smoothing
        self.unit = "tok" if task == "tag" and not crf else "ex"

    def __call__(self, model, batch: dict):
        logits = model(batch)
        y = batch["labels"]
        if self.task == "tag" and model.crf is not None:
            mask = batch["word_mask"]
            loss = model.crf.nll(logits.float(), y.clamp(min=0), mask, reduction="mean")
            n = y.shape[0]
        else:
            flat, yy = logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1)
            w = self.weights.to(flat.device) if self.weights is not None else None
            loss = F.cross_entropy(flat, yy, weight=w, ignore_index=IGNORE,
                                   label_smoothing=self.label_smoothing)
            n = (yy != IGNORE).sum()
        with torch.no_grad():
            valid = y != IGNORE
            acc = ((logits.argmax(-1) == y) & valid).sum() / valid.sum().clamp(min=1)
        return loss, {"accuracy": acc}, n


def balanced_weights(labels: Sequence[int], n_classes: int) -> torch.Tensor:
    """``w_c = N / (C * N_c)`` (classes absent from the data get weight 1)."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=n_classes)
    w = np.where(counts > 0, len(labels) / (n_classes * np.maximum(counts, 1)), 1.0)
    return torch.tensor(w, dtype=torch.float32)


@torch.no_grad()
def predict_examples(model, examples: Sequence[Encoded], pad_id: int,
                     batch_size: int = 64) -> list:
    """Probabilities (C,) per example (classify/relate) or word tag ids (tag)."""
    task = model.config.task
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    out: list = []
    try:
        order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
        results: dict[int, object] = {}
        for s in range(0, len(order), batch_size):
            idx = order[s: s + batch_size]
            batch = collate([examples[i] for i in idx], pad_id, task)
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(batch).float()
            if task == "tag":
                paths = model.decode_tags(logits, batch["word_mask"])
                for i, p, ex in zip(idx, paths, (examples[i] for i in idx), strict=True):
                    results[i] = (p[: len(ex.word_index)] + [0] * ex.n_words)[: ex.n_words]
            else:
                probs = torch.softmax(logits, -1).cpu().numpy()
                for i, p in zip(idx, probs, strict=True):
                    results[i] = p
        out = [results[i] for i in range(len(examples))]
    finally:
        model.train(was)
    return out


def decide(probs: np.ndarray, labels: Sequence[str], negative: str | None = None,
           threshold: float | None = None) -> str:
    """The arg-max label; with a ``threshold``, ``negative`` unless the best other label's
    probability reaches it."""
    best = int(np.argmax(probs))
    if threshold is not None and negative in labels:
        neg = list(labels).index(negative)
        others = probs.copy()
        others[neg] = -1.0
        cand = int(np.argmax(others))
        return labels[cand] if probs[cand] >= threshold else negative
    return labels[best]


def metrics_for(task: str, gold: list, pred: list, *, negative: str = "no_relation",
                scheme: str = "IOB2") -> dict[str, float]:
    """The task's metrics of predicted against gold labels (tag: lists of tag lists)."""
    if task == "tag":
        from ..eval.entities import entity_scores

        lenient = entity_scores(gold, pred)
        strict = entity_scores(gold, pred, mode="strict", scheme=scheme)
        return {"entity_precision": lenient["precision"], "entity_recall": lenient["recall"],
                "entity_f1": lenient["f1"], "entity_f1_strict": strict["f1"]}
    from ..eval.classification import accuracy, precision_recall_fscore

    out = {"accuracy": accuracy(gold, pred)}
    if task == "relate":
        from ..eval.relations import relation_scores

        r = relation_scores(gold, pred, negative=negative)
        out.update(relation_precision=r["precision"], relation_recall=r["recall"],
                   relation_f1=r["f1"])
        return out
    for avg in ("macro", "micro", "weighted"):
        p, r, f = precision_recall_fscore(gold, pred, average=avg)[:3]
        out.update({f"precision_{avg}": float(p), f"recall_{avg}": float(r),
                    f"f1_{avg}": float(f)})
    return out
