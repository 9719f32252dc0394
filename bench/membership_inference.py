"""How much DP-SGD protects: the loss-threshold membership-inference attack (Yeom et al.
2018, :mod:`lmforge.privacy.membership`) against a deliberately overfit classifier.

The model is a TextCNN (``d_emb`` 128, 128 filters of widths 2-4, no dropout, no weight
decay) trained from scratch on ``--train`` world sentiment records for ``--steps``
updates of batch ``--batch`` (about 20 epochs: it memorises its training set). The
members are those training records; the non-members are as many records of the world's
test split (the same distribution, never trained on). The attack's AUC is computed
twice per seed: without DP, and with ``train.privacy: {target_epsilon: 1, delta: 1/(10 N),
max_grad_norm: 1}`` (the same recipe otherwise). **Bars**: without DP the AUC is clearly
above 0.5; with ε = 1 it is at most 0.55.

Run ``OMP_NUM_THREADS=1 python bench/membership_inference.py``. Prints a table (AUC,
Yeom's advantage, train and test accuracy per seed), then one JSON line per setting with
the mean AUC and whether its bar is met.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import emit, machine_line

from lmforge.privacy.membership import classification_losses, membership_auc, yeom_advantage
from lmforge.tasks.config import build_finetune_recipe
from lmforge.tasks.finetune import finetune

SETTINGS = {"no DP": None, "DP eps=1": 1.0}
BARS = {"no DP": ("auc > 0.55", lambda auc: auc > 0.55),
        "DP eps=1": ("auc <= 0.55", lambda auc: auc <= 0.55)}


def recipe(eps: float | None, seed: int, out: Path, args: argparse.Namespace) -> dict:
    train = {"max_steps": args.steps, "batch_size": args.batch, "lr": 3e-3, "min_lr": 0.0,
             "warmup_steps": 10, "weight_decay": 0.0, "beta2": 0.999,
             "eval_every": args.steps, "ckpt_every": args.steps, "keep_last": 1,
             "log_every": args.steps, "threads": 1}
    if eps is not None:
        train["privacy"] = {"target_epsilon": eps, "delta": 0.1 / args.train,
                            "max_grad_norm": 1.0}
    return {"run": {"name": f"mia-{eps}-{seed}", "out_dir": str(out), "seed": seed},
            "data": {"world": "sentiment", "max_length": 64,
                     "world_sizes": {"train": args.train, "val": 100,
                                     "test": 2 * (args.train // 2 + 1)}},
            "backbone": {"encoder": "textcnn",
                         "encoder_config": {"d_emb": 128, "n_filters": 128,
                                            "kernel_sizes": [2, 3, 4]}},
            "head": {"pooling": "max", "dropout": 0.0},
            "finetune": {"metric": "accuracy"}, "train": train}


def attack(eps: float | None, seed: int, args: argparse.Namespace) -> dict:
    from lmforge.tasks.datasets import load_splits

    with tempfile.TemporaryDirectory() as tmp:
        rec = build_finetune_recipe(recipe(eps, seed, Path(tmp) / "run", args))
        res = finetune(rec, show_progress=False, log=lambda m: None)
        splits, _, _ = load_splits(rec)
        members = splits["train"]
        nonmembers = splits["test"][: len(members)]
        model, tok = res.predictor.model, res.predictor.tokenizer
        lm = classification_losses(model, tok, members)
        ln = classification_losses(model, tok, nonmembers)
        priv = res.results.get("privacy") or {}
        return {"auc": membership_auc(lm, ln), "advantage": yeom_advantage(lm, ln),
                "train_acc": float(np.mean(lm < np.log(2))),  # gold prob > 1/2
                "test_acc": res.results["splits"]["test"]["accuracy"],
                "train_loss": float(lm.mean()), "test_loss": float(ln.mean()),
                "epsilon": priv.get("epsilon")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, default=500, help="members (training records)")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(1)

    rows = {name: [] for name in SETTINGS}
    for seed in range(args.seeds):
        for name, eps in SETTINGS.items():
            r = attack(eps, seed, args)
            rows[name].append(r)
            print(f"# {name} seed {seed}: {r}", file=sys.stderr, flush=True)

    print(machine_line())
    print(f"TextCNN on {args.train} world sentiment records, {args.steps} steps of "
          f"batch {args.batch}; non-members: {args.train} test records")
    print(f"{'setting':<10}{'seed':>5}{'AUC':>8}{'adv':>8}{'train loss':>12}"
          f"{'test loss':>11}{'test acc':>10}{'eps':>8}")
    for name, rs in rows.items():
        for seed, r in enumerate(rs):
            eps = "" if r["epsilon"] is None else f"{r['epsilon']:.2f}"
            print(f"{name:<10}{seed:>5}{r['auc']:>8.4f}{r['advantage']:>8.4f}"
                  f"{r['train_loss']:>12.4f}{r['test_loss']:>11.4f}{r['test_acc']:>10.4f}"
                  f"{eps:>8}")
    for name, rs in rows.items():
        auc = float(np.mean([r["auc"] for r in rs]))
        target, ok = BARS[name]
        emit({"bench": "membership_inference", "metric": f"auc_{name.replace(' ', '_')}",
              "lmforge": auc, "per_seed": [r["auc"] for r in rs], "target": target,
              "met": bool(ok(auc)), "n_members": args.train, "steps": args.steps,
              "test_accuracy": [r["test_acc"] for r in rs]})


if __name__ == "__main__":
    main()
