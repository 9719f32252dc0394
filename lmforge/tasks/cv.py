"""k-fold cross-validation of a fine-tuning recipe: ``lmforge cv RECIPE --folds K``.

**The pool.** The records the recipe trains and selects on: its ``train`` split (after
``data.train_limit``) followed by its ``val`` split, as :func:`~.datasets.load_splits`
gives them (for a single file without ``data.val``: the whole file). The other splits
(the world's ``test``, ``test_unseen``, ``contrast``; the files of ``data.test``) stay
fixed and are evaluated by every fold.

**The folds.** scikit-learn's ``KFold(K, shuffle=True, random_state=run.seed)`` over the
pool, or with ``stratified`` ``StratifiedKFold`` on the label (classification) or the
relation (relation extraction): the held-out parts are disjoint, cover the pool, and are
the same for the same seed. NER records hold several entity types each and have no one
label to stratify on, so ``stratified`` is an error there. Fold ``k`` trains on the other
``K - 1`` parts and uses its held-out part as the validation split: it picks the best
checkpoint and is the fold's reported ``val`` score. Everything the recipe builds from its
training text (a scratch tokenizer, a ``backbone.pretrain`` run) is built per fold from
that fold's training part, so no held-out text leaks into it.

**The summary.** For each split and metric, the mean over the ``K`` folds and the sample
standard deviation (``ddof=1``)::

    mean = (1/K) sum_k x_k        std = sqrt( sum_k (x_k - mean)^2 / (K - 1) )

A world set's ceiling is reported beside: the card's for the fixed splits, and for each
held-out part the share of its records whose label is the noise-free one (1.0 for NER
and relations, which carry no label noise).

The output folder::

    OUT/
      folds.json         seed, K, stratified, the pool's sizes, held-out pool indices per fold
      data/<split>.jsonl the fixed evaluation splits, as JSONL the task readers read
      fold_1/ .. fold_K/ normal fine-tuning run folders (config.yaml, results.json, ...),
                         each with data/train.jsonl and data/val.jsonl (its held-out part)
      cv.json            per-fold metrics, mean and std per split and metric, ceilings

A fold with ``results.json`` is complete and is not run again; with ``resume`` an
interrupted fold continues from its latest checkpoint. Inside
:func:`lmforge.privacy.encrypted_io.using_key` the folds are encrypted runs and
``cv.json``, ``folds.json`` and every ``data/`` split (written by the task writers of
:mod:`lmforge.data.task_readers`, read back through :mod:`lmforge.data.readers`) are
encrypted too.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import load_yaml
from ..errors import ConfigError, LmforgeError
from ..io import ensure_writable_dir, read_json
from ..privacy.encrypted_io import write_json
from .config import FinetuneRecipe, build_finetune_recipe
from .datasets import load_splits

CV_TASKS = ("classify", "tag", "relate")
LABEL_FIELD = {"classify": "label", "relate": "relation"}
STD = "sample standard deviation over the folds (ddof=1)"


@dataclass
class Pool:
    """The records the folds are drawn from, the fixed evaluation splits and the card."""

    task: str
    records: list[dict]
    n_train: int
    fixed: dict[str, list[dict]]
    card: dict | None


def make_folds(n: int, folds: int, seed: int, labels: Sequence[str] | None = None
               ) -> list[list[int]]:
    """The held-out indices (sorted) of each of ``folds`` folds over ``n`` records:
    ``KFold`` with a seeded shuffle, or ``StratifiedKFold`` on ``labels`` when given."""
    from .classical_linear import require_sklearn

    require_sklearn("cross-validation")
    from sklearn.model_selection import KFold, StratifiedKFold

    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise ConfigError(f"--folds must be an integer >= 2, got {folds!r}")
    if folds > n:
        raise ConfigError(f"--folds {folds} exceeds the {n} records to split")
    if labels is None:
        split = KFold(folds, shuffle=True, random_state=seed).split(np.zeros(n))
    else:
        label, count = min(Counter(labels).items(), key=lambda kv: (kv[1], kv[0]))
        if count < folds:
            raise ConfigError(f"--stratified: label {label!r} has {count} record(s), fewer "
                              f"than the {folds} folds; use fewer folds or drop --stratified")
        split = StratifiedKFold(folds, shuffle=True, random_state=seed).split(
            np.zeros(n), list(labels))
    return [sorted(int(i) for i in held) for _, held in split]


def load_pool(recipe: FinetuneRecipe) -> Pool:
    """The recipe's splits as a :class:`Pool`; a task without cross-validation (extractive
    QA) is a :class:`ConfigError`."""
    splits, card, task = load_splits(recipe)
    if task not in CV_TASKS:
        raise ConfigError(f"lmforge cv supports classification, NER and relation recipes; "
                          f"this recipe's task is {task}")
    fixed = {k: v for k, v in splits.items() if k not in ("train", "val") and v}
    return Pool(task, splits["train"] + splits["val"], len(splits["train"]), fixed, card)


def _write_split(task: str, records: list[dict], path: Path) -> None:
    """Records as the JSONL the task's reader reads; NER without ``tags``, so that the
    reader derives them from the spans in the recipe's scheme."""
    from ..data import task_readers as tr

    path.parent.mkdir(parents=True, exist_ok=True)
    if task == "tag":
        tr.write_ner_jsonl(({k: v for k, v in r.items() if k != "tags"} for r in records),
                           path)
    elif task == "relate":
        tr.write_relations(records, path)
    else:
        tr.write_classification(records, path)


def fold_recipe(recipe: FinetuneRecipe, task: str, run_dir: Path, train: Path, val: Path,
                fixed: Sequence[Path]) -> FinetuneRecipe:
    """``recipe`` run in ``run_dir`` on the fold's JSONL files (and the fixed splits')."""
    raw = recipe.to_dict()
    raw["run"].update(out_dir=str(run_dir), name=f"{recipe.run.name}-{run_dir.name}")
    raw["data"].update(world=None, world_sizes={}, train=str(train), val=str(val),
                       test=[str(p) for p in fixed], task=task, format="jsonl",
                       text_field="text", label_field="label", train_limit=None,
                       text_b_field="text_b" if recipe.data.text_b_field else None)
    return build_finetune_recipe(raw)


def _record_ceilings(recipe: FinetuneRecipe, pool: Pool) -> list[float] | None:
    """Per pool record, 1.0 when its label is the noise-free one, else 0.0 (the mean over
    a held-out part is that part's ceiling); None without a world card."""
    ceiling = (pool.card or {}).get("ceiling", {})
    if "train" not in ceiling or "val" not in ceiling:
        return None
    if ceiling["train"] == ceiling["val"] == 1.0:  # no label was flipped
        return [1.0] * len(pool.records)
    from ..corpora.tasks import render_task_set

    d = recipe.data
    clean = render_task_set(d.world, seed=recipe.run.seed, sizes=d.world_sizes or None,
                            langs=tuple(d.langs)).clean
    truth = clean["train"][:pool.n_train] + clean["val"]
    field = LABEL_FIELD[pool.task]
    return [float(r[field] == c) for r, c in zip(pool.records, truth, strict=True)]


def _check_same_recipe(run_dir: Path, recipe: FinetuneRecipe) -> None:
    """A fold already begun must have been run with this very recipe."""
    old_file = run_dir / "config.yaml"
    if not old_file.is_file():
        return
    old, new = load_yaml(old_file), recipe.to_dict()
    for section, was in old.items():
        now = new.get(section)
        # fields a newer lmforge added (absent from the old file) do not count
        if isinstance(was, dict) and isinstance(now, dict):
            now = {k: now.get(k) for k in was}
        if now != was:
            raise ConfigError(f"{run_dir} was run with another recipe (its {section} "
                              "section differs); cross-validate into another --out")


def summarize(per_fold: list[dict]) -> dict:
    """``{split: {metric: {"mean", "std"}}}`` over the folds' ``splits`` (every numeric
    metric each fold has; std with ``ddof=1``), ceilings averaged too."""
    out: dict = {}
    for split in per_fold[0]["splits"]:
        rows = [f["splits"][split] for f in per_fold]
        keys = [k for k, v in rows[0].items() if k != "n" and isinstance(v, int | float)
                and not isinstance(v, bool) and all(isinstance(r.get(k), int | float)
                                                    for r in rows)]
        out[split] = {k: {"mean": float(np.mean([r[k] for r in rows])),
                          "std": float(np.std([r[k] for r in rows], ddof=1))} for k in keys}
    return out


def cross_validate_recipe(recipe: FinetuneRecipe, out: str | Path, folds: int = 5, *,
                          stratified: bool = False, resume: bool = False,
                          show_progress: bool = True,
                          log: Callable[[str], None] = print) -> dict:
    """Cross-validate ``recipe`` into ``out`` (see the module docstring); returns what
    ``cv.json`` holds."""
    from ..train import latest_checkpoint
    from .finetune import finetune

    if not isinstance(recipe, FinetuneRecipe):
        raise ConfigError("lmforge cv supports classification, NER and relation recipes; "
                          f"this recipe's task is {getattr(recipe, 'task', 'generation')}")
    pool = load_pool(recipe)
    if stratified and pool.task == "tag":
        raise ConfigError("--stratified needs one label per record (classification, "
                          "relations); NER records hold several entity types: drop it")
    labels = [r[LABEL_FIELD[pool.task]] for r in pool.records] if stratified else None
    held = make_folds(len(pool.records), folds, recipe.run.seed, labels)

    out = ensure_writable_dir(Path(out).resolve())
    assignment = {"seed": recipe.run.seed, "folds": folds, "stratified": stratified,
                  "pool": {"train": pool.n_train, "val": len(pool.records) - pool.n_train},
                  "held_out": held}
    if (out / "folds.json").is_file():
        if read_json(out / "folds.json", error=LmforgeError) != assignment:
            raise LmforgeError(f"{out} holds the folds of another split (folds.json: other "
                               "seed, fold count, stratification or data); cross-validate "
                               "into another --out")
    else:
        write_json(out / "folds.json", assignment)
    fixed = []
    for name, records in pool.fixed.items():
        fixed.append(out / "data" / f"{name}.jsonl")
        _write_split(pool.task, records, fixed[-1])

    correct = _record_ceilings(recipe, pool)
    card_ceiling = (pool.card or {}).get("ceiling", {})
    per_fold = []
    for k, part in enumerate(held, 1):
        run_dir = out / f"fold_{k}"
        data = run_dir / "data"
        rest = sorted(set(range(len(pool.records))) - set(part))
        fr = fold_recipe(recipe, pool.task, run_dir, data / "train.jsonl", data / "val.jsonl",
                         fixed)
        _check_same_recipe(run_dir, fr)
        if (run_dir / "results.json").is_file():
            log(f"fold {k}/{folds}: complete, skipped ({run_dir})")
        else:
            log(f"fold {k}/{folds}: {len(rest)} training, {len(part)} held-out records "
                f"-> {run_dir}")
            _write_split(pool.task, [pool.records[i] for i in rest], data / "train.jsonl")
            _write_split(pool.task, [pool.records[i] for i in part], data / "val.jsonl")
            finetune(fr, resume=resume and latest_checkpoint(run_dir) is not None,
                     show_progress=show_progress, log=log)
        splits = read_json(run_dir / "results.json")["splits"]
        splits["val"]["ceiling"] = (None if correct is None
                                    else float(np.mean([correct[i] for i in part])))
        for name in pool.fixed:
            splits[name]["ceiling"] = card_ceiling.get(name)
        per_fold.append({"fold": k, "run_dir": str(run_dir), "n_train": len(rest),
                         "splits": splits})

    metric = read_json(out / "fold_1" / "results.json").get("metric")
    cv = {"task": pool.task, "metric": metric, "folds": folds, "seed": recipe.run.seed,
          "stratified": stratified, "std": STD, "per_fold": per_fold,
          "summary": summarize(per_fold)}
    write_json(out / "cv.json", cv)
    log(cv_table(cv))
    return cv


def cv_table(cv: dict) -> str:
    """The selection metric per fold and split, then mean ± std and the mean ceiling."""
    metric, folds = cv["metric"], cv["per_fold"]
    names = list(folds[0]["splits"])
    width = max(18, *(len(n) + 2 for n in names))
    head = f"{'fold':<14}" + "".join(f"{n:>{width}}" for n in names)
    lines = [f"{metric} per fold (held-out part = val; std over folds, ddof=1)", head]
    for f in folds:
        lines.append(f"{f['fold']:<14}" + "".join(
            f"{f['splits'][n].get(metric, float('nan')):>{width}.4f}" for n in names))
    summary = cv["summary"]
    lines.append(f"{'mean ± std':<14}" + "".join(
        f"{summary[n][metric]['mean']:.4f} ± {summary[n][metric]['std']:.4f}".rjust(width)
        for n in names))
    if any("ceiling" in summary[n] for n in names):
        lines.append(f"{'ceiling':<14}" + "".join(
            (f"{summary[n]['ceiling']['mean']:.4f}" if "ceiling" in summary[n] else "")
            .rjust(width) for n in names))
    return "\n".join(lines)


__all__ = ["cross_validate_recipe", "make_folds", "load_pool", "fold_recipe", "summarize",
           "cv_table"]
