"""The training loop, written by hand (it is one of the things lmforge teaches).

One update (``step`` counts completed updates)::

    lr      = schedule(step)
    for micro in range(grad_accum):
        batch = train.batch(step, micro, default_rng([seed, step, micro]))
        loss_m, metrics_m, n_m = objective(model, batch)        # under autocast
        backward(loss_m * n_m)                                   # token-weighted sum
    grads  /= sum(n_m)               # = gradient of the mean loss over all tokens
    norm    = clip_grad_norm_(grads, grad_clip)
    stop if loss or norm is not finite                           # nothing is applied
    AdamW step; zero grads (set_to_none)

then, as due: a ``metrics.jsonl`` line (``log_every``), callbacks, evaluation
(``eval_every``, every checkpoint and the end), early stopping, a checkpoint
(``ckpt_every`` and the end) and ``loss.png``.

The trainer is generic: the objective turns a batch into a loss, the batch source makes
the batches, callbacks and evaluators add behaviour. See ``docs/training.md``.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError, ConfigError, LmforgeError, TrainingError
from . import checkpoint as ck
from .callbacks import CallbackList
from .config import TrainConfig
from .metrics_log import MetricsLog, NullLog, read_metrics, truncate_after
from .muon import MuonAdamW
from .objectives import CausalLMObjective, Objective
from .optim import LRSchedule, build_optimizer, param_groups, set_lr
from .plots import plot_loss
from .precision import (
    autocast,
    precision_from_name,
    precision_name,
    resolve_device,
    resolve_precision,
)
from .sharded_checkpoint import (
    is_sharded,
    load_full_state,
    load_sharded_state,
    save_sharded_checkpoint,
)
from .sources import BatchSource

METRICS = "metrics.jsonl"
LOSS_PNG = "loss.png"
PLOT_EVERY_S = 30.0  # loss.png is redrawn after an evaluation at most this often (and at the end)

# Train-config fields that may change on resume without changing what the run computes.
_RESUME_SAFE = {"max_steps", "log_every", "eval_every", "eval_batches", "ckpt_every",
                "keep_last", "early_stop_patience", "early_stop_min_delta", "threads",
                "compile", "device", "distributed", "dist_timeout", "pp_microbatches",
                "pp_schedule"}


@dataclass
class TrainResult:
    steps: int                      # completed optimizer updates
    best_val_loss: float | None
    best_step: int | None
    last_checkpoint: Path | None
    stopped_reason: str             # 'max_steps' | 'early_stop' | 'nan' | 'callback:<why>'
    tokens_per_sec: float           # training throughput of this session
    final_val_loss: float | None = None
    tokens_seen: int = 0
    elapsed: float = 0.0            # seconds, summed over resumed sessions
    best_checkpoint: Path | None = None
    best_value: float | None = None  # the best value of cfg.best_metric (val_loss by default)


def _to_device(batch: Any, device: torch.device, non_blocking: bool = True) -> Any:
    """The tensors in nested dicts/lists/tuples moved to ``device`` (blocking copies for
    what is about to be saved: a non-blocking copy to the host may not have landed)."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: _to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(v, device, non_blocking) for v in batch)
    return batch


def _as_float(v: Any) -> float:
    return float(v.detach().float().item()) if isinstance(v, torch.Tensor) else float(v)


def _local(t: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a DTensor (the tensor itself otherwise)."""
    to_local = getattr(t, "to_local", None)
    return to_local() if callable(to_local) else t


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


class Trainer:
    """Train ``model`` with ``objective`` on batches from ``train``.

    Parameters: ``cfg`` holds every option (:class:`~lmforge.train.config.TrainConfig`);
    ``val`` gives evaluation batches (None: no evaluation, no early stopping, no "best");
    ``run_dir`` receives ``metrics.jsonl``, ``loss.png`` and ``checkpoints/``; ``seed``
    fixes the data order and dropout; ``evaluators`` are ``fn(model) -> {name: float}``
    run at every evaluation; ``callbacks`` see the hooks of
    :mod:`lmforge.train.callbacks`; ``tokenizer`` (anything with ``.save(folder)``) is
    saved in every checkpoint; ``provenance`` is merged into each checkpoint's
    ``lmforge.json``; ``resume=True`` continues from the latest checkpoint in ``run_dir``.
    """

    def __init__(self, model: nn.Module, cfg: TrainConfig, train: BatchSource,
                 val: BatchSource | None, run_dir: str | Path, *, seed: int,
                 objective: Objective | None = None,
                 evaluators: Sequence[Callable[[nn.Module], dict]] = (),
                 callbacks: Iterable[Any] = (), tokenizer: Any = None,
                 provenance: dict | None = None, resume: bool = False,
                 show_progress: bool = True):
        if not isinstance(cfg, TrainConfig):
            raise ConfigError(f"Trainer needs a TrainConfig, got {type(cfg).__name__}")
        if not callable(getattr(train, "batch", None)):
            raise ConfigError(f"train must be a batch source with .batch(step, micro, rng); "
                              f"got {type(train).__name__}")
        if val is not None and not callable(getattr(val, "eval_batches", None)):
            raise ConfigError(f"val must be a batch source with .eval_batches(); "
                              f"got {type(val).__name__}")
        if not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"seed must be a non-negative integer (got {seed!r})")
        self.cfg = cfg
        self.train_source, self.val_source = train, val
        self.run_dir = Path(run_dir)
        self.seed = seed
        self.objective = objective if objective is not None else CausalLMObjective()
        self.unit = getattr(self.objective, "unit", "tok")  # what n_tokens counts
        self.evaluators = list(evaluators)
        self.callbacks = CallbackList(callbacks)
        self.tokenizer = tokenizer
        self.provenance = dict(provenance or {})
        self.resume = resume

        self.device = resolve_device(cfg.device)
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        self.amp_dtype = resolve_precision(cfg.precision, self.device)
        self.par = self._parallelism()
        self.show_progress = show_progress and self.par.is_main
        # NaN/inf checks: every step on the CPU (a cheap sync); on GPUs only at logging
        # steps and before evaluations/checkpoints, to keep the device queue full.
        self.check_every_step = self.device.type != "cuda"
        self._check_vocab(model, train)
        model.to(self.device)
        if any(p.is_floating_point() and p.dtype != torch.float32 for p in model.parameters()):
            model.float()  # fp32 master weights; autocast does the low-precision compute
        self.model = model
        # DDP wraps the model (train_model); FSDP and TP shard it in place
        self.train_model: nn.Module = self.par.wrap(model)
        self.train_source = self.par.split_source(train)
        self.local = self.par.local_module(model, self.train_model)  # what this rank trains
        self.params = [p for g in param_groups(self.local, 0.0) for p in g["params"]]
        # Muon's Newton-Schulz products in bf16 exactly when the run trains under bf16
        self.optimizer = self.par.prepare_optimizer(
            build_optimizer(self.local, cfg, ns_dtype=self.amp_dtype or torch.float32))
        self._add_objective_parameters()
        self._attach_privacy()
        self.schedule = LRSchedule.from_config(cfg)

        # Progress state (restored on resume).
        self.step = 0
        self.tokens_seen = 0
        self.best_val_loss: float | None = None
        self.best_step: int | None = None
        self.best_score: float | None = None  # of cfg.best_metric, lower is better
        self.es_reference: float | None = None
        self.evals_without_improvement = 0
        self.eval_history: list[dict] = []
        self.elapsed_before = 0.0
        self.last_checkpoint: Path | None = None
        self.last_val_loss: float | None = None
        self._ckpt_val: dict[Path, float | None] = {}
        self._stop_reason: str | None = None
        self._rng_to_restore: dict | None = None
        self._bar: Any = None

        ck.clean_stale(self.run_dir)
        if resume:
            self._restore()
            if self.dp is not None:
                self.dp.restore(self.step)
        else:
            existing = ck.latest_checkpoint(self.run_dir)
            if existing is not None:
                raise TrainingError(f"{self.run_dir} already holds checkpoints (latest "
                                    f"{existing.name}); resume it (--resume) or choose "
                                    "another run folder")

    # ------------------------------------------------------------------ setup

    def _parallelism(self) -> Any:
        """The strategy of ``train.distributed`` (joining torchrun's process group)."""
        from ..distributed.env import init_distributed
        from ..distributed.strategy import make_strategy

        name = self.cfg.distributed
        if name == "none":
            return make_strategy("none", None)
        if callable(getattr(self.objective, "extra_parameters", None)):
            raise ConfigError(f"the {type(self.objective).__name__} objective trains "
                              f"parameters of its own and cannot run with "
                              f"train.distributed={name}")
        if name == "pp" and not isinstance(self.objective, CausalLMObjective):
            raise ConfigError(f"train.distributed=pp trains causal-LM GPTs; the "
                              f"{type(self.objective).__name__} objective cannot be "
                              "pipelined")
        env = init_distributed(self.device, self.cfg.dist_timeout)
        self.device = env.device
        return make_strategy(name, env, param_dtype=self.amp_dtype,
                             pp_microbatches=self.cfg.pp_microbatches,
                             pp_schedule=self.cfg.pp_schedule)

    @staticmethod
    def _check_vocab(model: nn.Module, train: Any) -> None:
        data_vocab = getattr(train, "vocab_size", None)
        model_vocab = getattr(getattr(model, "config", None), "vocab_size", None)
        if isinstance(data_vocab, int) and isinstance(model_vocab, int) \
                and data_vocab > model_vocab:
            raise ConfigError(f"model.vocab_size: the data uses {data_vocab} token ids but "
                              f"the model has only {model_vocab}")

    def _add_objective_parameters(self) -> None:
        """An objective with trainable parameters of its own (a distillation projection)
        returns them, on the device, from ``extra_parameters(device)``: they train with the
        model (same AdamW, clipping and schedule) and the objective keeps their values in
        its ``state_dict``, so checkpoints' model folders hold only the model."""
        extra = getattr(self.objective, "extra_parameters", None)
        params = list(extra(self.device)) if callable(extra) else []
        if not params:
            return
        self.params += params
        groups = [{**group, "name": f"objective_{group['name']}"}
                  for group in param_groups(nn.ParameterList(params), self.cfg.weight_decay)]
        if isinstance(self.optimizer, MuonAdamW):
            self.optimizer.add_adamw_groups(groups, self.cfg)
            return
        for group in groups:
            self.optimizer.add_param_group(group)

    def _restore(self) -> None:
        path = ck.latest_checkpoint(self.run_dir)
        if path is None:
            raise CheckpointError(f"cannot resume: {self.run_dir} has no checkpoint "
                                     f"(nothing in {self.run_dir / ck.CHECKPOINTS}); start "
                                     "the run without --resume")
        try:
            ck.verify_checkpoint(path)
        except CheckpointError as e:
            older = ck.list_checkpoints(self.run_dir)[:-1]
            hint = (f"; delete {path.name} to resume from {older[-1].name}" if older else "")
            raise CheckpointError(f"{e}{hint}") from None
        ck.check_model_config(path, self.model)
        state, payload = self._load_training_state(path)
        self.step = int(state["step"])
        if self.step != ck.checkpoint_step(path):
            raise CheckpointError(f"{path / ck.STATE} is corrupt: step {self.step} does "
                                     f"not match the folder name")
        self.tokens_seen = int(state.get("tokens_seen", 0))
        self.best_val_loss = state.get("best_val_loss")
        self.best_step = state.get("best_step")
        self.best_score = state.get("best_score", self.best_val_loss)
        es = state.get("early_stopping", {})
        self.es_reference = es.get("reference")
        self.evals_without_improvement = int(es.get("evals_without_improvement", 0))
        self.eval_history = list(state.get("eval_history", []))
        self.elapsed_before = float(state.get("elapsed", 0.0))
        self.last_val_loss = state.get("val_loss")
        self.last_checkpoint = path
        self._rng_to_restore = payload.get("rng")
        self._restore_objective(path, payload.get("objective"))
        self._restore_auto_precision(path, state.get("precision"))
        if int(state["seed"]) != self.seed:
            warnings.warn(f"resuming {path} with seed {self.seed}, but it was trained with "
                          f"seed {state['seed']}; the data order will differ", stacklevel=3)
        old = state.get("config") or {}
        new = self.cfg.model_dump(mode="json")
        same_global = "batch_size" in old and old["batch_size"] * int(
            state.get("dp_size", 1)) == self.cfg.batch_size * self.par.dp_size
        changed = sorted(k for k in new if k in old and old[k] != new[k]
                         and k not in _RESUME_SAFE
                         and not (k == "batch_size" and same_global))
        reasons = [f"{k}: {old[k]!r} -> {new[k]!r}" for k in changed]
        old_max = old.get("max_steps")
        if isinstance(old_max, int) and old_max != self.cfg.max_steps \
                and self._schedule_differs(old_max):
            # max_steps sets the length of a cosine/linear decay: the steps already taken
            # followed another schedule than an uninterrupted run to the new max_steps.
            reasons.append(f"max_steps: {old_max} -> {self.cfg.max_steps}, which changes "
                           f"the {self.schedule.kind} learning-rate schedule of the "
                           f"{self.step} steps already taken")
        if reasons:
            warnings.warn("resuming with changed train settings (" + ", ".join(reasons)
                          + "); the run will not match an uninterrupted one", stacklevel=3)
        for p in ck.list_checkpoints(self.run_dir):
            try:
                st = ck.read_trainer_state(p)
                self._ckpt_val[p] = st.get("score", st.get("val_loss"))
            except CheckpointError:
                self._ckpt_val[p] = None

    def _load_training_state(self, path: Path) -> tuple[dict, dict]:
        """Weights and AdamW state from ``path`` into the current layout; returns the
        trainer state and the payload, with this rank's RNG state as ``payload["rng"]``."""
        if not (self.par.distributed or is_sharded(path)):
            return ck.load_checkpoint(path, self.model, self.optimizer, verify=False)
        state = ck.read_trainer_state(path)
        payload = ck.load_optimizer_payload(path)
        if is_sharded(path):
            load_sharded_state(path, self.local, self.optimizer)
        else:
            load_full_state(path, self.local, self.optimizer, whole=self.model)
        ranks = payload.get("rng_ranks") or [payload["rng"]]
        if self.par.rank < len(ranks):
            payload["rng"] = ranks[self.par.rank]
        else:  # more ranks than the run had: a fresh stream per new rank
            payload["rng"] = None
        return state, payload

    def _restore_auto_precision(self, path: Path, saved: Any) -> None:
        """``precision: auto`` is measured (bf16 where its matmul is faster), so it could
        come out otherwise on resume; the run keeps the precision it was trained in."""
        if self.cfg.precision != "auto" or not isinstance(saved, str) \
                or saved == precision_name(self.amp_dtype):
            return
        try:
            dtype = precision_from_name(saved)
        except ValueError:
            return
        warnings.warn(f"precision: auto gives {precision_name(self.amp_dtype)} here, but "
                      f"{path.name} was trained in {saved}; resuming in {saved} so that the "
                      "run continues as it began (set train.precision to choose)",
                      stacklevel=4)
        self.amp_dtype = dtype
        if isinstance(self.optimizer, MuonAdamW):
            self.optimizer.muon.ns_dtype = dtype or torch.float32

    def _schedule_differs(self, old_max_steps: int) -> bool:
        """Would a run with ``max_steps=old_max_steps`` have used other learning rates for
        the steps already taken than the current schedule gives them?"""
        return not self._same_rates(old_max_steps, self.step)

    def _same_rates(self, max_steps: int, steps: int) -> bool:
        """Does the schedule with ``max_steps`` give updates ``0 .. steps-1`` the same
        learning rates as the current one?"""
        other = dataclasses.replace(self.schedule, max_steps=max_steps)
        return all(self.schedule(s) == other(s) for s in range(steps))

    def _restore_objective(self, path: Path, state: Any) -> None:
        """Give a stateful objective (e.g. TBPTT's carried hidden state) its saved state."""
        if state is None:
            return
        load = getattr(self.objective, "load_state_dict", None)
        if not callable(load):
            warnings.warn(f"{path / ck.OPTIMIZER} holds objective state, but the objective "
                          f"{type(self.objective).__name__} cannot load it; the run will not "
                          "match an uninterrupted one", stacklevel=4)
            return
        load(_to_device(state, self.device))

    def _attach_privacy(self) -> None:
        """``train.privacy``: DP-SGD through Opacus (:mod:`lmforge.privacy.dp`) wraps the
        model and the optimizer, trains in fp32 and Poisson-samples the training set."""
        self.dp: Any = None
        if self.cfg.privacy is None:
            return
        from ..privacy.dp import DPTraining

        self.amp_dtype = None
        self.dp = DPTraining(self.cfg.privacy, self.model, self.optimizer, self.train_source,
                             self.cfg.batch_size, self.cfg.max_steps, objective=self.objective)
        self.train_model, self.optimizer = self.dp.module, self.dp.optimizer

    def _seed_everything(self) -> None:
        torch.manual_seed(self.seed + self.par.rank)  # dropout differs across ranks
        np.random.seed(self.seed % 2**32)
        random.seed(self.seed)

    def _maybe_compile(self) -> None:
        self._eager_model = self.train_model
        if not self.cfg.compile:
            return
        try:
            self.train_model = torch.compile(self.train_model)
        except Exception as e:  # compile is optional: never fatal
            warnings.warn(f"torch.compile is unavailable ({_first_line(e)}); training eagerly",
                          stacklevel=3)
            self.train_model = self._eager_model

    def _run_objective(self, batch: Any, model: nn.Module | None = None):
        """objective(model, batch) under autocast (``train_model`` unless ``model`` is
        given); falls back to eager if compile fails."""
        if model is not None:
            with autocast(self.device, self.amp_dtype):
                return self.objective(model, batch)
        try:
            with autocast(self.device, self.amp_dtype):
                return self.objective(self.train_model, batch)
        except (LmforgeError, KeyboardInterrupt):
            raise
        except Exception as e:
            if self.train_model is self._eager_model:
                raise
            warnings.warn(f"torch.compile failed ({_first_line(e)}); training eagerly",
                          stacklevel=3)
            self.train_model = self._eager_model
            with autocast(self.device, self.amp_dtype):
                return self.objective(self.train_model, batch)

    # ------------------------------------------------------------------ one update

    def forward_backward(self, step: int) -> tuple[torch.Tensor, Any, dict]:
        """Accumulate the gradient of update ``step`` (0-based) into ``.grad``.

        Returns ``(mean loss, n_tokens, mean metrics)`` over all micro-batches; the
        gradient is that of the token-weighted mean loss, so ``grad_accum`` micro-batches
        of ``b`` give the gradient of one batch of ``grad_accum * b``.
        """
        accum = self.cfg.grad_accum
        if self.dp is not None:
            return self.dp.forward_backward(self, step)
        if self.par.name == "pp":
            return self._forward_backward_pipeline(step)
        if self.par.distributed:
            return self._forward_backward_parallel(step)
        total_loss: Any = 0.0
        total_n: Any = 0
        sums: dict[str, Any] = {}
        for micro in range(accum):
            rng = np.random.default_rng([self.seed, step, micro])
            batch = _to_device(self.train_source.batch(step, micro, rng), self.device)
            loss, metrics, n = self._run_objective(batch)
            loss = loss.float()
            (loss if accum == 1 else loss * n).backward()
            total_loss = total_loss + loss.detach() * n
            total_n = total_n + n
            for k, v in (metrics or {}).items():
                v = v.detach().float() if isinstance(v, torch.Tensor) else float(v)
                sums[k] = sums.get(k, 0.0) + v * n
        if isinstance(total_n, int) and total_n == 0:
            raise TrainingError(f"the training batch of step {step + 1} has no tokens to "
                                "learn from (every label is ignored)")
        if accum > 1:
            grads = [p.grad for p in self.params if p.grad is not None]
            if grads:
                if isinstance(total_n, torch.Tensor):
                    torch._foreach_mul_(grads, (1.0 / total_n.float()).to(grads[0].device))
                else:
                    torch._foreach_mul_(grads, 1.0 / total_n)
        mean = {k: v / total_n for k, v in sums.items()}
        return total_loss / total_n, total_n, mean

    def _forward_backward_parallel(self, step: int) -> tuple[torch.Tensor, Any, dict]:
        """:meth:`forward_backward` on a rank of a data- or tensor-parallel run: each rank
        back-propagates its summed loss, the strategy averages the gradients over the
        ``dp_size`` ranks, and the gradients are scaled by ``dp_size / n_global`` (see
        :mod:`lmforge.distributed.strategy`). Loss and metrics are global means."""
        accum = self.cfg.grad_accum
        local = torch.zeros(2, dtype=torch.float64, device=self.device)  # [sum loss, n]
        sums: dict[str, Any] = {}
        for micro in range(accum):
            rng = np.random.default_rng([self.seed, step, micro])
            batch = _to_device(self.train_source.batch(step, micro, rng), self.device)
            with self.par.grad_sync(self.train_model, micro == accum - 1):
                loss, metrics, n = self._run_objective(batch)
                (loss.float() * n).backward()
            n_f = torch.as_tensor(n, dtype=torch.float64, device=self.device)
            local += torch.stack([loss.detach().double() * n_f, n_f])
            for k, v in (metrics or {}).items():
                v = v.detach().double() if isinstance(v, torch.Tensor) else float(v)
                sums[k] = sums.get(k, 0.0) + v * n_f
        names = sorted(sums)
        totals = self.par.all_sum(torch.cat([local] + [
            torch.as_tensor(sums[k], dtype=torch.float64, device=self.device).reshape(1)
            for k in names]))
        n_global = totals[1]
        if float(n_global) == 0:
            raise TrainingError(f"the training batch of step {step + 1} has no tokens to "
                                "learn from (every label is ignored)")
        grads = [p.grad for p in self.params if p.grad is not None]
        if grads:
            torch._foreach_mul_(grads, float(self.par.dp_size / n_global))
        mean = {k: (totals[2 + i] / n_global).float() for i, k in enumerate(names)}
        return (totals[0] / n_global).float(), int(n_global), mean

    def _forward_backward_pipeline(self, step: int) -> tuple[torch.Tensor, Any, dict]:
        """:meth:`forward_backward` on a stage of a pipeline: every rank passes the whole
        micro-batch to :func:`~lmforge.distributed.pipeline.pipeline_step`, which leaves
        the gradient of its mean loss in this stage's parameters. Causal-LM windows all
        hold ``B x T`` tokens, so the mean over ``grad_accum`` micro-batches is the mean
        of their means: the gradients are divided by ``grad_accum``."""
        from ..distributed.pipeline import pipeline_step

        accum, total = self.cfg.grad_accum, 0.0
        n_total = 0
        for micro in range(accum):
            rng = np.random.default_rng([self.seed, step, micro])
            batch = _to_device(self.train_source.batch(step, micro, rng), self.device)
            with autocast(self.device, self.amp_dtype):
                total = total + pipeline_step(self.par.schedule, self.par.stage,
                                              batch["input_ids"], batch["labels"])
            n_total += int(batch["labels"].numel())
        if accum > 1:
            torch._foreach_mul_([p.grad for p in self.params if p.grad is not None],
                                1.0 / accum)
        return (total / accum).float(), n_total, {}

    def _grad_norm(self) -> torch.Tensor:
        return self.par.grad_norm([p for p in self.params if p.grad is not None],
                                  self.cfg.grad_clip if self.dp is None else None)

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """Validation loss (token-weighted mean over the first ``cfg.eval_batches`` of
        ``val.eval_batches()``), perplexity, the objective's metrics (prefixed ``val_``)
        and every evaluator's metrics."""
        out: dict[str, float] = {}
        model = self.par.eval_model(self.model)
        # the module itself (no DDP hooks), a whole copy of a pipeline's stages, or the
        # (compiled) training module
        direct = model if self.par.shard_eval or model is not self.model else None
        was_training = self.model.training
        self.model.eval()
        model.eval()
        try:
            if self.val_source is not None:
                tot: Any = 0.0
                n_tot: Any = 0
                sums: dict[str, Any] = {}
                batches = itertools.islice(self.val_source.eval_batches(),
                                           self.cfg.eval_batches)
                if self.par.shard_eval:  # this rank's share; the sums are added below
                    batches = itertools.islice(batches, self.par.dp_rank, None,
                                               self.par.dp_size)
                for batch in batches:
                    loss, metrics, n = self._run_objective(_to_device(batch, self.device),
                                                           direct)
                    tot = tot + loss.detach().float() * n
                    n_tot = n_tot + n
                    for k, v in (metrics or {}).items():
                        sums[k] = sums.get(k, 0.0) + _as_float(v) * _as_float(n)
                if self.par.shard_eval:  # a rank may have had no batch: the union of names
                    names = sorted(set().union(*self.par.all_objects(sorted(sums))))
                    sums = {k: sums.get(k, 0.0) for k in names}
                    totals = self.par.all_sum(torch.tensor(
                        [_as_float(tot), _as_float(n_tot)] + [sums[k] for k in names],
                        dtype=torch.float64, device=self.device)).tolist()
                    tot, n_tot = totals[0], totals[1]
                    sums = dict(zip(names, totals[2:], strict=True))
                n_f = _as_float(n_tot)
                if n_f == 0:
                    raise TrainingError("the validation source gave no batches (or no "
                                        "tokens); check the val split and block_size")
                val_loss = _as_float(tot) / n_f
                out["val_loss"] = val_loss
                out["val_ppl"] = math.exp(val_loss) if val_loss < 700 else float("inf")
                out.update({f"val_{k}": v / n_f for k, v in sums.items()})
            if self.dp is not None:
                out["epsilon"] = self.dp.epsilon()
            for fn in self.evaluators:
                extra = fn(model)
                if not isinstance(extra, dict):
                    raise TypeError(f"evaluator {fn!r} returned {type(extra).__name__}, "
                                    "expected a dict of name -> float")
                out.update({str(k): _as_float(v) for k, v in extra.items()})
        finally:
            self.model.train(was_training)
        return out

    def _minimise(self) -> bool:
        mode, name = self.cfg.best_mode, self.cfg.best_metric
        return mode == "min" or (mode == "auto" and ("loss" in name or "ppl" in name))

    def selection_score(self, metrics: dict) -> float | None:
        """``cfg.best_metric`` of an evaluation as a score where lower is better (the
        metric, or minus it for metrics to maximise); None when a run without validation
        data has no val_loss."""
        name = self.cfg.best_metric
        if name not in metrics:
            if name == "val_loss":
                return None
            raise TrainingError(f"train.best_metric: the evaluation has no {name!r}; it "
                                f"reports {', '.join(sorted(metrics)) or 'nothing'}")
        value = float(metrics[name])
        if not math.isfinite(value):
            self._raise_nonfinite(name, value, self.step)
        return value if self._minimise() else -value

    def _after_eval(self, step: int, metrics: dict) -> None:
        """Track the best val loss, the best ``best_metric`` and early stopping (on
        ``best_metric``); may set the stop reason."""
        val = metrics.get("val_loss")
        if val is not None:
            if not math.isfinite(val):
                self._raise_nonfinite("validation loss", val, step)
            self.last_val_loss = val
            if self.best_val_loss is None or val < self.best_val_loss:
                self.best_val_loss = val
        score = self.selection_score(metrics)
        if score is None:
            return
        entry = {"step": step, "val_loss": val}
        if self.cfg.best_metric != "val_loss":
            entry[self.cfg.best_metric] = float(metrics[self.cfg.best_metric])
        self.eval_history.append(entry)
        if self.best_score is None or score < self.best_score:
            self.best_score, self.best_step = score, step
        min_delta = self.cfg.early_stop_min_delta
        if self.es_reference is None or score < self.es_reference - min_delta:
            self.es_reference = score
            self.evals_without_improvement = 0
        else:
            self.evals_without_improvement += 1
        patience = self.cfg.early_stop_patience
        if patience is not None and self.evals_without_improvement >= patience:
            self._stop_reason = "early_stop"

    # ------------------------------------------------------------------ checkpoints

    def _trainer_state(self, step: int, val_loss: float | None,
                       score: float | None) -> dict:
        return {
            "step": step,
            "seed": self.seed,
            "val_loss": val_loss,  # of these weights; None when no evaluation ran here
            "score": score,  # best_metric of these weights, lower is better (or None)
            "best_val_loss": self.best_val_loss,
            "best_step": self.best_step,
            "best_score": self.best_score,
            "tokens_seen": self.tokens_seen,
            "elapsed": self._elapsed(),
            "early_stopping": {"reference": self.es_reference,
                               "evals_without_improvement": self.evals_without_improvement},
            "eval_history": self.eval_history,
            "data": {"next_step": step, "seed": self.seed,
                     "rule": "batch(step, micro) uses numpy default_rng([seed, step, micro])"},
            "precision": precision_name(self.amp_dtype),
            "device": str(self.device),
            "distributed": self.par.name,
            "dp_size": self.par.dp_size,  # the global micro-batch is batch_size x dp_size
            "config": self.cfg.model_dump(mode="json"),
        }

    def save_checkpoint(self, step: int, val_loss: float | None,
                        score: float | None = None) -> Path:
        """Write ``checkpoints/step_{step:07d}`` atomically and prune old ones, keeping the
        best by ``score`` (lower is better; the val loss unless ``best_metric`` says
        otherwise)."""
        if score is None and self.cfg.best_metric == "val_loss":
            score = val_loss
        with torch.no_grad():
            bad = [n for n, p in self.local.named_parameters()
                   if not bool(torch.isfinite(_local(p)).all())]
        if self.par.any_rank(bool(bad)):
            bad = bad or ["on another rank"]
            self._raise_nonfinite("weights", float("nan"), step, detail=f" ({bad[0]})")
        self._log.sync()
        payload = {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": {"step": step, **self.schedule.state_dict()},
            "rng": ck.get_rng_state(),
        }
        objective_state = getattr(self.objective, "state_dict", None)
        if callable(objective_state):  # e.g. the hidden state TBPTT carries across steps
            payload["objective"] = _to_device(objective_state(), torch.device("cpu"), False)
        training = {"step": step, "tokens_seen": self.tokens_seen, "val_loss": val_loss,
                    "seed": self.seed, "objective": getattr(self.objective, "name",
                                                            type(self.objective).__name__)}
        if self.dp is not None:
            training["privacy"] = self.dp.report()
            if self.par.is_main:
                self.dp.write_report(self.run_dir)
        provenance = {**self.provenance, "training": training}
        kw = dict(trainer_state=self._trainer_state(step, val_loss, score),
                  optimizer_payload=payload, tokenizer=self.tokenizer, provenance=provenance)
        where = ck.checkpoint_path(self.run_dir, step)
        if not self.par.sharded_checkpoints:
            path = ck.save_checkpoint(where, self.model, **kw)
        else:
            whole = getattr(self.par, "full_weights", None)  # a pipeline's stages
            path = save_sharded_checkpoint(where, self.local, self.optimizer,
                                           weights=whole() if whole else None, **kw)
        self._ckpt_val[path] = score
        self.last_checkpoint = path
        keep = set()
        scored = [(v, p) for p, v in self._ckpt_val.items() if v is not None and p.exists()]
        if scored:
            keep.add(min(scored, key=lambda t: (t[0], ck.checkpoint_step(t[1])))[1])
        if self.par.is_main:
            for p in ck.prune_checkpoints(self.run_dir, self.cfg.keep_last, keep):
                self._ckpt_val.pop(p, None)
        self.callbacks("on_checkpoint", step, path)
        return path

    # ------------------------------------------------------------------ failures

    def _raise_nonfinite(self, what: str, value: float, step: int, detail: str = "") -> None:
        kind = "nan" if math.isnan(value) else "inf"
        where = (f"the last good checkpoint is {self.last_checkpoint}"
                 if self.last_checkpoint is not None else "no checkpoint was written yet")
        err = TrainingError(f"{what} became {kind} at step {step}{detail}; {where}")
        err.result = self._result("nan")  # type: ignore[attr-defined]
        raise err

    # ------------------------------------------------------------------ the loop

    def _elapsed(self) -> float:
        return self.elapsed_before + (time.perf_counter() - self._t_session)

    def _result(self, reason: str) -> TrainResult:
        train_time = max(1e-9, self._train_time)
        return TrainResult(
            steps=self.step, best_val_loss=self.best_val_loss, best_step=self.best_step,
            last_checkpoint=self.last_checkpoint, stopped_reason=reason,
            tokens_per_sec=self._session_tokens / train_time if self._session_tokens else 0.0,
            final_val_loss=self.last_val_loss, tokens_seen=self.tokens_seen,
            elapsed=self._elapsed(), best_checkpoint=ck.best_checkpoint(self.run_dir),
            best_value=None if self.best_score is None
            else (self.best_score if self._minimise() else -self.best_score))

    def can_replan(self, max_steps: int) -> bool:
        """Would a run of ``max_steps`` have taken the steps so far (and the next one)
        with the same learning rates, and is it longer than them?"""
        return max_steps > self.step and self._same_rates(max_steps, self.step + 1)

    def replan(self, max_steps: int, **fields: int) -> None:
        """Change the run's length (and e.g. ``eval_every``/``ckpt_every``) mid-run, for
        a callback that sizes the run as it goes (:class:`~lmforge.train.budget.StepPlanner`).
        Allowed only while the learning rates of the updates taken so far stay the same
        (during the warmup; for ``schedule: wsd`` until its decay), so the run equals one
        started with the new ``max_steps``."""
        if not self.can_replan(max_steps):
            raise TrainingError(f"replan: max_steps={max_steps} would change the learning "
                                f"rate of steps already taken (step {self.step}) or is not "
                                "after them")
        for name, value in {"max_steps": max_steps, **fields}.items():
            if name not in _RESUME_SAFE:
                raise TrainingError(f"replan: {name} cannot change during a run")
            setattr(self.cfg, name, value)
        self.schedule = dataclasses.replace(self.schedule, max_steps=max_steps)
        recipe = self.provenance.get("recipe")  # what checkpoints record as their recipe
        if isinstance(recipe, dict) and isinstance(recipe.get("train"), dict):
            recipe["train"].update({"max_steps": max_steps, **fields})
        if self._bar is not None:
            self._bar.total = max_steps
            self._bar.refresh()

    def request_stop(self, reason: str = "callback") -> None:
        """Stop after the current step (with a final evaluation and checkpoint)."""
        self._stop_reason = reason if reason.startswith("callback") else f"callback:{reason}"

    def _refresh_plot(self) -> None:
        """Redraw ``loss.png`` from ``metrics.jsonl`` (0.15 s a picture, 0.6 s the first in
        a process: after every evaluation of a short run, it took most of its time)."""
        self._plotted_at = time.perf_counter()
        if not self.par.is_main:
            return
        try:
            plot_loss(read_metrics(self.run_dir / METRICS), self.run_dir / LOSS_PNG,
                      title=f"{self.run_dir.name}: loss")
        except (OSError, ValueError) as e:  # a plot must never kill a run
            warnings.warn(f"could not draw {LOSS_PNG}: {_first_line(e)}", stacklevel=2)

    def _count_tokens(self, n: Any) -> None:
        if isinstance(n, torch.Tensor):
            self._tokens_dev = n.detach() if self._tokens_dev is None else self._tokens_dev + n
        else:
            self.tokens_seen += int(n)
            self._session_tokens += int(n)

    def _flush_tokens(self) -> None:
        if self._tokens_dev is not None:
            n = int(_as_float(self._tokens_dev))
            self.tokens_seen += n
            self._session_tokens += n
            self._tokens_dev = None

    def fit(self) -> TrainResult:
        """Train until ``max_steps`` (or early stopping / a callback's stop request)."""
        from tqdm.auto import tqdm

        cfg = self.cfg
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._t_session = self._plotted_at = time.perf_counter()
        self._train_time = 0.0
        self._session_tokens = 0
        self._tokens_dev = None
        self._stop_reason = None
        metrics_path = self.run_dir / METRICS
        if self.resume and self.par.is_main:
            truncate_after(metrics_path, self.step)
        self._log = MetricsLog(metrics_path, fresh=not self.resume) if self.par.is_main \
            else NullLog()
        if self._rng_to_restore is not None:
            ck.set_rng_state(self._rng_to_restore)
            self._rng_to_restore = None
        else:
            self._seed_everything()
        self._maybe_compile()
        self.model.train()
        self.callbacks("on_train_start", self)

        if self.par.distributed and self.par.is_main:
            print(self.par.describe(cfg.batch_size, cfg.grad_accum, self.unit),
                  file=sys.stderr, flush=True)
        interactive = sys.stderr.isatty()
        self._bar = bar = tqdm(total=cfg.max_steps, initial=self.step, desc="train", unit="step",
                   file=sys.stderr, disable=not self.show_progress, dynamic_ncols=True,
                   mininterval=0.5 if interactive else 30.0, leave=True)
        reason = "max_steps"
        try:
            if self.step >= cfg.max_steps:
                return self._result("max_steps")
            patience = cfg.early_stop_patience
            if patience is not None and self.evals_without_improvement >= patience:
                return self._result("early_stop")  # a resumed run that had stopped early
            # The logging window: sums since the last metrics line.
            win_loss: Any = 0.0
            win_gn: Any = 0.0
            win_metrics: dict[str, Any] = {}
            win_steps = 0
            win_tokens: Any = 0
            t_win, win_paused = time.perf_counter(), 0.0
            self._pending_bad, self._checked_step = None, self.step
            while self.step < cfg.max_steps and self._stop_reason is None:
                step = self.step
                lr = self.schedule(step)
                set_lr(self.optimizer, lr)
                loss, n_tok, metrics = self.forward_backward(step)
                grad_norm = self._grad_norm()
                finite = torch.isfinite(loss) & torch.isfinite(grad_norm)
                if self.check_every_step:
                    if not bool(finite):  # checked before the update: weights stay good
                        self._raise_finite_detail(loss, grad_norm, step + 1)
                else:  # no host sync per step on GPUs: checked at logs and checkpoints
                    bad = ~finite
                    self._pending_bad = bad if self._pending_bad is None \
                        else self._pending_bad | bad
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.step = s = step + 1
                self._count_tokens(n_tok)
                win_loss = win_loss + loss.detach()
                win_gn = win_gn + grad_norm.detach()
                for k, v in metrics.items():
                    win_metrics[k] = win_metrics.get(k, 0.0) + v
                win_steps += 1
                win_tokens = win_tokens + n_tok
                bar.update(1)

                is_last = s >= cfg.max_steps
                record = None
                # A line at every checkpoint too, so that a resumed run's windows (and
                # so its lines) are those of an uninterrupted run.
                ckpt_due = s % cfg.ckpt_every == 0 or is_last
                if s % cfg.log_every == 0 or ckpt_due:
                    self._check_pending(loss, grad_norm, s)
                    now = time.perf_counter()
                    win_time = max(1e-9, now - t_win - win_paused)
                    toks = _as_float(win_tokens)
                    self._train_time += win_time
                    rate = toks / win_time
                    record = {"step": s, "loss": _as_float(win_loss) / win_steps, "lr": lr,
                              f"{self.unit}_per_s": round(rate, 1),
                              "grad_norm": _as_float(win_gn) / win_steps,
                              "time": round(self._elapsed(), 3)}
                    record.update({k: _as_float(v) / win_steps for k, v in win_metrics.items()})
                    self._log.write(record)
                    bar.set_postfix(loss=f"{record['loss']:.4f}", lr=f"{lr:.2e}",
                                    **{f"{self.unit}_s": f"{rate:,.0f}"}, refresh=False)
                    win_loss, win_gn, win_metrics, win_steps, win_tokens = 0.0, 0.0, {}, 0, 0
                    t_win, win_paused = time.perf_counter(), 0.0
                self.callbacks("on_step_end", s, {"lr": lr, "loss": loss.detach(),
                                                   "grad_norm": grad_norm.detach(),
                                                   "log": record})

                want_ckpt = ckpt_due or self._stop_reason is not None
                want_eval = (self.val_source is not None or bool(self.evaluators)) and (
                    s % cfg.eval_every == 0 or want_ckpt)
                if not (want_eval or want_ckpt):
                    continue
                # Evaluation and checkpointing are left out of tok/s.
                t_pause = time.perf_counter()
                self._check_pending(loss, grad_norm, s)
                val_here = score_here = None
                if want_eval:
                    ev = self.evaluate()
                    val_here = ev.get("val_loss")
                    self._after_eval(s, ev)
                    score_here = self.selection_score(ev)
                    self._log.write({"step": s, **ev, "time": round(self._elapsed(), 3)})
                    self._log.sync()
                    if self.show_progress:
                        bar.write(f"step {s}: " + ", ".join(
                            f"{k} {v:.4g}" for k, v in ev.items()), file=sys.stderr)
                    self.callbacks("on_eval", s, ev)
                    if time.perf_counter() - self._plotted_at >= PLOT_EVERY_S:
                        self._refresh_plot()
                if want_ckpt or self._stop_reason is not None:
                    self._flush_tokens()
                    self.save_checkpoint(s, val_here, score_here)
                win_paused += time.perf_counter() - t_pause
            reason = self._stop_reason or "max_steps"
        except RuntimeError as e:
            if not self.par.distributed:
                raise
            raise self._lost_contact(e) from e
        finally:
            bar.close()
            self._bar = None
            self._log.close()
        self._flush_tokens()
        self._refresh_plot()
        result = self._result(reason)
        self.callbacks("on_train_end", result)
        return result

    def _lost_contact(self, e: BaseException) -> TrainingError:
        """A collective failed: another rank died or hung past ``dist_timeout``."""
        where = (f"the last checkpoint is {self.last_checkpoint}"
                 if self.last_checkpoint is not None else "no checkpoint was written yet")
        return TrainingError(f"rank {self.par.rank} of {self.par.world_size}: lost contact "
                             f"with the other ranks after step {self.step} "
                             f"({_first_line(e)[:200]}); {where}; resume with --resume "
                             "(torchrun --max-restarts does it automatically)")

    def _raise_finite_detail(self, loss: torch.Tensor, grad_norm: torch.Tensor,
                             step: int) -> None:
        lv, gv = _as_float(loss), _as_float(grad_norm)
        if not math.isfinite(lv):
            self._raise_nonfinite("loss", lv, step)
        if not math.isfinite(gv):
            self._raise_nonfinite("gradient norm", gv, step)

    def _check_pending(self, loss: torch.Tensor, grad_norm: torch.Tensor, step: int) -> None:
        """The deferred (GPU) check: did any step since the last check go non-finite?"""
        pending, since = self._pending_bad, self._checked_step
        self._pending_bad, self._checked_step = None, step
        if pending is None or not bool(pending):
            return
        self._raise_finite_detail(loss, grad_norm, step)
        where = (f"the last good checkpoint is {self.last_checkpoint}"
                 if self.last_checkpoint is not None else "no checkpoint was written yet")
        err = TrainingError(f"the loss or gradient norm became nan/inf between steps "
                            f"{since + 1} and {step}; {where}")
        err.result = self._result("nan")  # type: ignore[attr-defined]
        raise err


__all__ = ["Trainer", "TrainResult", "METRICS", "LOSS_PNG"]
