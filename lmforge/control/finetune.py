"""Training a controlled-generation model (``task: control``) and measuring its control.

1. **Data**: the world's control set (:mod:`lmforge.corpora.tasks.control`).
2. **Tokenizer**: trained on the training texts, with one special token per code.
3. **Examples**: ``<bos> codes text <eos>``, each code kept with probability
   ``1 - code_dropout``; the loss is on the text and ``<eos>`` only (the codes are
   given, never predicted), :class:`~lmforge.chat.sft.ChatExample` masks.
4. **Model**: a GPT from scratch; the best checkpoint has the lowest validation loss.
5. **Evaluation** (:func:`evaluate_control`), every text judged exactly by the world
   (:func:`~lmforge.corpora.tasks.control.judge`), beside the ceiling 1.0:

   * *sampled*: ``samples`` texts for every combination of sentiment, topic and language,
     drawn at ``temperature`` and ``top_p``: the share whose sentiment, topic and
     language are those asked for (each, and all three), the share that is
     grammatical, the share of distinct texts and the share copied from training;
   * *forced*: ``forced`` texts per combination that must contain a word (an aspect of
     the topic: "battery", "球迷"), by constrained beam search: the share containing it
     (100% by construction), grammatical and on target;
   * *banned*: ``banned`` sampled texts per combination that must not contain a word.

   With ``classifiers`` (sentiment and topic classifier runs) their labels of the sampled
   texts are reported too: the control accuracy as a trained classifier sees it.
"""

from __future__ import annotations

import dataclasses
import itertools
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from ..chat.sft import ChatBatches, ChatExample
from ..corpora.tasks.control import ASPECTS, CONTROLS, judge
from ..errors import DataError
from ..tasks.finetune import (
    FinetuneResult,
    fit_and_load_best,
    reevaluate,
    scratch_tokenizer,
    start_run,
    write_results,
)
from .codes import ORDER, all_code_tokens, code_ids
from .recipe import ControlRecipe


def encode_example(tok: Any, record: dict, max_length: int, keep: Sequence[bool]
                   ) -> ChatExample:
    """``<bos> codes text <eos>`` (the codes whose ``keep`` is true), trained on the text
    and ``<eos>``; cut to ``max_length`` tokens."""
    prompt = code_ids(tok, {k: record[k] for k, kept in zip(ORDER, keep, strict=True)
                            if kept})
    text = tok.encode(record["text"]) + [tok.eos_id]
    ids = (prompt + text)[:max_length]
    return ChatExample(ids, ([False] * len(prompt) + [True] * len(text))[:max_length])


def encode_split(tok: Any, records: list[dict], max_length: int, dropout: float,
                 seed: int) -> list[ChatExample]:
    """Every record encoded, each code dropped with probability ``dropout`` (seeded)."""
    rng = random.Random(seed)
    return [encode_example(tok, r, max_length, [rng.random() >= dropout for _ in ORDER])
            for r in records]


def combinations(langs: Sequence[str]) -> list[dict[str, str]]:
    """Every ``{"sentiment", "topic", "lang"}`` combination."""
    return [dict(zip(ORDER, c, strict=True))
            for c in itertools.product(CONTROLS["sentiment"], CONTROLS["topic"], langs)]


def aspect_word(controls: dict[str, str], i: int) -> str:
    """The ``i``-th aspect noun of the topic (cycling), in the language asked for."""
    aspects = ASPECTS[controls["topic"]]
    a = aspects[i % len(aspects)]
    return (a.en if controls["lang"] == "en" else a.zh)[0]


def _score(asked: list[dict], texts: list[str], judged: list[dict],
           train_texts: set[str] | None = None) -> dict:
    """Control accuracies, grammaticality, diversity of ``texts`` generated for ``asked``
    (``judged``: what the world read in each)."""
    n = max(1, len(texts))
    hit = {k: [j[k] == a[k] for a, j in zip(asked, judged, strict=True)] for k in ORDER}
    out = {"n": len(texts),
           **{f"{k}_accuracy": round(sum(v) / n, 4) for k, v in hit.items()},
           "all_three": round(sum(all(x) for x in zip(*hit.values(), strict=True)) / n, 4),
           "grammatical": round(sum(j["grammatical"] for j in judged) / n, 4),
           "distinct": round(len(set(texts)) / n, 4)}
    if train_texts is not None:
        out["copied_from_train"] = round(sum(t in train_texts for t in texts) / n, 4)
    return out


def _generate(model: Any, tok: Any, asked: list[dict], ev: Any, **options: Any) -> list[str]:
    from ..generate.text import complete_ids

    prompts = [code_ids(tok, a) for a in asked]
    return [c.text.strip() for c in complete_ids(
        model, tok, prompts, max_new_tokens=ev.max_new_tokens, batch_size=ev.batch_size,
        seed=ev.seed, **options)]


def _classifier_accuracy(paths: dict[str, str], asked: list[dict], texts: list[str]) -> dict:
    from ..tasks.predictor import load_task_model

    out = {}
    written = [i for i, t in enumerate(texts) if t.strip()]  # an empty text is wrong
    for kind, path in paths.items():
        labels = load_task_model(path).predict([texts[i] for i in written])
        out[f"{kind}_accuracy_by_classifier"] = round(
            sum(p["label"] == asked[i][kind] for i, p in zip(written, labels, strict=True))
            / max(1, len(texts)), 4)
    return out


def _per_word(model: Any, tok: Any, asked: list[dict], words: list[str], ev: Any,
              options: Callable[[str], dict]) -> list[str]:
    """The texts for ``asked``, one batched generation per distinct word, with the
    generation ``options(word)`` (a forced or a banned word)."""
    texts = [""] * len(asked)
    for word in sorted(set(words)):
        rows = [i for i, w in enumerate(words) if w == word]
        got = _generate(model, tok, [asked[i] for i in rows], ev, **options(word))
        for i, t in zip(rows, got, strict=True):
            texts[i] = t
    return texts


def evaluate_control(model: Any, tok: Any, recipe: ControlRecipe,
                     train_texts: set[str] | None = None) -> tuple[dict, list[dict]]:
    """The measurements of the module docstring; returns them and every generated text
    with what was asked and what the world read."""
    ev, combos = recipe.evaluate, combinations(recipe.data.langs)
    sampling = dict(temperature=ev.temperature, top_p=ev.top_p)
    was_training = model.training
    model.eval()
    results: dict = {}
    samples: list[dict] = []

    def measure(part: str, asked: list[dict], texts: list[str], words: list[str] | None = None,
                **extra: Any) -> None:
        judged = [judge(t, a["lang"]) for a, t in zip(asked, texts, strict=True)]
        results[part] = {**_score(asked, texts, judged, extra.pop("train_texts", None)),
                         **extra}
        samples.extend({"part": part, "asked": a, "text": t, "judged": j,
                        **({"word": words[i]} if words else {})}
                       for i, (a, t, j) in enumerate(zip(asked, texts, judged, strict=True)))

    asked = [c for c in combos for _ in range(ev.samples)]
    texts = _generate(model, tok, asked, ev, **sampling)
    measure("sampled", asked, texts, train_texts=train_texts,
            **(_classifier_accuracy(ev.classifiers, asked, texts) if ev.classifiers else {}))
    if ev.forced:
        asked = [c for c in combos for _ in range(ev.forced)]
        words = [aspect_word(c, i) for c in combos for i in range(ev.forced)]
        texts = _per_word(model, tok, asked, words, ev, lambda w: dict(
            temperature=0, num_beams=ev.num_beams, force_words=[w]))
        measure("forced", asked, texts, words, word_present=round(
            sum(w in t for w, t in zip(words, texts, strict=True)) / len(texts), 4))
    if ev.banned:
        asked = [c for c in combos for _ in range(ev.banned)]
        words = [aspect_word(c, 0) for c in asked]
        texts = _per_word(model, tok, asked, words, ev, lambda w: dict(
            **sampling, bad_words=[w]))
        measure("banned", asked, texts, words, word_absent=round(
            sum(w not in t for w, t in zip(words, texts, strict=True)) / len(texts), 4))
    model.train(was_training)
    results["ceiling"] = 1.0
    return results, samples


def results_table(results: dict) -> str:
    rows = ["part      n  sentiment  topic   lang   all-3  grammatical  distinct  copied  word"]
    for part in ("sampled", "forced", "banned"):
        s = results.get(part)
        if s is None:
            continue
        word = s.get("word_present", s.get("word_absent"))
        rows.append(f"{part:<8}{s['n']:>4}   {s['sentiment_accuracy']:.3f}    "
                    f"{s['topic_accuracy']:.3f}  {s['lang_accuracy']:.3f}  "
                    f"{s['all_three']:.3f}     {s['grammatical']:.3f}     {s['distinct']:.3f}"
                    + (f"    {s['copied_from_train']:.3f}" if "copied_from_train" in s
                       else "        -")
                    + (f"   {word:.3f}" if word is not None else ""))
    by_classifier = {k.split("_")[0]: v for k, v in results["sampled"].items()
                     if k.endswith("_by_classifier")}
    if by_classifier:
        rows.append("sampled, as the classifier runs label them: " + ", ".join(
            f"{k} {v:.3f}" for k, v in by_classifier.items()))
    rows.append(f"ceiling of every column: {results['ceiling']:.1f}")
    return "\n".join(rows)


def render_control_set(recipe: ControlRecipe):
    """The recipe's control set (:mod:`lmforge.corpora.tasks.control`)."""
    from ..corpora.tasks import render_task_set

    d = recipe.data
    return render_task_set("control", seed=recipe.run.seed, sizes=d.world_sizes or None,
                           langs=d.langs)


def training_texts(recipe: ControlRecipe) -> set[str]:
    return {r["text"] for r in render_control_set(recipe).splits["train"]}


def finetune_control(recipe: ControlRecipe, *, resume: bool = False, show_progress: bool = True,
                     log: Callable[[str], None] = print) -> FinetuneResult:
    """Train, keep the checkpoint with the lowest validation loss, measure the control."""
    from ..models.gpt import GPT
    from ..train import Trainer

    run_dir = start_run(recipe, resume)
    d, seed = recipe.data, recipe.run.seed
    ts = render_control_set(recipe)
    train = ts.splits["train"]
    if not train or not ts.splits.get("val"):
        raise DataError("control: the train and val splits need at least one item each")
    t = recipe.tokenizer
    tok = scratch_tokenizer(t.kind, [r["text"] for r in train], t.vocab_size,
                            t.min_frequency, run_dir, resume,
                            special_tokens=[*t.special_tokens, *all_code_tokens()])
    torch.manual_seed(seed)
    model = GPT(dataclasses.replace(recipe.model, vocab_size=tok.vocab_size))
    bs = recipe.train.batch_size
    train_src = ChatBatches(encode_split(tok, train, d.max_length, d.code_dropout, seed),
                            bs, tok.pad_id)
    val_src = ChatBatches(encode_split(tok, ts.splits["val"], d.max_length, 0.0, seed),
                          bs, tok.pad_id)
    total = sum(p.numel() for p in model.parameters())
    log(f"control: {len(train)} training texts; GPT with {total:,} parameters")
    provenance = {"recipe": recipe.to_dict(), "task": "control", "parameters": total}
    trainer = Trainer(model, recipe.train, train_src, val_src, run_dir, seed=seed,
                      tokenizer=tok, provenance=provenance, resume=resume,
                      show_progress=show_progress)
    train_result, best = fit_and_load_best(trainer, model, run_dir)
    results, samples = evaluate_control(model, tok, recipe, {r["text"] for r in train})
    results.update(best_checkpoint=str(best), parameters=total)
    write_results(run_dir, results, samples)
    log(results_table(results))
    return FinetuneResult(run_dir, None, results, train_result, (total, total))


def evaluate_control_run(run: str | Path, out: str | None = None,
                         overrides: Sequence[str] = (),
                         log: Callable[[str], None] = print) -> dict:
    """``lmforge evaluate`` on a control run: :func:`evaluate_control` again, with
    ``overrides`` of the recipe's ``evaluate:`` section (``samples=8``,
    ``classifiers={sentiment: runs/s}``; :func:`~lmforge.tasks.finetune.reevaluate`)."""
    from .recipe import build_control_recipe

    return reevaluate(run, overrides, build_control_recipe,
                      lambda m, tok, r: evaluate_control(m, tok, r, training_texts(r)),
                      results_table, out, log)
