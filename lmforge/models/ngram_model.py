r"""The Kneser-Ney n-gram LM (:mod:`lmforge.models.ngram`) as an lmforge model over
token ids, registered as ``arch: ngram``.

:class:`~lmforge.models.ngram.NGramLM` counts string tokens. :class:`NGramModel` runs it
over the ids of an lmforge tokenizer so that an n-gram model is trained from a recipe
(``lmforge pretrain ngram-world``), saved as a model folder, and scored, sampled and
evaluated by the same code as the neural models (``load_pretrained``, ``generate``,
``evaluate``, the world corpus's bits per sentence): ``forward(input_ids) -> logits``
with ``logits = log p(. | context)``.

Documents and contexts
----------------------
A training document ``[bos] x_1 .. x_m [eos]`` is the n-gram sentence ``x_1 .. x_m``:
the model pads it with ``<s>`` and predicts ``x_1 .. x_m </s>``, and ``</s>`` is the
tokenizer's ``eos``. At position ``t`` of an input the context is the tokens since the
last ``bos`` (``<s>`` padding in front), or the last ``N - 1`` tokens when no ``bos``
came before (a window inside a long document).

From the n-gram vocabulary to the tokenizer's
---------------------------------------------
For a token ``w`` seen in training, ``p(w | h)`` is the n-gram model's. The mass of
``<unk>`` is shared equally by the ordinary tokens never seen in training, the set
``U`` (every id except pad, bos and the seen ones), so the distribution over the
tokenizer's ``V`` ids still sums to 1::

    p(w | h) = p_KN(<unk> | h) / |U|      for w in U

Pad and bos get probability 0 (log-probability ``-inf``); if ``U`` is empty the
``<unk>`` mass is dropped and the rest renormalised.

Storage
-------
The raw highest-order counts are the model's state: ``ngrams`` (n_ngrams, N) int64
token ids with ``<s>`` stored as ``-1``, and ``counts`` (n_ngrams,) int64. Every other
table is rebuilt from them on load, so a model folder is ``config.json`` +
``model.safetensors`` like any other and the checksums and strict shape checks apply.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import ConfigDict
from torch import Tensor, nn

from ..errors import ConfigError, DataError
from . import register_model
from .base import PretrainedMixin, require_vocab
from .ngram import BOS, EOS, UNK, NGramLM

_BOS_ID = -1  # how <s> is stored in the ``ngrams`` buffer
_MEMO_SIZE = 65536  # distributions kept per model (V floats each)


@dataclass
class NGramConfig:
    """An order-``order`` interpolated Kneser-Ney model over a tokenizer's ids."""

    __pydantic_config__: ClassVar = ConfigDict(extra="forbid")

    order: int = 4
    discount: Literal["modified"] | float = "modified"  # or one D in (0, 1] (plain KN)
    uniform_floor: bool = True  # interpolate the unigram level with 1/|V|
    vocab_size: int | None = None  # None: taken from the tokenizer when the run is built
    pad_id: int = 0
    bos_id: int = 1
    eos_id: int = 2
    max_seq_len: int = 4096  # longest input accepted (only order - 1 tokens are context)
    n_ngrams: int = 0  # distinct highest-order n-grams stored (set by fitting)

    def __post_init__(self) -> None:
        try:
            NGramLM(self.order, self.discount, self.uniform_floor)  # validates the three
        except ConfigError as e:
            raise ValueError(str(e)) from None
        for name in ("vocab_size", "max_seq_len"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.n_ngrams < 0:
            raise ValueError("n_ngrams must be >= 0")


class NGramCache:
    """The token history of each row, for step-by-step generation."""

    def __init__(self, batch_size: int):
        self.history: list[list[int]] = [[] for _ in range(batch_size)]

    def reorder(self, index: Tensor) -> None:
        self.history = [list(self.history[i]) for i in index.tolist()]


class NGramModel(PretrainedMixin, nn.Module):
    """``forward(input_ids (B, T), attention_mask=None) -> log-probabilities (B, T, V)``."""

    def __init__(self, config: NGramConfig):
        super().__init__()
        require_vocab(config, "vocab_size")
        self.config = config
        n = config.n_ngrams
        self.register_buffer("ngrams", torch.zeros(n, config.order, dtype=torch.int64))
        self.register_buffer("counts", torch.zeros(n, dtype=torch.int64))
        # no weights: a zero-size parameter tells callers the device
        self.anchor = nn.Parameter(torch.zeros(0), requires_grad=False)
        self._lm: NGramLM | None = None
        self._memo: dict[tuple[int, ...], Tensor] = {}

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, config: NGramConfig, documents: Iterable[Sequence[int]]) -> NGramModel:
        """Count ``documents`` (token-id lists without bos/eos) into a new model."""
        lm = NGramLM(config.order, config.discount, config.uniform_floor)
        special = {config.pad_id, config.bos_id, config.eos_id}

        def sentences():
            for i, doc in enumerate(documents):
                bad = special.intersection(doc)
                if bad:
                    raise DataError(f"document {i} contains special id {min(bad)}; pass the "
                                    "tokens between bos and eos")
                yield [str(t) for t in doc]

        lm.fit(sentences())
        grams = sorted(lm._ngrams.items())
        model = cls(dataclasses.replace(config, n_ngrams=len(grams)))
        with torch.no_grad():
            model.ngrams.copy_(torch.tensor([[cls._to_id(w, config) for w in g]
                                             for g, _ in grams], dtype=torch.int64))
            model.counts.copy_(torch.tensor([c for _, c in grams], dtype=torch.int64))
        model._install(lm)
        return model

    @staticmethod
    def _to_id(word: str, config: NGramConfig) -> int:
        return _BOS_ID if word == BOS else config.eos_id if word == EOS else int(word)

    def _word(self, i: int) -> str:
        return BOS if i == _BOS_ID else EOS if i == self.config.eos_id else str(i)

    @property
    def lm(self) -> NGramLM:
        """The counting model, rebuilt from the stored counts on first use."""
        if self._lm is None:
            if self.config.n_ngrams == 0:
                raise DataError("this n-gram model has no counts; build it with "
                                "NGramModel.fit")
            lm = NGramLM(self.config.order, self.config.discount, self.config.uniform_floor)
            grams = Counter({tuple(self._word(i) for i in row): c for row, c in
                             zip(self.ngrams.tolist(), self.counts.tolist(), strict=True)})
            words = sorted({g[-1] for g in grams} - {EOS})
            lm._install(grams, words)
            self._install(lm)
        return self._lm

    def _install(self, lm: NGramLM) -> None:
        cfg, V = self.config, self.config.vocab_size
        vocab = lm.vocab  # training words, then </s>, then <unk>
        seen = np.array([self._to_id(w, cfg) for w in vocab[:-1]], dtype=np.int64)
        if seen.max() >= V:
            raise DataError(f"the counts hold token id {seen.max()} but vocab_size is {V}")
        unseen = np.ones(V, dtype=bool)
        unseen[seen] = False
        unseen[[cfg.pad_id, cfg.bos_id]] = False
        self._seen_ids, self._unseen = torch.from_numpy(seen), torch.from_numpy(unseen)
        self._lm = lm
        self._memo = {}

    # ------------------------------------------------------------------ scoring
    def _logprobs(self, context: tuple[int, ...]) -> Tensor:
        """log p(. | context) over the tokenizer's ids, (V,) float32 (memoised)."""
        lm = self.lm  # first, so that loading the counts resets the memo
        hit = self._memo.get(context)
        if hit is not None:
            return hit
        p_ng = torch.from_numpy(lm.distribution([self._word(i) for i in context]))
        p = torch.zeros(self.config.vocab_size, dtype=torch.float64)
        p[self._seen_ids] = p_ng[:-1]
        n_unseen = int(self._unseen.sum())
        if n_unseen:
            p[self._unseen] = p_ng[-1] / n_unseen
        else:
            p /= p.sum()
        if len(self._memo) >= _MEMO_SIZE:
            self._memo.clear()
        self._memo[context] = out = p.log().float()
        return out

    def document_logprob(self, document: Sequence[int]) -> tuple[float, int]:
        """``(sum of ln p, number of targets)`` of a document's tokens and its closing
        ``eos``, given ``bos``: the log-probabilities :meth:`forward` gives
        ``[bos] + document + [eos]``, one token at a time instead of whole distributions
        (a long held-out document costs no ``V``-sized work per position)."""
        cfg, lm = self.config, self.lm
        bad = {cfg.pad_id, cfg.bos_id, cfg.eos_id}.intersection(document)
        if bad:
            raise DataError(f"the document contains special id {min(bad)}; pass the tokens "
                            "between bos and eos")
        is_unseen = self._unseen.tolist()
        n_unseen = sum(is_unseen)
        order = cfg.order
        words = [BOS] * (order - 1) + [str(t) for t in document] + [EOS]
        unseen = [False] * (order - 1) + [is_unseen[t] for t in document] + [False]
        total = 0.0
        for i in range(order - 1, len(words)):
            ctx = words[i - order + 1:i]
            lp = lm.logprob(words[i], ctx)
            if unseen[i]:  # <unk>'s mass, shared by the unseen ids
                lp -= math.log(n_unseen)
            elif not n_unseen:  # no unseen id: <unk>'s mass is dropped, the rest renormalised
                lp -= math.log1p(-lm.prob(UNK, ctx))
            total += lp
        return total, len(words) - (order - 1)

    def context(self, history: Sequence[int]) -> tuple[int, ...]:
        """The context the model conditions on after ``history`` (token ids)."""
        n, bos = self.config.order - 1, self.config.bos_id
        if n == 0:
            return ()
        hist = list(history)
        if bos in hist:
            start = len(hist) - 1 - hist[::-1].index(bos)
            hist = [_BOS_ID] * n + hist[start + 1:]
        return tuple(hist[-n:])

    def new_cache(self, batch_size: int, max_len: int | None = None,
                  dtype: Any = None) -> NGramCache:
        return NGramCache(batch_size)

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None, *,
                cache: NGramCache | None = None, last_only: bool = False) -> Tensor:
        ids = input_ids.tolist()
        mask = attention_mask.bool().tolist() if attention_mask is not None else None
        rows = []
        for b, row in enumerate(ids):
            real = [t for t, m in zip(row, mask[b], strict=True) if m] if mask else row
            history = (cache.history[b] if cache is not None else []) + real
            if cache is not None:
                cache.history[b] = history
            first = len(history) - 1 if last_only else len(history) - len(real)
            rows.append(torch.stack([self._logprobs(self.context(history[:t + 1]))
                                     for t in range(first, len(history))]))
        if not last_only and mask is not None:  # left padding: put rows back in place
            T = input_ids.shape[1]
            full = torch.zeros(len(ids), T, self.config.vocab_size)
            for b, r in enumerate(rows):
                full[b, T - len(r):] = r
            return full.to(input_ids.device)
        return torch.stack(rows).to(input_ids.device)


register_model("ngram", NGramModel, NGramConfig)
