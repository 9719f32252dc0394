r"""The text-to-text tasks on the fine-tuning engine: translation
(``lmforge finetune translate-...``) and summarisation (``summarize-...``).

A task, in the terms of the understanding tasks (:mod:`lmforge.tasks.finetune`):

* **data**: pairs ``{"src", "tgt"}``: from the world's translation set
  (:mod:`lmforge.corpora.tasks.translation`, with its long, unseen-name and
  compositional test splits) or the user's parallel files
  (:func:`lmforge.data.parallel.read_parallel`); for summaries, document and summary
  from the world's summarisation set (:mod:`lmforge.corpora.tasks.summarization`, with
  its unseen and abstractive splits) or JSONL ``{"document", "summary"}``;
* **model**: an encoder-decoder: the Transformer or the GRU with attention built from
  scratch (one tokenizer trained on both sides), or a pretrained T5;
* **loss**: teacher-forced cross-entropy of the target given the source,
  :math:`-\sum_t \log p(y_t \mid y_{<t}, x)` averaged over target tokens (EOS
  included), with label smoothing :math:`\epsilon`: the target distribution is
  :math:`(1 - \epsilon)\,\mathrm{onehot}(y_t) + \epsilon / V`;
* **metric**: sacreBLEU BLEU and chrF and exact match (:mod:`lmforge.eval.translation`),
  or ROUGE-1/2/L (:mod:`lmforge.eval.summarization`); the best checkpoint is the one
  with the best validation score (greedy decoding of ``data.val_decode`` pairs), and the
  final scores use the recipe's beam search;
* **predictor**: :class:`~lmforge.tasks.seq2seq_predictor.Translator` or
  :class:`~lmforge.tasks.seq2seq_predictor.Summarizer`.

The run folder holds what every fine-tuning run does (``config.yaml``,
``checkpoints/``, ``metrics.jsonl``, ``loss.png``), plus ``results.json`` (every split
beside its ceiling, with sacrebleu's signatures) and ``errors.jsonl`` (the test pairs
not translated exactly, worst first).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from ..privacy.encrypted_io import write_json, write_text
from .datasets import hold_out
from .finetune import (
    FinetuneResult,
    fit_and_load_best,
    pretrain_backbone,
    results_table,
    scratch_tokenizer,
    start_run,
)
from .seq2seq_config import Seq2SeqRecipe
from .seq2seq_predictor import Seq2SeqPredictor, make_predictor, record_lang

CEILING = {"bleu": 100.0, "chrf": 100.0, "exact_match": 1.0, "rouge1": 100.0,
           "rouge2": 100.0, "rougeL": 100.0, "f1": 100.0, "exact": 100.0}


def load_pairs(recipe: Seq2SeqRecipe, run_dir: Path | None = None
               ) -> tuple[dict[str, list[dict]], dict | None]:
    """``(splits, card)``: split name -> ``{"src", "tgt"}`` records; the card is None for
    the user's files. Without a validation file, a seeded ``data.val_fraction`` of the
    training pairs is held out. The ``answer`` task retrieves each question's passages
    from the collection it indexes into ``<run_dir>/index`` (:mod:`.rag`)."""
    d = recipe.data
    if recipe.task == "answer":
        from .rag import load_qa_pairs

        if run_dir is None:
            raise ConfigError("answer: load_pairs needs the run folder (for the index)")
        return load_qa_pairs(recipe, run_dir)
    summarize = recipe.task == "summarize"
    if d.world is not None:
        from ..corpora.tasks import render_task_set

        ts = render_task_set(d.world, seed=recipe.run.seed, sizes=d.world_sizes or None,
                             langs=tuple(d.langs))
        if summarize:
            return {k: [{"id": r["id"], "src": r["document"], "tgt": r["summary"],
                         "lang": r["lang"]} for r in v]
                    for k, v in ts.splits.items()}, ts.card
        return {k: list(v) for k, v in ts.splits.items()}, ts.card
    from ..data.parallel import read_parallel

    fmt = None if d.format == "auto" else d.format
    src, tgt = (d.langs[0], d.langs[-1])
    fields = ("document", "summary") if summarize else ("src", "tgt")

    def read(path: str, tgt_path: str | None) -> list[dict]:
        records = read_parallel(path, src_lang=src, tgt_lang=tgt, format=fmt,
                                tgt_path=tgt_path, fields=fields)
        if summarize:
            records = [{**r, "lang": record_lang(r, d.langs)} for r in records]
        return records

    train = read(d.train, d.train_tgt)
    if d.val is not None:
        val = read(d.val, d.val_tgt)
    else:
        train, val = hold_out(train, d.val_fraction, recipe.run.seed, d.train, what="pairs")
    splits = {"train": train, "val": val}
    for i, path in enumerate(d.test):
        splits[Path(path).stem] = read(path, d.test_tgt[i] if d.test_tgt else None)
    return splits, None


def build_seq2seq(recipe: Seq2SeqRecipe, splits: dict[str, list[dict]], run_dir: Path, *,
                  resume: bool, show_progress: bool, log: Callable) -> tuple[Any, Any]:
    """The model (from scratch, or the pretrained backbone) and its tokenizer."""
    texts = [t for r in splits["train"] for t in (r["src"], r["tgt"])]
    if recipe.model is not None:
        from ..models import build_model
        from ..train.tasks import fill_from_tokenizer

        t = recipe.tokenizer
        tokenizer = scratch_tokenizer(t.kind, texts, t.vocab_size, t.min_frequency, run_dir,
                                      resume)
        torch.manual_seed(recipe.run.seed)
        return build_model(fill_from_tokenizer(recipe.model, tokenizer)), tokenizer
    from ..generate.seq2seq import is_encoder_decoder
    from ..hub import load_pretrained

    b = recipe.backbone
    folder = b.path if b.pretrain is None else pretrain_backbone(
        recipe, texts, run_dir, resume, show_progress, log)
    model, tokenizer = load_pretrained(folder, require_tokenizer=True)
    if not is_encoder_decoder(model):
        raise ConfigError(f"backbone: {folder} holds a {type(model).__name__}; translation "
                          "needs an encoder-decoder (T5, transformer, seq2seq_rnn)")
    model.train()
    return model, tokenizer


class T5TranslationObjective:
    """Teacher-forced cross-entropy of a T5 on ``collate_pairs`` batches (the decoder
    input starts with T5's decoder start token), with label smoothing; pad labels are
    ignored."""

    name = "t5_translation"

    def __init__(self, label_smoothing: float = 0.0):
        self.label_smoothing = label_smoothing

    def __call__(self, model, batch: dict):
        pad = model.config.pad_token_id
        src = batch["src"]
        logits = model(src, src != pad, batch["tgt_in"])  # (B, T, V)
        y = batch["tgt_out"].reshape(-1)
        flat = logits.float().reshape(-1, logits.size(-1))
        loss = F.cross_entropy(flat, y, ignore_index=pad, label_smoothing=self.label_smoothing)
        return loss, {}, int((y != pad).sum())


def objective_for(model: Any, label_smoothing: float):
    from ..models.rnn import Seq2Seq, Seq2SeqObjective
    from ..models.t5 import T5
    from ..models.transformer import Seq2SeqLMObjective

    if isinstance(model, T5):
        return T5TranslationObjective(label_smoothing)
    if isinstance(model, Seq2Seq):
        if label_smoothing:
            raise ConfigError("label_smoothing is not supported by the GRU/LSTM "
                              "encoder-decoder (seq2seq_rnn); set label_smoothing=0")
        return Seq2SeqObjective()
    return Seq2SeqLMObjective(label_smoothing=label_smoothing)


def _sources(recipe: Seq2SeqRecipe, splits: dict, model: Any, tokenizer: Any):
    from ..generate.seq2seq import special_ids
    from ..train.tasks import TranslationSource

    def pairs(records: list[dict]) -> list[tuple[list[int], list[int]]]:
        src = tokenizer.encode_batch([r["src"] for r in records])
        tgt = tokenizer.encode_batch([r["tgt"] for r in records])
        return list(zip(src, tgt, strict=True))

    t, d = recipe.train, recipe.data
    kw = dict(max_len=d.max_length, **special_ids(model))
    return (TranslationSource(pairs(splits["train"]), t.batch_size, **kw),
            TranslationSource(pairs(splits["val"]), max(t.batch_size, 64),
                              max_eval_batches=t.eval_batches, **kw))


def finetune_seq2seq(recipe: Seq2SeqRecipe, *, resume: bool = False,
                     show_progress: bool = True, log: Callable[[str], None] = print
                     ) -> FinetuneResult:
    """Train, select on validation, evaluate every split; see the module docstring."""
    from ..train import Trainer

    run_dir = start_run(recipe, resume)

    splits, card = load_pairs(recipe, run_dir)
    model, tokenizer = build_seq2seq(recipe, splits, run_dir, resume=resume,
                                     show_progress=show_progress, log=log)
    total = sum(p.numel() for p in model.parameters())
    what = f"translate {' -> '.join(recipe.data.langs)}" if recipe.task == "translate" \
        else f"{recipe.task} ({', '.join(recipe.data.langs)})"
    log(f"{what}: {len(splits['train'])} training pairs; {type(model).__name__} with "
        f"{total:,} parameters, all trainable")
    train_src, val_src = _sources(recipe, splits, model, tokenizer)
    predictor = make_predictor(recipe, model, tokenizer, run_dir)
    val_records = splits["val"][:recipe.data.val_decode]

    def validation(m) -> dict:
        ev = predictor.evaluate(val_records, beams=recipe.decode.val_beams)["metrics"]
        return {f"val_{k}": ev[k] for k in CEILING if k in ev}

    metric = recipe.selection_metric
    cfg = recipe.train.model_copy(update={"best_metric": f"val_{metric}", "best_mode": "max"})
    provenance = {"recipe": recipe.to_dict(), "task": recipe.task,
                  "trainable_parameters": total, "parameters": total}
    trainer = Trainer(model, cfg, train_src, val_src, run_dir, seed=recipe.run.seed,
                      objective=objective_for(model, recipe.label_smoothing),
                      evaluators=[validation], tokenizer=tokenizer, provenance=provenance,
                      resume=resume, show_progress=show_progress)
    train_result, best = fit_and_load_best(trainer, model, run_dir)
    results = evaluate_pairs(predictor, splits, card, run_dir, metric)
    results.update(best_checkpoint=str(best), metric=metric, parameters=total,
                   decode=recipe.decode.model_dump())
    write_json(run_dir / "results.json", results)
    log(results_table(results))
    return FinetuneResult(run_dir, predictor, results, train_result, (total, total))


def evaluate_pairs(predictor: Seq2SeqPredictor, splits: dict[str, list[dict]],
                   card: dict | None, run_dir: Path, metric: str) -> dict:
    """Score every split but train, each beside its ceiling (the world's sets: BLEU or
    ROUGE 100, exact match 1.0); write the errors of ``test`` (else the first other
    split)."""
    out: dict = {"splits": {}}
    evaluated = [n for n in splits if n != "train" and splits[n]]
    report = "test" if "test" in evaluated else next(
        (n for n in evaluated if n != "val"), "val")
    for name in evaluated:
        ev = predictor.evaluate(splits[name])
        out["splits"][name] = {"n": ev["n"], **ev["metrics"],
                               "ceiling": CEILING[metric] if card else None}
        if name == report:
            write_text(run_dir / "errors.jsonl", "".join(
                json.dumps(e, ensure_ascii=False) + "\n" for e in ev["errors"]))
    return out


__all__ = ["finetune_seq2seq", "load_pairs", "build_seq2seq", "evaluate_pairs",
           "T5TranslationObjective"]
