"""``lmforge cv``: k-fold cross-validation of a classification, NER or relation recipe.
Thin: parses options and calls :func:`lmforge.tasks.cv.cross_validate_recipe`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import _echo, app
from .key_options import with_key


@app.command(epilog="Example: lmforge cv classify-topic --folds 5 --stratified "
                    "--set train.max_steps=300 --out runs/topic-cv")
@with_key
def cv(
    recipe: Annotated[str, typer.Argument(help="A built-in fine-tuning recipe name or a YAML "
                                          "path (classification, NER or relations).",
                                          metavar="RECIPE")],
    folds: Annotated[int, typer.Option(help="Number of folds (>= 2).")] = 5,
    stratified: Annotated[bool, typer.Option(help="Keep the label proportions in every fold "
                                             "(classification, relations).")] = False,
    set_: Annotated[list[str] | None, typer.Option("--set", help="Override a field: "
                                                   "section.field=value (run.seed seeds "
                                                   "the folds).")] = None,
    out: Annotated[str | None, typer.Option(help="Output folder (default "
                                            "runs/<name>-cv).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted fold from its "
                                         "latest checkpoint.")] = False,
    progress: Annotated[bool, typer.Option(help="Show progress bars.")] = True,
):
    """Cross-validate a fine-tuning recipe: train and validation records pooled and split
    into K folds (seeded); each fold is a normal run (OUT/fold_k) validated on its
    held-out part and evaluated on the fixed test splits; per-fold metrics and mean ± std
    in OUT/cv.json. Completed folds are skipped on a re-run. With a key option every
    fold's files and cv.json are encrypted, and a re-run needs the same key."""
    from ..tasks.config import load_finetune_recipe
    from ..tasks.cv import cross_validate_recipe
    from ..train.checkpoint import check_run_key

    r = load_finetune_recipe(recipe, list(set_ or []))
    folder = Path(out) if out is not None else Path(f"{r.run.path}-cv")
    for run in (folder, *sorted(folder.glob("fold_*"))):  # before any fold is written
        check_run_key(run, r.train.distributed, resume)
    cross_validate_recipe(r, folder, folds, stratified=stratified, resume=resume,
                          show_progress=progress, log=_echo)
    _echo(f"done: per-fold metrics and mean ± std in {folder / 'cv.json'}")
