r"""T5's span-corruption objective: noise masks, sentinels, batches and the loss.

Written by hand because it is one of the pre-training objectives lmforge teaches.

Noise (Raffel et al. 2020, ``random_spans_noise_mask`` of the T5 code base). For a
sequence of ``L`` tokens, noise density ``p`` (0.15) and mean span length ``mu`` (3)::

    n_noise = round(L * p)              clipped to [1, L - 1]
    n_spans = round(n_noise / mu)       at least 1
    n_keep  = L - n_noise

The ``n_noise`` noise tokens are cut into ``n_spans`` non-empty spans and the ``n_keep``
kept tokens into ``n_spans`` non-empty runs, each by a uniformly random composition
(choose ``n_spans - 1`` distinct cut points out of ``n - 1``). They interleave
``keep_1, noise_1, keep_2, noise_2, ...``: every sequence starts with kept tokens and
ends with a noise span. ``round`` is round-half-to-even on float32 values, as
``tf.round`` in T5. (Where ``n_spans`` would exceed ``n_keep``, which needs a density
above 1/2, it is lowered to ``n_keep`` so every run stays non-empty.)

Sentinels: the ``k``-th noise span (from 0) is replaced in the input by one sentinel
token ``<extra_id_k>``, and the kept runs are replaced the same way in the target. T5
counts sentinel ids down from the end of the vocabulary, ``<extra_id_k> = V - 1 - k``;
here ``sentinel_ids[k]`` (default: the last 100 ids, counting down). Both sequences end
with ``eos``::

    tokens:  The  cute  dog  walks  in  the  park
    noise:    .   xxxx  xxx    .     .  xxx   .
    input:   The <X0> walks in <X1> park </s>
    target:  <X0> cute dog <X1> the <X2> </s>

(The kept run "park" at the end becomes ``<X2>`` in the target. With T5's random masks
the sequence always ends with a noise span instead, so the input ends ``<X_n-1> </s>``
and the target ends with that span's tokens and ``</s>``.) The model is trained with
cross-entropy on the target (teacher forcing), the decoder reading
``shift_right(target)``.

:func:`span_corrupt` works on one sequence with a ``numpy`` generator, so it is
deterministic from a seed; :class:`SpanCorruptionSource` turns token shards (or in-memory
token arrays) into batches for the :class:`~lmforge.train.Trainer`, and
:class:`Seq2SeqObjective` computes the loss of any encoder-decoder with
``model(input_ids, attention_mask, decoder_input_ids) -> logits``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..errors import DataError
from ..nn.losses import token_cross_entropy

__all__ = ["noise_span_counts", "random_spans_noise_mask", "default_sentinels",
           "span_corrupt", "corrupted_lengths", "reconstruct", "SpanCorruptionSource",
           "Seq2SeqObjective", "SpanCorruptionObjective"]


def _round_f32(x: float) -> int:
    """Round half to even in float32 (``tf.round`` of T5's preprocessing)."""
    return int(np.round(np.float32(x)))


def noise_span_counts(length: int, noise_density: float = 0.15,
                      mean_span_length: float = 3.0) -> tuple[int, int]:
    """``(n_noise_tokens, n_noise_spans)`` for a sequence of ``length`` tokens."""
    if length < 1:
        raise ValueError("length must be >= 1")
    if not 0.0 < noise_density < 1.0:
        raise ValueError(f"noise_density must be in (0, 1), got {noise_density}")
    if mean_span_length < 1.0:
        raise ValueError(f"mean_span_length must be >= 1, got {mean_span_length}")
    n = max(length, 2)
    n_noise = _round_f32(np.float32(n) * np.float32(noise_density))
    n_noise = min(max(n_noise, 1), n - 1)
    n_spans = max(_round_f32(np.float32(n_noise) / np.float32(mean_span_length)), 1)
    n_spans = min(n_spans, n - n_noise)  # every kept run needs at least one token
    return n_noise, n_spans


def _random_segmentation(n_items: int, n_segments: int, rng: np.random.Generator) -> np.ndarray:
    """Lengths of a uniformly random split of ``n_items`` into ``n_segments`` non-empty
    runs (as T5: shuffle ``n_segments - 1`` "starts here" flags among ``n_items - 1``)."""
    first = np.zeros(n_items, dtype=np.int64)
    first[1:] = rng.permutation(np.arange(n_items - 1) < n_segments - 1)
    segment_id = np.cumsum(first)
    return np.bincount(segment_id, minlength=n_segments)


def random_spans_noise_mask(length: int, rng: np.random.Generator,
                            noise_density: float = 0.15,
                            mean_span_length: float = 3.0) -> np.ndarray:
    """Boolean (length,) mask, True at noise tokens (T5's ``random_spans_noise_mask``)."""
    n_noise, n_spans = noise_span_counts(length, noise_density, mean_span_length)
    n = max(length, 2)
    noise_lengths = _random_segmentation(n_noise, n_spans, rng)
    keep_lengths = _random_segmentation(n - n_noise, n_spans, rng)
    interleaved = np.stack([keep_lengths, noise_lengths], axis=1).reshape(-1)  # keep, noise..
    span_id = np.repeat(np.arange(2 * n_spans), interleaved)  # (n,)
    return (span_id % 2 == 1)[:length]


def default_sentinels(vocab_size: int, n: int = 100) -> np.ndarray:
    """T5's sentinel ids ``<extra_id_k> = vocab_size - 1 - k`` for ``k < n``."""
    if vocab_size <= n:
        raise ValueError(f"vocab_size={vocab_size} cannot hold {n} sentinel ids")
    return vocab_size - 1 - np.arange(n, dtype=np.int64)


def _replace_spans(tokens: np.ndarray, mask: np.ndarray, sentinels: np.ndarray) -> np.ndarray:
    """Each maximal run of True in ``mask`` -> one sentinel (in order); False tokens kept."""
    prev = np.concatenate([[False], mask[:-1]])
    first = mask & ~prev  # first token of each run
    run_index = np.cumsum(first) - 1  # (L,) index of the run a masked token belongs to
    if int(first.sum()) > len(sentinels):
        raise DataError(f"a sequence of {len(tokens)} tokens has {int(first.sum())} noise "
                        f"spans but only {len(sentinels)} sentinel ids; use shorter "
                        "sequences or more sentinels")
    out = np.where(first, sentinels[np.clip(run_index, 0, None)], tokens)
    return out[~(mask & prev)]  # drop the rest of each run


def span_corrupt(tokens: Sequence[int] | np.ndarray, rng: np.random.Generator, *,
                 eos_id: int, sentinel_ids: Sequence[int] | np.ndarray,
                 noise_density: float = 0.15, mean_span_length: float = 3.0,
                 noise_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(input_ids, target_ids)`` of one sequence, both ending with ``eos_id``.

    ``noise_mask`` overrides the random mask (for worked examples and tests).
    """
    tokens = np.asarray(tokens, dtype=np.int64)
    sentinels = np.asarray(sentinel_ids, dtype=np.int64)
    if tokens.ndim != 1 or tokens.size == 0:
        raise DataError("span_corrupt needs a non-empty 1-D token sequence")
    if noise_mask is None:
        noise_mask = random_spans_noise_mask(tokens.size, rng, noise_density, mean_span_length)
    noise_mask = np.asarray(noise_mask, dtype=bool)
    eos = np.array([eos_id], dtype=np.int64)
    inputs = np.concatenate([_replace_spans(tokens, noise_mask, sentinels), eos])
    targets = np.concatenate([_replace_spans(tokens, ~noise_mask, sentinels), eos])
    return inputs, targets


def corrupted_lengths(length: int, noise_density: float = 0.15,
                      mean_span_length: float = 3.0) -> tuple[int, int]:
    """Lengths ``(input, target)`` (with eos) that :func:`span_corrupt` gives for
    ``length`` tokens; the same for every sequence of that length, so fixed-length
    windows make rectangular batches with no padding."""
    n_noise, n_spans = noise_span_counts(length, noise_density, mean_span_length)
    if length == 1:  # T5 pads to 2 and cuts back: the single token is kept, the target
        return 2, 2  # is just <X0> </s>
    return length - n_noise + n_spans + 1, n_noise + n_spans + 1


def reconstruct(inputs: Sequence[int], targets: Sequence[int], *, eos_id: int,
                sentinel_ids: Sequence[int] | np.ndarray) -> list[int]:
    """The original tokens from an ``(input, target)`` pair: each sentinel of one side is
    replaced by what follows the same sentinel on the other side."""
    sentinel_set = {int(s) for s in sentinel_ids}

    def runs(seq: Sequence[int]) -> tuple[list[int], dict[int, list[int]]]:
        head: list[int] = []  # tokens before the first sentinel
        after: dict[int, list[int]] = {}
        cur = head
        for t in seq:
            t = int(t)
            if t == eos_id:
                break
            if t in sentinel_set:
                cur = after.setdefault(t, [])
            else:
                cur.append(t)
        return head, after

    def expand(seq: Sequence[int], other: dict[int, list[int]]) -> list[int]:
        out: list[int] = []
        for t in seq:
            t = int(t)
            if t == eos_id:
                break
            out.extend(other.get(t, [])) if t in sentinel_set else out.append(t)
        return out

    _, target_runs = runs(targets)
    return expand(inputs, target_runs)


# ---------------------------------------------------------------------- batches


@dataclass
class _Windows:
    """Random or sequential fixed-length windows over a list of 1-D token arrays."""

    arrays: list[np.ndarray]

    def __post_init__(self) -> None:
        self.sizes = np.array([a.size for a in self.arrays], dtype=np.int64)

    def sample(self, n: int, length: int, rng: np.random.Generator) -> np.ndarray:
        room = np.maximum(self.sizes - length + 1, 0).astype(np.float64)
        if room.sum() == 0:
            raise DataError(f"no document has {length} tokens; lower the sequence length")
        which = rng.choice(len(self.arrays), size=n, p=room / room.sum())
        rows = [np.asarray(self.arrays[s][o: o + length], dtype=np.int64)
                for s in which for o in [int(rng.integers(0, self.sizes[s] - length + 1))]]
        return np.stack(rows)

    def sequential(self, n: int, length: int) -> Iterator[np.ndarray]:
        rows = []
        for a in self.arrays:
            for off in range(0, a.size - length + 1, length):
                rows.append(np.asarray(a[off: off + length], dtype=np.int64))
                if len(rows) == n:
                    yield np.stack(rows)
                    rows = []
        if rows:
            yield np.stack(rows)


class SpanCorruptionSource:
    """Span-corruption batches for the trainer.

    ``data`` is a :class:`~lmforge.data.shards.TokenShards`, a prepared-data folder (with
    ``split``), one 1-D token array or a list of them (documents). Each example is a
    window of ``length`` raw tokens corrupted by :func:`span_corrupt`; all windows have
    the same length, so a batch is rectangular::

        {"input_ids": (B, L_in), "attention_mask": (B, L_in),
         "decoder_input_ids": (B, L_tgt), "labels": (B, L_tgt)}

    with ``decoder_input_ids = [decoder_start] + labels[:-1]``. Training batches are a
    pure function of the trainer's ``rng``; evaluation batches are the first
    ``max_eval_batches`` windows in order, corrupted with a fixed seed (``eval_seed``),
    the same every time. A data token equal to a sentinel id raises :class:`DataError`
    (the vocabulary must reserve the sentinels).
    """

    def __init__(self, data, batch_size: int, length: int, *, vocab_size: int, eos_id: int,
                 sentinel_ids: Sequence[int] | np.ndarray | None = None,
                 noise_density: float = 0.15, mean_span_length: float = 3.0,
                 decoder_start_id: int = 0, split: str = "train",
                 max_eval_batches: int | None = None, eval_seed: int = 0):
        from ..data.shards import TokenShards

        if isinstance(data, TokenShards):
            arrays = list(data.arrays)
        elif isinstance(data, str) or hasattr(data, "__fspath__"):
            arrays = list(TokenShards(data, split).arrays)
        elif isinstance(data, np.ndarray) and data.ndim == 1:
            arrays = [data]
        else:
            arrays = [np.asarray(a) for a in data]
        if not arrays or batch_size < 1 or length < 2:
            raise DataError("SpanCorruptionSource needs data, batch_size >= 1, length >= 2")
        self.windows = _Windows(arrays)
        self.batch_size, self.length = int(batch_size), int(length)
        self.vocab_size = int(vocab_size)
        self.eos_id, self.decoder_start_id = int(eos_id), int(decoder_start_id)
        self.sentinels = (default_sentinels(vocab_size) if sentinel_ids is None
                          else np.asarray(sentinel_ids, dtype=np.int64))
        if self.sentinels.size == 0 or self.sentinels.min() < 0 \
                or self.sentinels.max() >= vocab_size:
            raise DataError(f"sentinel ids must lie in [0, {vocab_size})")
        if self.eos_id in set(self.sentinels.tolist()):
            raise DataError(f"eos id {self.eos_id} is also a sentinel id")
        self.noise_density, self.mean_span_length = noise_density, mean_span_length
        noise_span_counts(self.length, noise_density, mean_span_length)  # validates
        self.max_eval_batches, self.eval_seed = max_eval_batches, eval_seed
        self.input_length, self.target_length = corrupted_lengths(
            self.length, noise_density, mean_span_length)

    def _make(self, windows: np.ndarray, rng: np.random.Generator) -> dict:
        bad = np.isin(windows, self.sentinels)
        if bad.any():
            raise DataError(f"token id {int(windows[bad][0])} in the data is also a sentinel "
                            "id; reserve the sentinel ids in the vocabulary")
        pairs = [span_corrupt(w, rng, eos_id=self.eos_id, sentinel_ids=self.sentinels,
                              noise_density=self.noise_density,
                              mean_span_length=self.mean_span_length) for w in windows]
        inputs = torch.from_numpy(np.stack([p[0] for p in pairs]))
        labels = torch.from_numpy(np.stack([p[1] for p in pairs]))
        dec = torch.full_like(labels, self.decoder_start_id)
        dec[:, 1:] = labels[:, :-1]
        return {"input_ids": inputs, "attention_mask": torch.ones_like(inputs),
                "decoder_input_ids": dec, "labels": labels}

    def batch(self, step: int, micro: int, rng: np.random.Generator) -> dict:
        return self._make(self.windows.sample(self.batch_size, self.length, rng), rng)

    def eval_batches(self) -> Iterable[dict]:
        rng = np.random.default_rng(self.eval_seed)
        for i, w in enumerate(self.windows.sequential(self.batch_size, self.length)):
            if self.max_eval_batches is not None and i >= self.max_eval_batches:
                return
            yield self._make(w, rng)

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.target_length

    def __repr__(self) -> str:
        return (f"SpanCorruptionSource(batch_size={self.batch_size}, length={self.length}, "
                f"noise_density={self.noise_density}, mean_span_length="
                f"{self.mean_span_length})")


class Seq2SeqObjective:
    """Cross-entropy of an encoder-decoder on its target (teacher forcing).

    A batch is ``{"input_ids", "attention_mask", "decoder_input_ids", "labels"}``;
    ``model(input_ids, attention_mask, decoder_input_ids)`` gives logits (B, T, V) and
    the loss is the mean over label positions that are not ``ignore_index``. Logits are
    cast to fp32 before the softmax.
    """

    name = "seq2seq"

    def __init__(self, ignore_index: int = -100):
        self.ignore_index = ignore_index

    def __call__(self, model: nn.Module, batch: dict):
        logits = model(batch["input_ids"], batch.get("attention_mask"),
                       batch["decoder_input_ids"])
        y = batch["labels"]
        loss, n_tokens = token_cross_entropy(logits, y, self.ignore_index)
        return loss, {}, n_tokens

    def __repr__(self) -> str:
        return f"{type(self).__name__}(ignore_index={self.ignore_index})"


class SpanCorruptionObjective(Seq2SeqObjective):
    """The span-corruption loss: :class:`Seq2SeqObjective` on
    :class:`SpanCorruptionSource` batches."""

    name = "span_corruption"
