"""Multi-task learning against single-task runs on the same backbone and the same steps.

Runs a ``task: multitask`` recipe (default ``multitask-world``: NER + sentiment + topic
on the world's sets over a small BERT pretrained in the run), then each of its tasks
alone with the same recipe, backbone (the multi-task run's pretrained encoder) and
number of updates, and prints one row per task and held-out split: the task's own
metric for the multi-task and the single-task model, and the split's ceiling
(:mod:`lmforge.tasks.multitask_compare`).

``--steps total`` (default): every run makes the recipe's ``train.max_steps`` updates of
the same batch size. ``--steps per-task``: a task alone makes as many updates as the
mixture gave it. Finished runs in ``--out`` are reused, interrupted ones resumed.

Run ``python bench/multitask.py --out runs/multitask-compare --set train.threads=1``
(about 4 minutes on 2 cores, up to 10 when other jobs share them; ``--steps per-task``
after it about 1 more). Prints the Markdown table, then one JSON object per row;
``--out`` keeps comparison.json and comparison.md.
"""

from __future__ import annotations

import argparse

from _common import emit, machine_line

from lmforge.tasks.config import load_finetune_recipe
from lmforge.tasks.multitask_compare import compare_with_single_tasks, comparison_table
from lmforge.tasks.multitask_config import MultitaskRecipe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--recipe", default="multitask-world",
                    help="a task: multitask recipe (built-in name or YAML path)")
    ap.add_argument("--out", default="runs/multitask-compare", help="folder of the runs")
    ap.add_argument("--steps", choices=("total", "per-task"), default="total",
                    help="what 'the same steps' means for a task trained alone")
    ap.add_argument("--set", dest="sets", action="append", default=[],
                    help="override a recipe field (section.field=value), repeatable")
    ap.add_argument("--progress", action="store_true", help="show progress bars")
    args = ap.parse_args()
    recipe = load_finetune_recipe(args.recipe, args.sets)
    if not isinstance(recipe, MultitaskRecipe):
        raise SystemExit(f"error: {args.recipe} is not a task: multitask recipe")
    result = compare_with_single_tasks(recipe, args.out, args.steps,
                                       show_progress=args.progress)
    print(machine_line())
    print(comparison_table(result))
    print(f"seconds: {result['seconds']}")
    for row in result["rows"]:
        emit({"figure": "multitask_vs_single", "steps_rule": args.steps, **row})


if __name__ == "__main__":
    main()
