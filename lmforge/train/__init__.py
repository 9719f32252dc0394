"""Training: the :class:`Trainer`, objectives, batch sources, AdamW and schedules,
checkpoints, callbacks and the loss plot.

>>> from lmforge.train import Trainer, CausalLMObjective, LMBatchSource
>>> trainer = Trainer(model, cfg, train_src, val_src, run_dir, seed=1337)  # doctest: +SKIP
>>> result = trainer.fit()                                                 # doctest: +SKIP

See ``docs/training.md`` for the maths and the run-folder layout.
"""

from __future__ import annotations

import importlib

# Lazy, so that importing one light module (``lmforge.train.config`` for a recipe's
# ``train:`` section) does not load torch and every trainer module with it.
_WHERE = {
    "Callback": "callbacks", "CallbackList": "callbacks",
    "best_checkpoint": "checkpoint", "latest_checkpoint": "checkpoint",
    "list_checkpoints": "checkpoint", "load_checkpoint": "checkpoint",
    "read_trainer_state": "checkpoint", "verify_checkpoint": "checkpoint",
    "TrainConfig": "config", "read_metrics": "metrics_log",
    "CausalLMObjective": "objectives", "Objective": "objectives",
    "LRSchedule": "optim", "build_optimizer": "optim", "param_groups": "optim",
    "plot_loss": "plots", "bf16_supported": "precision", "cpu_has_fast_bf16": "precision",
    "resolve_device": "precision", "resolve_precision": "precision",
    "BatchSource": "sources", "LMBatchSource": "sources",
    "Trainer": "trainer", "TrainResult": "trainer",
}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Trainer", "TrainResult", "TrainConfig", "Objective", "CausalLMObjective", "BatchSource",
    "LMBatchSource", "Callback", "CallbackList", "LRSchedule", "build_optimizer",
    "param_groups", "latest_checkpoint", "best_checkpoint", "list_checkpoints",
    "load_checkpoint", "verify_checkpoint", "read_trainer_state", "read_metrics",
    "plot_loss", "bf16_supported", "cpu_has_fast_bf16", "resolve_device",
    "resolve_precision",
]
