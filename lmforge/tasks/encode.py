"""Task records -> token ids, and the batch sources the trainer reads.

Every input is ``[CLS] text [SEP]`` (pairs: ``[CLS] a [SEP] b [SEP]`` with token type ids
0/1), truncated to ``max_length`` tokens, specials included. What else an example carries:

- classify: ``label`` (an index into the model's labels);
- tag: for each word (a record token: an English word, a Chinese character) the index of
  its first sub-token, and its tag. Words cut off by truncation are not predicted (and
  reported by :func:`encode_tagging` as truncated); later sub-tokens carry no label;
- relate: the marked text (:func:`mark_entities`) and the positions of the two start
  markers.

Batch sources follow :mod:`lmforge.train.sources`: a training batch is a pure function of
``(seed, step, micro)`` (``batch_size`` examples drawn by the given generator, padded to
the longest), evaluation batches are the split in order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import DataError

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    token_type_ids: list[int] | None = None
    label: int | None = None
    word_index: list[int] = field(default_factory=list)   # tag: first sub-token of each word
    word_tags: list[int] = field(default_factory=list)    # tag: gold tag ids per word
    n_words: int = 0                                       # tag: words in the record
    head_pos: int = 0                                      # relate: the @ marker
    tail_pos: int = 0                                      # relate: the # marker

    def tokens_of_words(self, tags: set[int]) -> list[int]:
        """tag: the positions of the sub-tokens of the words whose gold tag is in ``tags``
        (a word's sub-tokens run to the next word's first one, or to [SEP])."""
        ends = [*self.word_index[1:], len(self.input_ids) - 1]
        return [p for a, b, t in zip(self.word_index, ends, self.word_tags, strict=True)
                if t in tags for p in range(a, max(a + 1, b))]


def _specials(tokenizer) -> tuple[int, int, int]:
    cls, sep, pad = tokenizer.bos_id, tokenizer.eos_id, tokenizer.pad_id
    if cls is None or sep is None or pad is None:
        raise DataError("the tokenizer needs [CLS]/<s>, [SEP]/</s> and [PAD]/<pad> tokens "
                        "for task inputs")
    return cls, sep, pad


def _encodings(tokenizer, texts: Sequence[str]):
    return tokenizer.hf.encode_batch(list(texts), add_special_tokens=False)


def encode_classification(records: Sequence[dict], tokenizer, label_index: dict[str, int],
                          max_length: int) -> list[Encoded]:
    cls, sep, _ = _specials(tokenizer)
    encs_a = _encodings(tokenizer, [r["text"] for r in records])
    pairs = any(r.get("text_b") is not None for r in records)
    encs_b = _encodings(tokenizer, [r.get("text_b") or "" for r in records]) if pairs else None
    out = []
    for i, r in enumerate(records):
        a = encs_a[i].ids
        label = label_index.get(r["label"]) if r.get("label") is not None else None
        if encs_b is None:
            ids = [cls, *a[: max_length - 2], sep]
            out.append(Encoded(ids, None, label))
            continue
        b = encs_b[i].ids
        room = max_length - 3
        while len(a) + len(b) > room:  # trim the longer one first (the BERT recipe)
            if len(a) >= len(b):
                a = a[:-1]
            else:
                b = b[:-1]
        ids = [cls, *a, sep, *b, sep]
        types = [0] * (len(a) + 2) + [1] * (len(b) + 1)
        out.append(Encoded(ids, types, label))
    return out


def word_spans(r: dict) -> list[tuple[int, int]]:
    """Character spans of a record's words (from ``offsets``, else found in order)."""
    if r.get("offsets"):
        return [tuple(o) for o in r["offsets"]]
    spans, pos = [], 0
    for w in r["tokens"]:
        start = r["text"].find(w, pos)
        if start < 0:
            raise DataError(f"record {r.get('id', '?')}: token {w!r} is not in its text")
        spans.append((start, start + len(w)))
        pos = start + len(w)
    return spans


def encode_tagging(records: Sequence[dict], tokenizer, tag_index: dict[str, int],
                   max_length: int, subword: str = "first") -> tuple[list[Encoded], int]:
    """Encode NER records; returns the examples and how many words truncation cut off.

    The words are tokenized as words (pre-tokenized), so a sub-token never spans two of
    them: Chinese "27" tagged per character is "2" + "7", each with its own emission,
    not one token "27" read for both. A word with no sub-token (a character the
    normalizer drops) reads [UNK].

    ``subword="first"``: a word is labelled at its first sub-token, the rest are not
    labelled. ``"all"`` (for training a softmax head): every sub-token is a labelled
    position carrying its word's tag (``transformers``' ``label_all_tokens``); the
    prediction still reads the first sub-token."""
    cls, sep, _ = _specials(tokenizer)
    words = [[r["text"][a:b] for a, b in word_spans(r)] for r in records]
    encs = tokenizer.hf.encode_batch(words, is_pretokenized=True, add_special_tokens=False)
    unk = tokenizer.unk_id if tokenizer.unk_id is not None else sep
    out, cut = [], 0
    for r, ws, enc in zip(records, words, encs, strict=True):
        pieces: list[list[int]] = [[] for _ in ws]
        for tid, w in zip(enc.ids, enc.word_ids, strict=True):
            pieces[w].append(tid)
        tags = r.get("tags")
        ids, first, gold = [cls], [], []
        for w, p in enumerate(pieces):
            p = p or [unk]
            if len(ids) + len(p) > max_length - 1:  # truncated away (room for [SEP])
                cut += len(ws) - w
                break
            tag = tag_index[tags[w]] if tags is not None else IGNORE
            labelled = range(len(p)) if subword == "all" else range(1)
            first.extend(len(ids) + k for k in labelled)
            gold.extend(tag for _ in labelled)
            ids.extend(p)
        n = len(ws) if subword == "first" else len(first)  # truncated words count as O
        out.append(Encoded([*ids, sep], None, None, first, gold, n))
    return out, cut


HEAD_MARK, TAIL_MARK = "@", "#"
TYPE_MARK = {"head": "*", "tail": "^"}


def mark_entities(r: dict, typed: bool) -> tuple[str, int, int]:
    """The text with ``@ head @`` and ``# tail #`` around the entities (typed: ``@ * type *
    head @``), and the character positions of the two start markers."""
    text = r["text"]
    h, t = r["h"], r["t"]
    (hs, he), (ts, te) = h["pos"], t["pos"]
    pieces = []
    for (s, e, mark, ent, role) in sorted([(hs, he, HEAD_MARK, h, "head"),
                                           (ts, te, TAIL_MARK, t, "tail")]):
        pieces.append((s, e, mark, ent, role))
    out, pos, starts = [], 0, {}
    for s, e, mark, ent, role in pieces:
        out.append(text[pos:s])
        starts[role] = sum(len(x) for x in out)
        tm = TYPE_MARK[role]
        label = f"{tm} {ent.get('type', 'entity').lower()} {tm} " if typed else ""
        out.append(f"{mark} {label}{text[s:e]} {mark}")
        pos = e
    out.append(text[pos:])
    return "".join(out), starts["head"], starts["tail"]


def encode_relations(records: Sequence[dict], tokenizer, label_index: dict[str, int],
                     max_length: int, typed: bool = True) -> list[Encoded]:
    cls, sep, _ = _specials(tokenizer)
    marked = [mark_entities(r, typed) for r in records]
    encs = _encodings(tokenizer, [m[0] for m in marked])
    out = []
    for r, (_text, hpos, tpos), enc in zip(records, marked, encs, strict=True):
        ids, offs = enc.ids, enc.offsets
        hi = next(i for i, o in enumerate(offs) if o[0] <= hpos < max(o[1], o[0] + 1))
        ti = next(i for i, o in enumerate(offs) if o[0] <= tpos < max(o[1], o[0] + 1))
        room = max_length - 2
        if len(ids) > room:  # keep a window that holds both markers
            lo = max(0, min(max(hi, ti) - room + 1, min(hi, ti)))
            ids = ids[lo: lo + room]
            hi, ti = hi - lo, ti - lo
        label = label_index.get(r["relation"]) if r.get("relation") is not None else None
        out.append(Encoded([cls, *ids, sep], None, label, head_pos=hi + 1, tail_pos=ti + 1))
    return out


def collate(examples: Sequence[Encoded], pad_id: int, task: str) -> dict:
    """Pad a list of examples into a batch of tensors (right padding)."""
    B = len(examples)
    T = max(len(e.input_ids) for e in examples)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    mask = torch.zeros((B, T), dtype=torch.long)
    for i, e in enumerate(examples):
        ids[i, : len(e.input_ids)] = torch.tensor(e.input_ids)
        mask[i, : len(e.input_ids)] = 1
    batch = {"input_ids": ids, "attention_mask": mask}
    if any(e.token_type_ids is not None for e in examples):
        tt = torch.zeros((B, T), dtype=torch.long)
        for i, e in enumerate(examples):
            if e.token_type_ids is not None:
                tt[i, : len(e.token_type_ids)] = torch.tensor(e.token_type_ids)
        batch["token_type_ids"] = tt
    if task == "tag":
        W = max(1, max(len(e.word_index) for e in examples))
        idx = torch.zeros((B, W), dtype=torch.long)
        wmask = torch.zeros((B, W), dtype=torch.bool)
        tags = torch.full((B, W), IGNORE, dtype=torch.long)
        for i, e in enumerate(examples):
            n = len(e.word_index)
            idx[i, :n] = torch.tensor(e.word_index, dtype=torch.long)
            wmask[i, :n] = True
            tags[i, :n] = torch.tensor(e.word_tags, dtype=torch.long)
        wmask[:, 0] = True  # a CRF needs a first step (an empty record reads [CLS])
        batch.update(word_index=idx, word_mask=wmask, labels=tags)
    else:
        if task == "relate":
            batch["head_pos"] = torch.tensor([e.head_pos for e in examples])
            batch["tail_pos"] = torch.tensor([e.tail_pos for e in examples])
        batch["labels"] = torch.tensor([IGNORE if e.label is None else e.label
                                        for e in examples])
    return batch


class TaskBatches:
    """Batches of encoded examples: ``batch_size`` random draws for training, the split in
    order for evaluation.

    ``token_dropout`` p (training only): each text token (not [CLS]/[SEP]/padding) becomes
    ``unk_id`` with probability p, drawn from the batch's generator (so resume stays
    exact). It is word dropout (Lample et al. 2016): a tagger that cannot lean on the
    identity of every name learns from the context, which is what carries it to names it
    has never seen.

    ``entity_noise`` q (tagging, training only): each sub-token of a word whose gold tag is
    in ``noise_tags`` becomes a random token of ``vocab`` =
    [low, high) with probability q, so the tagger sees entities it could not have memorised
    (mention replacement, Dai & Adel 2020, at the token level) and has to read their
    context. Keep it to the open classes (names of people, places, organisations): the
    closed ones (dates, numbers) are read from their own tokens.

    ``mentions`` (tagging, training only): a function that rewrites each drawn example,
    such as :class:`~lmforge.tasks.mentions.MentionReplacer` (entities of new lengths).

    ``group_by_length`` (training only): the examples, sorted by length, are cut into groups
    of ``GROUP_BATCHES * batch_size``; a step picks a group with probability proportional
    to its size and draws the batch from it. Every example is still drawn with probability
    1/N per slot, but a batch pads to a length close to its own mean instead of the
    longest of N random texts (about 1.5x fewer tokens on the world's reviews).

    ``micro_batches`` k (the trainer's ``grad_accum``): micro-batch 0 of a step draws all
    ``k·batch_size`` examples of the step at once, sorts them by length and serves the k
    slices in order, so that each micro-batch pads to its own slice's longest text. The
    step's examples are the same i.i.d. draw of ``k·b`` as k independent micro-draws
    (sampling is with replacement), and the trainer's gradient is that of their mean
    loss, so this changes only the padding: on the world's reviews, 2 slices of a random
    32 hold about 21% fewer tokens and 4 about 31%."""

    GROUP_BATCHES = 8

    def __init__(self, examples: Sequence[Encoded], pad_id: int, task: str, batch_size: int,
                 *, token_dropout: float = 0.0, unk_id: int | None = None,
                 entity_noise: float = 0.0, vocab: tuple[int, int] = (0, 0),
                 noise_tags: set[int] | None = None, group_by_length: bool = False,
                 mentions: Callable[[Encoded, np.random.Generator], Encoded] | None = None,
                 micro_batches: int = 1):
        if not examples:
            raise DataError("a task split has no examples")
        if token_dropout > 0 and unk_id is None:
            raise DataError("token dropout needs a tokenizer with an unknown token")
        self.examples = list(examples)
        self.pad_id, self.task, self.batch_size = pad_id, task, int(batch_size)
        self.token_dropout, self.unk_id = float(token_dropout), unk_id
        self.entity_noise, self.vocab = float(entity_noise), vocab
        self.mentions = mentions
        if isinstance(micro_batches, bool) or not isinstance(micro_batches, int) \
                or micro_batches < 1:
            raise DataError(f"micro_batches must be an integer >= 1, got {micro_batches!r}")
        self.micro_batches = micro_batches
        self._step_draw: tuple[int, list[np.ndarray]] | None = None
        if self.entity_noise > 0 and task == "tag":
            if noise_tags is None:
                raise DataError("entity noise needs the tag ids it applies to")
            self.noise_positions = [e.tokens_of_words(noise_tags) for e in self.examples]
        self.group_by_length = group_by_length
        self._group()

    @property
    def batch_size(self) -> int:
        return self._batch_size

    @batch_size.setter
    def batch_size(self, n: int) -> None:
        """A new batch size (a distributed run draws the global batch) regroups by length."""
        self._batch_size = int(n)
        if hasattr(self, "group_by_length"):
            self._group()

    def _group(self) -> None:
        self.groups = [np.arange(len(self.examples))]
        if self.group_by_length:
            order = np.argsort([len(e.input_ids) for e in self.examples], kind="stable")
            size = self.GROUP_BATCHES * self.batch_size
            cuts = list(range(size, len(order) - size + 1, size))  # the last group >= size
            self.groups = np.split(order, cuts)
        sizes = np.array([len(g) for g in self.groups], dtype=np.float64)
        self.group_p = sizes / sizes.sum()

    def _draw(self, n: int, rng: np.random.Generator) -> np.ndarray:
        group = self.groups[rng.choice(len(self.groups), p=self.group_p)
                            if len(self.groups) > 1 else 0]
        return group[rng.integers(0, len(group), size=n)]

    def _indices(self, step: int, micro: int, rng: np.random.Generator) -> np.ndarray:
        k = self.micro_batches
        if k == 1:
            return self._draw(self.batch_size, rng)
        if micro == 0:
            idx = self._draw(k * self.batch_size, rng)
            idx = idx[np.argsort([len(self.examples[i].input_ids) for i in idx],
                                 kind="stable")]
            self._step_draw = (step, np.split(idx, k))
        elif self._step_draw is None or self._step_draw[0] != step or micro >= k:
            raise DataError(f"micro-batch {micro} of step {step + 1}: the {k} micro-batches "
                            "of a step are drawn together, from micro-batch 0 on")
        return self._step_draw[1][micro]

    def batch(self, step: int, micro: int, rng: np.random.Generator) -> dict:
        idx = self._indices(step, micro, rng)
        examples = [self.examples[i] for i in idx]
        if self.mentions is not None:
            examples = [self.mentions(e, rng) for e in examples]
        batch = collate(examples, self.pad_id, self.task)
        if self.token_dropout > 0:
            ids, mask = batch["input_ids"], batch["attention_mask"]
            text = mask.bool().clone()
            text[:, 0] = False                                   # [CLS]
            text[torch.arange(len(ids)), mask.sum(1) - 1] = False  # [SEP]
            drop = torch.from_numpy(rng.random(tuple(ids.shape)) < self.token_dropout)
            batch["input_ids"] = ids.masked_fill(drop & text, self.unk_id)
        if self.entity_noise > 0 and self.task == "tag":
            ids = batch["input_ids"]
            inside = torch.zeros(ids.shape, dtype=torch.bool)
            for r, i in enumerate(idx):
                inside[r, self.noise_positions[i]] = True
            swap = inside & torch.from_numpy(rng.random(tuple(ids.shape)) < self.entity_noise)
            noise = torch.from_numpy(rng.integers(*self.vocab, size=tuple(ids.shape)))
            batch["input_ids"] = torch.where(swap, noise, ids)
        return batch

    def eval_batches(self) -> Iterator[dict]:
        for i in range(0, len(self.examples), self.batch_size):
            yield collate(self.examples[i: i + self.batch_size], self.pad_id, self.task)
