r"""Extractive question answering as a fine-tuning task (``extract``): a span of the context
answers the question, or (SQuAD v2.0) nothing in it does.

The task, in the terms of the understanding tasks (:mod:`lmforge.tasks.finetune`):

* **data**: SQuAD records ``{"id", "question", "context", "answers": [{"text",
  "answer_start"}], "is_impossible"}``: the world's QA set (``data.world: qa``, each
  question reading its ``context_id`` page) or the user's SQuAD v1.1/v2.0 JSON
  (:func:`lmforge.data.squad.read_squad`);
* **inputs**: doc-stride windows ``[CLS] question [SEP] context chunk [SEP]`` of at most
  ``data.max_length`` tokens, consecutive chunks sharing ``data.doc_stride`` tokens
  (:func:`lmforge.tasks.qa_spans.encode_qa`). A window's gold start and end are the
  answer's first and last tokens when it holds the answer whole, else 0 (``[CLS]``: "not
  in this window"), as for an impossible question;
* **vocabulary**: the one-character words of the training questions and contexts that a
  pretrained backbone's WordPiece vocabulary maps to ``[UNK]`` (Chinese characters
  outside an English vocabulary) get tokens and embedding rows of their own
  (:mod:`lmforge.tasks.new_characters`) when the whole model is fine-tuned (``strategy:
  full``: other strategies would leave the new rows untrained); the run's tokenizer and
  checkpoints carry them;
* **model**: :class:`~lmforge.tasks.model.TaskModel` with the span head
  :math:`[s_t, e_t] = W h_t + b`, :math:`W \in \mathbb{R}^{d \times 2}`;
* **loss**: the mean of the start and the end cross-entropy (Hugging Face's
  ``BertForQuestionAnswering``), each a softmax over the window's real tokens::

      L = ( -log softmax(s)[y_start] - log softmax(e)[y_end] ) / 2

  (HF's softmax also runs over the padding, which makes a window's loss depend on the
  batch it is padded in; here padding gets probability 0);
* **prediction**: :func:`~lmforge.tasks.qa_spans.postprocess_qa` over every window of a
  question: the ``head.n_best`` best starts and ends of each window, spans of at most
  ``head.max_answer_length`` tokens scored :math:`s_i + e_j`; with the null answer
  (``head.version_2_with_negative``, by default when a training question is impossible)
  the null score is :math:`\min_w (s^w_0 + e^w_0)` and the answer is ``""`` when
  :math:`\text{null} - \text{best span} > \theta` (``head.null_threshold``);
* **metric**: :func:`lmforge.eval.qa.qa_scores` (0..100): SQuAD EM/F1 for English,
  CMRC 2018 for Chinese, with HasAns/NoAns, the SQuAD v2.0 script's ``best_f1`` and its
  threshold (:math:`q_i` = null - best span score), and for the world's set per question
  type (``f1_single``, ``f1_unanswerable``, ``f1_multihop``) and language (``f1_en``).
  The kept checkpoint has the best validation ``finetune.metric`` (``f1``);
* **threshold** (v2.0, ``head.tune_null_threshold``): at every evaluation
  :math:`\theta` becomes the validation set's ``best_f1_thresh`` for the weights of the
  moment, so each checkpoint carries the threshold tuned for it and every split is scored
  with the kept checkpoint's (val's ``f1`` is then its in-sample best, test's is honest);
* **predictor**: :class:`QAPredictor`.

The run folder is that of every fine-tuning run; ``errors.jsonl`` lists the test
questions answered wrong (exact match 0) with the gold answers, the prediction and its F1.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConfigError, DataError
from ..privacy.encrypted_io import write_json
from .config import FinetuneRecipe
from .encode import Encoded, TaskBatches, collate
from .finetune import (
    FinetuneResult,
    apply_strategy,
    build_task_model,
    evaluate_splits,
    fit_and_load_best,
    results_table,
)
from .model import TaskModel, TaskModelConfig
from .new_characters import add_characters
from .predictor import TaskPredictor
from .qa_spans import QAPrediction, QAWindow, encode_qa, postprocess_qa

LABELS = ["start", "end"]
QA_METRICS = ("f1", "exact", "HasAns_f1", "HasAns_exact")
#: the selection metric -> the card's ceiling of it (the world's QA set)
CEILING_OF = {"f1": "f1", "exact": "exact_match", "HasAns_exact": "answerable_exact_match"}
GROUPS = ("type", "lang")  # record fields the metrics are also broken down by


def encode_windows(records: Sequence[dict], tokenizer, cfg: TaskModelConfig,
                   where: str) -> list[QAWindow]:
    """The doc-stride windows of ``records`` (a window/stride error names ``where`` and
    the two options)."""
    try:
        return encode_qa(records, tokenizer, max_length=cfg.max_length, stride=cfg.doc_stride)
    except (ConfigError, DataError) as e:
        raise type(e)(f"{where}: {e} (data.max_length={cfg.max_length}, "
                      f"data.doc_stride={cfg.doc_stride})") from None


def _encoded(windows: Sequence[QAWindow]) -> list[Encoded]:
    return [Encoded(w.input_ids, w.token_type_ids) for w in windows]


def _inputs(batch: dict) -> dict:
    batch.pop("labels")  # collate's class labels: none here
    return batch


class QABatches(TaskBatches):
    """:class:`~lmforge.tasks.encode.TaskBatches` of windows (random draws, length groups,
    token dropout and micro-batches alike), each batch with the windows' gold
    ``start_positions`` and ``end_positions`` (B,)."""

    def __init__(self, windows: Sequence[QAWindow], pad_id: int, batch_size: int, **kw):
        super().__init__(_encoded(windows), pad_id, "classify", batch_size, **kw)
        self.positions = torch.tensor([[w.start_position, w.end_position] for w in windows],
                                      dtype=torch.long)
        self._drawn = np.zeros(0, dtype=np.int64)

    def _indices(self, step: int, micro: int, rng: np.random.Generator) -> np.ndarray:
        self._drawn = super()._indices(step, micro, rng)
        return self._drawn

    def _with_positions(self, batch: dict, idx) -> dict:
        pos = self.positions[torch.as_tensor(idx, dtype=torch.long)]
        return {**_inputs(batch), "start_positions": pos[:, 0], "end_positions": pos[:, 1]}

    def batch(self, step: int, micro: int, rng: np.random.Generator) -> dict:
        batch = super().batch(step, micro, rng)
        return self._with_positions(batch, self._drawn)

    def eval_batches(self):
        for i, batch in zip(range(0, len(self.examples), self.batch_size),
                            super().eval_batches(), strict=True):
            yield self._with_positions(batch, range(i, min(i + self.batch_size,
                                                           len(self.examples))))


class SpanObjective:
    """``(CE(start) + CE(end)) / 2`` over each window's real tokens (module docstring);
    the metric is the share of windows whose arg-max start and end are both right."""

    name = "span"
    unit = "ex"  # windows

    def __call__(self, model, batch: dict):
        logits = model(batch).float()                                   # (B, T, 2)
        pad = ~batch["attention_mask"].bool().unsqueeze(-1)
        s, e = logits.masked_fill(pad, torch.finfo(logits.dtype).min).unbind(-1)
        ys, ye = batch["start_positions"], batch["end_positions"]
        loss = (F.cross_entropy(s, ys) + F.cross_entropy(e, ye)) / 2
        with torch.no_grad():
            acc = ((s.argmax(-1) == ys) & (e.argmax(-1) == ye)).float().mean()
        return loss, {"accuracy": acc}, ys.shape[0]


@torch.no_grad()
def span_logits(model: TaskModel, windows: Sequence[QAWindow], pad_id: int,
                batch_size: int = 64) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The start and end logits of each window (1-D, the window's length), batched by
    length."""
    device = next(model.parameters()).device
    examples = _encoded(windows)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i].input_ids))
    starts: list = [None] * len(examples)
    ends: list = [None] * len(examples)
    was = model.training
    model.eval()
    try:
        for k in range(0, len(order), batch_size):
            idx = order[k: k + batch_size]
            batch = _inputs(collate([examples[i] for i in idx], pad_id, "classify"))
            logits = model({n: v.to(device) for n, v in batch.items()}).float().cpu().numpy()
            for i, row in zip(idx, logits, strict=True):
                n = len(examples[i].input_ids)
                starts[i], ends[i] = row[:n, 0], row[:n, 1]
    finally:
        model.train(was)
    return starts, ends


class QAPredictor(TaskPredictor):
    """Answers questions about contexts with a fine-tuned span head.

    ``predict([{"question", "context"}])`` -> ``{"answer", "score", "start", "end"}``:
    the answer text (``""``: no answer), its probability among the n-best candidates
    (the softmax of their scores, null included) and its characters ``[start, end)`` in
    the context (None for no answer). ``evaluate(records)`` scores SQuAD records.
    """

    def records(self, inputs: Sequence[dict]) -> list[dict]:
        for i, x in enumerate(inputs):
            if not isinstance(x, dict) or not all(isinstance(x.get(k), str)
                                                  for k in ("question", "context")):
                raise DataError(f"input {i + 1}: extractive QA needs a record with "
                                "'question' and 'context' strings")
            if not x["question"].strip() or not x["context"].strip():
                raise DataError(f"input {i + 1}: the question or the context is empty")
        return list(inputs)

    def candidates(self, records: Sequence[dict], batch_size: int = 64
                   ) -> list[QAPrediction]:
        """Each question's n-best list and null - best span score, before the threshold
        (``text`` is the best span)."""
        windows = encode_windows(records, self.tokenizer, self.cfg, "input")
        s, e = span_logits(self.model, windows, self.tokenizer.pad_id, batch_size)
        return postprocess_qa(windows, s, e, [r["context"] for r in records],
                              n_best=self.cfg.n_best,
                              max_answer_length=self.cfg.max_answer_length,
                              with_null=self.cfg.with_null, null_threshold=math.inf)

    def answered(self, p: QAPrediction) -> dict | None:
        """The n-best entry answered: the best span, or None (no answer) when there is
        none or, with the null answer, null - best span > ``null_threshold``."""
        span = next((c for c in p.nbest if c["start"] is not None), None)
        if span is None or (self.cfg.with_null and p.score_diff > self.cfg.null_threshold):
            return None
        return span

    def predict(self, inputs: Sequence[dict], batch_size: int = 64) -> list[dict]:
        out = []
        for p in self.candidates(self.records(inputs), batch_size):
            c = self.answered(p)
            if c is None:
                c = next((n for n in p.nbest if n["start"] is None),
                         {"text": "", "start": None, "end": None, "probability": 0.0})
            out.append({"answer": c["text"], "score": round(float(c["probability"]), 6),
                        "start": c["start"], "end": c["end"]})
        return out

    def evaluate(self, records: list[dict], batch_size: int = 64) -> dict:
        """``{"metrics", "n", "errors"}`` of SQuAD records (:meth:`score`)."""
        records = self.records(records)
        return self.score(records, self.candidates(records, batch_size))

    def score(self, records: list[dict], preds: Sequence[QAPrediction]) -> dict:
        """:func:`~lmforge.eval.qa.qa_scores` of the :meth:`candidates` ``preds`` at the
        model's threshold (with the null answer also ``best_f1`` and its threshold), the
        same by ``type`` and ``lang`` where the records have them, and the questions
        answered wrong."""
        from ..eval.qa import _record_language, qa_scores, question_scores

        ids = [r["id"] for r in records]
        best = {i: p.text for i, p in zip(ids, preds, strict=True)}
        chosen = {i: c["text"] if (c := self.answered(p)) else ""
                  for i, p in zip(ids, preds, strict=True)}
        na = {i: math.inf if p.score_diff is None else p.score_diff
              for i, p in zip(ids, preds, strict=True)} if self.cfg.with_null else None
        metrics = qa_scores(best, records, na_probs=na, na_prob_thresh=self.cfg.null_threshold)
        for field in GROUPS:
            values = sorted({r[field] for r in records if r.get(field) is not None})
            for v in values if len(values) > 1 else ():
                part = [r for r in records if r.get(field) == v]
                m = qa_scores({r["id"]: chosen[r["id"]] for r in part}, part)
                metrics.update({f"f1_{v}": m["f1"], f"exact_{v}": m["exact"]})
        errors = []
        for r in records:
            golds = [a["text"] for a in r["answers"]]
            em, f1 = question_scores(chosen[r["id"]], golds, _record_language(r, None))
            if not em:
                errors.append({**{k: r[k] for k in ("id", "type", "lang", "question",
                                                    "context_id") if k in r},
                               "gold": golds, "pred": chosen[r["id"]], "f1": round(f1, 4)})
        return {"metrics": metrics, "labels": self.labels, "n": len(records),
                "errors": errors}


def _check_options(recipe: FinetuneRecipe) -> str:
    """The selection metric; options of the other tasks are refused, naming the field."""
    if recipe.backbone.classical is not None:
        raise ConfigError("backbone.classical fits text classifiers; extractive QA needs an "
                          "encoder (backbone.path, pretrain or encoder)")
    unused = [name for name, on in (("data.augment", recipe.data.augment > 0),
                                    ("finetune.label_smoothing",
                                     recipe.finetune.label_smoothing > 0),
                                    ("finetune.class_weights",
                                     recipe.finetune.class_weights != "none")) if on]
    if unused:
        raise ConfigError(f"{unused[0]} does not apply to extractive QA; leave it at its "
                          "default")
    metric = "f1" if recipe.finetune.metric == "auto" else recipe.finetune.metric
    if metric not in QA_METRICS:
        raise ConfigError(f"finetune.metric={metric!r} is not an extract metric; allowed: "
                          f"auto, {', '.join(QA_METRICS)}")
    return metric


def _with_null(setting: str | bool, train: Sequence[dict]) -> bool:
    if setting == "auto":
        return any(r.get("is_impossible") for r in train)
    return bool(setting)


def finetune_extractive(recipe: FinetuneRecipe, splits: dict[str, list[dict]],
                        card: dict | None, *, resume: bool = False, show_progress: bool = True,
                        log: Callable[[str], None] = print) -> FinetuneResult:
    """Train the span head, select on validation, tune the threshold, evaluate every
    split (called by :func:`lmforge.tasks.finetune.finetune` for extract data)."""
    from ..models.base import read_config
    from ..train import Trainer, latest_checkpoint

    metric = _check_options(recipe)
    run_dir = recipe.run.path
    model, tokenizer = build_task_model(recipe, "extract", LABELS, splits, run_dir,
                                        resume=resume, show_progress=show_progress, log=log)
    model.config.with_null = _with_null(recipe.head.version_2_with_negative, splits["train"])
    if not model.scratch and recipe.finetune.strategy == "full":
        texts = [r[k] for r in splits["train"] for k in ("question", "context")]
        tokenizer, chars = add_characters(model.encoder, model.config.encoder_config,
                                          tokenizer, texts, seed=recipe.run.seed)
        if chars:
            log(f"extract: {len(chars)} characters of the training text were [UNK]; each "
                f"has its own token now ({''.join(chars[:10])}...)")
    trainable, total = apply_strategy(model, recipe)
    d, bs = recipe.data, recipe.train.batch_size
    train_w = encode_windows(splits["train"], tokenizer, model.config, "train")
    val_w = encode_windows(splits["val"], tokenizer, model.config, "val")
    log(f"extract: {len(splits['train'])} training questions in {len(train_w)} windows, "
        f"{sum(w.start_position == 0 for w in train_w)} without the answer; null answer "
        f"{'on' if model.config.with_null else 'off'}; {recipe.finetune.strategy}: "
        f"{trainable:,} of {total:,} parameters trainable ({100 * trainable / total:.2f}%)")
    train_src = QABatches(train_w, tokenizer.pad_id, bs, token_dropout=d.token_dropout,
                          unk_id=tokenizer.unk_id, group_by_length=d.group_by_length,
                          micro_batches=recipe.train.grad_accum)
    val_src = QABatches(val_w, tokenizer.pad_id, max(bs, 64))
    predictor = QAPredictor(model, tokenizer)
    tune = model.config.with_null and recipe.head.tune_null_threshold
    if tune and resume:  # the threshold the last checkpoint was saved with
        model.config.null_threshold = read_config(latest_checkpoint(run_dir))[1].null_threshold

    def validation(m) -> dict:
        val = splits["val"]
        cands = predictor.candidates(val)
        if tune:
            model.config.null_threshold = predictor.score(val, cands)["metrics"][
                "best_f1_thresh"]
        ev = predictor.score(val, cands)["metrics"]
        return {**{f"val_{k}": ev[k] for k in QA_METRICS if k in ev},
                "val_null_threshold": model.config.null_threshold}

    cfg = recipe.train.model_copy(update={"best_metric": f"val_{metric}", "best_mode": "max"})
    provenance = {"recipe": recipe.to_dict(), "task": "extract",
                  "trainable_parameters": trainable, "parameters": total}
    trainer = Trainer(model, cfg, train_src, val_src, run_dir, seed=recipe.run.seed,
                      objective=SpanObjective(), evaluators=[validation], tokenizer=tokenizer,
                      provenance=provenance, resume=resume, show_progress=show_progress)
    train_result, best = fit_and_load_best(trainer, model, run_dir)
    model.config.null_threshold = read_config(best)[1].null_threshold
    if tune:
        log(f"null threshold: {model.config.null_threshold:.4f} (the best F1 on val)")
    ceilings = {s: 100 * c[CEILING_OF[metric]] for s, c in (card or {}).get("ceiling", {})
                .items() if metric in CEILING_OF}
    results = evaluate_splits(predictor, splits, {"ceiling": ceilings}, run_dir, metric)
    results.update(best_checkpoint=str(best), metric=metric, trainable_parameters=trainable,
                   parameters=total, strategy=recipe.finetune.strategy,
                   version_2_with_negative=model.config.with_null,
                   null_threshold=model.config.null_threshold)
    write_json(run_dir / "results.json", results)
    log(results_table(results))
    return FinetuneResult(run_dir, predictor, results, train_result, (trainable, total))


__all__ = ["finetune_extractive", "QAPredictor", "QABatches", "SpanObjective", "span_logits",
           "encode_windows"]
