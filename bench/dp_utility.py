"""The utility of DP-SGD: world sentiment and topic accuracy at ε ∈ {1, 3, 8, ∞}.

Each run is ``lmforge finetune`` of one small recipe (:func:`recipe`): a TextCNN (Kim
2014) trained from scratch on ``--train`` world records (test split 1,000), max pooling,
``--steps`` updates of AdamW, expected batch ``--batch``. With ε finite the run has
``train.privacy: {target_epsilon: ε, delta: 1/N, max_grad_norm: 1, accountant: prv}``
(Opacus finds σ for ``--steps`` Poisson-sampled updates; N = the training records); ε = ∞
is the same recipe without privacy (batches drawn with replacement). δ = 1/N is the
issue's setting, at the edge of the δ < 1/N rule: the runs warn about it.

Every cell is the mean test accuracy over ``--seeds`` seeds (seeds change the world's
rendering, the initial weights, the batches and the noise), beside the test split's
ceiling (the best accuracy any model can reach on the world's labels).

Run ``OMP_NUM_THREADS=1 python bench/dp_utility.py`` (one thread; about 24 runs of
under a minute each). Prints a table, then one JSON line per cell (``metric``:
``accuracy_<set>_eps<ε>``) with the machine tag.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import emit, machine_line

from lmforge.tasks.config import build_finetune_recipe
from lmforge.tasks.finetune import finetune

SETS = ("sentiment", "topic")
EPSILONS = (1.0, 3.0, 8.0, math.inf)


def recipe(world: str, eps: float, seed: int, out: Path, *, n_train: int, steps: int,
           batch: int, lr: float) -> dict:
    """The recipe of one cell: a small TextCNN on ``world``; private unless ε = ∞."""
    train = {"max_steps": steps, "batch_size": batch, "lr": lr, "min_lr": 0.0,
             "warmup_steps": max(1, steps // 20), "weight_decay": 0.0, "beta2": 0.999,
             "eval_every": steps, "ckpt_every": steps, "keep_last": 1, "log_every": steps,
             "threads": 1}
    if math.isfinite(eps):
        train["privacy"] = {"target_epsilon": eps, "delta": 1.0 / n_train,
                            "max_grad_norm": 1.0, "accountant": "prv"}
    return {"run": {"name": f"{world}-{eps}-{seed}", "out_dir": str(out), "seed": seed},
            "data": {"world": world, "world_sizes": {"train": n_train, "val": 200,
                                                     "test": 1000},
                     "max_length": 64},
            "backbone": {"encoder": "textcnn",
                         "encoder_config": {"d_emb": 64, "n_filters": 48,
                                            "kernel_sizes": [2, 3, 4]}},
            "head": {"pooling": "max", "dropout": 0.0},
            "finetune": {"metric": "accuracy"},
            "train": train}


def run_cell(world: str, eps: float, seed: int, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"train\.privacy\.delta=")
        t0 = time.perf_counter()
        res = finetune(build_finetune_recipe(recipe(
            world, eps, seed, Path(tmp) / "run", n_train=args.train, steps=args.steps,
            batch=args.batch, lr=args.lr)), show_progress=False, log=lambda m: None)
        test = res.results["splits"]["test"]
        priv = res.results.get("privacy") or {}
        return {"accuracy": test["accuracy"], "ceiling": test["ceiling"],
                "epsilon_spent": priv.get("epsilon"), "sigma": priv.get("noise_multiplier"),
                "seconds": time.perf_counter() - t0}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--train", type=int, default=4000, help="training records (N)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=128, help="(expected) batch size")
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=SETS)
    args = ap.parse_args()
    torch.set_num_threads(1)

    cells: dict[tuple[str, float], list[dict]] = {}
    for world in args.sets:
        for eps in EPSILONS:
            for seed in range(args.seeds):
                r = run_cell(world, eps, seed, args)
                cells.setdefault((world, eps), []).append(r)
                print(f"# {world} eps={eps} seed={seed}: acc {r['accuracy']:.4f} "
                      f"(eps spent {r['epsilon_spent']}, sigma {r['sigma']}, "
                      f"{r['seconds']:.0f} s)", file=sys.stderr, flush=True)

    print(machine_line())
    print(f"TextCNN, N={args.train}, {args.steps} steps, expected batch {args.batch}, "
          f"delta=1/N, {args.seeds} seeds (mean ± std of test accuracy)")
    head = f"{'set':<10}" + "".join(f"{'eps=' + str(e):>16}" for e in EPSILONS) + \
        f"{'ceiling':>10}"
    print(head)
    for world in args.sets:
        row = f"{world:<10}"
        for eps in EPSILONS:
            acc = np.array([r["accuracy"] for r in cells[(world, eps)]])
            row += f"{f'{acc.mean():.4f} ± {acc.std():.4f}':>16}"
        print(row + f"{cells[(world, EPSILONS[0])][0]['ceiling']:>10.4f}")
    for (world, eps), rs in cells.items():
        acc = [r["accuracy"] for r in rs]
        emit({"bench": "dp_utility", "metric": f"accuracy_{world}_eps{eps:g}",
              "lmforge": float(np.mean(acc)), "per_seed": acc,
              "ceiling": rs[0]["ceiling"],
              "epsilon": eps if math.isfinite(eps) else None,  # None: not private
              "epsilon_spent": [r["epsilon_spent"] for r in rs],
              "noise_multiplier": rs[0]["sigma"], "delta": 1.0 / args.train,
              "n_train": args.train, "steps": args.steps, "batch": args.batch,
              "seconds": [round(r["seconds"], 1) for r in rs]})


if __name__ == "__main__":
    main()
