r"""One encoder shared by several task heads: the model of ``task: multitask`` recipes.

The encoder turns a batch's token ids into hidden states ``H`` (B, T, d) exactly as in a
single-task :class:`~lmforge.tasks.model.TaskModel`; each task ``i`` has its own head
(pooling, dropout, ``W_c^{(i)}``, and a CRF for a tagging task with ``head: crf``), the
:class:`~lmforge.tasks.model.TaskHead` of :mod:`lmforge.tasks.model`::

    H        = encoder(batch)                       shared by every task
    logits_i = head_i(H)                            the formulas of lmforge.tasks.model

A batch belongs to one task (its ``"task"`` entry names it), so ``forward(batch)`` runs
the encoder once and that task's head only. :meth:`MultiTaskModel.view` shows one task
as a ``TaskModel`` (``config``, ``forward``, ``crf``, ``decode_tags``), so the
single-task objective, predictor and metrics apply unchanged.

Registered as ``arch: multitask``: checkpoints are ordinary model folders whose
``config.json`` holds the encoder's config and each head's :class:`TaskModelConfig`
fields, under ``tasks``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor, nn

from ..errors import CheckpointError, LmforgeError
from ..models import register_model
from ..models.base import PretrainedMixin
from .model import SCRATCH_ENCODERS, TaskHead, TaskModelConfig, build_encoder, encoder_states
from .predictor import TaskPredictor

MULTITASK_KINDS = ("classify", "tag", "relate")
_ENCODER_FIELDS = ("encoder", "encoder_config", "lora")


@dataclass
class MultiTaskModelConfig:
    encoder: str = "bert"                          # bert | deberta_v2 | gpt | textcnn | bilstm
    encoder_config: dict = field(default_factory=dict)
    tasks: dict[str, dict] = field(default_factory=dict)  # name -> TaskModelConfig fields

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("a multi-task model needs at least one task")
        for name, fields in self.tasks.items():
            if not name.isidentifier():
                raise ValueError(f"task name {name!r} must be an identifier (letters, "
                                 "digits, _)")
            shared = sorted(set(fields) & set(_ENCODER_FIELDS))
            if shared:
                raise ValueError(f"task {name}: {shared[0]} belongs to the shared encoder")
            if self.task_config(name).task not in MULTITASK_KINDS:
                raise ValueError(f"task {name}: a multi-task head is one of "
                                 f"{', '.join(MULTITASK_KINDS)}")

    def task_config(self, name: str) -> TaskModelConfig:
        """Task ``name`` as a single-task config (the shared encoder's fields included)."""
        return TaskModelConfig(encoder=self.encoder, encoder_config=self.encoder_config,
                               **self.tasks[name])


class TaskView:
    """Task ``name`` of a :class:`MultiTaskModel` seen as a ``TaskModel``: what the
    objective (:class:`~lmforge.tasks.evaluation.TaskObjective`) and the predictor
    (:class:`~lmforge.tasks.predictor.TaskPredictor`) read. It holds no weights of its
    own; its training flag is the shared model's."""

    def __init__(self, model: MultiTaskModel, name: str):
        self.model, self.name = model, name
        self.config = model.config.task_config(name)

    @property
    def head(self) -> TaskHead:
        return self.model.heads[self.name]

    @property
    def crf(self):
        return self.head.crf

    @property
    def training(self) -> bool:
        return self.model.training

    def __call__(self, batch: dict) -> Tensor:
        return self.model(batch, task=self.name)

    def decode_tags(self, emissions: Tensor, word_mask: Tensor) -> list[list[int]]:
        return self.head.decode_tags(emissions, word_mask)

    def parameters(self):
        return self.model.parameters()

    def train(self, mode: bool = True) -> TaskView:
        self.model.train(mode)
        return self

    def eval(self) -> TaskView:
        return self.train(False)


class MultiTaskModel(PretrainedMixin, nn.Module):
    """``forward(batch, task=None)`` -> the logits of ``task`` (default:
    ``batch["task"]``), shaped as :class:`~lmforge.tasks.model.TaskModel`'s.
    ``skip_padding`` is :class:`~lmforge.tasks.model.TaskModel`'s (on while it trains)."""

    skip_padding = False

    def __init__(self, config: MultiTaskModelConfig):
        super().__init__()
        self.config = config
        self.encoder, d = build_encoder(config.encoder, config.encoder_config)
        self.scratch = config.encoder in SCRATCH_ENCODERS
        self.heads = nn.ModuleDict({name: TaskHead(config.task_config(name), d, self.encoder)
                                    for name in config.tasks})
        self._views: dict[str, TaskView] = {}

    @property
    def task_names(self) -> list[str]:
        return list(self.config.tasks)

    def forward(self, batch: dict, task: str | None = None) -> Tensor:
        name = task if task is not None else batch["task"]
        head = self.heads[name]
        h = encoder_states(self.encoder, batch, self.scratch, head.cls_only,
                           self.skip_padding)  # (B, T, d)
        return head.head_logits(h, batch, self.encoder)

    def view(self, name: str) -> TaskView:
        if name not in self.heads:
            raise LmforgeError(f"no task {name!r} in this model (its tasks: "
                               f"{', '.join(self.task_names)})")
        if name not in self._views:
            self._views[name] = TaskView(self, name)
        return self._views[name]

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


register_model("multitask", MultiTaskModel, MultiTaskModelConfig)


def is_multitask_model(path: str | Path) -> bool:
    """Does ``path`` (a run or model folder) hold a multi-task model?"""
    from ..hub import resolve_model_dir
    from ..io import read_json

    try:
        cfg = resolve_model_dir(path) / "config.json"
        return cfg.is_file() and read_json(cfg).get("arch") == "multitask"
    except LmforgeError:
        return False


def task_predictor(path: str | Path, task: str | None = None,
                   device: str = "cpu") -> TaskPredictor:
    """The predictor of one task of a multi-task run or checkpoint (``task``, required
    there), or, for any other task run, :func:`~lmforge.tasks.predictor.load_task_model`
    (``task`` must then be None)."""
    from ..hub import resolve_model_dir
    from ..models.base import load_model_folder
    from ..tokenize import Tokenizer
    from .predictor import load_task_model

    if not is_multitask_model(path):
        if task is not None:
            raise LmforgeError(f"--task {task}: {path} is not a multi-task run (a task: "
                               "multitask recipe makes those)")
        return load_task_model(path, device)
    folder = resolve_model_dir(path)
    model = load_model_folder(folder, device)
    if task is None:
        raise LmforgeError(f"{path} is a multi-task run: choose a task with --task (one of "
                           f"{', '.join(model.task_names)})")
    if not (folder / "tokenizer.json").is_file():
        raise CheckpointError(f"{folder} has no tokenizer.json")
    return TaskPredictor(model.view(task), Tokenizer.load(folder))
