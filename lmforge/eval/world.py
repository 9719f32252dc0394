"""How close a model is to the built-in world's true distribution.

The world generator knows the exact probability of every sentence it emits, so its
mean surprisal ``H = E[-log2 P(s)]`` over held-out sentences is the best any model can
do: a model's mean NLL in bits, ``E[-log2 Q(s)]``, is a cross-entropy and so at least
``H`` (Gibbs' inequality). The ratio ``bits_model / bits_true`` is therefore >= 1 in
expectation and measures how far the model is from optimal, whatever its tokenizer.

Grammaticality is the share of sampled sentences (prompted with ``[bos]`` only) that
the world's grammar accepts.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .lm import score_texts


@dataclass
class BitsReport:
    model_bits: float  # mean NLL of the model, bits per sentence
    true_bits: float  # mean exact surprisal, bits per sentence
    n: int

    @property
    def ratio(self) -> float:
        return self.model_bits / self.true_bits

    def line(self) -> str:
        return (f"bits/sentence: model {self.model_bits:.1f}, true {self.true_bits:.1f} "
                f"(ratio {self.ratio:.2f})")


@dataclass
class GrammarReport:
    accepted: int
    total: int
    samples: list[str]

    @property
    def share(self) -> float:
        return self.accepted / max(self.total, 1)

    def line(self) -> str:
        return f"grammatical: {self.accepted}/{self.total} ({100 * self.share:.0f}%)"


def world_bits(model, tokenizer, items, batch_size: int = 64,
               autocast_dtype: torch.dtype | None = None) -> BitsReport:
    """Mean model NLL (bits/sentence) vs mean true surprisal over world ``items``."""
    texts = [it.text for it in items]
    nll = score_texts(model, tokenizer, texts, batch_size=batch_size,
                      autocast_dtype=autocast_dtype)
    true = [it.bits for it in items]
    return BitsReport(sum(nll) / len(nll), sum(true) / len(true), len(texts))


def world_evaluator(tokenizer, items, batch_size: int = 64,
                    autocast_dtype: torch.dtype | None = None):
    """A trainer evaluator logging ``bits_per_sentence``, ``true_bits`` and their ratio."""

    def evaluate(model) -> dict[str, float]:
        r = world_bits(model, tokenizer, items, batch_size, autocast_dtype)
        return {"bits_per_sentence": r.model_bits, "true_bits": r.true_bits,
                "bits_ratio": r.ratio}

    return evaluate


def grammaticality(model, tokenizer, n: int = 50, temperature: float = 0.8, seed: int = 0,
                   max_new_tokens: int | None = None) -> GrammarReport:
    """Sample ``n`` sentences from ``[bos]`` (no top-k/top-p cut); count accepted ones."""
    from ..corpora import accepts_any
    from ..generate import GenerationConfig, generate

    limit = max_new_tokens or min(128, model.config.max_seq_len - 1)
    cfg = GenerationConfig(max_new_tokens=limit, temperature=temperature, seed=seed)
    samples = [s.strip() for s in generate(model, tokenizer, [""] * n, cfg)]
    ok = sum(accepts_any(s) for s in samples)
    return GrammarReport(ok, n, samples)
