"""Training: the :class:`Trainer`, objectives, batch sources, AdamW and schedules,
checkpoints, callbacks and the loss plot.

>>> from lmforge.train import Trainer, CausalLMObjective, LMBatchSource
>>> trainer = Trainer(model, cfg, train_src, val_src, run_dir, seed=1337)  # doctest: +SKIP
>>> result = trainer.fit()                                                 # doctest: +SKIP

See ``docs/training.md`` for the maths and the run-folder layout.
"""

from .callbacks import Callback, CallbackList
from .checkpoint import (
    best_checkpoint,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    read_trainer_state,
    verify_checkpoint,
)
from .metrics_log import read_metrics
from .objectives import CausalLMObjective, Objective
from .optim import LRSchedule, build_optimizer, param_groups
from .plots import plot_loss
from .precision import bf16_supported, cpu_has_fast_bf16, resolve_device, resolve_precision
from .sources import BatchSource, LMBatchSource
from .trainer import Trainer, TrainResult

__all__ = [
    "Trainer", "TrainResult", "Objective", "CausalLMObjective", "BatchSource",
    "LMBatchSource", "Callback", "CallbackList", "LRSchedule", "build_optimizer",
    "param_groups", "latest_checkpoint", "best_checkpoint", "list_checkpoints",
    "load_checkpoint", "verify_checkpoint", "read_trainer_state", "read_metrics",
    "plot_loss", "bf16_supported", "cpu_has_fast_bf16", "resolve_device",
    "resolve_precision",
]
