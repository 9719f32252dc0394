"""``lmforge tune``: thin; parses the options and calls :func:`lmforge.tune.run_tune`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import _echo, app
from .key_options import with_key


@app.command(epilog="Example: lmforge tune classify-topic --space space.yaml --trials 20 "
                    "--sampler tpe --study topic --storage sqlite:///runs/tune.db "
                    "--metric val_accuracy")
@with_key
def tune(
    recipe: Annotated[str, typer.Argument(help="A pretraining or fine-tuning recipe: a "
                                          "built-in name or a YAML path.", metavar="RECIPE")],
    space: Annotated[Path, typer.Option(help="Search space YAML: recipe fields to "
                                        "distributions, e.g. 'train.lr: {loguniform: "
                                        "[1e-4, 1e-2]}'.", metavar="SPACE.yaml")],
    trials: Annotated[int, typer.Option(help="Finished trials (complete + pruned) the "
                                        "study should hold, all workers together.")] = 20,
    sampler: Annotated[str, typer.Option(help="grid, random or tpe.")] = "tpe",
    study: Annotated[str | None, typer.Option(help="Study name (default: the recipe's "
                                              "name); a study in the storage continues.")]
    = None,
    storage: Annotated[str, typer.Option(help="sqlite:///path.db (one machine) or "
                                         "postgresql://user:pw@host:5432/db (several).")]
    = "sqlite:///runs/tune.db",
    metric: Annotated[str, typer.Option(help="The evaluation metric to optimise (val_loss, "
                                        "val_accuracy, val_f1_macro, ...).")] = "val_loss",
    direction: Annotated[str | None, typer.Option(
        help="minimize or maximize [default: minimize for a loss or perplexity, else "
             "maximize].")] = None,
    out: Annotated[Path | None, typer.Option(help="Output folder: trial runs, table, best "
                                             "recipe, plots [default: runs/tune/<study>].")]
    = None,
    workers: Annotated[int, typer.Option(help="Worker processes on this machine.")] = 1,
    seed: Annotated[int | None, typer.Option(help="Sampler seed (worker i uses seed + i); "
                                             "give each separate process its own.")] = None,
    prune: Annotated[bool, typer.Option("--prune/--no-prune", help="Stop trials whose "
                                        "metric is worse than the median at an "
                                        "evaluation.")] = True,
    prune_after: Annotated[int, typer.Option(help="Finished trials before pruning "
                                             "starts.")] = 5,
    heartbeat: Annotated[int, typer.Option(help="Seconds between a running trial's "
                                           "heartbeats; a trial silent for 5 of them lost "
                                           "its worker and is run again.")] = 10,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a field of every trial: section.field=value (repeatable).",
        metavar="KEY=VALUE")] = None,
):
    """Search hyper-parameters of a recipe with Optuna: each trial is a run folder;
    median pruning from the trainer's evaluations; workers share the storage; a study
    continues after a crash. Writes the table, the best recipe and plots. With a key
    option each trial's run files are encrypted, and a study that continues needs the
    same key (one worker per process: run several processes with the key on one
    storage)."""
    from ..errors import ConfigError
    from ..privacy.crypto import is_encrypted
    from ..privacy.encrypted_io import active_key, check_key
    from ..tune import TuneSettings, default_direction, load_space, resolve_tune_recipe, run_tune
    from ..tune.study import require_optuna

    if workers > 1 and active_key() is not None:
        raise ConfigError(f"--workers {workers} with a key: spawned workers do not receive "
                          "the key; start several `lmforge tune` processes with the key on "
                          "the same --storage instead")
    require_optuna()
    base = resolve_tune_recipe(recipe, list(set_ or []))
    name = study or base.load().run.name
    out = out or Path("runs/tune") / name
    earlier = next(iter(sorted(out.glob("trial_*/metrics.jsonl"))), None)
    if earlier is not None:  # a study continues as it began: encrypted with its key only
        check_key(earlier)
        if active_key() is not None and not is_encrypted(earlier):
            raise ConfigError(f"{out} holds a study run without a key ({earlier} is "
                              "plaintext): continue it without the key options, or give "
                              "a new --out and --study for an encrypted one")
    settings = TuneSettings(
        recipe=base, space=load_space(space), study=name, storage=storage,
        out=out, trials=trials, sampler=sampler, metric=metric,
        direction=direction or default_direction(metric), seed=seed, prune=prune,
        prune_after=prune_after, heartbeat=heartbeat, workers=workers)
    run_tune(settings, log=_echo)
