"""``lmforge quickstart``: the whole spine in a few minutes on two CPU cores.

1. builds the built-in bilingual world corpus (sentences with exact surprisal);
2. trains a byte-level BPE tokenizer on it;
3. pretrains a small GPT with a progress bar;
4. reports validation perplexity and held-out bits per sentence next to the
   generator's true surprisal, and the share of sampled sentences the grammar accepts;
5. writes the loss plot;
6. prints samples for Chinese and English prompts, then what to try next.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from .config import RECIPE_DIR, load_recipe
from .errors import LmforgeError
from .io import atomic_write_json, atomic_write_text

KEEP_ON_RERUN = {"data", "data.json"}


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


def run_quickstart(out: str | Path = "runs/quickstart", overrides: list[str] | None = None,
                   show_progress: bool = True, log: Callable[[str], None] = print) -> dict:
    """Run the quickstart; return the figures it printed."""
    from .corpora import lm_corpus
    from .eval.world import grammaticality, world_bits
    from .generate import GenerationConfig, generate
    from .pretrain import pretrain

    t0 = time.time()
    out = Path(out)
    recipe = load_recipe(RECIPE_DIR / "quickstart.yaml",
                         [f"run.out_dir={out}", *(overrides or [])])
    _clear_previous(out)
    log(f"lmforge quickstart -> {out}")
    log(f"[1/6] world corpus: {recipe.data.world_train_sentences} training sentences "
        "(zh + en), each with its exact probability")
    log(f"[2/6] tokenizer: byte-level BPE, vocab {recipe.tokenizer.vocab_size}")
    log("[3/6] pretraining a small GPT")
    res = pretrain(recipe, show_progress=show_progress, log=lambda m: log(f"      {m}"))
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
    figures = {"val_loss": val_loss, "val_ppl": math.exp(val_loss),
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
