"""Optuna studies of lmforge runs: the objective, pruning from the trainer's evaluations,
workers sharing one storage, and recovery from crashed workers.

**Trials.** A trial is a normal run: the base recipe with the trial's parameters
(:class:`~lmforge.tune.recipes.TuneRecipe`) trained into ``<out>/trial_NNNN``. Its value
is the best value of the metric over the run's evaluations (``metrics.jsonl``): the
lowest when the study minimises, the highest when it maximises.

**Pruning** (the median rule, optuna's ``MedianPruner``). At every evaluation, at step
``s``, the trial reports its metric ``v_s``. Once ``prune_after`` trials have finished,
the trial is stopped when ``v_s`` is worse than the median of the values the finished
trials reported at step ``s``. The run stops through ``trainer.request_stop`` (after a
final checkpoint, so its folder is a complete run) and the trial is marked PRUNED.

**Workers.** ``trials`` is the number of finished trials (complete + pruned) the study
should hold. A worker starts a trial only while ``finished + running < trials``, so any
number of workers on one storage (``--workers K``, or several ``lmforge tune`` processes
on one machine or many) finish ``trials`` trials together. Trial numbers are given out
in order by the storage, so when two workers check at the same instant and both make a
trial, the one with the higher number sees the other running and ends at once, FAILED
with the error "not run".

**Crashes.** While a trial runs, its worker writes a heartbeat into the storage every
``heartbeat`` seconds. A RUNNING trial whose last heartbeat is older than
``GRACE_HEARTBEATS`` heartbeats lost its worker: the next worker that looks (a restarted
``lmforge tune`` included) marks it FAILED and queues its parameters again as a WAITING
trial, which the next trial to start runs first. The study then continues to ``trials``
finished trials.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import socket
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import ConfigError, LmforgeError
from ..train.callbacks import Callback
from .recipes import TuneRecipe
from .space import Space

SAMPLERS = ("grid", "random", "tpe")
DIRECTIONS = ("minimize", "maximize")
GRACE_HEARTBEATS = 5    # a trial is stale after this many missed heartbeats
MAX_FAILURES = 5        # a worker stops after this many failed trials in a row
POLL_SECONDS = 1.0      # how often a worker waiting for others looks at the study


def require_optuna() -> Any:
    """The optuna module (quiet: lmforge prints its own trial lines), or a one-line
    ConfigError naming the extra to install."""
    try:
        import optuna
    except ImportError:
        raise ConfigError("lmforge tune needs optuna: pip install 'lmforge[tune]'") from None
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    return optuna


def default_direction(metric: str) -> str:
    """minimize for a loss or perplexity, else maximize (the trainer's ``best_mode: auto``
    rule)."""
    return "minimize" if "loss" in metric or "ppl" in metric else "maximize"


@dataclass(frozen=True)
class TuneSettings:
    """Everything a worker needs (picklable: workers are spawned processes)."""

    recipe: TuneRecipe
    space: Space
    study: str
    storage: str
    out: Path
    trials: int
    sampler: str = "tpe"
    metric: str = "val_loss"
    direction: str = "minimize"
    seed: int | None = None
    prune: bool = True
    prune_after: int = 5
    heartbeat: int = 10
    workers: int = 1


def check_settings(s: TuneSettings, log: Callable[[str], None] = print) -> TuneSettings:
    """Validate the options, the space against the recipe and, for a grid, that the space
    has one; a grid smaller than ``trials`` caps it. One-line ConfigErrors."""
    if not s.study.strip():
        raise ConfigError("--study: give the study a name")
    for flag, value, low in (("--trials", s.trials, 1), ("--workers", s.workers, 1),
                             ("--heartbeat", s.heartbeat, 1), ("--prune-after",
                                                               s.prune_after, 0)):
        if value < low:
            raise ConfigError(f"{flag} must be at least {low}, got {value}")
    if s.sampler not in SAMPLERS:
        raise ConfigError(f"--sampler must be one of {', '.join(SAMPLERS)}, got {s.sampler!r}")
    if s.direction not in DIRECTIONS:
        raise ConfigError(f"--direction must be minimize or maximize, got {s.direction!r}")
    s.recipe.check_space(s.space)
    if s.sampler == "grid":
        size = s.space.grid_size()
        if s.trials > size:
            log(f"--sampler grid: the grid has {size} points; the study runs {size} trials")
            s = replace(s, trials=size)
    return s


def shown_url(url: str) -> str:
    """``url`` for messages, its password masked."""
    import sqlalchemy.exc
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        return url


def open_storage(url: str, heartbeat: int) -> Any:
    """optuna's RDB storage at ``url`` with heartbeats and the retry of stale trials.

    SQLite (``sqlite:///path.db``; the folder is created) waits up to 60 s for a lock
    held by another worker; PostgreSQL (``postgresql://user:pw@host:5432/db``) goes
    through psycopg2 (the ``tune`` extra's driver; write ``postgresql+psycopg://`` for
    psycopg 3)."""
    optuna = require_optuna()
    import sqlalchemy.event
    import sqlalchemy.exc

    try:  # optuna >= 4.9 names the callback after heartbeats
        from optuna.storages import RetryHeartbeatStaleTrialCallback as Retry
        retry = {"heartbeat_stale_trial_callback": Retry(max_retry=3)}
    except ImportError:
        from optuna.storages import RetryFailedTrialCallback as Retry
        retry = {"failed_trial_callback": Retry(max_retry=3)}
    shown = shown_url(url)
    extra: dict[str, Any] = {}
    for plain in ("postgresql://", "postgres://"):  # SQLAlchemy 2.1 would pick psycopg 3
        if url.startswith(plain):
            url = "postgresql+psycopg2://" + url[len(plain):]
    if url.startswith("sqlite:///"):
        db = url[len("sqlite:///"):].split("?")[0]
        if db and db != ":memory:":
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        # pysqlite's own BEGIN is deferred: two workers could both read a queued trial
        # before either writes, and both run it. BEGIN IMMEDIATE (below) takes the
        # write lock first, so a transaction's reads and writes are one step.
        extra["engine_kwargs"] = {"connect_args": {"timeout": 60, "isolation_level": None}}
    try:
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=heartbeat,
                                             grace_period=GRACE_HEARTBEATS * heartbeat,
                                             **retry, **extra)
    except ImportError as e:
        missing = getattr(e.__cause__, "name", None) or e.name or "a database driver"
        raise ConfigError(f"--storage {shown}: needs the Python module {missing} "
                          "(pip install 'lmforge[tune]' brings psycopg2 for PostgreSQL)"
                          ) from None
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(f"--storage {shown}: not a database URL; use sqlite:///path.db or "
                          "postgresql://user:password@host:5432/database") from None
    except sqlalchemy.exc.SQLAlchemyError as e:
        reason = str(getattr(e, "orig", None) or e).strip().splitlines()[0]
        raise LmforgeError(f"--storage {shown}: {reason}") from None
    if url.startswith("sqlite:///"):
        sqlalchemy.event.listen(storage.engine, "begin",
                                lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return storage


def make_sampler(s: TuneSettings, seed: int | None) -> Any:
    optuna = require_optuna()
    if s.sampler == "grid":
        return optuna.samplers.GridSampler(s.space.grid(), seed=seed)
    if s.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, constant_liar=True)


def make_pruner(s: TuneSettings) -> Any:
    optuna = require_optuna()
    if not s.prune:
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=s.prune_after)


def open_study(s: TuneSettings, storage: Any) -> Any:
    """Create the study, or load it and check that it tunes the same metric, direction and
    space (a study keeps one of each)."""
    optuna = require_optuna()
    study = optuna.create_study(storage=storage, study_name=s.study, direction=s.direction,
                                load_if_exists=True)
    mine = {"metric": s.metric, "direction": s.direction, "space": s.space.to_spec(),
            "recipe": str(s.recipe.path), "sets": list(s.recipe.sets)}
    held = study.user_attrs.get("lmforge")
    if held is None:
        study.set_user_attr("lmforge", mine)
        held = mine
    old_direction = study.direction.name.lower()
    for key, was, now in (("--direction", old_direction, s.direction),
                          ("--metric", held["metric"], s.metric),
                          ("--space", held["space"], mine["space"])):
        if was != now:
            raise ConfigError(f"study {s.study!r} in {shown_url(s.storage)} was started "
                              f"with {key} {was}; this run gives {now} (use another --study)")
    return study


class MetricMissingError(ConfigError):
    """The run's evaluations do not compute the tuned metric (a study-wide mistake)."""


class PruningCallback(Callback):
    """Reports the metric at every evaluation to the optuna trial and stops the run when
    the pruner says so (``pruned_at`` is then the step)."""

    def __init__(self, trial: Any, metric: str, prune: bool):
        self.trial, self.metric, self.prune = trial, metric, prune
        self.trainer: Any = None
        self.reported = 0
        self.pruned_at: int | None = None

    def on_train_start(self, trainer: Any) -> None:
        self.trainer = trainer

    def on_eval(self, step: int, metrics: dict) -> None:
        if self.metric not in metrics:
            raise MetricMissingError(f"--metric {self.metric}: the run's evaluations give "
                                     f"{', '.join(sorted(metrics))}")
        self.trial.report(float(metrics[self.metric]), step)
        self.reported += 1
        if self.prune and self.pruned_at is None and self.trial.should_prune():
            self.pruned_at = step
            self.trainer.request_stop("pruned")


def evaluations(run_dir: Path, metric: str) -> list[tuple[int, float]]:
    """``(step, value)`` of every evaluation of ``metric`` in a run's ``metrics.jsonl``
    (non-finite values are written as null or strings and are left out)."""
    from ..train.metrics_log import read_metrics

    return [(int(r["step"]), float(r[metric])) for r in read_metrics(run_dir / "metrics.jsonl")
            if isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric])
            and "step" in r]


def trial_dir(s: TuneSettings, number: int) -> Path:
    return s.out / f"trial_{number:04d}"


def run_trial(s: TuneSettings, trial: Any) -> float:
    """Train one trial's run; its value, or optuna.TrialPruned."""
    optuna = require_optuna()
    params = s.space.suggest(trial)
    run_dir = trial_dir(s, trial.number)
    if run_dir.exists() and any(run_dir.iterdir()):
        raise LmforgeError(f"{run_dir} already holds a run of another study; remove it or "
                           "choose another --out")
    trial.set_user_attr("run_dir", str(run_dir))
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    recipe = s.recipe.load(params, run_dir)
    callback = PruningCallback(trial, s.metric, s.prune)
    t0 = time.perf_counter()
    s.recipe.run(recipe, [callback])
    trial.set_user_attr("seconds", round(time.perf_counter() - t0, 1))
    evals = evaluations(run_dir, s.metric)
    if not evals:
        raise MetricMissingError(f"--metric {s.metric}: {run_dir}/metrics.jsonl holds no "
                                 "evaluation of it")
    if callback.reported == 0:  # a runner without trainer hooks: report afterwards
        for step, value in evals:
            trial.report(value, step)
    trial.set_user_attr("steps", evals[-1][0])
    if callback.pruned_at is not None:
        raise optuna.TrialPruned(f"pruned at step {callback.pruned_at}")
    values = [v for _, v in evals]
    return min(values) if s.direction == "minimize" else max(values)


class _TrialFailed(Exception):
    """A trial's run stopped on a user error (a NaN loss, a parameter combination the
    recipe refuses): the trial is FAILED and the study goes on."""


def trial_line(t: Any, metric: str) -> str:
    """One line per finished trial: state, value, parameters, time."""
    params = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                       for k, v in t.params.items())
    state = t.state.name.lower()
    if state == "fail":
        shown = f" ({params})" if params else ""
        return f"trial {t.number} failed: {t.user_attrs.get('error', 'see above')}{shown}"
    value = "" if t.value is None else f" {metric} {t.value:.4g}"
    at = f" at step {t.user_attrs['steps']}" if state == "pruned" and "steps" in \
        t.user_attrs else ""
    secs = t.user_attrs.get("seconds")
    took = f" in {secs:.1f} s" if secs is not None else ""
    return f"trial {t.number} {state}{at}:{value} ({params}){took}"


def _surplus(trial: Any, n: int) -> bool:
    """Whether ``n`` trials had finished, or were running or queued before this one (a
    lower number), when this trial started: two workers that both saw room for one more
    trial made one each, and the later one is not run (it ends FAILED)."""
    ahead = [t for t in trial.study.get_trials(deepcopy=False)
             if t.state.name in ("COMPLETE", "PRUNED")
             or (t.state.name in ("RUNNING", "WAITING") and t.number < trial.number)]
    return len(ahead) >= n


def _counts(study: Any) -> Counter:
    return Counter(t.state.name for t in study.get_trials(deepcopy=False))


def run_worker(s: TuneSettings, index: int = 0, log: Callable[[str], None] = print) -> None:
    """One worker: start trials until the study holds ``s.trials`` finished ones."""
    optuna = require_optuna()
    seed = None if s.seed is None else s.seed + index
    study = optuna.load_study(study_name=s.study, storage=open_storage(s.storage, s.heartbeat),
                              sampler=make_sampler(s, seed), pruner=make_pruner(s))
    failures: list[LmforgeError] = []

    def objective(trial: Any) -> float:
        if _surplus(trial, s.trials):
            trial.set_user_attr("error", f"not run: {s.trials} trials had finished or "
                                "started first")
            raise _TrialFailed("surplus")
        try:
            value = run_trial(s, trial)
        except MetricMissingError:
            raise
        except LmforgeError as e:
            failures.append(e)
            trial.set_user_attr("error", str(e))
            raise _TrialFailed(str(e)) from e
        failures.clear()
        return value

    def report(_study: Any, frozen: Any) -> None:
        if frozen.state.name == "PRUNED":
            failures.clear()
        log(trial_line(frozen, s.metric))

    while True:
        optuna.storages.fail_stale_trials(study)
        n = _counts(study)
        finished = n["COMPLETE"] + n["PRUNED"]
        if finished >= s.trials:
            return
        if finished + n["RUNNING"] >= s.trials:  # the rest are running elsewhere
            time.sleep(POLL_SECONDS)
            continue
        try:
            study.optimize(objective, n_trials=1, catch=(_TrialFailed,), callbacks=[report])
        except optuna.exceptions.UpdateFinishedTrialError:
            # Its heartbeats were late (a stalled machine): another worker failed it and
            # queued its parameters again, so this result is dropped.
            log("a trial of this worker was taken for lost while it ran; it runs again")
        if len(failures) >= MAX_FAILURES:
            raise LmforgeError(f"{len(failures)} trials in a row failed; the last: "
                               f"{failures[-1]}")


def _worker_process(s: TuneSettings, index: int) -> None:
    """The body of a spawned worker: errors as one line and exit code 2, as the CLI."""
    try:
        run_worker(s, index, log=lambda m: print(m, flush=True))
    except LmforgeError as e:
        print(f"error: worker {index}: {e}", file=sys.stderr, flush=True)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)


def run_workers(s: TuneSettings, log: Callable[[str], None] = print) -> list[str]:
    """Run ``s.workers`` workers: this process for one; else that many spawned processes,
    started together so that each takes trials, while this one waits. Returns what went
    wrong with the spawned ones (``worker i exited with code c``)."""
    if s.workers == 1:
        run_worker(s, 0, log)
        return []
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_process, args=(s, i), name=f"lmforge-tune-{i}")
             for i in range(s.workers)]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except BaseException:  # Ctrl-C: their running trials go stale and are run again later
        for p in procs:
            p.terminate()
        for p in procs:
            p.join()
        raise
    return [f"worker {i} exited with code {p.exitcode}" for i, p in enumerate(procs)
            if p.exitcode != 0]


def run_tune(s: TuneSettings, log: Callable[[str], None] = print) -> dict:
    """Validate, create or continue the study, run the workers (:func:`run_workers`) until
    it holds ``s.trials`` finished trials, then write the report
    (:func:`lmforge.tune.report.write_report`); returns its summary."""
    from ..io import ensure_writable_dir
    from .report import write_report

    s = check_settings(s, log)
    optuna = require_optuna()
    storage = open_storage(s.storage, s.heartbeat)
    study = open_study(s, storage)
    ensure_writable_dir(s.out)
    n = _counts(study)
    log(f"study {s.study}: {n['COMPLETE'] + n['PRUNED']} of {s.trials} trials finished; "
        f"{s.sampler} sampler, {s.direction} {s.metric}, {s.workers} worker(s)")
    failed = run_workers(s, log)
    study = optuna.load_study(study_name=s.study, storage=storage)
    summary = write_report(study, s, log)
    if failed:
        raise LmforgeError("; ".join(failed) + " (the errors are above)")
    return summary
