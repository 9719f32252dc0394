"""The model a compression starts from, and what it needs from the run that trained it.

Pruning, low-rank factorisation and distillation fine-tune the compressed model on the
data it was trained on, and every method is judged by the same quality measure before
and after. Both come from the parent's recipe: the ``config.yaml`` of its run folder, or
the ``recipe`` a checkpoint (or an earlier compressed folder) records in its
``lmforge.json``. Two kinds of parents:

- **a language model** (a pretraining run, ``arch`` gpt/...): training batches and the
  objective are the run's own (:func:`lmforge.train.tasks.build_task` on its prepared
  data); quality on the built-in world is the mean bits per held-out test sentence
  beside the true surprisal (:mod:`lmforge.eval.world`) and the share of grammatical
  samples; on other corpora the validation loss;
- **a task model** (a fine-tuning run, ``arch: task``; classify, tag or relate): the
  recipe's splits and batches (:func:`lmforge.tasks.finetune.task_sources`); quality is
  the task's metrics on the test split, with its ceiling.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import ConfigError
from ..io import read_json

LM_TEST_SENTENCES = 500
GRAMMAR_SAMPLES = 50


@dataclass
class Parent:
    """A loaded parent: its model folder, model, tokenizer and recipe."""

    source: Path  # what the user named: a run folder or a model folder
    folder: Path  # the model folder (a run's best checkpoint)
    model: nn.Module
    tokenizer: Any
    recipe: Any  # lmforge.config.Recipe or lmforge.tasks.config.FinetuneRecipe
    run_dir: Path | None  # the run folder, when the parent is (in) one
    _splits: dict | None = field(default=None, repr=False)
    card: dict | None = field(default=None, repr=False)  # a world task set's card

    @property
    def kind(self) -> str:
        """``"task"`` for a fine-tuned task model, ``"lm"`` otherwise."""
        return "task" if getattr(self.model.config, "task", None) else "lm"

    @property
    def arch(self) -> str:
        from ..models import arch_of

        return arch_of(self.model.config)

    def checksum(self) -> str:
        """SHA-256 of the parent's weights file."""
        from ..models.base import WEIGHTS, sha256_file

        return sha256_file(self.folder / WEIGHTS)

    def fresh_model(self) -> nn.Module:
        """Another copy of the parent model, loaded from its folder (eval mode)."""
        from ..models.base import load_model_folder

        return load_model_folder(self.folder)

    # ------------------------------------------------------------------ data

    def splits(self) -> dict[str, list[dict]]:
        """A task parent's records by split (rendered once)."""
        if self.kind != "task":
            raise ConfigError("only a task model has labelled splits")
        if self._splits is None:
            from ..tasks.datasets import load_splits

            self._splits, self.card, _ = load_splits(self.recipe)
        return self._splits

    def sources(self, model: nn.Module) -> tuple[Any, Any, Any]:
        """``(train batches, validation batches, objective)`` of the parent's run, encoded
        for ``model`` (which may be smaller than the parent but reads the same tokens)."""
        if self.kind == "task":
            from ..tasks.finetune import task_sources

            cfg = model.config
            if cfg.task == "extract":
                raise ConfigError("compressing an extractive QA model is not supported "
                                  "yet; classify, tag and relate models are")
            return task_sources(self.recipe, cfg.task, list(cfg.labels), self.splits(),
                                model, self.tokenizer)
        from ..pretrain import prepare_run_data
        from ..train.tasks import build_task

        run_dir = self.run_dir or self.recipe.run.path
        if not (run_dir / "data.json").is_file():
            raise ConfigError(f"{self.source}: its run folder {run_dir} (with the prepared "
                              "training data) is gone; compress from the run folder")
        data_dir = prepare_run_data(self.recipe, run_dir, show_progress=False,
                                    log=lambda _m: None)
        return build_task(self.recipe, data_dir, self.tokenizer, model)

    def batches(self, n: int, model: nn.Module | None = None) -> list[Any]:
        """``n`` training batches (importance scores, calibration), deterministic."""
        train, _, _ = self.sources(model if model is not None else self.model)
        seed = self.recipe.run.seed
        return [train.batch(step, 0, np.random.default_rng([seed, step, 0]))
                for step in range(n)]

    def loss_fn(self, model: nn.Module | None = None) -> Callable[[nn.Module, Any], torch.Tensor]:
        """``loss(model, batch)``: the parent's training objective, loss only."""
        _, _, objective = self.sources(model if model is not None else self.model)
        return lambda m, batch: objective(m, batch)[0]

    # ------------------------------------------------------------------ quality

    def quality(self, model: nn.Module) -> dict[str, Any]:
        """The parent's quality measure of ``model`` (see the module docstring)."""
        model.eval()
        with torch.no_grad():
            if self.kind == "task":
                return self._task_quality(model)
            return self._lm_quality(model)

    @property
    def headline(self) -> tuple[str, bool]:
        """The figure one number judges a model by, and whether higher is better:
        bits per sentence for a language model (validation loss off the world),
        accuracy for a classifier, entity F1 for a tagger, F1 for relations."""
        if self.kind == "lm":
            return ("bits_per_sentence" if self.recipe.data.corpus == "world"
                    else "val_loss"), False
        return {"tag": "entity_f1", "relate": "f1"}.get(self.model.config.task,
                                                         "accuracy"), True

    def score(self, model: nn.Module, sentences: int = 200) -> float:
        """The headline figure of ``model``, cheaply: no samples for grammaticality, and
        ``sentences`` test sentences for bits (per-layer sensitivity runs it often)."""
        key, _ = self.headline
        model.eval()
        with torch.no_grad():
            if key == "bits_per_sentence":
                from ..corpora import lm_corpus
                from ..eval.world import world_bits

                test = lm_corpus("test", sentences, seed=self.recipe.run.seed)
                return world_bits(model, self.tokenizer, test).model_bits
            return float(self.quality(model)[key])

    def _task_quality(self, model: nn.Module) -> dict[str, Any]:
        from ..tasks.predictor import TaskPredictor

        test = self.splits().get("test") or self.splits()["val"]
        ev = TaskPredictor(model, self.tokenizer).evaluate(test)
        ceiling = (self.card or {}).get("ceiling", {}).get("test")
        return {**ev["metrics"], "n": ev["n"], "ceiling": ceiling}

    def _lm_quality(self, model: nn.Module) -> dict[str, Any]:
        data = self.recipe.data
        if data.corpus == "world":
            from ..corpora import lm_corpus
            from ..eval.world import grammaticality, world_bits

            test = lm_corpus("test", LM_TEST_SENTENCES, seed=self.recipe.run.seed)
            bits = world_bits(model, self.tokenizer, test)
            gram = grammaticality(model, self.tokenizer, n=GRAMMAR_SAMPLES,
                                  temperature=0.8, seed=self.recipe.run.seed)
            return {"bits_per_sentence": bits.model_bits, "true_bits": bits.true_bits,
                    "bits_ratio": bits.ratio, "grammatical": gram.share, "n": bits.n}
        _, val, objective = self.sources(model)
        total = count = 0.0
        for batch in itertools.islice(val.eval_batches(), self.recipe.train.eval_batches):
            loss, _, n = objective(model, batch)
            total += float(loss) * float(n)
            count += float(n)
        return {"val_loss": total / max(count, 1.0), "n": int(count)}

    # ------------------------------------------------------------------ training

    def finetune(self, model: nn.Module, run_dir: Path, steps: int, *,
                 lr: float | None = None, objective: Any = None,
                 callbacks: Iterable[Any] = (), resume: bool = False,
                 show_progress: bool = True, provenance: dict | None = None,
                 optimizer: str | None = None) -> Any:
        """Train ``model`` for ``steps`` on the parent's data (its objective unless
        ``objective`` is given), in ``run_dir``; the parent recipe's optimiser settings,
        with ``lr`` replacing its peak rate (``optimizer`` its optimizer) and a warm-up of at
        most a tenth of the steps.
        Returns the trainer's result; ``model`` ends with the last step's weights."""
        from ..train import Trainer

        train, val, own_objective = self.sources(model)
        t = self.recipe.train
        cfg = t.model_copy(update={
            "max_steps": steps, "lr": lr if lr is not None else t.lr,
            "min_lr": min(t.min_lr, lr if lr is not None else t.lr),
            "warmup_steps": min(t.warmup_steps, steps // 10),
            "eval_every": max(1, min(t.eval_every, steps)),
            "ckpt_every": max(1, min(t.ckpt_every, steps // 4)),
            "keep_last": 1, "early_stop_patience": None, "best_metric": "val_loss",
            "best_mode": "min", "optimizer": optimizer or t.optimizer})
        trainer = Trainer(model, cfg, train, val, run_dir, seed=self.recipe.run.seed,
                          objective=objective or own_objective, callbacks=callbacks,
                          tokenizer=self.tokenizer, resume=resume,
                          show_progress=show_progress,
                          provenance={"recipe": self.recipe.to_dict(), **(provenance or {})})
        return trainer.fit()


def _recipe_of(source: Path, folder: Path, arch: str) -> tuple[Any, Path | None]:
    """The parent's recipe and run folder: ``config.yaml`` of the run, else the recipe
    that ``lmforge.json`` of the model folder records."""
    from ..config import build_recipe, load_yaml
    from ..tasks.config import build_finetune_recipe

    build = build_finetune_recipe if arch == "task" else build_recipe
    for run in (source, folder.parent.parent):
        if (run / "config.yaml").is_file() and (run / "checkpoints").is_dir():
            return build(load_yaml(run / "config.yaml")), run
    meta = folder / "lmforge.json"
    raw = read_json(meta).get("recipe") if meta.is_file() else None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} records no training recipe (no run config.yaml, no "
                          "'recipe' in lmforge.json): name a run folder trained by lmforge")
    return build(raw), None


def load_parent(path: str | Path) -> Parent:
    """The parent behind ``path``: a run folder (its best checkpoint), a checkpoint, or an
    earlier compressed folder. Raises :class:`ConfigError` for a folder lmforge cannot
    fine-tune from (no recipe) and :class:`CheckpointError` for a missing or corrupt one."""
    from ..hub import load_pretrained, resolve_model_dir
    from ..models import arch_of
    from ..tasks import model as _task_model  # noqa: F401  (registers arch "task")

    source = Path(path)
    folder = resolve_model_dir(source)
    model, tokenizer = load_pretrained(source, require_tokenizer=True)
    arch = arch_of(model.config)
    recipe, run_dir = _recipe_of(source, folder, arch)
    return Parent(source, folder, model, tokenizer, recipe, run_dir)


HEADLINE = ("accuracy", "f1_macro", "f1", "entity_f1", "ceiling", "bits_per_sentence",
            "true_bits", "grammatical", "val_loss")


def describe(quality: dict[str, Any], keys: Sequence[str] = HEADLINE) -> str:
    """One line of the headline figures in ``quality`` (floats to 4 places)."""
    items = [(k, quality[k]) for k in keys if k in quality]
    return ", ".join(f"{k} {v:.4f}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in items if v is not None)
