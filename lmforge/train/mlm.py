r"""Masked language modelling (MLM) and next-sentence prediction (NSP): masking, batches,
objective.

Written by hand: this is what lmforge teaches about BERT pretraining.

**MLM, the 80/10/10 rule** (Devlin et al. 2019). In each sequence, choose
``k = max(1, round(0.15 n))`` of its ``n`` ordinary tokens ([CLS], [SEP], [PAD] and the
other special tokens are never chosen). Each chosen token is independently

- replaced by ``[MASK]`` with probability 0.8,
- replaced by a random ordinary token with probability 0.1,
- left unchanged with probability 0.1,

and its label is the original id; every other position has label -100 (ignored). The
model predicts the original token at every chosen position, so it cannot tell a kept or
replaced token from the rest of the input and must build a good representation of all
of them. Loss: the mean cross-entropy over the chosen positions,

.. math:: \mathcal{L}_{MLM} = -\frac{1}{|M|} \sum_{t \in M} \log p(w_t \mid \tilde w)

**Whole-word masking** chooses words instead of tokens: a WordPiece continuation piece
(``##ing``) belongs to the word before it, and the pieces of a chosen word are chosen
together (the 80/10/10 draw is still per token, as in Google's release). Words are taken
in random order until ``k`` tokens are covered; a word that would overshoot ``k`` is
skipped. Chinese: the BERT normaliser splits every CJK character off into a token of its
own, so the ``##`` convention cannot see Chinese words. With ``zh_words="jieba"`` (the
Chinese-BERT-wwm recipe, Cui et al. 2021) each run of consecutive one-character CJK
tokens is decoded, segmented by jieba, and the characters after the first of each jieba
word join that word (``北京大学`` is masked as one unit); ``zh_words="char"`` keeps every
character a word of its own.

**NSP.** A pair is ``[CLS] A [SEP] B [SEP]`` with token types 0 for ``[CLS] A [SEP]``
and 1 for ``B [SEP]``. In half of the pairs B is the text that follows A in the same
document (label 0, "IsNext"); in the other half B comes from another document (label 1,
"NotNext"). A is one or more whole sentences; the pair fills ``max_len`` tokens (10% of
pairs are shorter, as in BERT, so the model also sees short inputs). A pair too long is
trimmed: for IsNext, A from its start and B from its end, so the A|B junction the label
is about stays intact. The objective's loss is ``L_MLM + L_NSP``.

Data comes from token shards (documents stored as ``[bos] ids [eos]``, i.e. ``[CLS] ...
[SEP]`` with WordPiece) or from in-memory documents. Without NSP a training row is a
random window of ``max_len - 2`` tokens of the corpus wrapped in ``[CLS] ... [SEP]``
(documents inside it stay separated by their ``[SEP] [CLS]`` tokens, as RoBERTa's
full-sentence packing), so no position is padding. Sentences (for NSP) end at sentence-
final punctuation (``。！？.!?`` ...).

Every random choice comes from the ``numpy.random.Generator`` the trainer passes, so a
batch is a pure function of ``(seed, step, micro)`` and masking is dynamic (each epoch
sees different masks, the RoBERTa way) yet reproducible.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.shards import TokenShards
from ..errors import ConfigError, DataError
from ..tokenize.zh import jieba_words

IGNORE_INDEX = -100

#: Tokens that end a sentence (looked up in the vocabulary of the tokenizer).
SENTENCE_END_TOKENS = ("。", "！", "？", "；", "…", ".", "!", "?", ";")

_CJK_CHAR = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f]")
_SENTENCE = re.compile(
    r"[^\n]+?(?:[。！？!?…]+[”’\"'』」）)]*|\.(?=\s|$)[”’\"'』」）)]*|(?=\n)|$)")


def split_sentences(text: str) -> list[str]:
    """Split Chinese or English text after ``。！？!?…``, after ``.`` followed by a
    space, and at line ends. ``"你好。How are you? Fine."`` -> 3 sentences."""
    return [s.strip() for s in _SENTENCE.findall(text) if s.strip()]


def _as_generator(rng: np.random.Generator | int | None) -> np.random.Generator:
    return rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)


# ------------------------------------------------------------------------------ masking

class Masker:
    """Apply the 80/10/10 rule to a batch of token ids.

    ``special_ids`` are never chosen; ``random_ids`` are the candidates of the "random
    token" replacement (default: every id that is not special). ``word_start`` is a
    boolean table over the vocabulary, True where a token begins a word; it turns on
    whole-word masking. ``segmenter`` (optional, with ``word_start``) maps a (B, T) id
    array to a (B, T) boolean array that is False where context makes a token continue
    the word before it (:class:`ChineseWordStarts`). Build one from a tokenizer with
    :meth:`from_tokenizer`.
    """

    def __init__(self, *, mask_id: int, vocab_size: int, special_ids: Sequence[int],
                 mlm_prob: float = 0.15, mask_frac: float = 0.8, random_frac: float = 0.1,
                 random_ids: Sequence[int] | None = None,
                 word_start: np.ndarray | None = None,
                 segmenter: Callable[[np.ndarray], np.ndarray] | None = None):
        if not 0.0 < mlm_prob < 1.0:
            raise ConfigError(f"mlm_prob must be in (0, 1) (got {mlm_prob})")
        if mask_frac < 0 or random_frac < 0 or mask_frac + random_frac > 1:
            raise ConfigError("mask_frac and random_frac must be >= 0 with a sum <= 1 "
                              f"(got {mask_frac}, {random_frac})")
        if not 0 <= mask_id < vocab_size:
            raise ConfigError(f"mask_id={mask_id} is outside the vocabulary ({vocab_size})")
        self.mask_id, self.vocab_size = int(mask_id), int(vocab_size)
        self.mlm_prob, self.mask_frac, self.random_frac = mlm_prob, mask_frac, random_frac
        self.special = np.zeros(vocab_size, dtype=bool)  # (V,) True = never chosen
        self.special[[i for i in special_ids if 0 <= i < vocab_size]] = True
        self.special[self.mask_id] = True
        if random_ids is None:
            random_ids = np.flatnonzero(~self.special)
        self.random_ids = np.asarray(random_ids, dtype=np.int64)
        if self.random_ids.size == 0:
            raise ConfigError("the vocabulary has no ordinary tokens to draw random ones from")
        if word_start is not None:
            word_start = np.asarray(word_start, dtype=bool)
            if word_start.shape != (vocab_size,):
                raise ConfigError(f"word_start must have shape ({vocab_size},)")
        if segmenter is not None and word_start is None:
            raise ConfigError("a word segmenter needs word_start (whole-word masking)")
        self.word_start, self.segmenter = word_start, segmenter

    @property
    def whole_word(self) -> bool:
        return self.word_start is not None

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, *, mlm_prob: float = 0.15,
                       whole_word: bool = False, zh_words: str = "jieba",
                       **kw: Any) -> Masker:
        """Masker for an lmforge :class:`~lmforge.tokenize.Tokenizer` (it needs a mask
        token); ``whole_word`` uses the WordPiece ``##`` convention, and Chinese words
        are jieba's (``zh_words="jieba"``) or single characters (``"char"``)."""
        if tokenizer.mask_id is None:
            raise ConfigError("the tokenizer has no mask token ([MASK]); MLM needs one")
        if zh_words not in ("jieba", "char"):
            raise ConfigError(f"zh_words must be 'jieba' or 'char' (got {zh_words!r})")
        word_start = segmenter = None
        if whole_word:
            word_start = wordpiece_word_starts(tokenizer)
            if zh_words == "jieba":
                segmenter = ChineseWordStarts(tokenizer)
        return cls(mask_id=tokenizer.mask_id, vocab_size=tokenizer.vocab_size,
                   special_ids=sorted(tokenizer.special_ids), mlm_prob=mlm_prob,
                   word_start=word_start, segmenter=segmenter, **kw)

    def select(self, ids: np.ndarray, rng: np.random.Generator,
               valid: np.ndarray | None = None) -> np.ndarray:
        """Boolean (B, T): the positions chosen for prediction."""
        cand = ~self.special[ids]  # (B, T)
        if valid is not None:
            cand &= valid.astype(bool)
        n = cand.sum(1)  # (B,)
        k = np.where(n > 0, np.maximum(1, np.rint(self.mlm_prob * n)), 0).astype(np.int64)
        if self.word_start is None:
            scores = np.where(cand, rng.random(ids.shape), 2.0)  # non-candidates sort last
            rank = np.argsort(np.argsort(scores, axis=1, kind="stable"), axis=1)
            return (rank < k[:, None]) & cand
        # Whole words: a unit starts at a word start or after a non-candidate token.
        starts = self.word_start[ids]
        if self.segmenter is not None:
            starts &= self.segmenter(ids)
        prev_cand = np.concatenate([np.zeros_like(cand[:, :1]), cand[:, :-1]], axis=1)
        unit = np.cumsum(starts | ~prev_cand | ~cand, axis=1)  # (B, T)
        chosen = np.zeros_like(cand)
        for b in range(ids.shape[0]):
            pos = np.flatnonzero(cand[b])
            if pos.size == 0:
                continue
            units, inverse, counts = np.unique(unit[b, pos], return_inverse=True,
                                               return_counts=True)
            take = np.zeros(len(units), dtype=bool)
            total = 0
            for u in rng.permutation(len(units)):
                if total + counts[u] <= k[b]:
                    take[u] = True
                    total += counts[u]
                    if total == k[b]:
                        break
            if total == 0:  # every word is longer than k: take one anyway
                take[rng.integers(len(units))] = True
            chosen[b, pos[take[inverse]]] = True
        return chosen

    def __call__(self, input_ids: np.ndarray | torch.Tensor,
                 rng: np.random.Generator | int | None = None,
                 valid: np.ndarray | torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(masked input_ids, labels)``, both int64 (B, T); ``valid`` (B, T) marks real
        tokens (padding is never chosen)."""
        rng = _as_generator(rng)
        ids = np.asarray(input_ids.cpu() if isinstance(input_ids, torch.Tensor) else input_ids,
                         dtype=np.int64)
        if isinstance(valid, torch.Tensor):
            valid = valid.cpu().numpy()
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise DataError(f"token ids must be in [0, {self.vocab_size}); got "
                            f"{ids.min()}..{ids.max()}")
        chosen = self.select(ids, rng, valid)
        labels = np.where(chosen, ids, IGNORE_INDEX)
        u = rng.random(ids.shape)
        to_mask = chosen & (u < self.mask_frac)
        to_random = chosen & (u >= self.mask_frac) & (u < self.mask_frac + self.random_frac)
        out = ids.copy()
        out[to_mask] = self.mask_id
        out[to_random] = rng.choice(self.random_ids, size=int(to_random.sum()))
        return torch.from_numpy(out), torch.from_numpy(labels)


def wordpiece_word_starts(tokenizer: Any) -> np.ndarray:
    """(V,) boolean: True unless the token is a ``##`` continuation piece. A ``##`` piece
    of one CJK character counts as a word of its own (each character is a word)."""
    table = np.ones(tokenizer.vocab_size, dtype=bool)
    found = False
    for tok, i in tokenizer.get_vocab().items():
        if tok.startswith("##") and len(tok) > 2 and i < table.size:
            found = True
            table[i] = bool(len(tok) == 3 and _CJK_CHAR.match(tok[2]))
    if not found:
        raise ConfigError("whole-word masking needs a WordPiece tokenizer (continuation "
                          "pieces start with '##'); this vocabulary has none")
    return table


class ChineseWordStarts:
    """Word starts of Chinese text in context: ``(B, T) ids -> (B, T) bool``.

    Every maximal run of consecutive tokens that are one CJK character each (``猫`` or
    ``##猫``) is decoded to a string and segmented by jieba; a character after the first
    of its jieba word is not a word start. Every other position is True (the vocabulary
    table of :func:`wordpiece_word_starts` decides those)."""

    def __init__(self, tokenizer: Any):
        self.chars = np.full(tokenizer.vocab_size, "", dtype=object)  # (V,) '' = not CJK
        for tok, i in tokenizer.get_vocab().items():
            text = tok[2:] if tok.startswith("##") else tok
            if len(text) == 1 and _CJK_CHAR.match(text) and i < self.chars.size:
                self.chars[i] = text
        self.is_cjk = self.chars != ""

    def __call__(self, ids: np.ndarray) -> np.ndarray:
        out = np.ones(ids.shape, dtype=bool)
        cjk = self.is_cjk[ids]
        for b in range(ids.shape[0]):
            pos = np.flatnonzero(cjk[b])
            for run in np.split(pos, np.flatnonzero(np.diff(pos) != 1) + 1):
                if run.size < 2:
                    continue
                i = 0
                for word in jieba_words("".join(self.chars[ids[b, run]])):
                    out[b, run[i + 1:i + len(word)]] = False
                    i += len(word)
        return out


# ------------------------------------------------------------------------------ corpus

class _Corpus:
    """Documents as spans of flat token arrays, with their sentences found on demand."""

    def __init__(self, arrays: list[np.ndarray], spans: np.ndarray,
                 breaks: list[np.ndarray] | None, sentence_end_ids: Sequence[int]):
        self.arrays = arrays
        self.spans = spans  # (n_docs, 3): array index, start, end (content only)
        self.breaks = breaks  # per document: sentence start offsets (known sentences)
        self.sentence_end_ids = np.asarray(sorted(sentence_end_ids), dtype=np.int64)
        self.sizes = np.array([a.size for a in arrays], dtype=np.int64)
        self.lengths = spans[:, 2] - spans[:, 1] if len(spans) else np.zeros(0, np.int64)

    @classmethod
    def from_arrays(cls, arrays: list[np.ndarray], boundary_ids: Sequence[int],
                    sentence_end_ids: Sequence[int]) -> _Corpus:
        """Documents are the runs between boundary tokens ([CLS]/[SEP])."""
        spans = []
        bset = np.asarray(sorted(boundary_ids), dtype=np.int64)
        for ai, arr in enumerate(arrays):
            idx = np.flatnonzero(np.isin(arr, bset))
            edges = np.concatenate([[-1], idx, [arr.size]])
            starts, ends = edges[:-1] + 1, edges[1:]
            keep = ends > starts
            spans.append(np.stack([np.full(keep.sum(), ai), starts[keep], ends[keep]], 1))
        return cls(arrays, np.concatenate(spans).astype(np.int64), None, sentence_end_ids)

    @classmethod
    def from_documents(cls, documents: Sequence[Any], cls_id: int, sep_id: int,
                       sentence_end_ids: Sequence[int]) -> _Corpus:
        """``documents``: each a list of sentences (lists of ids) or a flat list of ids."""
        parts, spans, breaks = [], [], []
        pos, known = 0, False
        for doc in documents:
            doc = list(doc)
            if doc and not isinstance(doc[0], (int, np.integer)):
                known = True
                sents = [np.asarray(s, dtype=np.int64) for s in doc if len(s)]
            else:
                sents = [np.asarray(doc, dtype=np.int64)] if doc else []
            if not sents:
                continue
            lens = np.array([s.size for s in sents])
            body = np.concatenate(sents)
            parts.append(np.concatenate([[cls_id], body, [sep_id]]).astype(np.int64))
            spans.append((0, pos + 1, pos + 1 + body.size))
            breaks.append(np.cumsum(lens)[:-1])
            pos += body.size + 2
        if not parts:
            raise DataError("no documents (or only empty ones) to build MLM batches from")
        return cls([np.concatenate(parts)], np.asarray(spans, dtype=np.int64),
                   breaks if known else None, sentence_end_ids)

    def doc(self, d: int) -> np.ndarray:
        a, s, e = self.spans[d]
        return np.asarray(self.arrays[a][s:e], dtype=np.int64)

    def sentences(self, d: int) -> list[np.ndarray]:
        toks = self.doc(d)
        if self.breaks is not None:
            cuts = self.breaks[d]
        else:
            cuts = np.flatnonzero(np.isin(toks[:-1], self.sentence_end_ids)) + 1
        return [s for s in np.split(toks, cuts) if s.size]


def _cat(parts: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def truncate_pair(a: np.ndarray, b: np.ndarray, max_tokens: int, rng: np.random.Generator,
                  keep_junction: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Trim the longer of ``a``/``b`` until ``len(a) + len(b) <= max_tokens`` (each keeps
    at least one token). Tokens go from a random end, or with ``keep_junction`` from the
    start of ``a`` and the end of ``b``."""
    la, lb = a.size, b.size
    excess = la + lb - max_tokens
    if excess > 0:
        step = min(excess, abs(la - lb))  # first the longer one down to the shorter
        if la > lb:
            la -= step
        else:
            lb -= step
        excess -= step
        la -= (excess + 1) // 2  # then both alike
        lb -= excess // 2
    la, lb = max(la, 1), max(lb, 1)

    def cut(x: np.ndarray, n: int, front: bool) -> np.ndarray:
        return x[x.size - n:] if front else x[:n]

    if keep_junction:
        return cut(a, la, True), cut(b, lb, False)
    return cut(a, la, bool(rng.random() < 0.5)), cut(b, lb, bool(rng.random() < 0.5))


# ------------------------------------------------------------------------------ batches

class MLMBatchSource:
    """MLM (``nsp=False``) or MLM+NSP (``nsp=True``) batches for the trainer.

    ``data``: a :class:`~lmforge.data.shards.TokenShards` split, a prepared-data folder
    (with ``split``), or a list of documents (each a list of sentences, every sentence a
    list of ids, or a flat list of ids). Batches are dicts of int64 tensors:
    ``input_ids``, ``attention_mask``, ``token_type_ids``, ``labels`` (B, T) and, with
    NSP, ``next_sentence_label`` (B,). ``eval_batches()`` yields the same
    ``max_eval_batches`` batches every time (masks drawn from ``eval_seed``).
    """

    def __init__(self, data: TokenShards | str | Path | Sequence[Any], masker: Masker, *,
                 cls_id: int, sep_id: int, pad_id: int, batch_size: int = 32,
                 max_len: int = 128, nsp: bool = False, split: str = "train",
                 sentence_end_ids: Sequence[int] = (), short_seq_prob: float = 0.1,
                 max_eval_batches: int = 20, eval_seed: int = 0):
        if max_len < (8 if nsp else 3):
            raise ConfigError(f"max_len={max_len} is too short for "
                              f"{'NSP pairs' if nsp else 'MLM'}")
        if batch_size < 1:
            raise ConfigError("batch_size must be >= 1")
        self.masker = masker
        self.cls_id, self.sep_id, self.pad_id = int(cls_id), int(sep_id), int(pad_id)
        self.batch_size, self.max_len, self.nsp = int(batch_size), int(max_len), bool(nsp)
        self.short_seq_prob = float(short_seq_prob)
        self.max_eval_batches, self.eval_seed = int(max_eval_batches), int(eval_seed)
        self._vocab_size = masker.vocab_size
        if isinstance(data, (str, Path)):
            data = TokenShards(data, split)
        if isinstance(data, TokenShards):
            self._vocab_size = data.vocab_size
            if nsp:  # find the documents; MLM windows need only the flat arrays
                bounds = [i for i in (data.meta.get("bos_id"), data.meta.get("eos_id"),
                                      self.cls_id, self.sep_id) if i is not None]
                self.corpus = _Corpus.from_arrays(data.arrays, bounds, sentence_end_ids)
            else:
                spans = np.array([(i, 0, a.size) for i, a in enumerate(data.arrays)],
                                 dtype=np.int64)
                self.corpus = _Corpus(data.arrays, spans, None, sentence_end_ids)
        else:
            self.corpus = _Corpus.from_documents(data, self.cls_id, self.sep_id,
                                                 sentence_end_ids)
        if len(self.corpus.spans) == 0:
            raise DataError("the corpus has no documents")
        if nsp and len(self.corpus.spans) < 2:
            raise DataError("NSP needs at least two documents (B is drawn from another "
                            "document for NotNext pairs)")
        self._pairable = np.flatnonzero(self.corpus.lengths >= 2)
        if nsp and self._pairable.size == 0:
            raise DataError("NSP needs documents of at least two tokens")

    @classmethod
    def from_tokenizer(cls, data: Any, tokenizer: Any, *, mlm_prob: float = 0.15,
                       whole_word: bool = False, zh_words: str = "jieba",
                       **kw: Any) -> MLMBatchSource:
        """Special ids, the masker and the sentence ends from an lmforge tokenizer."""
        masker = Masker.from_tokenizer(tokenizer, mlm_prob=mlm_prob, whole_word=whole_word,
                                       zh_words=zh_words)
        ids = {"cls_id": tokenizer.bos_id, "sep_id": tokenizer.eos_id,
               "pad_id": tokenizer.pad_id}
        missing = [k for k, v in ids.items() if v is None]
        if missing:
            raise ConfigError(f"the tokenizer has no {', '.join(missing)} token; MLM batches "
                              "need [CLS] (bos), [SEP] (eos) and [PAD]")
        ends = [tokenizer.token_to_id(t) for t in SENTENCE_END_TOKENS]
        kw.setdefault("sentence_end_ids", [i for i in ends if i is not None])
        return cls(data, masker, **ids, **kw)

    @classmethod
    def from_shards(cls, data_dir: str | Path, split: str = "train", **kw: Any
                    ) -> MLMBatchSource:
        """From a prepared-data folder, with the tokenizer saved in it."""
        from ..tokenize import Tokenizer

        return cls.from_tokenizer(TokenShards(data_dir, split), Tokenizer.load(data_dir), **kw)

    @classmethod
    def from_texts(cls, texts: Sequence[str], tokenizer: Any, **kw: Any) -> MLMBatchSource:
        """From raw documents (Chinese or English), split into sentences and encoded."""
        docs = [tokenizer.encode_batch(split_sentences(t)) if t.strip() else [] for t in texts]
        return cls.from_tokenizer(docs, tokenizer, **kw)

    @property
    def vocab_size(self) -> int:
        return self._vocab_size

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.max_len

    # -------------------------------------------------------------- building rows

    def _window(self, rng: np.random.Generator) -> np.ndarray:
        """``[CLS] w [SEP]`` for a random window ``w`` of the concatenated corpus."""
        c, n = self.corpus, self.max_len - 2
        room = np.maximum(c.sizes - n, 0) + 1
        a = int(rng.choice(len(c.arrays), p=room / room.sum()))
        off = int(rng.integers(0, room[a]))
        w = np.asarray(c.arrays[a][off: off + n], dtype=np.int64)
        return np.concatenate([[self.cls_id], w, [self.sep_id]])

    def _pair(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
        """``(ids, token_type_ids, label)`` of one NSP example."""
        c = self.corpus
        max_tokens = self.max_len - 3
        target = max_tokens if rng.random() >= self.short_seq_prob \
            else int(rng.integers(2, max_tokens + 1))
        is_next = bool(rng.random() < 0.5)
        d = int(self._pairable[rng.integers(self._pairable.size)])
        sents = c.sentences(d)
        if len(sents) == 1:  # one long sentence: cut it in two at a random token
            cut = int(rng.integers(1, sents[0].size))
            sents = [sents[0][:cut], sents[0][cut:]]
        if is_next:
            i = int(rng.integers(0, len(sents) - 1))
            j, n = i + 1, sents[i].size
            while j < len(sents) and (j == i + 1 or n < target):
                n += sents[j].size
                j += 1
            chunk = sents[i:j]
            cut = int(rng.integers(1, len(chunk)))
            a, b = _cat(chunk[:cut]), _cat(chunk[cut:])
        else:
            i = int(rng.integers(0, len(sents)))
            j, n = i, 0
            while j < len(sents) and n < target:
                n += sents[j].size
                j += 1
            chunk = sents[i:j]
            cut = int(rng.integers(1, len(chunk))) if len(chunk) > 1 else 1
            a = _cat(chunk[:cut])
            other = int(rng.integers(len(c.spans) - 1))
            other += other >= d  # any document but d
            osents = c.sentences(other)
            k = int(rng.integers(len(osents)))
            parts, n = [], 0
            while k < len(osents) and (not parts or n < target - a.size):
                parts.append(osents[k])
                n += osents[k].size
                k += 1
            b = _cat(parts)
        a, b = truncate_pair(a, b, max_tokens, rng, keep_junction=is_next)
        ids = np.concatenate([[self.cls_id], a, [self.sep_id], b, [self.sep_id]])
        types = np.concatenate([np.zeros(a.size + 2, np.int64), np.ones(b.size + 1, np.int64)])
        return ids.astype(np.int64), types, int(not is_next)

    def collate(self, rows: Sequence[np.ndarray], types: Sequence[np.ndarray] | None,
                rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """Pad rows to the longest, mask them; returns the batch dict (without NSP)."""
        T = max(r.size for r in rows)
        ids = np.full((len(rows), T), self.pad_id, dtype=np.int64)
        tt = np.zeros((len(rows), T), dtype=np.int64)
        am = np.zeros((len(rows), T), dtype=np.int64)
        for i, r in enumerate(rows):
            ids[i, :r.size] = r
            am[i, :r.size] = 1
            if types is not None:
                tt[i, :r.size] = types[i]
        masked, labels = self.masker(ids, rng, valid=am)
        return {"input_ids": masked, "attention_mask": torch.from_numpy(am),
                "token_type_ids": torch.from_numpy(tt), "labels": labels}

    def _make(self, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        if not self.nsp:
            rows = [self._window(rng) for _ in range(self.batch_size)]
            return self.collate(rows, None, rng)
        pairs = [self._pair(rng) for _ in range(self.batch_size)]
        batch = self.collate([p[0] for p in pairs], [p[1] for p in pairs], rng)
        batch["next_sentence_label"] = torch.tensor([p[2] for p in pairs], dtype=torch.long)
        return batch

    def batch(self, step: int, micro: int, rng: np.random.Generator) -> dict:
        return self._make(rng)

    def eval_batches(self) -> Iterator[dict]:
        for i in range(self.max_eval_batches):
            yield self._make(np.random.default_rng([self.eval_seed, i]))

    def __repr__(self) -> str:
        return (f"MLMBatchSource(docs={len(self.corpus.spans)}, batch_size={self.batch_size}, "
                f"max_len={self.max_len}, nsp={self.nsp}, "
                f"whole_word={self.masker.whole_word})")


# ------------------------------------------------------------------------------ objective

class MLMObjective:
    """``L_MLM`` (+ ``L_NSP`` with ``nsp=True``) for a :class:`~lmforge.models.bert.BertModel`
    with ``head="mlm"`` (or ``"pretraining"`` for NSP).

    The vocabulary projection runs only at the labelled positions. ``n_tokens`` is the
    number of labelled (masked) tokens; metrics: ``mlm_loss``, ``mlm_acc`` and, with NSP,
    ``nsp_loss``, ``nsp_acc``.
    """

    def __init__(self, nsp: bool = False, ignore_index: int = IGNORE_INDEX):
        self.nsp = nsp
        self.ignore_index = ignore_index
        self.name = "mlm_nsp" if nsp else "mlm"

    def __call__(self, model: nn.Module, batch: dict):
        labels = batch["labels"]
        chosen = labels != self.ignore_index  # (B, T)
        out = model(batch["input_ids"], batch.get("attention_mask"),
                    batch.get("token_type_ids"), mlm_positions=chosen)
        if self.nsp:
            if not isinstance(out, tuple):
                raise ConfigError("NSP needs a BERT with head='pretraining' (MLM + NSP heads)")
            logits, nsp_logits = out
        else:
            if isinstance(out, tuple):
                raise ConfigError("this model returns several outputs; use "
                                  "MLMObjective(nsp=True) for head='pretraining'")
            logits = out
        target = labels[chosen]  # (N,)
        if target.numel():
            mlm_loss = F.cross_entropy(logits.float(), target)
            acc = (logits.argmax(-1) == target).float().mean()
        else:
            mlm_loss = logits.float().sum() * 0.0
            acc = torch.zeros((), device=labels.device)
        n = chosen.sum()
        if labels.device.type == "cpu":
            n = int(n)
        metrics: dict[str, Any] = {"mlm_loss": mlm_loss.detach(), "mlm_acc": acc.detach()}
        loss = mlm_loss
        if self.nsp:
            y = batch["next_sentence_label"]
            nsp_loss = F.cross_entropy(nsp_logits.float(), y)
            loss = mlm_loss + nsp_loss
            metrics["nsp_loss"] = nsp_loss.detach()
            metrics["nsp_acc"] = (nsp_logits.argmax(-1) == y).float().mean().detach()
        return loss, metrics, n

    def __repr__(self) -> str:
        return f"MLMObjective(nsp={self.nsp})"
