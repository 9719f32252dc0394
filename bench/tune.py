"""Hyper-parameter search: TPE against random search on one fine-tuning recipe.

The recipe is the built-in ``classify-topic`` (a TextCNN trained from scratch on the
world's topic set) made small enough that a trial takes a few seconds on one thread:
1,000 training texts, 400 for validation, embeddings and filters of 64, 100 steps with
an evaluation every 25. The space has three dimensions::

    train.lr:          {loguniform: [1e-4, 1e-1]}
    head.dropout:      {uniform: [0.0, 0.7]}
    train.batch_size:  {choice: [8, 16, 32, 64]}

For each seed (0, 1, 2) two studies of 20 trials run through :func:`lmforge.tune.run_tune`
(what ``lmforge tune`` runs), each on its own SQLite storage, with every default of the
command: median pruning after 5 finished trials, the metric ``val_loss`` (minimised).
One is TPE (``--sampler tpe --seed S``), the other random search (``--sampler random
--seed S``). The figure of a study is the best validation loss of its complete trials.

With one seed, TPE's first 10 trials (its random start-up) draw the same parameters as
random search's first 10, so the two studies differ in their last 10 trials: TPE's
guided ones against 10 more random ones. The recipe's scratch tokenizer is byte-level
BPE here: HF ``tokenizers`` trains WordPiece (the recipe's default) differently in each
process (huggingface/tokenizers#1794: the ``##`` tokens get ids in hash-map order, which
breaks count ties differently), so identical WordPiece trials give values about 0.01
apart, as large as the differences being measured; BPE trains the same every time. The
script first runs the base recipe ``--repeats`` times alike and reports the spread.

Bar (issue 16): TPE's best is at least as good as random search's (lower or equal
val_loss) on every seed. Prints a table, then one JSON object for the noise and one per
seed (``lmforge``: TPE, ``peer``: random search), each with the machine tag.

Run ``python bench/tune.py`` (``--trials``, ``--seeds`` and ``--work`` change the scale
and the folder; about 10 minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from _common import emit, machine_line

RECIPE = "classify-topic"
SETS = ["data.world_sizes={train: 1000, val: 400, test: 100, test_unseen: 50}",
        "data.max_length=48",
        "backbone.encoder_config={d_emb: 64, n_filters: 64, kernel_sizes: [2, 3, 4]}",
        "train.max_steps=100", "train.eval_every=25", "train.ckpt_every=100",
        "train.warmup_steps=10", "train.precision=fp32", "train.threads=1",
        "backbone.tokenizer.kind=bpe"]
SPACE = {"train.lr": {"loguniform": [1e-4, 1e-1]},
         "head.dropout": {"uniform": [0.0, 0.7]},
         "train.batch_size": {"choice": [8, 16, 32, 64]}}
SAMPLERS = ("random", "tpe")


def run_study(sampler: str, seed: int, trials: int, work: Path) -> dict:
    """One study; its best value, the number of pruned trials and its wall time."""
    from lmforge.tune import TuneSettings, parse_space, resolve_tune_recipe, run_tune

    name = f"{sampler}-seed{seed}"
    settings = TuneSettings(
        recipe=resolve_tune_recipe(RECIPE, SETS), space=parse_space(SPACE, "bench space"),
        study=name, storage=f"sqlite:///{work / name}.db", out=work / name, trials=trials,
        sampler=sampler, metric="val_loss", direction="minimize", seed=seed)
    t0 = time.perf_counter()
    summary = run_tune(settings, log=lambda _m: None)
    return {"best": summary["best"]["value"], "params": summary["best"]["params"],
            "trial": summary["best"]["trial"], "pruned": summary["trials"]["pruned"],
            "seconds": time.perf_counter() - t0}


def noise(repeats: int, work: Path) -> list[float]:
    """The best val_loss of the base recipe (its own lr 2e-3, dropout 0.3, batch 32) run
    ``repeats`` times alike: the spread two identical trials can show (the scratch
    tokenizer's WordPiece training breaks ties in counts differently from run to run)."""
    from lmforge.tune import resolve_tune_recipe
    from lmforge.tune.study import evaluations

    recipe = resolve_tune_recipe(RECIPE, SETS)
    return [min(v for _, v in evaluations(recipe.run(recipe.load({}, work / f"noise_{i}")),
                                          "val_loss")) for i in range(repeats)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=20)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--repeats", type=int, default=3,
                    help="identical runs of the base recipe that measure the noise")
    ap.add_argument("--work", type=Path, default=None,
                    help="folder for the studies (default: a temporary one, removed)")
    args = ap.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="lmforge-bench-tune-"))
    results: dict[tuple[int, str], dict] = {}
    try:
        same = noise(args.repeats, work)
        print(f"noise: {len(same)} identical runs of the base recipe: best val_loss "
              f"{', '.join(f'{v:.4f}' for v in same)}", flush=True)
        for seed in args.seeds:
            for sampler in SAMPLERS:
                results[seed, sampler] = r = run_study(sampler, seed, args.trials, work)
                print(f"seed {seed} {sampler}: best val_loss {r['best']:.4f} (trial "
                      f"{r['trial']}), {r['pruned']} pruned, {r['seconds']:.0f} s",
                      flush=True)
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    print(machine_line())
    print(f"{RECIPE}, {args.trials} trials per study, best val_loss of the complete "
          "trials (lower is better)")
    print(f"{'seed':>4}  {'random':>8}  {'tpe':>8}  {'tpe <= random':>13}  "
          f"{'pruned r/t':>10}  {'time r/t (s)':>12}")
    for seed in args.seeds:
        r, t = results[seed, "random"], results[seed, "tpe"]
        print(f"{seed:>4}  {r['best']:>8.4f}  {t['best']:>8.4f}  "
              f"{str(t['best'] <= r['best']):>13}  {r['pruned']:>4}/{t['pruned']:<5}  "
              f"{r['seconds']:>5.0f}/{t['seconds']:<6.0f}")
    print(f"noise: the base recipe run {len(same)} times alike gives best val_loss "
          f"{min(same):.4f} to {max(same):.4f} (spread {max(same) - min(same):.4f})")
    emit({"bench": "tune", "metric": "noise_best_val_loss", "recipe": RECIPE,
          "runs": [round(v, 5) for v in same], "spread": round(max(same) - min(same), 5)})
    for seed in args.seeds:
        r, t = results[seed, "random"], results[seed, "tpe"]
        emit({"bench": "tune", "metric": "best_val_loss", "recipe": RECIPE, "seed": seed,
              "trials": args.trials, "lmforge": round(t["best"], 5),
              "peer": round(r["best"], 5), "peer_name": "optuna RandomSampler",
              "ratio": round(t["best"] / r["best"], 4), "met": t["best"] <= r["best"],
              "tpe_params": t["params"], "random_params": r["params"],
              "pruned_tpe": t["pruned"], "pruned_random": r["pruned"],
              "seconds_tpe": round(t["seconds"], 1),
              "seconds_random": round(r["seconds"], 1)})


if __name__ == "__main__":
    main()
