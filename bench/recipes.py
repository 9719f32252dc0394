"""Run built-in recipes at full size and report how far each beats the unigram baseline.

Each recipe is run end to end through ``lmforge.pretrain`` (data, tokenizer, model,
trainer, checkpoints, samples) exactly as ``lmforge pretrain NAME`` runs it. The table
gives the parameter count, steps, wall time, the final validation loss (nats per
predicted target token) and the unigram entropy ``H`` of the same validation targets
(:func:`lmforge.train.tasks.unigram_baseline`), with the ratio ``loss / H``. One JSON
line per recipe is printed as each finishes (``bench``, ``metric``, ``lmforge`` = the
validation loss, ``peer`` = ``H``, ``ratio`` = ``loss / H``, the row's fields, and the
machine tag ``cpu``, ``isa``, ``isa_caps``, ``threads``); the table, headed by the
machine, follows.

Not a timed benchmark and not run by ``make bench``: each recipe trains at full size
(5-10 minutes each on 2 cores), so the run takes as long as the recipes named. Recipes
use ``precision: auto`` (:func:`lmforge.train.resolve_precision`), which trains in fp32
where bf16 is emulated.

    python bench/recipes.py bert-world t5-world --out /tmp/recipes [--set train.max_steps=300]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from _common import emit, machine_line

from lmforge.config import load_recipe, resolve_recipe_path
from lmforge.pretrain import pretrain
from lmforge.train.tasks import unigram_baseline


def run_one(name: str, out: Path, overrides: list[str]) -> dict:
    recipe = load_recipe(resolve_recipe_path(name), [f"run.out_dir={out / name}", *overrides])
    t0 = time.perf_counter()
    result = pretrain(recipe, show_progress=False)
    wall = time.perf_counter() - t0
    h = unigram_baseline(recipe, result.run_dir / "data", result.tokenizer, result.model)
    loss = result.train.final_val_loss
    return {"recipe": name, "arch": recipe.arch,
            "params_M": round(sum(p.numel() for p in result.model.parameters()) / 1e6, 2),
            "steps": result.train.steps, "wall_s": round(wall, 1),
            "val_loss": round(loss, 4), "unigram_nats": round(h, 4),
            "ratio": round(loss / h, 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("recipes", nargs="+", help="built-in recipe names or YAML paths")
    ap.add_argument("--out", type=Path, default=Path("runs/bench-recipes"))
    ap.add_argument("--set", dest="overrides", action="append", default=[],
                    metavar="KEY=VALUE", help="override applied to every recipe")
    args = ap.parse_args()
    rows = []
    for name in args.recipes:
        r = run_one(name, args.out, args.overrides)
        rows.append(r)
        emit({"bench": "recipes", "metric": f"val_loss_over_unigram_{name}",
              "lmforge": r["val_loss"], "peer": r["unigram_nats"],
              "peer_name": "unigram entropy (nats)", "target": None, "met": None, **r})
    print()
    print(machine_line())
    print(f"{'recipe':<16}{'arch':<13}{'params':>8}{'steps':>7}{'wall s':>8}"
          f"{'val loss':>10}{'unigram':>9}{'ratio':>7}")
    for r in rows:
        print(f"{r['recipe']:<16}{r['arch']:<13}{r['params_M']:>7.2f}M{r['steps']:>7}"
              f"{r['wall_s']:>8.0f}{r['val_loss']:>10.3f}{r['unigram_nats']:>9.3f}"
              f"{r['ratio']:>7.2f}")


if __name__ == "__main__":
    main()
