"""Sequence-level scores ``R(text)`` for the text MDP (the reward of the last action).

* ``grammar``: ``R = 1`` if the built-in world's grammar accepts the text (in either
  language, :func:`lmforge.corpora.accepts_any`), else 0: exact, no model involved.
* ``sentiment``: ``R = P(target label | text)`` from a fine-tuned classifier run
  (``lmforge finetune classify-sentiment``).
* ``bleu``: sentence BLEU (sacrebleu) of the text against a reference, divided by 100.

A reward is a callable ``list[str] -> list[float]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from ...errors import ConfigError

Reward = Callable[[list[str]], list[float]]


def grammar_reward(texts: list[str]) -> list[float]:
    """``1.0`` for each text the world grammar accepts, else ``0.0``."""
    from ...corpora import accepts_any

    return [float(accepts_any(t)) for t in texts]


def sentiment_reward(run: str | Path, target: str = "positive") -> Reward:
    """``R = P(target | text)`` from the classifier in ``run``."""
    from ...tasks.predictor import load_task_model

    predictor = load_task_model(run)
    if target not in predictor.labels:
        raise ConfigError(f"sentiment_target must be one of {', '.join(predictor.labels)}, "
                          f"got {target!r}")

    def score(texts: list[str]) -> list[float]:
        return [p["probs"][target] for p in predictor.predict(texts)]

    return score


def bleu_reward(references: Sequence[str], tokenize: str = "13a") -> Reward:
    """Sentence BLEU / 100 of the ``i``-th text against ``references[i]``."""
    import sacrebleu

    def score(texts: list[str]) -> list[float]:
        if len(texts) != len(references):
            raise ConfigError(f"bleu reward: {len(texts)} texts for {len(references)} "
                              "references")
        return [sacrebleu.sentence_bleu(t, [r], tokenize=tokenize).score / 100.0
                for t, r in zip(texts, references, strict=True)]

    return score
