"""Fine-tuning from a recipe: ``lmforge finetune RECIPE``.

``finetune(recipe)`` makes a run folder::

    runs/<name>/
      config.yaml        the resolved recipe
      backbone/          the pretraining run, when backbone.pretrain asks for one
      metrics.jsonl      training lines and validation metrics (val_f1_macro, ...)
      loss.png
      checkpoints/       model folders (arch: task); the best by finetune.metric is kept
      results.json       every evaluated split: metrics, n, and the set's ceiling
      confusion.json/png the test split's confusion matrix (classify, relate)
      errors.jsonl       the test records the model got wrong
      adapter/           PEFT adapter (strategy lora, BERT-family backbones)

With a key active (``--key-file``: :func:`lmforge.privacy.encrypted_io.using_key`)
``metrics.jsonl``, the pictures, the checkpoints, ``results.json``, ``confusion.json``,
``errors.jsonl``, ``adapter/`` and ``backbone_text.txt`` are written encrypted and read
back with the key; ``config.yaml`` stays plaintext (docs/privacy.md lists what else does).

The stages: the splits (:mod:`.datasets`), the backbone and its tokenizer, the strategy
(which parameters train), the trainer with the task's objective and a validation
evaluator that picks the best checkpoint, then the evaluation of the best weights.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError, LmforgeError
from ..io import atomic_write_text
from ..privacy.encrypted_io import write_json, write_text
from .config import FinetuneRecipe
from .datasets import label_names, load_splits
from .encode import (
    TaskBatches,
    collate,
    encode_classification,
    encode_relations,
    encode_tagging,
)
from .evaluation import TASK_METRICS, TaskObjective, balanced_weights
from .mentions import MentionReplacer
from .model import TaskModel, TaskModelConfig, task_config_from
from .predictor import TaskPredictor

DEFAULT_METRIC = {"classify": "f1_macro", "tag": "entity_f1", "relate": "relation_f1"}
ENCODERS = ("bert", "deberta_v2", "gpt")


@dataclass
class FinetuneResult:
    run_dir: Path
    predictor: TaskPredictor
    results: dict
    train: object  # lmforge.train.TrainResult
    trainable: tuple[int, int]


def _texts(task: str, records: list[dict], typed: bool) -> list[str]:
    from .encode import mark_entities

    if task == "relate":
        return [mark_entities(r, typed)[0] for r in records]
    if task == "extract":  # the questions, and each context once
        return [r["question"] for r in records] + list(dict.fromkeys(r["context"]
                                                                      for r in records))
    return [t for r in records for t in (r["text"], r.get("text_b")) if t]


def pretrain_backbone(recipe: FinetuneRecipe, texts: list[str], run_dir: Path,
                       resume: bool, show_progress: bool, log: Callable) -> Path:
    """Run ``backbone.pretrain`` into ``<run>/backbone`` (or reuse a finished one). The
    task's texts go to ``<run>/backbone_text.txt``, one a line, encrypted when a key is
    active (the pretraining run then reads it in memory)."""
    from ..config import load_recipe, resolve_recipe_path
    from ..pretrain import pretrain
    from ..train import best_checkpoint, latest_checkpoint

    b = recipe.backbone
    out = run_dir / "backbone"
    sets = [f"run.out_dir={out}", f"run.seed={recipe.run.seed}", *b.pretrain_set]
    if recipe.train.distributed != "none":  # the same processes pretrain it the same way
        sets.append(f"train.distributed={recipe.train.distributed}")
    if b.pretrain_on_task_text:
        text_file = run_dir / "backbone_text.txt"
        write_text(text_file, "\n".join(t.replace("\n", " ") for t in texts) + "\n")
        sets.append(f"data.inputs=[{json.dumps(str(text_file))}]")
    pre = load_recipe(resolve_recipe_path(b.pretrain), sets)
    done = latest_checkpoint(out)
    if done is not None and (out / "config.yaml").is_file():
        from ..train.checkpoint import read_trainer_state

        if read_trainer_state(done)["step"] >= pre.train.max_steps:
            log(f"backbone: reusing the finished pretraining run {out}")
            return best_checkpoint(out) or done
    log(f"backbone: pretraining {b.pretrain} into {out}")
    res = pretrain(pre, resume=done is not None, show_progress=show_progress, log=log)
    return res.train.best_checkpoint or res.train.last_checkpoint


def scratch_tokenizer(kind: str, texts: list[str], vocab_size: int, min_frequency: int,
                      run_dir: Path, resume: bool, special_tokens: Sequence[str] = ()):
    """The tokenizer of a model built from scratch: trained on ``texts`` (with extra
    ``special_tokens``), or, when a run resumes from a checkpoint, the one saved with it
    (the ids its weights were trained with)."""
    from ..distributed.env import broadcast_object, is_main_process
    from ..tokenize import Tokenizer, train_tokenizer
    from ..train import latest_checkpoint

    last = latest_checkpoint(run_dir) if resume else None
    if last is not None and (last / "tokenizer.json").is_file():
        return Tokenizer.load(last)
    # Training breaks frequency ties differently in each process: in a torchrun launch
    # rank 0 trains it and every rank takes that one.
    tokenizer = train_tokenizer(kind, texts=texts, vocab_size=vocab_size,
                                min_frequency=min_frequency, special_tokens=special_tokens,
                                show_progress=False) if is_main_process() else None
    return broadcast_object(tokenizer)


def head_fields(recipe: FinetuneRecipe) -> dict[str, Any]:
    """The :class:`TaskModelConfig` fields a recipe's ``head:`` and ``data:`` set."""
    h, d = recipe.head, recipe.data
    return dict(pooling=h.pooling, attention_dim=h.attention_dim, head=h.head,
                dropout=h.dropout, scheme=d.scheme, constrained=h.constrained,
                max_length=d.max_length,
                typed_markers=h.typed_markers, no_relation=h.no_relation,
                threshold=h.threshold, doc_stride=d.doc_stride,
                max_answer_length=h.max_answer_length, n_best=h.n_best,
                null_threshold=h.null_threshold)


def build_task_model(recipe: FinetuneRecipe, task: str, labels: list[str],
                     splits: dict[str, list[dict]], run_dir: Path, *, resume: bool = False,
                     show_progress: bool = True, log: Callable = print):
    """The task model (pretrained weights copied in) and its tokenizer."""
    b, h, d = recipe.backbone, recipe.head, recipe.data
    head = head_fields(recipe)
    texts = _texts(task, splits["train"], h.typed_markers)
    torch.manual_seed(recipe.run.seed)
    if b.encoder is not None:
        t = b.tokenizer
        tokenizer = scratch_tokenizer("wordpiece" if t.kind == "char" else t.kind, texts,
                                      t.vocab_size, t.min_frequency, run_dir, resume)
        enc_cfg = {"vocab_size": tokenizer.vocab_size, "pad_id": tokenizer.pad_id,
                   **b.encoder_config}
        try:
            return TaskModel(TaskModelConfig(task, labels, b.encoder, enc_cfg, **head)), \
                tokenizer
        except TypeError as e:
            raise ConfigError(f"backbone.encoder_config: {e}") from None
    from ..hub import load_pretrained
    from ..models import arch_of

    if b.pretrain is not None:
        folder: str | Path = pretrain_backbone(recipe, texts, run_dir, resume,
                                                show_progress, log)
    elif b.path == "minilm":
        from ..embeddings.contextual import default_model_path

        folder = default_model_path()
    else:
        folder = b.path
    enc, tokenizer = load_pretrained(folder, require_tokenizer=True)
    arch = arch_of(enc.config)
    if arch not in ENCODERS:
        raise ConfigError(f"backbone: {folder} holds a {arch} model; the task heads read "
                          f"an encoder ({', '.join(ENCODERS)})")
    max_pos = getattr(enc.config, "max_len", None) or getattr(enc.config, "max_seq_len", None)
    if max_pos is not None and d.max_length > max_pos:
        raise ConfigError(f"data.max_length={d.max_length} exceeds the backbone's "
                          f"{max_pos} positions")
    if arch == "gpt" and (task != "classify" or h.pooling != "last"):
        raise ConfigError("a GPT backbone reads text left to right: use it for classify "
                          "with head.pooling=last")
    model = TaskModel(task_config_from(task, labels, arch, enc.config, **head))
    if b.init == "pretrained":
        own = model.encoder.state_dict()
        state = {k: v for k, v in enc.state_dict().items() if k in own}
        model.encoder.load_state_dict(state, strict=True)
    return model, tokenizer


def apply_strategy(model: TaskModel, recipe: FinetuneRecipe) -> tuple[int, int]:
    """Freeze what the strategy leaves untouched; ``(trainable, total)`` parameters."""
    ft = recipe.finetune
    enc = model.encoder
    if ft.strategy == "frozen":
        enc.requires_grad_(False)
    elif ft.strategy == "top_k":
        layers = getattr(enc, "layers", None)
        if layers is None:
            raise ConfigError(f"finetune.strategy=top_k needs a layered encoder "
                              f"({model.config.encoder} has none); use full or frozen")
        if ft.top_k > len(layers):
            raise ConfigError(f"finetune.top_k={ft.top_k} exceeds the encoder's "
                              f"{len(layers)} layers")
        enc.requires_grad_(False)
        for layer in list(layers)[-ft.top_k:]:
            layer.requires_grad_(True)
        if getattr(enc, "pooler", None) is not None:
            enc.pooler.requires_grad_(True)
    elif ft.strategy == "lora":
        if model.scratch:
            raise ConfigError("finetune.strategy=lora needs a pretrained encoder backbone")
        from ..nn.lora import LoraConfig, apply_lora

        fields = ft.lora.model_dump()
        apply_lora(enc, LoraConfig(**fields))
        model.config.lora = fields
    return _count(model)


def _count(model: torch.nn.Module) -> tuple[int, int]:
    seen, trainable, total = set(), 0, 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        trainable += p.numel() if p.requires_grad else 0
    return trainable, total


def encode_split(task: str, records: list[dict], tokenizer, index: dict[str, int],
                 cfg: TaskModelConfig, subword: str = "first"):
    if task == "classify":
        return encode_classification(records, tokenizer, index, cfg.max_length)
    if task == "relate":
        return encode_relations(records, tokenizer, index, cfg.max_length, cfg.typed_markers)
    return encode_tagging(records, tokenizer, index, cfg.max_length, subword)[0]


def _noise_tags(labels: list[str], types: list[str] | None) -> set[int]:
    """The ids of the tags (B-/I-/E-/S- of ``types``; every entity type when None) that
    ``data.entity_noise`` applies to."""
    return {i for i, tag in enumerate(labels)
            if tag != "O" and (types is None or tag[2:] in types)}


def _mention_replacer(recipe: FinetuneRecipe, task: str, labels: list[str], low: int,
                      high: int) -> MentionReplacer | None:
    d = recipe.data
    if task != "tag" or d.mention_replace == 0:
        return None
    types = {tag[2:] for tag in labels if tag != "O"}
    if d.entity_noise_types is not None:
        types &= set(d.entity_noise_types)
    return MentionReplacer(labels, d.scheme, types, d.mention_replace, (low, high),
                           d.max_length)


def _augment(recipe: FinetuneRecipe, task: str, records: list[dict]) -> list[dict]:
    d = recipe.data
    if d.augment == 0:
        return records
    if task == "relate":
        raise ConfigError("data.augment: EDA keeps labels of classification and NER records;"
                          " relation records are not augmented")
    import random

    from ..data.augment import augment_record, only_ops

    rng = random.Random(recipe.run.seed)  # synonyms: the world's sets
    off = only_ops(d.augment_ops)
    return [copy for r in records
            for copy in augment_record(r, n_aug=d.augment, alpha=d.augment_alpha, rng=rng,
                                       **off)]


def task_sources(recipe: FinetuneRecipe, task: str, labels: list[str], splits: dict,
                 model: TaskModel, tokenizer) -> tuple[Any, TaskBatches, TaskObjective]:
    """``(train batches, validation batches, objective)`` of a fine-tuning recipe: the
    training records augmented as the recipe says, encoded for ``model``'s config (with
    ``train.privacy``, the training batches are a Poisson source over the records)."""
    index = {n: i for i, n in enumerate(labels)}
    train_records = _augment(recipe, task, splits["train"])
    train_ex = encode_split(task, train_records, tokenizer, index, model.config,
                            recipe.data.subword)
    val_ex = encode_split(task, splits["val"], tokenizer, index, model.config)
    bs = recipe.train.batch_size
    n_special = max(tokenizer.special_ids) + 1 if tokenizer.special_ids else 0
    train_src = TaskBatches(train_ex, tokenizer.pad_id, task, bs,
                            token_dropout=recipe.data.token_dropout, unk_id=tokenizer.unk_id,
                            entity_noise=recipe.data.entity_noise,
                            vocab=(n_special, tokenizer.vocab_size),
                            noise_tags=_noise_tags(labels, recipe.data.entity_noise_types),
                            group_by_length=recipe.data.group_by_length,
                            micro_batches=recipe.train.grad_accum,
                            mentions=_mention_replacer(recipe, task, labels, n_special,
                                                       tokenizer.vocab_size))
    val_src = TaskBatches(val_ex, tokenizer.pad_id, task, max(bs, 64))
    if recipe.train.privacy is not None:  # DP-SGD: Poisson batches of the records
        from ..privacy.dp import PoissonSource

        train_src = PoissonSource.over(train_ex, lambda ex: collate(ex, tokenizer.pad_id,
                                                                    task))
    weights = None
    if recipe.finetune.class_weights == "balanced" and task != "tag":
        weights = balanced_weights([e.label for e in train_ex], len(labels))
    objective = TaskObjective(task, weights, recipe.finetune.label_smoothing,
                              crf=model.crf is not None)
    return train_src, val_src, objective


def finetune(recipe: FinetuneRecipe, *, resume: bool = False, show_progress: bool = True,
             log: Callable[[str], None] = print, callbacks: Sequence = ()) -> FinetuneResult:
    """Fine-tune and evaluate a recipe into its run folder; ``callbacks`` go to the
    trainer (:mod:`lmforge.train.callbacks`)."""
    from ..distributed.launch import join_run, quiet
    from ..train import Trainer

    main, resume = join_run(recipe.train, recipe.run.path, resume)
    if not main:  # rank 0 reports and writes the results
        log, show_progress = quiet, False
    if recipe.train.distributed in ("tp", "pp"):
        raise ConfigError(f"train.distributed={recipe.train.distributed} splits a GPT's "
                          "blocks; fine-tuning runs with ddp or fsdp")
    run_dir = start_run(recipe, resume)

    splits, card, task = load_splits(recipe)
    if task == "extract":
        from .extractive import finetune_extractive

        return finetune_extractive(recipe, splits, card, resume=resume,
                                   show_progress=show_progress, log=log)
    labels = label_names(task, splits["train"], recipe.data.scheme,
                         recipe.data.train or f"world:{recipe.data.world}")
    metric = recipe.finetune.metric if recipe.finetune.metric != "auto" \
        else DEFAULT_METRIC[task]
    if metric not in TASK_METRICS[task]:
        raise ConfigError(f"finetune.metric={metric!r} is not a {task} metric; allowed: "
                          f"auto, {', '.join(TASK_METRICS[task])}")
    if recipe.backbone.classical is not None:
        return _fit_classical(recipe, task, splits, card, run_dir, metric, log)
    model, tokenizer = build_task_model(recipe, task, labels, splits, run_dir, resume=resume,
                                        show_progress=show_progress, log=log)
    trainable, total = apply_strategy(model, recipe)
    log(f"{task}: {len(labels)} labels, {len(splits['train'])} training records; "
        f"{recipe.finetune.strategy}: {trainable:,} of {total:,} parameters trainable "
        f"({100 * trainable / total:.2f}%)")

    train_src, val_src, objective = task_sources(recipe, task, labels, splits, model,
                                                 tokenizer)
    predictor = TaskPredictor(model, tokenizer)

    def validation(m) -> dict:
        ev = predictor.evaluate(splits["val"])["metrics"]
        return {f"val_{k}": v for k, v in ev.items()}

    cfg = recipe.train.model_copy(update={"best_metric": f"val_{metric}", "best_mode": "max"})
    provenance = {"recipe": recipe.to_dict(), "task": task,
                  "trainable_parameters": trainable, "parameters": total}
    trainer = Trainer(model, cfg, train_src, val_src, run_dir, seed=recipe.run.seed,
                      objective=objective, evaluators=[validation], callbacks=callbacks,
                      tokenizer=tokenizer, provenance=provenance, resume=resume,
                      show_progress=show_progress)
    if trainer.par.distributed:  # rank 0 evaluates a plain copy of the best checkpoint
        from ..models.base import load_model_folder
        from ..train import best_checkpoint, latest_checkpoint

        train_result = trainer.fit()
        best = best_checkpoint(run_dir) or latest_checkpoint(run_dir)
        if not main:
            return FinetuneResult(run_dir, predictor, {}, train_result, (trainable, total))
        model = load_model_folder(best).eval()
        predictor = TaskPredictor(model, tokenizer)
    else:
        train_result, best = fit_and_load_best(trainer, model, run_dir)
    results = evaluate_splits(predictor, splits, card, run_dir, metric)
    results.update(best_checkpoint=str(best), metric=metric, trainable_parameters=trainable,
                   parameters=total, strategy=recipe.finetune.strategy)
    if trainer.dp is not None:
        results["privacy"] = trainer.dp.report()
    write_json(run_dir / "results.json", results)
    if recipe.finetune.strategy == "lora" and model.config.encoder == "bert":
        from ..hf.peft import save_peft_adapter
        from ..nn.lora import LoraConfig

        save_peft_adapter(model.encoder, LoraConfig(**model.config.lora), run_dir / "adapter")
    log(results_table(results))
    return FinetuneResult(run_dir, predictor, results, train_result, (trainable, total))


def fit_and_load_best(trainer: Any, model: torch.nn.Module, run_dir: Path
                      ) -> tuple[Any, Path]:
    """Train, then load the best checkpoint (else the last) into ``model`` in eval mode;
    returns the trainer's result and that checkpoint. While it trains, a BERT encoder
    skips the padding (:attr:`TaskModel.skip_padding`), unless the trainer runs DP-SGD:
    Opacus reads each example's gradient off batch-first activations."""
    from ..models.base import load_state_checked
    from ..train.checkpoint import best_checkpoint, latest_checkpoint

    model.skip_padding = trainer.cfg.privacy is None
    try:
        result = trainer.fit()
    finally:
        model.skip_padding = False
    best = best_checkpoint(run_dir) or latest_checkpoint(run_dir)
    load_state_checked(model, best)
    model.eval()
    return result, best


def _fit_classical(recipe: FinetuneRecipe, task: str, splits: dict, card: dict | None,
                   run_dir: Path, metric: str, log: Callable) -> FinetuneResult:
    """A scikit-learn baseline: fit on train, evaluate every other split, save."""
    from .classical import TfidfClassifier
    from .predictor import CLASSICAL_DIR, ClassicalPredictor

    if task != "classify":
        raise ConfigError(f"backbone.classical fits text classifiers; this is a {task} task")
    opts = dict(recipe.backbone.classical_config)
    if "ngram_range" in opts:
        opts["ngram_range"] = tuple(opts["ngram_range"])
    kind = "logreg" if recipe.backbone.classical == "tfidf-logreg" else "linear_svm"
    try:
        clf = TfidfClassifier(classifier=kind, seed=recipe.run.seed, **opts)
    except TypeError as e:
        raise ConfigError(f"backbone.classical_config: {e}") from None
    train = splits["train"]
    clf.fit([r["text"] for r in train], [r["label"] for r in train])
    clf.save(run_dir / CLASSICAL_DIR)
    predictor = ClassicalPredictor(clf)
    n_feat = len(clf.vocabulary)
    log(f"{recipe.backbone.classical}: {n_feat:,} features, {len(clf.labels)} labels, "
        f"{len(train)} training records")
    results = evaluate_splits(predictor, splits, card, run_dir, metric)
    results.update(metric=metric, strategy="classical", features=n_feat)
    write_json(run_dir / "results.json", results)
    log(results_table(results))
    return FinetuneResult(run_dir, predictor, results, None, (0, 0))


def start_run(recipe: Any, resume: bool) -> Path:
    """The recipe's run folder, checked (:func:`check_run_dir`), created, with the
    recipe saved as ``config.yaml``."""
    from ..distributed.env import barrier, is_main_process

    run_dir = recipe.run.path
    check_run_dir(run_dir, resume)
    barrier()  # in a torchrun launch: every rank has checked before rank 0 writes
    if is_main_process():
        run_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run_dir / "config.yaml", recipe.to_yaml())
    barrier()
    return run_dir


def write_results(folder: Path, results: dict, samples: Sequence[dict],
                  name: str = "results.json") -> None:
    """``results`` as JSON and ``samples`` as ``samples.jsonl`` in ``folder`` (atomic),
    through :mod:`lmforge.privacy.encrypted_io`: encrypted when a key is active, for a
    run's own files as for those ``evaluate --out`` writes."""
    write_text(folder / "samples.jsonl", "".join(
        json.dumps(s, ensure_ascii=False) + "\n" for s in samples))
    write_json(folder / name, results)


def reevaluate(run: str | Path, overrides: Sequence[str], build_recipe: Callable[[dict], Any],
               measure: Callable[[Any, Any, Any], tuple[dict, list[dict]]],
               table: Callable[[dict], str], out: str | None,
               log: Callable[[str], None] = print) -> dict:
    """``lmforge evaluate`` on a generation run (or one of its checkpoints): its recipe
    (``config.yaml``) with ``overrides`` of the ``evaluate:`` section (``samples=8``),
    ``measure(model, tokenizer, recipe)`` run again, the table logged; ``out``: a folder
    for ``metrics.json`` and ``samples.jsonl``, encrypted when a key is active."""
    from ..config import apply_overrides, load_yaml
    from ..hub import load_pretrained
    from ..io import ensure_writable_dir
    from .seq2seq_predictor import run_dir_of

    raw = load_yaml(run_dir_of(run) / "config.yaml")
    apply_overrides(raw, [f"evaluate.{o}" for o in overrides])
    recipe = build_recipe(raw)
    model, tok = load_pretrained(run, require_tokenizer=True)
    results, samples = measure(model, tok, recipe)
    if out is not None:
        write_results(ensure_writable_dir(out), results, samples, "metrics.json")
    log(table(results))
    return results


def check_run_dir(run_dir: Path, resume: bool) -> None:
    from ..train import latest_checkpoint

    has = latest_checkpoint(run_dir) is not None
    if resume and not has:
        raise LmforgeError(f"--resume: {run_dir} has no checkpoint to resume from")
    if not resume and has:
        raise LmforgeError(f"{run_dir} already holds a run; pass --resume to continue it or "
                           "choose another folder with --out / run.out_dir")


def evaluate_splits(predictor: TaskPredictor, splits: dict[str, list[dict]],
                    card: dict | None, run_dir: Path, metric: str) -> dict:
    """Evaluate every split but train; write the confusion matrix and errors of test."""
    from ..eval.classification import confusion_json, plot_confusion

    out: dict = {"splits": {}}
    ceilings = (card or {}).get("ceiling", {})
    for name, records in splits.items():
        if name == "train" or not records:
            continue
        ev = predictor.evaluate(records)
        out["splits"][name] = {"n": ev["n"], **ev["metrics"],
                               "ceiling": ceilings.get(name)}
        if name == _report_split(splits):
            write_text(run_dir / "errors.jsonl", "".join(
                json.dumps(e, ensure_ascii=False) + "\n" for e in ev["errors"]))
            if "confusion" in ev:
                mat = np.asarray(ev["confusion"])
                write_json(run_dir / "confusion.json", confusion_json(mat, ev["labels"]))
                plot_confusion(mat, ev["labels"], run_dir / "confusion.png",
                               title=f"{run_dir.name}: {name}")
    return out


def _report_split(splits: dict) -> str:
    """The split whose errors and confusion matrix are written: test, else the first
    evaluated one after val (a user's test file), else val."""
    if "test" in splits:
        return "test"
    rest = [n for n in splits if n not in ("train", "val")]
    return rest[0] if rest else "val"


def results_table(results: dict) -> str:
    """The evaluated splits as a small table: the selection metric beside the ceiling."""
    metric = results.get("metric", "")
    w = max([12, *(len(n) for n in results["splits"])])
    lines = [f"{'split':<{w}} {'n':>6} {metric:>12} {'ceiling':>8}"]
    for name, r in results["splits"].items():
        ceil = r.get("ceiling")
        main = r.get(metric)
        if main is None:
            main = r.get("accuracy")
        lines.append(f"{name:<{w}} {r['n']:>6} {main:>12.4f} "
                     f"{'' if ceil is None else f'{ceil:.4f}':>8}")
    return "\n".join(lines)


__all__ = ["finetune", "FinetuneResult", "build_task_model", "apply_strategy",
           "evaluate_splits", "results_table"]
