"""Training a code-completion model (``task: code``) and measuring it on held-out files.

1. **Data**: the kept files split by file (:mod:`.data`).
2. **Tokenizer**: byte-level BPE (or char) trained on the training files, with the FIM
   sentinels as special tokens when ``fim_rate > 0`` (:mod:`.fim`).
3. **Model**: a GPT from scratch, trained on contexts of ``max_seq_len`` tokens drawn
   from the training files, rearranged for FIM on the fly (:mod:`.batches`); the best
   checkpoint has the lowest validation loss (plain windows of the val files).
4. **Evaluation** of that checkpoint on the test files (:mod:`.metrics`): next-line
   exact match (and as FIM middles), the share of generated function bodies that parse
   (by beam search with ``evaluate.body_beams > 1``, greedy beside it), and the
   perplexity per token beside a Kneser-Ney n-gram baseline, in the training
   precision (:mod:`.metrics`). The run folder
   gets ``results.json``, ``samples.jsonl`` (every line and body asked, with the true
   and the model's text) and the printed table.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..tasks.finetune import (
    FinetuneResult,
    fit_and_load_best,
    reevaluate,
    scratch_tokenizer,
    start_run,
    write_results,
)
from .batches import CodeBatches
from .data import CodeFile, collect_files, split_files
from .fim import FIM_TOKENS, FimIds
from .metrics import (
    body_cases,
    body_parse,
    line_cases,
    next_line_match,
    ngram_perplexity,
    perplexity,
)
from .recipe import CodeRecipe


def evaluate_code(model: Any, tok: Any, recipe: CodeRecipe, test: list[CodeFile],
                  train_docs: list[list[int]] | None = None,
                  log: Callable[[str], None] = print) -> tuple[dict, list[dict]]:
    """The metrics of :mod:`.metrics` on ``test`` (the n-gram baseline when
    ``train_docs`` are given); returns them and one record per line and body asked."""
    from ..train.precision import resolve_precision

    ev, bs = recipe.evaluate, recipe.evaluate.batch_size
    fim = FimIds.of(tok)
    autocast = resolve_precision(recipe.train.precision, next(model.parameters()).device)
    options = {"autocast": "bf16" if autocast == torch.bfloat16 else None,
               "no_repeat_ngram_size": ev.no_repeat_ngram_size}
    results: dict = {"test_files": len(test), "test_chars": sum(len(f.text) for f in test)}
    samples: list[dict] = []
    was_training = model.training
    model.eval()
    if ev.lines:
        t0 = time.perf_counter()
        cases = line_cases(test, tok, ev.lines, ev.line_max_new_tokens, ev.seed)
        results["next_line"], recs = next_line_match(model, tok, cases,
                                                     ev.line_max_new_tokens, bs, fim,
                                                     **options)
        samples += [{"kind": "line", **r} for r in recs]
        log(f"next lines: {len(cases)} asked ({time.perf_counter() - t0:.0f} s)")
    if ev.bodies:
        t0 = time.perf_counter()
        cases = body_cases(test, ev.bodies, ev.docstring, ev.max_body_lines, ev.seed)
        results["bodies"], recs = body_parse(model, tok, cases, ev.body_max_new_tokens, bs,
                                             ev.body_beams, **options)
        results["bodies"]["docstring_given"] = ev.docstring
        samples += [{"kind": "body", **r} for r in recs]
        if ev.body_beams > 1:
            results["bodies_greedy"], recs = body_parse(model, tok, cases,
                                                        ev.body_max_new_tokens, bs, **options)
            samples += [{"kind": "body_greedy", **r} for r in recs]
        log(f"function bodies: {len(cases)} generated ({time.perf_counter() - t0:.0f} s)")
    texts = [f.text for f in test]
    results["perplexity"] = {"model": perplexity(model, tok, texts, bs, autocast)}
    if train_docs is not None and ev.ngram_order:
        t0 = time.perf_counter()
        results["perplexity"]["ngram"] = ngram_perplexity(tok, train_docs, texts,
                                                          ev.ngram_order)
        log(f"{ev.ngram_order}-gram baseline counted and scored "
            f"({time.perf_counter() - t0:.0f} s)")
    model.train(was_training)
    return results, samples


def results_table(results: dict) -> str:
    def row(what: str, n: int, value: float, note: str = "") -> str:
        return f"{what:<36} {n:>7,}  {value:>8.4f}  {note}".rstrip()

    rows = [f"test: {results['test_files']} files, {results['test_chars']:,} characters",
            f"{'metric':<36} {'n':>7}  {'value':>8}"]
    line = results.get("next_line")
    if line is not None:
        rows.append(row("next-line exact match", line["n"], line["exact_match"]))
        if "fim_exact_match" in line:
            rows.append(row("next-line exact match, FIM middle", line["n"],
                            line["fim_exact_match"]))
    for key in ("bodies", "bodies_greedy"):
        b = results.get(key)
        if b is not None:
            rows.append(row(f"function bodies that parse, {b['decoding']}", b["n"],
                            b["parse"], f"ceiling {b['ceiling']:.1f}; exact {b['exact']:.4f}; "
                            f"hit max_new_tokens {b['hit_max_new_tokens']}; the others "
                            f"{b['parse_when_ended']:.4f}; lines {b['lines_mean']:.2f} "
                            f"(true {b['true_lines_mean']:.2f})"))
    ppl = results["perplexity"]
    rows.append(row("perplexity per token, GPT", ppl["model"]["tokens"],
                    ppl["model"]["perplexity"]))
    if "ngram" in ppl:
        rows.append(row(f"perplexity per token, {ppl['ngram']['order']}-gram KN",
                        ppl["ngram"]["tokens"], ppl["ngram"]["perplexity"]))
    return "\n".join(rows)


def finetune_code(recipe: CodeRecipe, *, resume: bool = False, show_progress: bool = True,
                  log: Callable[[str], None] = print) -> FinetuneResult:
    """Train, keep the checkpoint with the lowest validation loss, measure it on the test
    files (module docstring)."""
    from ..models.gpt import GPT
    from ..train import Trainer

    run_dir = start_run(recipe, resume)
    d, seed = recipe.data, recipe.run.seed
    splits = split_files(collect_files(d.files, d.max_chars), d.val_fraction,
                         d.test_fraction)
    t = recipe.tokenizer
    tok = scratch_tokenizer(t.kind, [f.text for f in splits["train"]], t.vocab_size,
                            t.min_frequency, run_dir, resume,
                            special_tokens=[*t.special_tokens,
                                            *(FIM_TOKENS if d.fim_rate > 0 else ())])
    torch.manual_seed(seed)
    model = GPT(dataclasses.replace(recipe.model, vocab_size=tok.vocab_size))
    ctx, bs = recipe.model.max_seq_len, recipe.train.batch_size
    train_src = CodeBatches(tok, splits["train"], ctx, bs, fim=FimIds.of(tok),
                            fim_rate=d.fim_rate, spm_rate=d.spm_rate, seed=seed)
    val_src = CodeBatches(tok, splits["val"], ctx, bs, seed=seed,
                          max_eval_batches=recipe.train.eval_batches)
    total = sum(p.numel() for p in model.parameters())
    log(f"code: {len(splits['train'])} training files ({train_src.tokens:,} tokens), "
        f"{len(splits['val'])} val, {len(splits['test'])} test; GPT with {total:,} "
        f"parameters; FIM rate {d.fim_rate:g}")
    provenance = {"recipe": recipe.to_dict(), "task": "code", "parameters": total}
    trainer = Trainer(model, recipe.train, train_src, val_src, run_dir, seed=seed,
                      tokenizer=tok, provenance=provenance, resume=resume,
                      show_progress=show_progress)
    train_result, best = fit_and_load_best(trainer, model, run_dir)
    results, samples = evaluate_code(model, tok, recipe, splits["test"],
                                     [f.ids for f in train_src.files], log)
    results.update(best_checkpoint=str(best), parameters=total,
                   files={k: len(v) for k, v in splits.items()},
                   train_tokens=train_src.tokens)
    write_results(run_dir, results, samples)
    log(results_table(results))
    return FinetuneResult(run_dir, None, results, train_result, (total, total))


def evaluate_code_run(run: str | Path, out: str | None = None,
                      overrides: Sequence[str] = (),
                      log: Callable[[str], None] = print) -> dict:
    """``lmforge evaluate`` on a code run: :func:`evaluate_code` again on the recipe's
    test files (the split depends on file paths only, so they are the run's own), with
    ``overrides`` of its ``evaluate:`` section (``bodies=400``,
    ``no_repeat_ngram_size=0``; :func:`~lmforge.tasks.finetune.reevaluate`). The
    n-gram baseline is counted again on the training files."""
    from .recipe import build_code_recipe

    def measure(model: Any, tok: Any, recipe: CodeRecipe) -> tuple[dict, list[dict]]:
        d = recipe.data
        splits = split_files(collect_files(d.files, d.max_chars), d.val_fraction,
                             d.test_fraction)
        train_docs = ([tok.encode(f.text) for f in splits["train"]]
                      if recipe.evaluate.ngram_order else None)
        return evaluate_code(model, tok, recipe, splits["test"], train_docs, log)

    return reevaluate(run, overrides, build_code_recipe, measure, results_table, out, log)
