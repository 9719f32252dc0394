r"""Text RL on a translation run (``reward: bleu``): the episodes' sources and references,
and the figures a translation policy is judged on.

An episode starts from a source sentence ``x`` drawn uniformly from the run's ``train``
split (the sampling seed is the round's); the actions write the target ``y`` from
``[bos]``; ``R(y) = sentence BLEU(y, y_ref) / 100`` (sacrebleu, ``zh`` tokenizer for a
Chinese target, ``13a`` otherwise), so the return is ``E[R] − β KL(π(·|x) ‖ π_ref(·|x))``.

Figures (:meth:`TranslationTask.evaluate`) on the first ``n`` pairs of a held-out split:

* ``greedy_bleu``, ``greedy_chrf``, ``greedy_exact``: sacrebleu corpus BLEU, chrF and
  exact match of the greedy translations of the saved model
  (:func:`lmforge.generate.seq2seq.translate`, the whole vocabulary);
* ``sample_bleu``, ``sample_chrf``: the same for one temperature-1 sample per source (on
  ``A_k`` when ``top_k`` is set: the learned policy exactly); ``reward``: their mean
  sentence BLEU / 100;
* ``kl``: ``E_π[Σ_t KL(π(·|s_t) ‖ π_ref(·|s_t))]`` per sentence (exact per-step KL along the
  samples); ``length``: the mean number of actions (``eos`` included).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from ...errors import CheckpointError, ConfigError
from .rewards import Reward, bleu_reward
from .rollout import collect, log_probs, step_kl

FIGURES = ("greedy_bleu", "greedy_chrf", "sample_bleu", "sample_chrf", "reward", "kl",
           "length")


class TranslationTask:
    """The pairs of a translation run (``splits``: name -> ``{"src", "tgt"}`` records) and
    its target language."""

    def __init__(self, splits: dict[str, list[dict]], tgt_lang: str, pad_id: int):
        from ...eval.translation import default_tokenize

        self.splits, self.tgt_lang, self.pad_id = splits, tgt_lang, pad_id
        self.tokenize = default_tokenize(tgt_lang)

    def split(self, name: str) -> list[dict]:
        held = sorted(k for k in self.splits if k != "train" and self.splits[k])
        if name not in held:
            raise ConfigError(f"eval_split: unknown split '{name}' (allowed: "
                              f"{', '.join(held)})")
        return self.splits[name]

    def sources(self, tokenizer, records: list[dict]) -> Tensor:
        """(n, S) the right-padded source ids of ``records``."""
        ids = tokenizer.encode_batch([r["src"] for r in records])
        src = torch.full((len(ids), max(map(len, ids))), self.pad_id, dtype=torch.long)
        for i, row in enumerate(ids):
            src[i, :len(row)] = torch.tensor(row, dtype=torch.long)
        return src

    def reward(self, records: list[dict]) -> Reward:
        return bleu_reward([r["tgt"] for r in records], self.tokenize)

    def draw(self, tokenizer, n: int, seed: int) -> tuple[Reward, Tensor]:
        """``n`` training pairs drawn uniformly (seeded): their BLEU reward and sources."""
        train = self.splits["train"]
        idx = torch.randint(len(train), (n,), generator=torch.Generator().manual_seed(seed))
        records = [train[i] for i in idx.tolist()]
        return self.reward(records), self.sources(tokenizer, records)

    @torch.no_grad()
    def evaluate(self, policy: nn.Module, ref: nn.Module, tokenizer, split: str, n: int,
                 seed: int, max_new_tokens: int, top_k: int | None = None,
                 batch_size: int = 100) -> dict:
        """The figures of the module docstring for ``policy`` on ``split``."""
        from ...eval.translation import corpus_scores
        from ...generate.seq2seq import translate

        policy.eval()
        records = self.split(split)[:n]
        refs = [r["tgt"] for r in records]
        greedy = translate(policy, tokenizer, [r["src"] for r in records], beams=1,
                           max_new_tokens=max_new_tokens, batch_size=batch_size)
        g = corpus_scores(greedy, refs, target_lang=self.tgt_lang)
        kl, texts, scores, lengths = [], [], [], []
        for lo in range(0, len(records), batch_size):
            part = records[lo:lo + batch_size]
            ep = collect(policy, ref, tokenizer, self.reward(part), len(part),
                         max_new_tokens, seed + lo, top_k, self.sources(tokenizer, part))
            logp = log_probs(policy, ep.tokens, ep.src, ep.keep)
            ref_logp = log_probs(ref, ep.tokens, ep.src, ep.keep)
            kl += (step_kl(logp, ref_logp) * ep.mask).sum(1).tolist()
            texts += ep.texts
            scores += ep.scores.tolist()
            lengths += ep.lengths.tolist()
        s = corpus_scores(texts, refs, target_lang=self.tgt_lang)
        m = len(records)
        return {"split": split, "n": m, "greedy_bleu": g["bleu"], "greedy_chrf": g["chrf"],
                "greedy_exact": g["exact_match"], "sample_bleu": s["bleu"],
                "sample_chrf": s["chrf"], "reward": sum(scores) / m, "kl": sum(kl) / m,
                "length": sum(lengths) / m, "bleu_signature": g["bleu_signature"],
                "examples": [{"src": r["src"], "ref": r["tgt"], "greedy": h, "sample": t}
                             for r, h, t in zip(records[:5], greedy, texts, strict=False)]}


def load_translation_run(path: str) -> tuple[nn.Module, object, TranslationTask]:
    """``(model, tokenizer, task)`` of a translation run (its best checkpoint) or one of
    its checkpoints; the pairs are rendered from the run's recipe."""
    from ...generate.seq2seq import special_ids
    from ...tasks.seq2seq import load_pairs
    from ...tasks.seq2seq_config import build_seq2seq_recipe
    from ...tasks.seq2seq_predictor import load_seq2seq, run_dir_of, run_recipe
    from .actions import is_translation_model

    predictor = load_seq2seq(path, task="translate")
    model, tok = predictor.model, predictor.tokenizer
    if not is_translation_model(model):
        raise CheckpointError(f"{path}: text RL drives the Transformer and RNN "
                              f"encoder-decoders, not {type(model).__name__}")
    ids = special_ids(model)
    if (tok.pad_id, tok.bos_id, tok.eos_id) != (ids["pad_id"], ids["bos_id"], ids["eos_id"]):
        raise CheckpointError(f"{path}: the tokenizer's pad/bos/eos ids differ from the "
                              "model's")
    recipe = build_seq2seq_recipe(run_recipe(run_dir_of(Path(path))))
    splits, _ = load_pairs(recipe)
    return model.eval(), tok, TranslationTask(splits, predictor.tgt_lang, tok.pad_id)
