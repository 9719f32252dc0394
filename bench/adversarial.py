"""How much adversarial text costs the sentiment classifier, with and without the
normalisation defences and with and without EDA augmentation in training.

**Models.** Two TextCNN classifiers trained from scratch on the world's sentiment set
(recipe ``classify-topic``'s backbone and training, ``data.world=sentiment``: 4,000
training reviews, its WordPiece tokenizer, 1,500 steps of batch 32, fp32, ``--threads``
torch threads): one without augmentation, one with EDA (``data.augment=4``,
``data.augment_alpha=0.1``, all four operations; the paper's setting for this size), each
for every training seed of ``--seeds`` (``run.seed``: it draws the world set, the weights
and the batch order; each model is tested on its own seed's test split). The full
``classify-sentiment`` recipe (a BERT pretrained first) takes far longer; this recipe
trains in under a minute on one thread. Runs are cached: a run folder with
``results.json`` is reused.

**Attacks** (:mod:`lmforge.eval.attacks`) on the test split (1,000 reviews, half English,
half Chinese), each at ``--rate`` (0.1) with ``--seed`` (0): charnoise, homoglyph,
zerowidth, synonym. **Defended**: every input passes
:func:`lmforge.eval.attacks.defended` (invisible characters, homoglyphs, mixed scripts).
The drop is clean accuracy - attacked accuracy, in points.

    python bench/adversarial.py [--rate 0.1] [--seed 0] [--seeds 0,1,2] [--threads 1]
                                [--work runs/bench-adversarial]

Prints the table (mean ± sample std over the training seeds) headed by the machine, then
one JSON object per (model, attack, defence): ``lmforge`` = the mean accuracy drop in
points, ``std``, with the mean ``clean`` and ``attacked`` accuracy and the set's
``ceiling``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _common import emit, machine_line

from lmforge.corpora.tasks import render_task_set
from lmforge.eval.attacks import ATTACKS, evaluate_under_attack
from lmforge.tasks import load_task_model
from lmforge.tasks.config import load_finetune_recipe
from lmforge.tasks.finetune import finetune

AUGMENT = {"no EDA": 0, "EDA": 4}


def train(work: Path, n_aug: int, threads: int, seed: int) -> Path:
    """The TextCNN sentiment run with ``n_aug`` EDA copies and ``run.seed`` (cached)."""
    run = work / f"textcnn-aug{n_aug}-seed{seed}"
    if not (run / "results.json").is_file():
        sets = ["data.world=sentiment", f"data.augment={n_aug}", "data.augment_alpha=0.1",
                "train.max_steps=1500", f"train.threads={threads}", "train.precision=fp32",
                f"run.seed={seed}", f"run.out_dir={run}"]
        t0 = time.perf_counter()
        finetune(load_finetune_recipe("classify-topic", sets), show_progress=False,
                 log=lambda m: None)
        print(f"trained {run} in {time.perf_counter() - t0:.0f} s", flush=True)
    return run


def _mean_std(xs: list[float]) -> tuple[float, float | None]:
    return statistics.mean(xs), statistics.stdev(xs) if len(xs) > 1 else None


def _cell(xs: list[float], width: int) -> str:
    """Mean (± sample std) of fractions, in %."""
    m, sd = _mean_std([100 * x for x in xs])
    return (f"{m:.1f}" + ("" if sd is None else f" ±{sd:.1f}")).rjust(width)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=0, help="the attacks' seed")
    ap.add_argument("--seeds", default="0,1,2", help="training seeds (run.seed: the "
                    "world set, the weights and the batch order)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="runs/bench-adversarial")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    work = Path(args.work)
    seeds = [int(x) for x in args.seeds.split(",")]
    # (model, attack, defended) -> one result per training seed
    rows: dict[tuple[str, str, bool], list[dict]] = {}
    ceilings = []
    for seed in seeds:
        ts = render_task_set("sentiment", seed=seed)  # the world set of run.seed
        test = ts.splits["test"]
        ceilings.append(ts.card["ceiling"]["test"])
        for name, n_aug in AUGMENT.items():
            pred = load_task_model(train(work, n_aug, args.threads, seed))
            for attack in ATTACKS:
                for defend in (False, True):
                    rows.setdefault((name, attack, defend), []).append(evaluate_under_attack(
                        pred, test, attack, args.rate, args.seed, defend))

    ceiling = statistics.mean(ceilings)
    print(machine_line())
    print(f"sentiment test set: {len(test)} reviews (en + zh), ceiling {100 * ceiling:.1f}%; "
          f"attack rate {args.rate}, attack seed {args.seed}; training seeds {args.seeds} "
          "(mean ± std); accuracy in %, drop in points")
    cols = ("clean", "attacked", "drop", "defended", "drop")
    print(f"{'attack':<10}" + "".join(" | " + " ".join(
        f"{(name + ': ' if i == 0 else '') + c:>{16 if i == 0 else 11}}"
        for i, c in enumerate(cols)) for name in AUGMENT))
    for attack in ATTACKS:
        line = f"{attack:<10}"
        for name in AUGMENT:
            off, on = rows[name, attack, False], rows[name, attack, True]
            vals = ([r["clean"]["accuracy"] for r in off],
                    [r["attacked"]["accuracy"] for r in off],
                    [r["drop"]["accuracy"] for r in off],
                    [r["attacked"]["accuracy"] for r in on],
                    [r["drop"]["accuracy"] for r in on])
            line += " | " + " ".join(_cell(v, 16 if i == 0 else 11)
                                     for i, v in enumerate(vals))
        print(line)
    for (name, attack, defend), rs in rows.items():
        drop, sd = _mean_std([100 * r["drop"]["accuracy"] for r in rs])
        emit({"bench": "adversarial", "metric": f"acc_drop_{attack}", "attack": attack,
              "augment": name == "EDA", "defend": defend, "rate": args.rate,
              "attack_seed": args.seed, "seeds": seeds, "lmforge": round(drop, 2),
              "std": None if sd is None else round(sd, 2),
              "clean": round(100 * statistics.mean(r["clean"]["accuracy"] for r in rs), 2),
              "attacked": round(100 * statistics.mean(r["attacked"]["accuracy"] for r in rs),
                                2),
              "ceiling": round(100 * ceiling, 2), "unit": "points"})


if __name__ == "__main__":
    main()
