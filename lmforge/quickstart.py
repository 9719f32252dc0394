"""``lmforge quickstart``: the whole spine in a few minutes on two CPU cores.

1. builds the built-in bilingual world corpus (sentences with exact surprisal);
2. trains a byte-level BPE tokenizer on it;
3. pretrains a small GPT with a progress bar;
4. reports validation perplexity and held-out bits per sentence next to the
   generator's true surprisal, and the share of sampled sentences the grammar accepts;
5. writes the loss plot;
6. prints samples for Chinese and English prompts, then what to try next.

**The plan adapts to the machine.** Machines differ several-fold in training speed (an
AVX2-only CPU trains at half the speed of an AVX-512 one, bf16 helps on some and is
emulated on others), so the number of steps is not fixed: the run times its warmup steps
and then trains as many steps as fit in ``budget`` seconds for the whole command, at most
the recipe's ``train.max_steps`` (:class:`lmforge.train.budget.StepPlanner`). The plan is
printed with the ``--steps N`` that replays it exactly; ``--steps`` (or
``--set train.max_steps=N``) fixes the length and skips the timing.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from .config import RECIPE_DIR, load_recipe
from .errors import ConfigError, LmforgeError
from .io import atomic_write_json, atomic_write_text

KEEP_ON_RERUN = {"data", "data.json"}
BUDGET_SECONDS = 240.0
"""The default time budget of the whole command: 300 s less a 20% margin."""
QUALITY_STEPS = 900
"""About how many steps the quality lines (bits ratio <= 1.15, >= 90% grammatical) need;
a plan shorter than this prints a note (docs/quickstart.md has the measurements)."""


def _clear_previous(out: Path) -> None:
    """Remove an earlier quickstart's outputs (keeping its prepared data for reuse)."""
    if not out.exists():
        return
    cfg = out / "config.yaml"
    if not cfg.is_file() or "name: quickstart" not in cfg.read_text(encoding="utf-8"):
        if any(out.iterdir()):
            raise LmforgeError(f"{out} exists and is not a quickstart run folder; "
                               "choose another --out")
        return
    for child in out.iterdir():
        if child.name in KEEP_ON_RERUN:
            continue
        if child.is_dir():
            shutil.rmtree(child)
        else:
            child.unlink()


def _prompts(items, per_lang: int = 3) -> list[str]:
    """Sentence openings from held-out sentences: the text up to the first content slot
    (a name, a city, a day...), so a prompt never cuts a word in half."""
    out: dict[str, list[str]] = {"zh": [], "en": []}
    for it in items:
        bucket = out[it.lang]
        if len(bucket) >= per_lang:
            continue
        prompt = ""
        for seg in it.sentence.segments(it.lang):
            prompt += seg.text
            if seg.slot is not None:
                break
        if prompt not in bucket:
            bucket.append(prompt)
    return out["zh"] + out["en"]


def _fixed_length(steps: int | None) -> list[str]:
    """Overrides that fix the run's length to ``steps``, evaluating half way and at the
    end as a plan does (none for ``steps=None``); the user's own overrides come after."""
    if steps is None:
        return []
    from .train.budget import half_way

    half = half_way(steps)
    return [f"train.max_steps={steps}", f"train.eval_every={half}", f"train.ckpt_every={half}"]


def _sets_max_steps(overrides: list[str]) -> bool:
    return any(o.split("=", 1)[0].strip() == "train.max_steps" for o in overrides)


def run_quickstart(out: str | Path = "runs/quickstart", overrides: list[str] | None = None,
                   show_progress: bool = True, log: Callable[[str], None] = print, *,
                   steps: int | None = None, budget: float = BUDGET_SECONDS) -> dict:
    """Run the quickstart; return the figures it printed.

    ``steps`` fixes the number of training steps; otherwise the run fits in ``budget``
    seconds (see the module doc)."""
    from .corpora import lm_corpus
    from .eval.world import grammaticality, world_bits
    from .generate import GenerationConfig, generate
    from .pretrain import pretrain
    from .train import resolve_device, resolve_precision
    from .train.budget import StepPlanner, half_way
    from .train.precision import precision_name

    t0, t0_mono = time.time(), time.monotonic()
    out = Path(out)
    overrides = list(overrides or [])
    if steps is not None and (steps < 1 or _sets_max_steps(overrides)):
        raise ConfigError("--steps must be a positive number of steps, given once (not "
                          "also as --set train.max_steps)")
    if not (budget > 0 and math.isfinite(budget)):
        raise ConfigError(f"--budget must be a positive number of seconds (got {budget})")
    recipe = load_recipe(RECIPE_DIR / "quickstart.yaml",
                         [f"run.out_dir={out}", *_fixed_length(steps), *overrides])
    _clear_previous(out)
    planned = steps is None and not _sets_max_steps(overrides)
    tr = recipe.train
    precision = precision_name(resolve_precision(tr.precision, resolve_device(tr.device)))
    log(f"lmforge quickstart -> {out}")
    log(f"[1/6] world corpus: {recipe.data.world_train_sentences} training sentences "
        "(zh + en), each with its exact probability")
    log(f"[2/6] tokenizer: byte-level BPE, vocab {recipe.tokenizer.vocab_size}")
    log(f"[3/6] pretraining a small GPT ({precision}; " + (
        f"as many steps as fit in {budget:.0f} s, at most {tr.max_steps})" if planned
        else f"{tr.max_steps} steps)"))
    callbacks = []
    plan_note: dict = {}
    if planned:
        def on_plan(plan) -> None:
            recipe.train.max_steps = plan.steps
            recipe.train.eval_every = recipe.train.ckpt_every = half_way(plan.steps)
            atomic_write_text(recipe.run.path / "config.yaml", recipe.to_yaml())
            plan_note.update(steps=plan.steps, tokens_per_s=plan.tokens_per_second)
            log(f"      {plan.line()}; replay it with: lmforge quickstart --steps {plan.steps}")
            if plan.steps < QUALITY_STEPS:
                log(f"      note: this machine fits {plan.steps} steps in {budget:.0f} s; the "
                    f"quality lines need about {QUALITY_STEPS} (try --budget "
                    f"{budget * QUALITY_STEPS / plan.steps:.0f})")

        callbacks.append(StepPlanner(t0_mono + budget, on_plan=on_plan,
                                     tokens_per_step=tr.batch_size * tr.block_size
                                     * tr.grad_accum))
    res = pretrain(recipe, show_progress=show_progress, log=lambda m: log(f"      {m}"),
                   callbacks=tuple(callbacks))
    model, tok = res.model, res.tokenizer

    log("[4/6] evaluation on held-out sentences")
    test = lm_corpus("test", recipe.data.world_eval_sentences, seed=recipe.run.seed)
    world_dir = res.run_dir / "world"
    world_dir.mkdir(exist_ok=True)
    atomic_write_text(world_dir / "test.jsonl", "".join(
        json.dumps({"text": it.text, "lang": it.lang, "bits": it.bits}, ensure_ascii=False)
        + "\n" for it in test))
    bits = world_bits(model, tok, test)
    val_loss = res.train.best_val_loss
    figures = {"steps": res.train.steps, "precision": precision, **(
                   {"planned_tokens_per_s": plan_note["tokens_per_s"]} if plan_note else {}),
               "val_loss": val_loss, "val_ppl": math.exp(val_loss),
               "bits_model": bits.model_bits, "bits_true": bits.true_bits,
               "bits_ratio": bits.ratio}
    log(f"val perplexity: {figures['val_ppl']:.3f} (per token, loss {val_loss:.4f})")
    log(bits.line())
    gram = grammaticality(model, tok, n=50, temperature=0.8, seed=recipe.run.seed)
    log(gram.line())
    figures.update(grammatical=gram.accepted, sampled=gram.total)

    log(f"[5/6] loss curve: {res.run_dir / 'loss.png'}")
    log("[6/6] samples (temperature 0.8)")
    prompts = _prompts(test)
    cfg = GenerationConfig(max_new_tokens=48, temperature=0.8, seed=recipe.run.seed)
    for p, completion in zip(prompts, generate(model, tok, prompts, cfg), strict=True):
        log(f"  {p} -> {p}{completion}")
    figures["seconds"] = time.time() - t0
    atomic_write_json(res.run_dir / "quickstart.json", figures)
    log(f"done in {figures['seconds']:.0f} s. Try next:")
    log(f"  lmforge generate {out} --prompt '{prompts[0]}' --stream")
    log(f"  lmforge evaluate {out} --data {out}/world/test.jsonl")
    log("  lmforge pretrain gpt-world --set train.max_steps=5000   (a longer run)")
    log("  lmforge pretrain gpt-world --set model.style=llama      (RoPE, RMSNorm, SwiGLU)")
    log("  docs/: data.md, tokenizers.md, models.md, training.md, generation.md")
    return figures
