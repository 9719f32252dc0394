"""Multi-task against single-task: the same backbone, the same steps, one table.

:func:`compare_with_single_tasks` runs a ``task: multitask`` recipe, then each of its
tasks alone: the same recipe with that one task (so the same code, data, head, loss,
optimizer and schedule), on the same backbone (the multi-task run's pretrained encoder
when ``backbone.pretrain`` made one, else the recipe's backbone section), with

- ``steps="total"`` (the default): the same number of updates as the multi-task run, of
  the same batch size (each model gets the same compute; a task alone sees ``S``
  batches of its own data where the mixture gave it about ``p_i S``);
- ``steps="per-task"``: as many updates as the mixture gave that task (the micro-batches
  it drew, :func:`lmforge.tasks.multitask.task_draws`): each task sees the same amount
  of its own data either way, and the multi-task run spends the rest on the others.

Every held-out split (test, test_unseen, the sentiment set's contrast pairs) is scored
with the task's own metric; the table puts the two runs beside the split's ceiling.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Literal

from ..errors import LmforgeError
from ..io import read_json
from ..privacy.encrypted_io import write_json, write_text
from .config import BackboneConfig
from .multitask import finetune_multitask
from .multitask_config import MultitaskRecipe, build_multitask_recipe

StepsRule = Literal["total", "per-task"]


def _run(recipe: MultitaskRecipe, log: Callable[[str], None], show_progress: bool) -> dict:
    """``results.json`` of the recipe's run, trained now unless it finished before (an
    interrupted one resumes); the seconds it took are added under ``seconds``. A folder
    that holds a run of another recipe is an error."""
    from ..config import load_yaml
    from ..train import latest_checkpoint

    def what(r: MultitaskRecipe) -> dict:  # the recipe, wherever its folder is
        raw = r.to_dict()
        return {**raw, "run": {k: v for k, v in raw["run"].items() if k != "out_dir"}}

    saved = recipe.run.path / "config.yaml"
    if saved.is_file() and what(build_multitask_recipe(load_yaml(saved))) != what(recipe):
        raise LmforgeError(f"{recipe.run.path} holds a run of another recipe; choose "
                           "another output folder")
    done = recipe.run.path / "results.json"
    if done.is_file():
        log(f"{recipe.run.path}: finished before, reusing its results")
        return read_json(done)
    t0 = time.perf_counter()
    res = finetune_multitask(recipe, resume=latest_checkpoint(recipe.run.path) is not None,
                             show_progress=show_progress, log=log)
    return {**res.results, "seconds": round(time.perf_counter() - t0, 1)}


def shared_backbone(recipe: MultitaskRecipe, run_dir: Path) -> BackboneConfig:
    """The backbone the single-task runs start from: the multi-task run's pretrained
    encoder (``<run>/backbone``), or the recipe's own backbone section."""
    from ..train import best_checkpoint, latest_checkpoint

    if recipe.backbone.pretrain is None:
        return recipe.backbone
    folder = run_dir / "backbone"
    ckpt = best_checkpoint(folder) or latest_checkpoint(folder)
    return BackboneConfig(path=str(ckpt))


def single_task_recipe(recipe: MultitaskRecipe, name: str, backbone: BackboneConfig,
                       steps: int, out_dir: Path) -> MultitaskRecipe:
    """The recipe with task ``name`` alone, ``backbone`` and ``steps`` updates."""
    return MultitaskRecipe.model_validate({
        **recipe.to_dict(), "tasks": {name: recipe.tasks[name].model_dump(mode="json")},
        "backbone": backbone.model_dump(mode="json"),
        "run": {**recipe.run.model_dump(mode="json"), "out_dir": str(out_dir)},
        "train": {**recipe.train.model_dump(mode="json"), "max_steps": steps}})


def compare_with_single_tasks(recipe: MultitaskRecipe, out: str | Path,
                              steps: StepsRule = "total", *, show_progress: bool = False,
                              log: Callable[[str], None] = print) -> dict:
    """Train ``recipe`` into ``out/multitask`` and each task alone into
    ``out/single-<task>-<updates>``; write ``out/comparison.json`` and ``out/comparison.md``
    (encrypted when a key is active) and return the comparison (``rows``: task, split,
    metric, multitask, single, ceiling)."""
    out = Path(out)
    mt_recipe = recipe.model_copy(update={"run": recipe.run.model_copy(
        update={"out_dir": str(out / "multitask")})})
    multi = _run(mt_recipe, log, show_progress)
    backbone = shared_backbone(mt_recipe, mt_recipe.run.path)
    total = recipe.train.max_steps
    singles, updates = {}, {}
    for name in recipe.tasks:
        mixed = multi["tasks"][name]["micro_batches"] // recipe.train.grad_accum
        updates[name] = {"multitask": mixed,
                         "single": total if steps == "total" else max(1, mixed)}
        n = updates[name]["single"]
        single = single_task_recipe(recipe, name, backbone, n, out / f"single-{name}-{n}")
        singles[name] = _run(single, log, show_progress)
    rows = []
    for name, t in multi["tasks"].items():
        metric = t["metric"]
        alone = singles[name]["tasks"][name]["splits"]
        for split, r in t["splits"].items():
            if split == "val":
                continue
            rows.append({"task": name, "split": split, "metric": metric, "n": r["n"],
                         "multitask": r[metric], "single": alone[split][metric],
                         "ceiling": r.get("ceiling")})
    result = {"steps_rule": steps, "total_steps": total, "updates": updates,
              "seconds": {"multitask": multi.get("seconds"),
                          **{f"single-{n}": s.get("seconds") for n, s in singles.items()}},
              "backbone": backbone.model_dump(mode="json", exclude_defaults=True),
              "rows": rows}
    write_json(out / "comparison.json", result)
    write_text(out / "comparison.md", comparison_table(result) + "\n")
    return result


def comparison_table(result: dict) -> str:
    """The comparison as a Markdown table, with the updates each task's data got."""
    lines = ["| task | split | metric | multi-task | single-task | difference | ceiling |",
             "|---|---|---|---:|---:|---:|---:|"]
    for r in result["rows"]:
        ceil = "" if r["ceiling"] is None else f"{r['ceiling']:.4f}"
        lines.append(f"| {r['task']} | {r['split']} | {r['metric']} | {r['multitask']:.4f} "
                     f"| {r['single']:.4f} | {r['multitask'] - r['single']:+.4f} | {ceil} |")
    upd = ", ".join(f"{n} {u['multitask']} (multi-task) / {u['single']} (alone)"
                    for n, u in result["updates"].items())
    lines.append("")
    lines.append(f"Updates on each task's batches ({result['steps_rule']} rule, "
                 f"{result['total_steps']} multi-task steps): {upd}.")
    return "\n".join(lines)
