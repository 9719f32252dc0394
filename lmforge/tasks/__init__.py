"""Tasks: a task is a data format, a head, a loss, a metric and a predictor, trained by
the same :class:`~lmforge.train.Trainer` as pretraining.

- :mod:`.config`: fine-tuning recipes; :mod:`.datasets`: their splits
- :mod:`.encode`: records -> token ids and batches; :mod:`.model`: encoder + head
- :mod:`.evaluation`: loss, predictions, metrics; :mod:`.predictor`: ``load_task_model``
- :mod:`.finetune`: the pipeline; :mod:`.classical_linear`: TF-IDF / embedding baselines

Names are imported lazily, so ``import lmforge.tasks`` stays cheap.
"""

from __future__ import annotations

import importlib
from pathlib import Path

_WHERE = {"load_task_model": "predictor", "TaskPredictor": "predictor",
          "finetune": "finetune", "FinetuneResult": "finetune",
          "load_finetune_recipe": "config", "FinetuneRecipe": "config",
          "TaskModel": "model", "TaskModelConfig": "model"}


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def is_task_model(path: str | Path) -> bool:
    """Does ``path`` (a run or model folder) hold a fine-tuned task model?"""
    from ..errors import LmforgeError
    from ..hub import resolve_model_dir
    from ..io import read_json

    try:
        cfg = resolve_model_dir(path) / "config.json"
        return cfg.is_file() and read_json(cfg).get("arch") == "task"
    except LmforgeError:
        return False


def merge_task_lora(run: str | Path, out: str | Path) -> Path:
    """Fold a LoRA run's adapter into its weights and save a plain model folder."""
    from ..errors import ConfigError
    from ..models.base import save_model_folder
    from ..nn.lora import merge_lora
    from .predictor import load_task_model

    pred = load_task_model(run)
    model = pred.model
    if not model.config.lora:
        raise ConfigError(f"{run} was not trained with LoRA (finetune.strategy=lora)")
    merge_lora(model.encoder)
    model.config.lora = None
    out = Path(out)
    save_model_folder(model, out, provenance={"merged_from": str(run)})
    pred.tokenizer.save(out)
    return out


__all__ = [*_WHERE, "is_task_model", "merge_task_lora"]
