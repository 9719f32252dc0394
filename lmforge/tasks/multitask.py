r"""Multi-task fine-tuning: one shared encoder, a head per task, ``lmforge finetune`` of a
``task: multitask`` recipe (:mod:`lmforge.tasks.multitask_config`).

**Mixing** (Raffel et al. 2020, "Exploring the limits of transfer learning", §3.5.2).
Each micro-batch comes from one task. With :math:`n_i` the training examples of task
:math:`i`, capped at :math:`K` (``mixing.limit``, none by default), task :math:`i` is drawn
with probability

.. math::

    r_i = \min(n_i, K), \qquad p_i = \frac{r_i^{1/T}}{\sum_j r_j^{1/T}}

``proportional`` is :math:`T = 1` (examples-proportional mixing: every training example
is equally likely to be seen, as if the sets were pooled); ``temperature`` takes
:math:`T` from ``mixing.temperature`` (:math:`T > 1` flattens the mixture towards the
small tasks); ``uniform`` is the limit :math:`T \to \infty`, :math:`p_i = 1/m` for
:math:`m` tasks. The draw uses the generator the trainer gives the micro-batch,
``default_rng([seed, step, micro])``, and so does the task's own batch: the data of a
run is a pure function of its seed, and a resumed run draws what an uninterrupted one
would.

**Loss.** A micro-batch of task :math:`i` costs :math:`w_i L_i`, with :math:`L_i` the
single-task loss (:class:`~lmforge.tasks.evaluation.TaskObjective`: cross-entropy, or the
CRF's negative log-likelihood) and :math:`w_i` the task's ``weight``. The expected
gradient of a step is therefore

.. math::

    \mathbb{E}[g] = \sum_i p_i\, w_i\, \nabla L_i

so mixing and weights act together: the effective share of task :math:`i` is
:math:`p_i w_i`. With gradient accumulation, each micro-batch counts by its number of
examples (the trainer's token-weighted mean, ``n`` = examples for every task).

**Evaluation.** Each task is scored by its own metric on its own validation split (the
single-task predictor through :meth:`MultiTaskModel.view`); the checkpoint kept is the
one with the best mean of those metrics (``val_task_mean``). At the end every task's
held-out splits (test, test_unseen, ...) are evaluated beside their ceilings, and written
as ``results.json``::

    runs/<name>/
      config.yaml, metrics.jsonl, loss.png, checkpoints/ (arch: multitask)
      backbone/          the pretraining run, when backbone.pretrain asks for one
      <task>/            errors.jsonl and confusion.json/png of each task's test split
      results.json       {"tasks": {name: {task, metric, weight, p, splits: {...}}}, ...}
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, DataError
from ..privacy.encrypted_io import write_json
from .config import HeadConfig
from .datasets import label_names, load_splits
from .encode import TaskBatches
from .evaluation import TASK_METRICS, TaskObjective
from .finetune import (
    _count,
    _texts,
    build_task_model,
    evaluate_splits,
    fit_and_load_best,
    head_fields,
    start_run,
    task_sources,
)
from .multitask_config import MultitaskRecipe, task_metric
from .multitask_model import MultiTaskModel, MultiTaskModelConfig
from .predictor import TaskPredictor

SELECTION = "val_task_mean"


def mixing_probabilities(sizes: Mapping[str, int], strategy: str,
                         temperature: float | None = None,
                         limit: int | None = None) -> dict[str, float]:
    r"""``{task: p_i}`` with :math:`p_i \propto \min(n_i, K)^{1/T}`: :math:`T = 1` for
    ``proportional``, ``temperature`` for ``temperature``, :math:`p_i = 1/m` for
    ``uniform`` (the module docstring)."""
    if not sizes or any(n < 1 for n in sizes.values()):
        raise DataError(f"every task needs training examples (sizes: {dict(sizes)})")
    if strategy == "uniform":
        return {name: 1.0 / len(sizes) for name in sizes}
    if strategy == "proportional":
        temperature = 1.0
    elif strategy != "temperature" or temperature is None or temperature <= 0:
        raise ConfigError(f"mixing: strategy {strategy!r} with temperature {temperature!r} "
                          "(proportional, uniform, or temperature with T > 0)")
    r = np.array([min(n, limit) if limit else n for n in sizes.values()], dtype=np.float64)
    # r^(1/T) / sum r^(1/T), computed from the logs: no overflow for a small T
    logw = np.log(r) / temperature
    w = np.exp(logw - logw.max())
    return {name: float(p) for name, p in zip(sizes, w / w.sum(), strict=True)}


class MixedBatches:
    """The batch source of a multi-task run: each task's :class:`TaskBatches`, mixed.

    Training: micro-batch ``(step, micro)`` draws its task ``i`` with probability
    ``probs[i]`` from the generator ``rng`` the trainer gives it, then that task's batch
    from the same generator; the batch carries its task's name under ``"task"``.
    Evaluation: the tasks' batches in turn (round robin), so that the trainer's first
    ``eval_batches`` batches hold every task."""

    def __init__(self, sources: Mapping[str, TaskBatches],
                 probs: Mapping[str, float] | None = None):
        if not sources:
            raise DataError("a multi-task batch source needs at least one task")
        self.sources = dict(sources)
        self.names = list(self.sources)
        self.p = np.array([probs[n] for n in self.names] if probs is not None
                          else [1.0 / len(self.names)] * len(self.names), dtype=np.float64)
        if self.p.min() < 0 or not np.isclose(self.p.sum(), 1.0):
            raise DataError(f"mixing probabilities must be >= 0 and sum to 1 (got {self.p})")

    def draw_task(self, rng: np.random.Generator) -> str:
        return self.names[int(rng.choice(len(self.names), p=self.p))]

    def batch(self, step: int, micro: int, rng: np.random.Generator) -> dict:
        name = self.draw_task(rng)
        return {**self.sources[name].batch(step, micro, rng), "task": name}

    def eval_batches(self) -> Iterator[dict]:
        streams = [self._tagged(name) for name in self.names]
        for group in itertools.zip_longest(*streams):
            yield from (b for b in group if b is not None)

    def _tagged(self, name: str) -> Iterator[dict]:
        for b in self.sources[name].eval_batches():
            yield {**b, "task": name}


def task_draws(source: MixedBatches, seed: int, steps: int, grad_accum: int = 1
               ) -> dict[str, int]:
    """How many micro-batches of each task a run of ``steps`` updates trains on: the
    draws :meth:`MixedBatches.batch` makes from the trainer's generators
    ``default_rng([seed, step, micro])`` (the task is the first thing each one draws)."""
    counts = dict.fromkeys(source.names, 0)
    for step in range(steps):
        for micro in range(grad_accum):
            counts[source.draw_task(np.random.default_rng([seed, step, micro]))] += 1
    return counts


class MultiTaskObjective:
    """``objective(model, batch) -> (w_i L_i, {}, B)`` for a batch of task ``i`` (its
    ``"task"`` entry): the task's single-task objective on the model's view of it, times
    its weight; ``n`` counts the batch's examples whatever the task (``unit = "ex"``)."""

    name = "multitask"
    unit = "ex"

    def __init__(self, objectives: Mapping[str, TaskObjective], weights: Mapping[str, float]):
        self.objectives, self.weights = dict(objectives), dict(weights)

    def __call__(self, model: MultiTaskModel, batch: dict):
        name = batch["task"]
        loss, _metrics, _n = self.objectives[name](model.view(name), batch)
        return self.weights[name] * loss, {}, batch["input_ids"].shape[0]


@dataclass
class TaskPart:
    """One task of a run: its fine-tuning recipe, splits, card, kind, labels, metric."""

    recipe: Any            # FinetuneRecipe
    splits: dict[str, list[dict]]
    card: dict | None
    kind: str              # classify | tag | relate
    labels: list[str]
    metric: str


@dataclass
class MultitaskResult:
    run_dir: Path
    predictors: dict[str, TaskPredictor]
    results: dict
    train: object          # lmforge.train.TrainResult
    trainable: tuple[int, int]


def load_task_part(recipe: MultitaskRecipe, name: str) -> TaskPart:
    """Task ``name``'s splits, labels and metric, as its fine-tuning recipe reads them."""
    r = recipe.task_recipe(name)
    splits, card, kind = load_splits(r)
    if kind not in TASK_METRICS:
        raise ConfigError(f"tasks.{name}: a {kind} task does not mix with the others; "
                          "fine-tune it alone")
    labels = label_names(kind, splits["train"], r.data.scheme,
                         r.data.train or f"world:{r.data.world}")
    try:
        metric = task_metric(name, kind, r.finetune.metric)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return TaskPart(r, splits, card, kind, labels, metric)


def build_multitask_model(recipe: MultitaskRecipe, parts: Mapping[str, TaskPart],
                          run_dir: Path, *, resume: bool = False, show_progress: bool = True,
                          log: Callable = print) -> tuple[MultiTaskModel, Any]:
    """The shared encoder (built, loaded or pretrained as the backbone says, on every
    task's training texts) with one head per task, and its tokenizer."""
    first = next(iter(parts.values())).recipe
    texts = [t for p in parts.values()
             for t in _texts(p.kind, p.splits["train"], p.recipe.head.typed_markers)]
    longest = max(p.recipe.data.max_length for p in parts.values())
    # The backbone stage of a single-task run, on the texts of every task (its throwaway
    # head reads the last position, which any encoder allows).
    shared = first.model_copy(update={
        "data": first.data.model_copy(update={"max_length": longest}),
        "head": HeadConfig(pooling="last")})
    proxy, tokenizer = build_task_model(shared, "classify", ["a", "b"],
                                        {"train": [{"text": t} for t in texts]}, run_dir,
                                        resume=resume, show_progress=show_progress, log=log)
    enc = proxy.config
    if enc.encoder == "gpt" and any(p.kind != "classify" or p.recipe.head.pooling != "last"
                                    for p in parts.values()):
        raise ConfigError("a GPT backbone reads text left to right: every task must "
                          "classify with head.pooling=last")
    heads = {name: {"task": p.kind, "labels": p.labels, **head_fields(p.recipe)}
             for name, p in parts.items()}
    torch.manual_seed(recipe.run.seed)
    try:
        model = MultiTaskModel(MultiTaskModelConfig(enc.encoder, enc.encoder_config, heads))
    except (TypeError, ValueError) as e:
        raise ConfigError(f"multi-task model: {e}") from None
    model.encoder.load_state_dict(proxy.encoder.state_dict())
    return model, tokenizer


def finetune_multitask(recipe: MultitaskRecipe, *, resume: bool = False,
                       show_progress: bool = True,
                       log: Callable[[str], None] = print) -> MultitaskResult:
    """Train the shared encoder and the heads on the mixture, keep the checkpoint with
    the best mean validation metric, evaluate every task's held-out splits."""
    from ..train import Trainer

    run_dir = start_run(recipe, resume)
    parts = {name: load_task_part(recipe, name) for name in recipe.tasks}
    model, tokenizer = build_multitask_model(recipe, parts, run_dir, resume=resume,
                                             show_progress=show_progress, log=log)
    trainable, total = _count(model)
    train_src, val_src, objectives = {}, {}, {}
    for name, p in parts.items():
        train_src[name], val_src[name], objectives[name] = task_sources(
            p.recipe, p.kind, p.labels, p.splits, model.view(name), tokenizer)
    m = recipe.mixing
    probs = mixing_probabilities({n: len(s.examples) for n, s in train_src.items()},
                                 m.strategy, m.temperature, m.limit)
    weights = {name: t.weight for name, t in recipe.tasks.items()}
    for name, p in parts.items():
        log(f"{name}: {p.kind}, {len(p.labels)} labels, {len(train_src[name].examples)} "
            f"training examples, p={probs[name]:.3f}, weight {weights[name]:g}, "
            f"metric {p.metric}")
    log(f"shared {model.config.encoder} encoder: {total:,} parameters (encoder and heads)")

    predictors = {name: TaskPredictor(model.view(name), tokenizer) for name in parts}

    def validation(_model) -> dict:
        out: dict[str, float] = {}
        for name, p in parts.items():
            ev = predictors[name].evaluate(p.splits["val"])["metrics"]
            out.update({f"val_{name}_{k}": v for k, v in ev.items()})
        out[SELECTION] = float(np.mean([out[f"val_{n}_{p.metric}"]
                                        for n, p in parts.items()]))
        return out

    cfg = recipe.train.model_copy(update={"best_metric": SELECTION, "best_mode": "max"})
    provenance = {"recipe": recipe.to_dict(), "task": "multitask", "mixing": probs,
                  "parameters": total}
    mixture = MixedBatches(train_src, probs)
    trainer = Trainer(model, cfg, mixture, MixedBatches(val_src),
                      run_dir, seed=recipe.run.seed, objective=MultiTaskObjective(
                          objectives, weights), evaluators=[validation],
                      tokenizer=tokenizer, provenance=provenance, resume=resume,
                      show_progress=show_progress)
    train_result, best = fit_and_load_best(trainer, model, run_dir)
    draws = task_draws(mixture, recipe.run.seed, train_result.steps, cfg.grad_accum)
    results: dict[str, Any] = {"tasks": {}, "metric": SELECTION,
                               "best_checkpoint": str(best), "parameters": total,
                               "mixing": {"strategy": m.strategy, "temperature": m.temperature,
                                          "limit": m.limit}}
    for name, p in parts.items():
        (run_dir / name).mkdir(exist_ok=True)
        ev = evaluate_splits(predictors[name], p.splits, p.card, run_dir / name, p.metric)
        results["tasks"][name] = {"task": p.kind, "metric": p.metric, "weight": weights[name],
                                  "p": probs[name], "micro_batches": draws[name],
                                  "train_examples": len(train_src[name].examples), **ev}
    write_json(run_dir / "results.json", results)
    log(multitask_table(results))
    return MultitaskResult(run_dir, predictors, results, train_result, (trainable, total))


def multitask_table(results: dict) -> str:
    """Each task's evaluated splits: its own metric beside the split's ceiling."""
    lines = [f"{'task':<12} {'split':<12} {'n':>6} {'metric':<16} {'value':>8} {'ceiling':>8}"]
    for name, t in results["tasks"].items():
        for split, r in t["splits"].items():
            ceil = r.get("ceiling")
            lines.append(f"{name:<12} {split:<12} {r['n']:>6} {t['metric']:<16} "
                         f"{r[t['metric']]:>8.4f} {'' if ceil is None else f'{ceil:.4f}':>8}")
    return "\n".join(lines)


__all__ = ["finetune_multitask", "mixing_probabilities", "MixedBatches", "MultiTaskObjective",
           "MultitaskResult", "multitask_table", "task_draws"]
