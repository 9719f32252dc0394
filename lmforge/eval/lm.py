r"""Scoring text with a causal language model: NLL in bits, perplexity, bits per char.

Written by hand (these are the quantities lmforge teaches).

A text is scored as the sequence :math:`x_0 x_1 \dots x_n` with :math:`x_0 = \langle
bos\rangle`, :math:`x_1..x_{n-1}` = ``tokenizer.encode(text)`` and :math:`x_n =
\langle eos\rangle`, which is how documents look in the training data. Its negative
log-likelihood in bits is

.. math::  \mathrm{NLL}_2(x) = -\sum_{t=1}^{n} \log_2 p(x_t \mid x_{<t})
           = -\log_2 P(\text{text}, \text{end})

The ``eos`` term is what makes this the probability of *exactly* this text rather than
of any text starting with it. Because every tokenisation of a string must spell the
whole string, bits per sentence (or per character) compare models with different
tokenizers fairly; per-token figures do not.

Perplexity is the exponential of the mean NLL per predicted token in nats,

.. math::  \mathrm{PPL} = \exp\Big(\frac{1}{N}\sum_{t} -\ln p(x_t \mid x_{<t})\Big)

over all :math:`N` predicted tokens of all texts (``eos`` included, ``bos`` not: it is
given, never predicted). A model that spreads its mass uniformly over a vocabulary of
:math:`V` tokens has perplexity exactly :math:`V`.

**Long texts.** A text with more predicted tokens than the model's context
(``block_size``, default ``max_seq_len``) is scored with a sliding window: the first
window scores its first ``block_size`` tokens; each later window moves ``stride``
tokens on (default ``block_size // 2``) and scores only those new tokens, seeing the
``block_size - stride`` tokens before them as context. Each token is scored exactly
once; the first window alone starts at ``bos``.

Batches are right-padded (so no attention mask is needed: a causal model never looks
right) and padded targets are left out of the sums. Logits are processed in fp32.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import LmforgeError

LOG2 = math.log(2.0)
_LOGITS_BUDGET = 1 << 26  # logits elements per forward pass (256 MB in fp32)


def _autocast(device: torch.device, dtype: torch.dtype | None):
    if dtype is None or dtype == torch.float32:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def _windows(seq: list[int], block: int, stride: int) -> list[tuple[list[int], int]]:
    """Split ``seq`` into (window tokens, number of final targets to score) pieces.

    A piece of ``w`` tokens predicts its last ``w - 1`` tokens from the ones before;
    only the last ``n`` of those are counted.
    """
    n_targets = len(seq) - 1
    if n_targets <= block:
        return [(seq, n_targets)]
    pieces, done = [], 0
    while done < n_targets:
        end = min(done + (block if done == 0 else stride), n_targets)  # targets < end
        begin = max(0, end - block)  # inputs seq[begin:end] predict seq[begin+1:end+1]
        pieces.append((seq[begin:end + 1], end - done))
        done = end
    return pieces


def _encode(tokenizer: Any, text: str) -> list[int]:
    bos, eos = getattr(tokenizer, "bos_id", None), getattr(tokenizer, "eos_id", None)
    if bos is None:
        raise LmforgeError("scoring needs a tokenizer with a bos token (the context of "
                           "the first token)")
    return [bos] + list(tokenizer.encode(text)) + ([eos] if eos is not None else [])


@torch.inference_mode()
def _score_sequences(model: torch.nn.Module, seqs: Sequence[list[int]], batch_size: int,
                     block_size: int | None, stride: int | None,
                     autocast_dtype: torch.dtype | None) -> list[tuple[float, int]]:
    """(NLL in nats, number of predicted tokens) of each token sequence."""
    max_len = model.config.max_seq_len
    block = block_size or max_len
    if not 1 <= block <= max_len:
        raise LmforgeError(f"block_size must be in [1, {max_len}] (max_seq_len), got {block}")
    stride = stride or max(1, block // 2)
    if not 1 <= stride <= block:
        raise LmforgeError(f"stride must be in [1, block_size={block}], got {stride}")
    if batch_size < 1:
        raise LmforgeError(f"batch_size must be >= 1, got {batch_size}")

    pieces: list[tuple[int, list[int], int]] = []  # (sequence index, tokens, n scored)
    for i, seq in enumerate(seqs):
        pieces.extend((i, toks, n) for toks, n in _windows(seq, block, stride) if n > 0)
    pieces.sort(key=lambda p: len(p[1]))

    device = next(model.parameters()).device
    vocab = model.config.vocab_size
    per_batch = max(1, min(batch_size, _LOGITS_BUDGET // (block * vocab)))
    nats = [0.0] * len(seqs)
    counts = [0] * len(seqs)
    was_training = model.training
    model.eval()
    try:
        for lo in range(0, len(pieces), per_batch):
            batch = pieces[lo:lo + per_batch]
            T = max(len(toks) for _, toks, _ in batch) - 1
            inputs = torch.zeros(len(batch), T, dtype=torch.long)
            targets = torch.full((len(batch), T), -100, dtype=torch.long)
            for b, (_, toks, n) in enumerate(batch):
                w = len(toks) - 1
                inputs[b, :w] = torch.tensor(toks[:-1])
                targets[b, w - n:w] = torch.tensor(toks[w - n + 1:])  # the scored ones
            inputs, targets = inputs.to(device), targets.to(device)
            with _autocast(device, autocast_dtype):
                logits = model(inputs)  # (B, T, V)
            nll = F.cross_entropy(logits.float().transpose(1, 2), targets,
                                  ignore_index=-100, reduction="none")  # (B, T), 0 at pads
            sums = nll.double().sum(dim=1).tolist()
            for (i, _, n), s in zip(batch, sums, strict=True):
                nats[i] += s
                counts[i] += n
    finally:
        model.train(was_training)
    return list(zip(nats, counts, strict=True))


def score_texts(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str],
                batch_size: int = 64, autocast_dtype: torch.dtype | None = None,
                block_size: int | None = None, stride: int | None = None) -> list[float]:
    r"""NLL in bits of each whole text: :math:`-\sum_t \log_2 p(x_t \mid x_{<t})`.

    The sequence is ``[bos] + tokenizer.encode(text) + [eos]`` and every token after
    ``bos`` is predicted, so the result is :math:`-\log_2 P(\text{text}, \text{end})`
    (without ``eos`` if the tokenizer has none). Bits per sentence do not depend on the
    tokenizer: every tokenisation spells the whole string. Texts longer than
    ``block_size`` (default ``max_seq_len``) are scored with a sliding window that
    moves ``stride`` tokens at a time (default half a block); see the module docs.
    """
    seqs = [_encode(tokenizer, t) for t in texts]
    scored = _score_sequences(model, seqs, batch_size, block_size, stride, autocast_dtype)
    return [nats / LOG2 for nats, _ in scored]


def perplexity_of_texts(model: torch.nn.Module, tokenizer: Any, texts: Sequence[str],
                        block_size: int | None = None, batch_size: int = 64,
                        autocast_dtype: torch.dtype | None = None,
                        stride: int | None = None) -> dict[str, float]:
    r"""Corpus-level token perplexity and the tokenizer-independent rates.

    With :math:`N` predicted tokens over all texts (each text's ``eos`` counted, its
    ``bos`` not) and :math:`L = -\sum \ln p(x_t \mid x_{<t})`:

    - ``nll_per_token`` :math:`= L / N` (nats), ``perplexity`` :math:`= e^{L/N}`,
    - ``bits_per_token`` :math:`= L / (N \ln 2)`,
    - ``bits_per_sentence`` = mean over texts of each text's bits,
    - ``bits_per_char`` = total bits / total characters of the texts (the ``eos`` bits
      are charged to the text they end),
    - ``tokens`` :math:`= N`, ``texts``, ``chars``.
    """
    if not texts:
        raise LmforgeError("perplexity_of_texts needs at least one text")
    seqs = [_encode(tokenizer, t) for t in texts]
    scored = _score_sequences(model, seqs, batch_size, block_size, stride, autocast_dtype)
    total_nats = sum(n for n, _ in scored)
    tokens = sum(c for _, c in scored)
    if tokens == 0:
        raise LmforgeError("no tokens to score")
    chars = sum(len(t) for t in texts)
    nll = total_nats / tokens
    return {
        "nll_per_token": nll,
        "perplexity": math.exp(nll),
        "bits_per_token": nll / LOG2,
        "bits_per_sentence": total_nats / LOG2 / len(texts),
        "bits_per_char": total_nats / LOG2 / chars if chars else float("nan"),
        "tokens": float(tokens),
        "texts": float(len(texts)),
        "chars": float(chars),
    }
