r"""What a text policy is judged on, before and after RL.

For ``n`` episodes sampled from ``π`` at temperature 1 (no top-k/top-p; on the reference's
top-k sets ``A_k`` when ``top_k`` is set, the learned policy exactly) from ``[bos]``:

* ``grammatical``: the share the world grammar accepts; ``reward``: the mean score ``R``;
* ``kl``: ``KL(π ‖ π_ref)`` per sentence, ``E_π[Σ_t KL(π(·|s_t) ‖ π_ref(·|s_t))]`` (the
  per-step KL summed exactly over the vocabulary along each sampled sentence);
* ``distinct_1/2``: distinct token n-grams / all token n-grams over the samples (model
  tokens: the world is bilingual and Chinese has no spaces);
* ``sample_bits``: the mean ``−log2 π(sample)`` of the policy's own samples (``eos``
  included) and ``sample_true_bits``: the mean true surprisal of its grammatical samples;
  a policy that collapses onto a few sentences shows both falling far below the world's;
* ``heldout_bits`` vs ``true_bits``: the mean ``−log2 π(s)`` of held-out true sentences
  against their exact surprisal (Gibbs: ``≥``), so a policy that forgets the world shows.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ...corpora import accepts_any, lm_corpus, lm_surprisal_bits
from ...eval.world import world_bits
from .rewards import Reward
from .rollout import action_log_probs, collect, log_probs, step_kl


def distinct_n(rows: list[list[int]], n: int) -> float:
    """Distinct n-grams over all n-grams of ``rows`` (0 when there are none)."""
    grams = [tuple(r[i:i + n]) for r in rows for i in range(len(r) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


@torch.no_grad()
def evaluate_policy(policy: nn.Module, ref: nn.Module, tokenizer, reward: Reward, n: int,
                    seed: int, max_new_tokens: int, heldout: int = 1000,
                    top_k: int | None = None, batch_size: int = 100) -> dict:
    """The figures of the module docstring for ``policy`` (``policy is ref`` gives the
    reference's own)."""
    policy.eval()
    kl, nll, rows, texts, scores = [], [], [], [], []
    for start in range(0, n, batch_size):
        ep = collect(policy, ref, tokenizer, reward, min(batch_size, n - start),
                     max_new_tokens, seed + start, top_k)
        logp = log_probs(policy, ep.tokens, keep=ep.keep)
        ref_logp = log_probs(ref, ep.tokens, keep=ep.keep)
        mask = ep.mask
        kl += (step_kl(logp, ref_logp) * mask).sum(1).tolist()
        nll += (-(action_log_probs(logp, ep.tokens) * mask).sum(1) / math.log(2)).tolist()
        rows += [ep.tokens[i, 1:1 + int(L)].tolist() for i, L in enumerate(ep.lengths)]
        texts += ep.texts
        scores += ep.scores.tolist()
    rows = [[t for t in r if t != tokenizer.eos_id] for r in rows]
    gram = [t for t in texts if accepts_any(t)]
    true_bits = [lm_surprisal_bits(t) for t in gram]
    true_bits = [b for b in true_bits if b is not None]
    bits = world_bits(policy, tokenizer, lm_corpus("test", heldout, seed=1))
    return {"samples": n, "grammatical": len(gram) / n, "reward": sum(scores) / n,
            "kl": sum(kl) / n, "distinct_1": distinct_n(rows, 1),
            "distinct_2": distinct_n(rows, 2), "sample_bits": sum(nll) / n,
            "sample_true_bits": sum(true_bits) / max(len(true_bits), 1),
            "heldout_bits": bits.model_bits, "true_bits": bits.true_bits,
            "examples": texts[:5]}
