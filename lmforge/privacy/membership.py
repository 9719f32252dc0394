r"""The loss-threshold membership-inference attack (Yeom et al. 2018).

A model fits its training examples better than unseen ones, so its loss tells them
apart. The attacker scores each example by minus its loss,

.. math::

    s(x, y) = -\ell(f(x), y),

and guesses "member" when :math:`s > \tau`. Over every threshold :math:`\tau` this is
the ROC curve of members (the training set, label 1) against non-members (held-out
examples of the same distribution, label 0); its area is the **AUC**: the probability
that a random member scores above a random non-member (ties count one half). AUC 0.5
is guessing; a model trained with :math:`(\varepsilon, \delta)`-DP bounds any attacker's
true-positive rate by :math:`e^{\varepsilon}\,\mathrm{FPR} + \delta`, and so the AUC.
Yeom's own attack fixes :math:`\tau` at minus the mean training loss; its **advantage**
is TPR - FPR at that threshold.

The AUC is scikit-learn's ``roc_auc_score``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def attack_scores(losses: Sequence[float] | np.ndarray) -> np.ndarray:
    """The attack's membership scores: minus each example's loss."""
    return -np.asarray(losses, dtype=np.float64)


def _labels_scores(member_losses, nonmember_losses) -> tuple[np.ndarray, np.ndarray]:
    m, n = attack_scores(member_losses), attack_scores(nonmember_losses)
    if m.size == 0 or n.size == 0:
        raise ValueError("the attack needs at least one member and one non-member")
    return np.r_[np.ones(m.size), np.zeros(n.size)], np.r_[m, n]


def membership_auc(member_losses: Sequence[float] | np.ndarray,
                   nonmember_losses: Sequence[float] | np.ndarray) -> float:
    """The AUC of the loss-threshold attack, members (1) against non-members (0)."""
    from sklearn.metrics import roc_auc_score

    y, s = _labels_scores(member_losses, nonmember_losses)
    return float(roc_auc_score(y, s))


def yeom_advantage(member_losses: Sequence[float] | np.ndarray,
                   nonmember_losses: Sequence[float] | np.ndarray) -> float:
    """TPR - FPR of "member when the loss is below the mean training loss"."""
    m = np.asarray(member_losses, dtype=np.float64)
    n = np.asarray(nonmember_losses, dtype=np.float64)
    tau = m.mean()
    return float((m <= tau).mean() - (n <= tau).mean())


@torch.no_grad()
def classification_losses(model: torch.nn.Module, tokenizer, records: Sequence[dict],
                          batch_size: int = 64) -> np.ndarray:
    """The cross-entropy of each record's gold label under a classification
    :class:`~lmforge.tasks.model.TaskModel` (eval mode), in the records' order."""
    from ..tasks.encode import collate, encode_classification

    labels = model.config.labels
    index = {n: i for i, n in enumerate(labels)}
    examples = encode_classification(records, tokenizer, index, model.config.max_length)
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    out = []
    try:
        for s in range(0, len(examples), batch_size):
            batch = collate(examples[s: s + batch_size], tokenizer.pad_id, "classify")
            batch = {k: v.to(device) for k, v in batch.items()}
            logits = model(batch).float()
            out.append(F.cross_entropy(logits, batch["labels"], reduction="none").cpu())
    finally:
        model.train(was)
    return torch.cat(out).numpy().astype(np.float64)


__all__ = ["attack_scores", "membership_auc", "yeom_advantage", "classification_losses"]
