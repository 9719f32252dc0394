"""A trained encoder-decoder as a translator: text in, text out, and its scores.

``load_translator(run)`` reads a translation run (or one of its checkpoints) with the
decoding settings of its recipe; ``.translate(texts)`` decodes
(:func:`lmforge.generate.seq2seq.translate`: greedy or beam search with the GNMT length
penalty, optional no-repeat n-grams), and ``.evaluate(records)`` scores
``{"src", "tgt"}`` records with sacreBLEU BLEU and chrF and exact match
(:mod:`lmforge.eval.translation`), listing the pairs it got wrong, worst first.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import CheckpointError
from ..eval.translation import corpus_scores, sentence_scores
from ..generate.seq2seq import is_encoder_decoder, translate
from .seq2seq_config import DecodeConfig


class Translator:
    """``model`` and ``tokenizer`` with decoding defaults ``decode`` and the language
    pair ``langs`` (source, target)."""

    def __init__(self, model: Any, tokenizer: Any, decode: DecodeConfig,
                 langs: Sequence[str]):
        self.model, self.tokenizer, self.decode = model, tokenizer, decode
        self.src_lang, self.tgt_lang = langs

    def translate(self, texts: Sequence[str], *, beams: int | None = None,
                  alpha: float | None = None, no_repeat_ngram_size: int | None = None,
                  max_new_tokens: int | None = None) -> list[str]:
        """Each text's translation; options left None take the recipe's ``decode``."""
        d = self.decode
        return translate(
            self.model, self.tokenizer, texts, beams=d.beams if beams is None else beams,
            alpha=d.alpha if alpha is None else alpha,
            no_repeat_ngram_size=(d.no_repeat_ngram_size if no_repeat_ngram_size is None
                                  else no_repeat_ngram_size),
            max_new_tokens=d.max_new_tokens if max_new_tokens is None else max_new_tokens,
            batch_size=d.batch_size)

    def evaluate(self, records: Sequence[dict], *, beams: int | None = None) -> dict:
        """``{"n", "metrics", "errors"}``: corpus BLEU/chrF (with sacrebleu's signatures)
        and exact match of the translations of ``records`` (``src`` -> ``tgt``); the
        errors are the pairs not translated exactly, lowest sentence BLEU first."""
        hyps = self.translate([r["src"] for r in records], beams=beams)
        refs = [r["tgt"] for r in records]
        metrics = corpus_scores(hyps, refs, target_lang=self.tgt_lang)
        per = sentence_scores(hyps, refs, target_lang=self.tgt_lang)
        errors = [{**({"id": r["id"]} if "id" in r else {}), "src": r["src"], "ref": r["tgt"],
                   "hyp": h, "bleu": round(s["bleu"], 2)}
                  for r, h, s in zip(records, hyps, per, strict=True) if not s["exact"]]
        errors.sort(key=lambda e: e["bleu"])
        return {"n": len(records), "metrics": metrics, "errors": errors}


def _run_dir(path: str | Path) -> Path | None:
    """The run folder of ``path`` (a run, or one of its checkpoints) if it has a recipe."""
    p = Path(path)
    for d in (p, p.parent.parent):
        if (d / "config.yaml").is_file():
            return d
    return None


def is_translation_run(path: str | Path) -> bool:
    """Whether ``path`` is a translation run or one of its checkpoints."""
    import yaml

    d = _run_dir(path)
    if d is None:
        return False
    try:
        raw = yaml.safe_load((d / "config.yaml").read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    return isinstance(raw, dict) and raw.get("task") == "translate"


def load_translator(run: str | Path) -> Translator:
    """A translation run's best checkpoint (or a checkpoint folder) as a Translator."""
    from ..hub import load_pretrained
    from ..train.checkpoint import best_checkpoint, latest_checkpoint
    from .config import load_finetune_recipe
    from .seq2seq_config import Seq2SeqRecipe

    p = Path(run)
    run_dir = _run_dir(p)
    if run_dir is None:
        raise CheckpointError(f"{run}: not a translation run (no config.yaml in it or two "
                              "folders above)")
    recipe = load_finetune_recipe(str(run_dir / "config.yaml"))
    if not isinstance(recipe, Seq2SeqRecipe):
        raise CheckpointError(f"{run_dir} is not a translation run (its recipe has no "
                              "task: translate)")
    folder = p if p != run_dir else best_checkpoint(run_dir) or latest_checkpoint(run_dir)
    if folder is None:
        raise CheckpointError(f"{run_dir} has no checkpoint yet")
    model, tokenizer = load_pretrained(folder, require_tokenizer=True)
    if not is_encoder_decoder(model):
        raise CheckpointError(f"{folder} holds a {type(model).__name__}, not an "
                              "encoder-decoder")
    return Translator(model, tokenizer, recipe.decode, recipe.data.langs)
