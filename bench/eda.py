"""What EDA augmentation (Wei and Zou 2019) gains on the world's task sets, measured.

For one task set (``--task sentiment``, the default, or ``topic``), each model is
fine-tuned with and without EDA on the first 100, 500 and all 4,000 training records,
with 3 seeds, and scored on the test split (accuracy). The gain is EDA - no EDA, paired
by seed (same tokenizer, initial weights and batch order rule), mean and sample std
(ddof 1) over the seeds. Sentiment also reports the ``contrast`` split (minimal pairs
that differ only in a negation or in the order of a contrast), where word order decides.

**EDA settings.** The paper's Table 3 recommends ``(alpha, n_aug)`` by training set
size: (0.05, 16) for 500 examples, (0.05, 8) for 2,000, (0.1, 4) for 5,000 and more.
Used here: (0.05, 16) for 100 and 500 (the smallest row), (0.1, 4) for 4,000 (the
nearest row, 5,000). The copies come from :func:`lmforge.data.augment.augment_record`
with the world's synonym sets (``data.augment``), seeded by ``run.seed``; the
originals are kept.

**Models.** ``textcnn``: recipe ``classify-topic``'s backbone (a TextCNN trained from
scratch, max pooling, its WordPiece tokenizer trained on the run's training texts).
``bert``: recipe ``classify-sentiment`` (a 4-layer BERT pretrained with MLM on the
world corpus plus the task's texts, [CLS] head, full fine-tuning). The BERT backbone is
pretrained ONCE (``bert-world`` with the recipe's ``pretrain_set``, seed 0, precision
``auto``, on the world corpus and all 4,000 training texts, unlabelled) into
``<work>/<task>-data<seed>/bert-backbone`` by the same function ``backbone.pretrain``
uses, and every BERT run starts from its best checkpoint (``backbone.path``).

**Fixed data.** The world set is rendered once with ``--data-seed`` (0) and written to
JSONL (``<work>/<task>-data<seed>/data``); every run reads those files (``data.train``,
``data.val``, ``data.test``), so ``run.seed`` (0, 1, 2) changes only the weights'
initialisation, the batch order and the EDA draws, never the data.

**Steps.** The same number of optimizer steps with and without EDA (batch 32): TextCNN
300 / 600 / 1,500 for 100 / 500 / 4,000 records, BERT 200 / 400 / 800 (without EDA
that is 96 / 38 / 12 epochs for TextCNN; with EDA the pool is 17x / 17x / 5x larger,
so fewer passes over it). Validation accuracy (500 records) is measured and a
checkpoint saved 5 times per run; the best one is tested. fp32 (``train.precision``),
``--threads`` (1) torch threads.

**Label flips** (sentiment). The set's labels are a known function of the text
(:func:`lmforge.corpora.tasks.sentiment.sentiment_label`), so the script also reports
the share of EDA copies whose rule label differs from their original's, per operation
(:func:`label_flips`): the label noise EDA adds on this set.

**Control** (``--ops sr``): EDA with synonym replacement alone, the one operation that
keeps this set's labels; the training file is augmented before the run
(:func:`augmented_file`; the TextCNN tokenizer then also sees the copies).

Runs are cached: a run folder with ``results.json`` is read instead of run again, so an
interrupted run can be continued and ``--quick`` runs are reused by the full run.

    python bench/eda.py [--task sentiment|topic] [--quick] [--models textcnn,bert]
                        [--seeds 0,1,2] [--bert-seeds 0] [--ops sr,ri,rs,rd]
                        [--work runs/bench-eda]

``--quick``: 100 and 500 records, seed 0, TextCNN (a few minutes on one core). Prints
the table headed by the machine, then one JSON object per (model, size): ``lmforge`` =
test accuracy with EDA, ``peer`` = without (``peer_name`` says so), ``ratio``, and
``gain``, ``gain_std`` (null for one seed), ``paper_gain`` (the paper's average over 5
data sets and 2 models: +3.0 points at 500 examples, +0.8 with all data); for
sentiment also one object per operation and alpha with the label-flip share.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from _common import emit, machine_line

from lmforge.corpora.tasks import render_task_set, write_task_set
from lmforge.io import atomic_write_text
from lmforge.tasks.config import load_finetune_recipe
from lmforge.tasks.finetune import finetune, pretrain_backbone

ALL = 4000  # the world sets' training split
OPS = ("sr", "ri", "rs", "rd")  # EDA's operations, in lmforge.data.augment's order
PAPER_GAIN = {500: 3.0, ALL: 0.8}  # points, Wei and Zou 2019, 5 data sets, CNN and RNN


@dataclass(frozen=True)
class ModelSpec:
    recipe: str
    sets: tuple[str, ...]  # overrides on top of the recipe
    steps: dict[int, int]  # training size -> optimizer steps


MODELS = {
    "textcnn": ModelSpec("classify-topic", (), {100: 300, 500: 600, ALL: 1500}),
    "bert": ModelSpec("classify-sentiment", ("backbone.pretrain=null", "head.pooling=cls",
                                             "head.attention_dim=null"),
                      {100: 200, 500: 400, ALL: 800}),
}


def eda_params(n: int) -> tuple[int, float]:
    """``(n_aug, alpha)`` the paper's Table 3 recommends for ``n`` training examples."""
    if n <= 500:
        return 16, 0.05
    if n <= 2000:
        return 8, 0.05
    return 4, 0.1


def write_data(task: str, data_seed: int, out: Path) -> dict:
    """Render the world set once into ``out`` (``{split}.jsonl``); its card."""
    card = out / "card.json"
    if not card.is_file():
        write_task_set(render_task_set(task, seed=data_seed), out)
    return json.loads(card.read_text(encoding="utf-8"))


def data_sets(data: Path, task: str) -> list[str]:
    tests = [str(data / "test.jsonl")]
    if task == "sentiment":
        tests.append(str(data / "contrast.jsonl"))
    return ["data.world=null", f"data.train={data / 'train.jsonl'}",
            f"data.val={data / 'val.jsonl'}", f"data.test={json.dumps(tests)}"]


def pretrain_bert(task: str, data: Path, out: Path, threads: int, log) -> Path:
    """The BERT backbone, pretrained once on the world corpus and all training texts
    (reused when ``out`` already holds the finished run)."""
    pre_sets = [*load_finetune_recipe("classify-sentiment").backbone.pretrain_set,
                f"train.threads={threads}"]
    recipe = load_finetune_recipe("classify-sentiment", [
        *data_sets(data, task), f"run.out_dir={out}", "run.seed=0",
        f"backbone.pretrain_set={json.dumps(pre_sets)}"])
    texts = [json.loads(line)["text"] for line in
             (data / "train.jsonl").read_text(encoding="utf-8").splitlines() if line]
    out.mkdir(parents=True, exist_ok=True)
    return pretrain_backbone(recipe, texts, out, resume=False, show_progress=False, log=log)


def augmented_file(work: Path, size: int, n_aug: int, alpha: float, ops: tuple[str, ...],
                   seed: int) -> Path:
    """The first ``size`` training records and their EDA copies with only ``ops`` on
    (``data.augment`` switches all four on), written once under ``<work>/augmented``."""
    from lmforge.data.augment import augment_file

    folder = work / "augmented"
    out = folder / f"train-n{size}-{'+'.join(ops)}-aug{n_aug}-a{alpha}-seed{seed}.jsonl"
    if not out.is_file():
        lines = (work / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()
        folder.mkdir(parents=True, exist_ok=True)
        first = folder / f"train-first{size}.jsonl"
        atomic_write_text(first, "".join(line + "\n" for line in lines[:size]))
        augment_file(first, out, n_aug=n_aug, alpha=alpha, seed=seed, task="classify",
                     **{f"alpha_{o}": alpha if o in ops else 0.0 for o in OPS})
    return out


def run_one(model: str, size: int, augment: bool, seed: int, base: list[str],
            work: Path, threads: int, ops: tuple[str, ...]) -> dict:
    """One fine-tuning run (or its cached result): test (and contrast) accuracy. With
    only some EDA ``ops``, the run reads a pre-augmented training file."""
    spec = MODELS[model]
    n_aug, alpha = eda_params(size) if augment else (0, 0.0)
    steps = spec.steps[size]
    every = max(1, steps // 5)
    subset = augment and tuple(ops) != OPS
    tag = f"-ops{'+'.join(ops)}" if subset else ""
    run_dir = work / model / f"n{size}-aug{n_aug}-a{alpha}{tag}-steps{steps}-seed{seed}"
    res_file = run_dir / "results.json"
    if not res_file.is_file():
        shutil.rmtree(run_dir, ignore_errors=True)  # an interrupted run of ours
        data = [f"data.train_limit={size}", f"data.augment={n_aug}",
                f"data.augment_alpha={alpha}"]
        if subset:
            data = [f"data.train={augmented_file(work, size, n_aug, alpha, ops, seed)}"]
        sets = [*spec.sets, *base, *data, f"run.out_dir={run_dir}", f"run.seed={seed}",
                f"train.max_steps={steps}",
                f"train.eval_every={every}", f"train.ckpt_every={every}",
                "train.precision=fp32", f"train.threads={threads}"]
        t0 = time.perf_counter()
        res = finetune(load_finetune_recipe(spec.recipe, sets), show_progress=False,
                       log=lambda m: None)
        atomic_write_text(run_dir / "bench_wall_s.txt", f"{time.perf_counter() - t0:.1f}\n")
        results = res.results
    else:
        results = json.loads(res_file.read_text(encoding="utf-8"))
    splits = results["splits"]
    wall = run_dir / "bench_wall_s.txt"
    return {"test": 100 * splits["test"]["accuracy"],
            "contrast": 100 * splits["contrast"]["accuracy"] if "contrast" in splits else None,
            "wall_s": float(wall.read_text()) if wall.is_file() else None}



def label_flips(data: Path, n_records: int, alpha: float, n_aug: int = 4,
                seed: int = 0) -> dict[str, float]:
    """Sentiment only: the share (%) of EDA copies of the first ``n_records`` training
    records whose rule label (:func:`lmforge.corpora.tasks.sentiment.sentiment_label`,
    the function every rendered label is drawn from, before noise) differs from their
    original's, per operation alone (strength ``alpha``, the others 0) and for all four
    together. Applied to an edited text the rules read it as a careful reader would
    (negation scope, contrast); a copy they cannot parse the same way counts as
    changed."""
    from lmforge.corpora.tasks.sentiment import sentiment_label
    from lmforge.data.augment import augment_record

    lines = (data / "train.jsonl").read_text(encoding="utf-8").splitlines()[:n_records]
    records = [json.loads(line) for line in lines]
    out = {}
    for op in (*OPS, "all"):
        per_op = {f"alpha_{o}": (alpha if op in (o, "all") else 0.0) for o in OPS}
        rng = random.Random(seed)
        changed = total = 0
        for r in records:
            copies = augment_record(r, n_aug=n_aug, alpha=alpha, rng=rng, lang=r["lang"],
                                    task="classify", **per_op)
            want = sentiment_label(r["text"], r["lang"])
            changed += sum(sentiment_label(c["text"], r["lang"]) != want for c in copies[1:])
            total += len(copies) - 1
        out[op] = 100 * changed / total
    return out


def mean_std(xs: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for one value)."""
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else None)


def fmt(xs: list[float]) -> str:
    m, s = mean_std(xs)
    return f"{m:6.2f}" + ("" if s is None else f" ± {s:4.2f}")


def rounded(x: float | None) -> float | None:
    return None if x is None else round(x, 2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", choices=("sentiment", "topic"), default="sentiment")
    ap.add_argument("--quick", action="store_true", help="100 and 500 records, seed 0, "
                    "TextCNN")
    ap.add_argument("--models", default="textcnn,bert", help="comma-separated: textcnn, bert")
    ap.add_argument("--sizes", default="100,500,4000")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--bert-seeds", default=None, help="BERT's seeds (default: --seeds); "
                    "a BERT run takes ~5x a TextCNN run")
    ap.add_argument("--ops", default="sr,ri,rs,rd", help="the EDA operations on (a "
                    "subset: the training file is augmented before the run)")
    ap.add_argument("--data-seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("runs/bench-eda"))
    args = ap.parse_args()
    models = ["textcnn"] if args.quick else args.models.split(",")
    sizes = [100, 500] if args.quick else [int(s) for s in args.sizes.split(",")]
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    seeds_of = {m: seeds for m in MODELS}
    if args.bert_seeds is not None:
        seeds_of["bert"] = [int(s) for s in args.bert_seeds.split(",")]
    ops = tuple(o for o in OPS if o in args.ops.split(","))
    bad = [m for m in models if m not in MODELS] + [str(s) for s in sizes
                                                    if s not in MODELS["textcnn"].steps]
    bad += [o for o in args.ops.split(",") if o not in OPS]
    if bad or not ops:
        ap.error(f"unknown model, size or op {', '.join(bad)} (models: "
                 f"{', '.join(MODELS)}; sizes: 100, 500, {ALL}; ops: {', '.join(OPS)})")
    torch.set_num_threads(args.threads)
    work = args.work / f"{args.task}-data{args.data_seed}"
    data = work / "data"
    card = write_data(args.task, args.data_seed, data)

    def log(m: str) -> None:
        print(m, flush=True)

    rows = []
    for model in models:
        base = data_sets(data, args.task)
        if model == "bert":
            t0 = time.perf_counter()
            ckpt = pretrain_bert(args.task, data, work / "bert-backbone", args.threads, log)
            log(f"bert backbone: {ckpt} ({time.perf_counter() - t0:.0f} s)")
            base.append(f"backbone.path={ckpt}")
        for size in sizes:
            cell = {False: [], True: []}
            for seed in seeds_of[model]:
                for augment in (False, True):
                    r = run_one(model, size, augment, seed, base, work, args.threads, ops)
                    cell[augment].append(r)
                    wall = "cached" if r["wall_s"] is None else f"{r['wall_s']:.0f} s"
                    log(f"  {model} n={size} {'EDA' if augment else 'no EDA'} seed {seed}: "
                        f"test {r['test']:.2f} ({wall})")
            rows.append((model, size, cell))

    print()
    print(f"EDA on the world's {args.task} set (test {card['sizes']['test']} records, "
          f"ceiling {100 * card['ceiling']['test']:.1f}); data seed {args.data_seed}; "
          "seeds " + "; ".join(f"{m} {', '.join(map(str, seeds_of[m]))}" for m in models)
          + f"; EDA ops {'+'.join(ops).upper()}")
    print(machine_line())
    head = (f"{'model':<8}{'train':>6}{'n_aug':>6}{'alpha':>6}{'steps':>6}  "
            f"{'no EDA':>14}  {'EDA':>14}  {'gain':>14}")
    if args.task == "sentiment":
        head += f"  {'contrast gain':>14}"
    print(head)
    print("-" * len(head))
    figures = []
    for model, size, cell in rows:
        n_aug, alpha = eda_params(size)
        base_acc = [r["test"] for r in cell[False]]
        eda_acc = [r["test"] for r in cell[True]]
        gains = [b - a for a, b in zip(base_acc, eda_acc, strict=True)]
        line = (f"{model:<8}{size:>6}{n_aug:>6}{alpha:>6}{MODELS[model].steps[size]:>6}  "
                f"{fmt(base_acc):>14}  {fmt(eda_acc):>14}  {fmt(gains):>14}")
        tag = "" if ops == OPS else "_" + "+".join(ops)
        fig = {"bench": "eda", "metric": f"test_accuracy_{args.task}_{model}_n{size}{tag}"}
        if args.task == "sentiment":
            cg = [b["contrast"] - a["contrast"] for a, b in zip(cell[False], cell[True],
                                                                strict=True)]
            line += f"  {fmt(cg):>14}"
            fig["contrast_gain"], fig["contrast_gain_std"] = map(rounded, mean_std(cg))
        print(line)
        (m_base, _), (m_eda, _), (m_gain, s_gain) = map(mean_std, (base_acc, eda_acc, gains))
        figures.append({**fig, "lmforge": round(m_eda, 2), "peer": round(m_base, 2),
                        "peer_name": "no EDA (same model, steps and seeds)",
                        "ratio": round(m_eda / m_base, 4), "target": None, "met": None,
                        "gain": round(m_gain, 2), "gain_std": rounded(s_gain),
                        "paper_gain": PAPER_GAIN.get(size), "seeds": seeds_of[model],
                        "n_aug": n_aug, "alpha": alpha, "steps": MODELS[model].steps[size],
                        "train_size": size, "data_seed": args.data_seed,
                        "ops": "+".join(ops)})
    if args.task == "sentiment":
        print()
        print("EDA copies whose rule label changed (%), first 500 training records, "
              "4 copies each")
        print(f"{'alpha':<8}" + "".join(f"{op.upper():>8}" for op in (*OPS, "all")))
        for alpha in sorted({eda_params(s)[1] for s in sizes}):
            flips = label_flips(data, 500, alpha)
            print(f"{alpha:<8}" + "".join(f"{flips[op]:>8.1f}" for op in (*OPS, "all")))
            figures += [{"bench": "eda", "metric": f"label_flip_pct_{op}_alpha{alpha}",
                         "lmforge": round(v, 2), "peer": None, "peer_name": None,
                         "ratio": None, "target": None, "met": None}
                        for op, v in flips.items()]
    print()
    for fig in figures:
        emit(fig)


if __name__ == "__main__":
    main()
