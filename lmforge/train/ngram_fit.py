"""Training an n-gram recipe (``model.arch: ngram``): count, score, save.

A count model has no optimizer steps, so ``pretrain`` hands it here instead of to the
:class:`~lmforge.train.Trainer`. The run folder gets the same files as a neural run:

* ``checkpoints/step_0000000/``: the model folder (counts as tensors, the tokenizer,
  ``trainer_state.json`` with the validation loss), loadable by ``load_pretrained``;
* ``metrics.jsonl``: one record with ``val_loss`` (nats per predicted token over the
  validation documents, the tokens and each closing ``eos``), ``val_ppl`` and, on the
  world corpus, ``bits_per_sentence`` against the exact ``true_bits``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data.shards import TokenShards
from ..models.ngram_model import NGramModel
from .checkpoint import checkpoint_path, save_checkpoint
from .metrics_log import MetricsLog
from .trainer import TrainResult


def validation_loss(model: NGramModel, data_dir: Path, tokenizer: Any) -> tuple[float, int]:
    """(mean NLL in nats per predicted token, number of predicted tokens) on ``val``."""
    lm, total, n = model.lm, 0.0, 0
    for doc in TokenShards(data_dir, "val").documents(tokenizer.eos_id, tokenizer.bos_id):
        lp, k = lm.sentence_logprob([str(t) for t in doc])
        total, n = total - lp, n + k
    return total / n, n


def fit_ngram(recipe: Any, config: Any, data_dir: Path, tokenizer: Any, run_dir: Path,
              log: Callable[[str], None] = print) -> tuple[NGramModel, TrainResult]:
    """Count the train split, score the val split, write the checkpoint and metrics."""
    t0 = time.perf_counter()
    docs = TokenShards(data_dir, "train").documents(tokenizer.eos_id, tokenizer.bos_id)
    model = NGramModel.fit(config, docs)
    log(f"counted {model.config.n_ngrams:,} distinct {config.order}-grams "
        f"in {time.perf_counter() - t0:.1f} s")
    val_loss, n_tokens = validation_loss(model, data_dir, tokenizer)
    record: dict[str, Any] = {"step": 0, "val_loss": val_loss, "val_ppl": math.exp(val_loss),
                              "val_tokens": n_tokens}
    if recipe.data.corpus == "world":
        from ..corpora import lm_corpus
        from ..eval.world import world_bits

        items = lm_corpus("val", recipe.data.world_eval_sentences, seed=recipe.run.seed)
        bits = world_bits(model, tokenizer, items)
        record.update(bits_per_sentence=bits.model_bits, true_bits=bits.true_bits,
                      bits_ratio=bits.ratio)
        log(bits.line())
    log(f"val loss {val_loss:.4f} nats/token (perplexity {math.exp(val_loss):.3f})")
    metrics = MetricsLog(run_dir / "metrics.jsonl", fresh=True)
    metrics.write(record)
    metrics.close()
    state = {"step": 0, "seed": recipe.run.seed, "config": recipe.train.model_dump(mode="json"),
             "val_loss": val_loss, "best_val_loss": val_loss, "tokens_seen": 0}
    path = save_checkpoint(checkpoint_path(run_dir, 0), model, trainer_state=state,
                           optimizer_payload={}, tokenizer=tokenizer,
                           provenance={"recipe": recipe.to_dict()})
    elapsed = time.perf_counter() - t0
    return model, TrainResult(steps=0, best_val_loss=val_loss, best_step=0,
                              last_checkpoint=path, stopped_reason="counted",
                              tokens_per_sec=0.0, final_val_loss=val_loss, elapsed=elapsed,
                              best_checkpoint=path)
