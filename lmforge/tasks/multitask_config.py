"""Multi-task recipes (``task: multitask``), read by ``lmforge finetune``::

    task:      multitask
    run:       name, output folder, seed
    backbone:  the shared encoder, as in a fine-tuning recipe (a folder, a pretraining
               recipe run first, or an encoder trained from scratch)
    tasks:     name -> {data, head, weight, metric}: each task's data (a built-in world
               set or files, the ``data:`` section of a fine-tuning recipe), its head
               (``head:``), its loss weight and its selection metric
    mixing:    how a micro-batch's task is drawn: proportional, temperature or uniform
               (:func:`lmforge.tasks.multitask.mixing_probabilities`)
    train:     the trainer's options (:class:`~lmforge.train.config.TrainConfig`)

Each task is checked and run as the fine-tuning recipe :meth:`MultitaskRecipe.task_recipe`
gives (its data and head with the shared run, backbone and train sections), so a task
behaves as it would alone: same data options, encoding, loss and metrics. The
understanding tasks classify, tag and relate mix; extractive QA does not (its windows,
loss and decoding are its own), nor do the scikit-learn baselines or the fine-tuning
strategies other than full (every weight trains); a run trains in one process
(``train.distributed: none``).
"""

from __future__ import annotations

import re
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from ..config import RunConfig, validate_recipe
from ..train.config import TrainConfig
from ..validation import Section, format_validation_error
from .config import (
    TASK_OF_WORLD,
    BackboneConfig,
    FinetuneConfig,
    FinetuneRecipe,
    HeadConfig,
    TaskDataConfig,
)
from .evaluation import TASK_METRICS

TASK_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class MultitaskTaskConfig(Section):
    data: TaskDataConfig
    head: HeadConfig = Field(default_factory=HeadConfig)
    weight: float = Field(1.0, gt=0, description="the task's loss is multiplied by this")
    metric: str = Field("auto", description="the task's validation metric (auto: f1_macro, "
                        "entity_f1 or relation_f1 by task); the run keeps the checkpoint "
                        "with the best mean of the tasks' metrics")


class MixingConfig(Section):
    strategy: Literal["proportional", "temperature", "uniform"] = Field(
        "proportional", description="a micro-batch's task is drawn with probability "
        "proportional to n_i (proportional), n_i^(1/T) (temperature) or 1 (uniform), n_i "
        "its training examples")
    temperature: float | None = Field(None, gt=0, description="T of strategy temperature "
                                      "(1: proportional; large: uniform)")
    limit: int | None = Field(None, ge=1, description="K: a task's n_i counts at most K "
                              "examples (Raffel et al.'s examples-proportional limit)")

    @model_validator(mode="after")
    def _temperature_for_temperature(self) -> MixingConfig:
        if (self.strategy == "temperature") != (self.temperature is not None):
            raise ValueError("mixing.temperature is set exactly when mixing.strategy is "
                             "temperature")
        return self


class MultitaskRecipe(Section):
    task: Literal["multitask"]
    run: RunConfig = Field(default_factory=RunConfig)
    backbone: BackboneConfig
    tasks: dict[str, MultitaskTaskConfig] = Field(description="name -> the task's data, "
                                                  "head, loss weight and metric")
    mixing: MixingConfig = Field(default_factory=MixingConfig)
    train: TrainConfig = Field(default_factory=lambda: TrainConfig(
        max_steps=1500, batch_size=32, lr=5e-4, min_lr=0.0, warmup_steps=50,
        weight_decay=0.01, beta2=0.999, eval_every=250, ckpt_every=500, keep_last=1))

    @field_validator("tasks")
    @classmethod
    def _named_tasks(cls, tasks: dict[str, MultitaskTaskConfig]
                     ) -> dict[str, MultitaskTaskConfig]:
        if not tasks:
            raise ValueError("name at least one task (name: {data, head, weight, metric})")
        for name in tasks:
            if not TASK_NAME.match(name):
                raise ValueError(f"task name {name!r}: use lower-case letters, digits and _ "
                                 "(it names metrics and folders)")
        return tasks

    @model_validator(mode="after")
    def _tasks_mix(self) -> MultitaskRecipe:
        if self.train.distributed != "none":
            raise ValueError("train.distributed: a multi-task run trains in one process")
        if self.backbone.classical is not None:
            raise ValueError("backbone.classical fits one scikit-learn model per task; a "
                             "multi-task run shares an encoder")
        for name, t in self.tasks.items():
            if t.data.world == "qa" or t.data.task == "extract":
                raise ValueError(f"tasks.{name}: extractive QA does not mix with the other "
                                 "tasks; fine-tune it alone")
            if t.data.world is not None:  # else known once the files are read
                task_metric(name, TASK_OF_WORLD[t.data.world], t.metric)
            try:
                self.task_recipe(name)
            except ValidationError as e:
                why = format_validation_error(e).removeprefix("config error: ")
                raise ValueError(f"tasks.{name}: {why}") from None
        return self

    def task_recipe(self, name: str) -> FinetuneRecipe:
        """Task ``name`` as a fine-tuning recipe: its data, head and metric with the shared
        run, backbone and train sections (one micro-batch a step: the mixture draws each
        micro-batch's task, :class:`~lmforge.tasks.multitask.MixedBatches`)."""
        t = self.tasks[name]
        return FinetuneRecipe(run=self.run, data=t.data, backbone=self.backbone, head=t.head,
                              finetune=FinetuneConfig(metric=t.metric),
                              train=self.train.model_copy(update={"grad_accum": 1}))

    def to_dict(self) -> dict:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)


def task_metric(name: str, kind: str, metric: str) -> str:
    """Task ``name``'s metric: ``metric``, or for ``auto`` the default of its ``kind``
    (classify, tag, relate); a ValueError when ``kind`` has no such metric."""
    from .finetune import DEFAULT_METRIC

    if metric == "auto":
        return DEFAULT_METRIC[kind]
    if metric not in TASK_METRICS[kind]:
        raise ValueError(f"tasks.{name}.metric={metric!r} is not a {kind} metric; "
                         f"allowed: auto, {', '.join(TASK_METRICS[kind])}")
    return metric


def build_multitask_recipe(raw: dict) -> MultitaskRecipe:
    return validate_recipe(MultitaskRecipe, raw)
