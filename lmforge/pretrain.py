"""Pretraining from a recipe: the spine of lmforge.

``pretrain(recipe)`` turns a validated :class:`~lmforge.config.Recipe` into a run folder::

    runs/<name>/
      config.yaml       # the resolved recipe (every default filled in)
      lmforge.json      # library version, command, start time
      data/             # token shards + tokenizer.json (unless data.prepared is given)
      metrics.jsonl     # one JSON object per log step and per evaluation
      loss.png          # train and validation loss curves
      checkpoints/      # step_NNNNNNN/ model folders, the last K plus the best
      samples.txt       # text sampled from the best model after training

With a key active (:func:`lmforge.privacy.encrypted_io.using_key`) ``lmforge.json`` and
``samples.txt`` are written encrypted, as the checkpoints and ``metrics.jsonl`` are, and
encrypted inputs (a keyed fine-tuning run's ``backbone_text.txt``) are read in memory
(:func:`lmforge.data.readers.iter_lines`); ``config.yaml``, ``data.json`` and the token
shards in ``data/`` stay plaintext.

The stages are library calls (``prepare_data``, ``build_model``, ``Trainer``) so that
other front ends (the quickstart, tests, notebooks) compose them the same way.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from . import __version__
from .config import Recipe, load_yaml
from .distributed.env import barrier
from .distributed.launch import join_run, quiet
from .errors import ConfigError, LmforgeError
from .io import atomic_write_json, atomic_write_text, ensure_writable_dir
from .privacy.encrypted_io import write_json, write_text


@dataclass
class PretrainResult:
    run_dir: Path
    model: torch.nn.Module
    tokenizer: object
    train: object  # lmforge.train.TrainResult

    def summary(self) -> str:
        t = self.train
        best = f", best val loss {t.best_val_loss:.4f} at step {t.best_step}" \
            if t.best_val_loss is not None else ""
        return f"{t.steps} steps ({t.stopped_reason}){best}; run folder {self.run_dir}"


def _data_fingerprint(recipe: Recipe) -> dict:
    return {"data": recipe.data.model_dump(mode="json"),
            "tokenizer": recipe.tokenizer.model_dump(mode="json"), "seed": recipe.run.seed}


def _corpus_texts(recipe: Recipe) -> list[str] | None:
    d = recipe.data
    if d.corpus == "world":
        from .corpora import lm_corpus

        return [it.text for it in lm_corpus("train", d.world_train_sentences,
                                            seed=recipe.run.seed)]
    if d.corpus == "python-stdlib":
        from .corpora import iter_stdlib_documents

        return [text for _path, text in iter_stdlib_documents()]
    return None


def prepare_run_data(recipe: Recipe, run_dir: Path, show_progress: bool = True,
                     log: Callable[[str], None] = print) -> Path:
    """The prepared-data folder of a run: ``data.prepared``, or built in ``run/data``."""
    from .data.prepare import prepare_data
    from .tokenize import Tokenizer

    d = recipe.data
    if d.prepared:
        if d.inputs or d.corpus:
            raise ConfigError("data.prepared excludes data.inputs and data.corpus")
        return Path(d.prepared)
    if not d.inputs and not d.corpus:
        raise ConfigError("data: give data.corpus (world, python-stdlib), data.inputs "
                          "(files) or data.prepared (a prepared folder)")
    data_dir = run_dir / "data"
    stamp = run_dir / "data.json"
    fingerprint = _data_fingerprint(recipe)
    if (data_dir / "meta.json").is_file() and stamp.is_file():
        if json.loads(stamp.read_text(encoding="utf-8")) == fingerprint:
            log(f"data: reusing {data_dir}")
            return data_dir
    tokenizer = Tokenizer.load(recipe.tokenizer.path) if recipe.tokenizer.path else None
    log("data: preparing token shards" + ("" if tokenizer else
                                          f" and training a {recipe.tokenizer.kind} tokenizer"))
    prepare_data(list(d.inputs), data_dir, tokenizer=tokenizer, tokenizer_spec=recipe.tokenizer,
                 field=d.field, column=d.column, clean=d.clean, dedup=d.dedup,
                 val_fraction=d.val_fraction, seed=recipe.run.seed,
                 show_progress=show_progress, texts=_corpus_texts(recipe))
    atomic_write_json(stamp, fingerprint)
    return data_dir


def check_block_size(block_size: int, model_config: object) -> None:
    """Training windows must fit the model's positions (``max_seq_len``, where it has one)."""
    max_pos = getattr(model_config, "max_seq_len", None)
    if max_pos is not None and block_size > max_pos:
        raise ConfigError(f"train.block_size={block_size} exceeds the model's maximum "
                          f"positions (model.max_seq_len={max_pos})")


def build_run_model(recipe: Recipe, tokenizer) -> torch.nn.Module:
    """Instantiate the recipe's model for ``tokenizer``, with a seeded initialisation.

    Vocabulary sizes left unset and special ids come from the tokenizer
    (:func:`lmforge.train.tasks.fill_from_tokenizer`)."""
    from .models import build_model
    from .train.tasks import extra_vocab, fill_from_tokenizer

    cfg = fill_from_tokenizer(recipe.model, tokenizer, extra_ids=extra_vocab(recipe),
                              objective=recipe.train.objective)
    check_block_size(recipe.train.block_size, cfg)
    torch.manual_seed(recipe.run.seed)
    return build_model(cfg)


def _check_run_dir(run_dir: Path, recipe: Recipe, resume: bool) -> None:
    from .train import latest_checkpoint

    has_ckpt = latest_checkpoint(run_dir) is not None
    if resume:
        if not has_ckpt:
            raise LmforgeError(f"--resume: {run_dir} has no checkpoint to resume from")
        old_file = run_dir / "config.yaml"
        if old_file.is_file():
            old = load_yaml(old_file)  # a damaged config.yaml is a ConfigError naming it
            new = recipe.to_dict()
            for section in ("model", "data", "tokenizer"):
                # fields a newer lmforge added (absent from the old file) do not count
                was, now = old.get(section) or {}, new.get(section) or {}
                if {k: now.get(k) for k in was} != was:
                    raise ConfigError(f"--resume: the {section} section differs from the run's "
                                      f"config.yaml; resume with the same recipe")
    elif has_ckpt:
        raise LmforgeError(f"{run_dir} already holds a run; pass --resume to continue it or "
                           "choose another folder with --out / run.out_dir")


def pretrain(recipe: Recipe, *, resume: bool = False, show_progress: bool = True,
             log: Callable[[str], None] = print, evaluators: tuple = (),
             callbacks: tuple = ()) -> PretrainResult:
    """Run a recipe end to end and return the trained (best) model."""
    from .hub import load_pretrained
    from .train import Trainer
    from .train.tasks import build_task

    check_block_size(recipe.train.block_size, recipe.model)  # before the data is prepared
    main, resume = join_run(recipe.train, recipe.run.path, resume)
    if not main:  # rank 0 reports, writes the run folder's files and prepares the data
        log, show_progress = quiet, False
    run_dir = ensure_writable_dir(recipe.run.path)
    _check_run_dir(run_dir, recipe, resume)
    barrier()  # every rank has checked the folder before rank 0 writes into it
    if main:
        atomic_write_text(run_dir / "config.yaml", recipe.to_yaml())
        write_json(run_dir / "lmforge.json", {
            "lmforge_version": __version__, "torch_version": torch.__version__,
            "command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "arch": recipe.arch})
        data_dir = prepare_run_data(recipe, run_dir, show_progress, log)
    barrier()
    if not main:
        data_dir = prepare_run_data(recipe, run_dir, False, log)  # reuses rank 0's
    from .tokenize import Tokenizer

    tokenizer = Tokenizer.load(data_dir)
    model = build_run_model(recipe, tokenizer)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {recipe.arch} with {n_params / 1e6:.2f}M parameters, "
        f"vocab {tokenizer.vocab_size}")

    if recipe.arch == "ngram":  # a count model: no optimizer steps
        from .train.ngram_fit import fit_ngram

        model, result = fit_ngram(recipe, model.config, data_dir, tokenizer, run_dir, log)
        _write_samples(recipe, model, tokenizer, run_dir)
        return PretrainResult(run_dir, model, tokenizer, result)

    train_src, val_src, objective = build_task(recipe, data_dir, tokenizer, model)
    evaluators = list(evaluators)
    if recipe.data.corpus == "world" and recipe.train.objective == "causal_lm" \
            and recipe.arch == "gpt":
        from .corpora import lm_corpus
        from .eval.world import world_evaluator

        items = lm_corpus("val", recipe.data.world_eval_sentences, seed=recipe.run.seed)
        evaluators.append(world_evaluator(tokenizer, items))

    trainer = Trainer(model, recipe.train, train_src, val_src, run_dir, seed=recipe.run.seed,
                      objective=objective, evaluators=evaluators, callbacks=callbacks, tokenizer=tokenizer,
                      provenance={"recipe": recipe.to_dict()}, resume=resume,
                      show_progress=show_progress)
    result = trainer.fit()
    best, _ = load_pretrained(run_dir)
    if main:
        _write_samples(recipe, best, tokenizer, run_dir)
    return PretrainResult(run_dir, best, tokenizer, result)



def _write_samples(recipe: Recipe, model, tokenizer, run_dir: Path) -> None:
    from .generate import GenerationConfig, generate

    s = recipe.sample
    if not s.prompts or recipe.train.objective != "causal_lm":
        return
    cfg = GenerationConfig(max_new_tokens=s.max_new_tokens, temperature=s.temperature,
                           top_k=s.top_k, top_p=s.top_p, seed=recipe.run.seed)
    outs = generate(model, tokenizer, list(s.prompts), cfg)
    write_text(run_dir / "samples.txt",
               "".join(f"{p}{o}\n" for p, o in zip(s.prompts, outs, strict=True)))
