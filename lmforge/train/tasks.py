"""The task registry: which batch source and objective a recipe's ``train.objective`` uses.

``pretrain`` asks this module for ``(train_source, val_source, objective)``; each task is
a factory ``(recipe, data_dir, tokenizer, model) -> (train, val, objective)``:

================= ======================= ===============================================
objective         archs                   batches / loss
================= ======================= ===============================================
causal_lm         gpt (any decoder)       :class:`LMBatchSource` + :class:`CausalLMObjective`
                  rnn_lm                  :class:`TBPTTBatches` + :class:`TBPTTObjective`
mlm               bert, deberta_v2        :class:`MLMBatchSource` + :class:`MLMObjective`
                                          (``train.nsp``: + next-sentence prediction, BERT)
span_corruption   t5                      :class:`SpanCorruptionSource` +
                                          :class:`SpanCorruptionObjective`
translation       transformer,            :class:`TranslationSource` (world parallel
                  seq2seq_rnn             pairs ``data.src_lang`` -> ``data.tgt_lang``) +
                                          teacher-forced cross-entropy
================= ======================= ===============================================

:func:`fill_from_tokenizer` is the one place where a model config gets its vocabulary
sizes and special ids from the tokenizer: vocabulary sizes left ``None`` become the
tokenizer's (plus the T5 sentinels); special ids (pad, bos, eos, decoder start) always
follow the tokenizer, since the data is encoded with it.

Every task also knows which ids of a batch are its prediction targets
(:func:`target_ids`), which gives the unigram baseline a trained model must beat.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class Task:
    name: str
    archs: tuple[str, ...] | None  # None: any arch (a decoder)
    build: Callable[..., tuple[Any, Any, Any]]
    targets: Callable[[dict, Any], torch.Tensor]  # (batch, model) -> target ids (1-D)


TASKS: dict[str, Task] = {}


def register_task(task: Task) -> None:
    TASKS[task.name] = task


def get_task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"train.objective: unknown objective {name!r}; "
                          f"known: {', '.join(sorted(TASKS))}")
    return TASKS[name]


def check_objective(objective: str, arch: str, *, nsp: bool = False) -> None:
    """Raise ValueError when ``arch`` cannot be trained with ``objective``."""
    task = TASKS.get(objective)
    if task is None:
        return  # unknown names are rejected by the Literal of TrainConfig
    if task.archs is not None and arch not in task.archs:
        raise ValueError(f"train.objective={objective} needs model.arch in "
                         f"{', '.join(task.archs)} (got {arch})")
    if task.archs is None and arch in _NON_CAUSAL:
        raise ValueError(f"model.arch={arch} cannot be trained with causal_lm; use "
                         f"train.objective={_NON_CAUSAL[arch]}")
    if nsp and (objective != "mlm" or arch != "bert"):
        raise ValueError("train.nsp needs train.objective=mlm and model.arch=bert")


# ---------------------------------------------------------------------- model config

_VOCAB_FIELDS = ("vocab_size", "src_vocab_size", "tgt_vocab_size", "src_vocab", "tgt_vocab")


def extra_vocab(recipe: Any) -> int:
    """Ids the model needs beyond the tokenizer's (T5 sentinels)."""
    return recipe.train.n_sentinels if recipe.train.objective == "span_corruption" else 0


def fill_from_tokenizer(cfg: Any, tokenizer: Any, *, extra_ids: int = 0,
                        objective: str | None = None) -> Any:
    """``cfg`` (a model config dataclass) with vocabulary sizes and special ids from
    ``tokenizer``. A vocabulary size left ``None`` becomes ``tokenizer.vocab_size +
    extra_ids``; one set smaller than that is a :class:`ConfigError`. The pad/bos/eos
    ids (and T5's decoder start, its pad) are the tokenizer's. For ``objective="mlm"``
    a BERT without a head gets the MLM head (``pretraining`` with NSP)."""
    names = {f.name for f in dataclasses.fields(cfg)}
    need = tokenizer.vocab_size + extra_ids
    updates: dict[str, Any] = {}
    for f in _VOCAB_FIELDS:
        if f not in names:
            continue
        cur = getattr(cfg, f)
        if cur is None:
            updates[f] = need
        elif cur < need:
            extra = f" + {extra_ids} extra ids" if extra_ids else ""
            raise ConfigError(f"model.{f}={cur} is smaller than the tokenizer's vocabulary "
                              f"({tokenizer.vocab_size}{extra})")
    pad, bos, eos = tokenizer.pad_id, tokenizer.bos_id, tokenizer.eos_id
    ids = {"pad_id": pad, "bos_id": bos, "eos_id": eos, "pad_token_id": pad,
           "eos_token_id": eos, "decoder_start_token_id": pad}
    for f, v in ids.items():
        if f in names and v is not None and getattr(cfg, f) != v:
            updates[f] = v
    if objective == "mlm" and getattr(cfg, "head", None) == "none" and "flavor" in names:
        updates["head"] = "mlm"
    return dataclasses.replace(cfg, **updates) if updates else cfg


# ---------------------------------------------------------------------- causal LM

def _stream(data_dir: Path, split: str) -> np.ndarray:
    from ..data.shards import TokenShards

    shards = TokenShards(data_dir, split)
    return np.concatenate([np.asarray(a, dtype=np.int64) for a in shards.arrays])


def _build_causal(recipe, data_dir, tokenizer, model):
    from ..models.rnn import TBPTTBatches, TBPTTObjective
    from .objectives import CausalLMObjective
    from .sources import LMBatchSource

    t = recipe.train
    if recipe.arch == "rnn_lm":
        train = TBPTTBatches(_stream(data_dir, "train"), t.batch_size, t.block_size,
                             grad_accum=t.grad_accum)
        val = TBPTTBatches(_stream(data_dir, "val"), t.batch_size, t.block_size)
        return train, val, TBPTTObjective()
    return (LMBatchSource.from_config(data_dir, "train", t),
            LMBatchSource.from_config(data_dir, "val", t), CausalLMObjective())


def _labels(batch: dict) -> torch.Tensor:
    y = batch["labels"].reshape(-1)
    return y[y != IGNORE_INDEX]


# ---------------------------------------------------------------------- MLM

def _build_mlm(recipe, data_dir, tokenizer, model):
    from ..data.shards import TokenShards
    from .mlm import MLMBatchSource, MLMObjective

    t = recipe.train
    max_len = getattr(model.config, "max_len", None) or getattr(model.config, "max_seq_len",
                                                                None)
    if max_len is not None and t.block_size > max_len:
        raise ConfigError(f"train.block_size={t.block_size} exceeds the model's maximum "
                          f"positions ({max_len})")
    kw = dict(mlm_prob=t.mlm_probability, whole_word=t.whole_word_mask,
              zh_words=t.whole_word_zh, batch_size=t.batch_size, max_len=t.block_size, nsp=t.nsp,
              max_eval_batches=t.eval_batches, eval_seed=recipe.run.seed)
    train = MLMBatchSource.from_tokenizer(TokenShards(data_dir, "train"), tokenizer,
                                          split="train", **kw)
    val = MLMBatchSource.from_tokenizer(TokenShards(data_dir, "val"), tokenizer,
                                        split="val", **kw)
    return train, val, MLMObjective(nsp=t.nsp)


# ---------------------------------------------------------------------- span corruption

def _build_span(recipe, data_dir, tokenizer, model):
    from ..data.shards import TokenShards
    from .span_corruption import (
        SpanCorruptionObjective,
        SpanCorruptionSource,
        default_sentinels,
    )

    t, cfg = recipe.train, model.config
    if tokenizer.eos_id is None:
        raise ConfigError("span_corruption needs a tokenizer with an eos token")
    sentinels = default_sentinels(cfg.vocab_size, t.n_sentinels)

    def source(split: str) -> SpanCorruptionSource:
        return SpanCorruptionSource(
            TokenShards(data_dir, split), t.batch_size, t.block_size,
            vocab_size=cfg.vocab_size, eos_id=tokenizer.eos_id, sentinel_ids=sentinels,
            noise_density=t.noise_density, mean_span_length=t.mean_span_length,
            decoder_start_id=cfg.decoder_start_token_id, split=split,
            max_eval_batches=t.eval_batches, eval_seed=recipe.run.seed)

    return source("train"), source("val"), SpanCorruptionObjective()


# ---------------------------------------------------------------------- translation

class TranslationSource:
    """Seq2seq batches of parallel pairs (token-id lists), collated by
    :func:`lmforge.models.rnn.collate_pairs`: ``{"src", "src_lengths", "tgt_in",
    "tgt_out"}``. Sources are cut to ``max_len`` tokens and targets to ``max_len - 1``
    (``tgt_in`` = BOS + target, ``tgt_out`` = target + EOS). Training batches are
    ``batch_size`` pairs drawn with the trainer's rng; evaluation batches are the first
    ``max_eval_batches`` batches in order."""

    def __init__(self, pairs: Sequence[tuple[Sequence[int], Sequence[int]]], batch_size: int,
                 max_len: int, *, pad_id: int, bos_id: int, eos_id: int,
                 max_eval_batches: int | None = None):
        self.pairs = [(list(s[:max_len]), list(t[:max_len - 1])) for s, t in pairs
                      if len(s) and len(t)]
        if not self.pairs:
            raise ConfigError("translation: no non-empty sentence pairs")
        self.batch_size, self.max_len = int(batch_size), int(max_len)
        self.ids = {"pad_id": pad_id, "bos_id": bos_id, "eos_id": eos_id}
        self.max_eval_batches = max_eval_batches

    @classmethod
    def from_world(cls, split: str, n: int, tokenizer: Any, *, seed: int, src_lang: str = "en",
                   tgt_lang: str = "zh", **kw: Any) -> TranslationSource:
        """``n`` world derivations of ``split`` rendered in both languages."""
        from ..corpora import sentences

        sents = sentences(split, n, seed)
        src = tokenizer.encode_batch([s.render(src_lang) for s in sents])
        tgt = tokenizer.encode_batch([s.render(tgt_lang) for s in sents])
        return cls(list(zip(src, tgt, strict=True)), **kw)

    def _collate(self, rows: Sequence[tuple[list[int], list[int]]]) -> dict:
        from ..models.rnn import collate_pairs

        return collate_pairs([r[0] for r in rows], [r[1] for r in rows], **self.ids)

    def batch(self, step: int, micro: int, rng: np.random.Generator) -> dict:
        idx = rng.integers(0, len(self.pairs), size=self.batch_size)
        return self._collate([self.pairs[i] for i in idx])

    def eval_batches(self) -> Iterator[dict]:
        for k, i in enumerate(range(0, len(self.pairs), self.batch_size)):
            if self.max_eval_batches is not None and k >= self.max_eval_batches:
                return
            yield self._collate(self.pairs[i:i + self.batch_size])

    @property
    def tokens_per_batch(self) -> int:
        return self.batch_size * self.max_len

    def __repr__(self) -> str:
        return (f"TranslationSource(pairs={len(self.pairs)}, batch_size={self.batch_size}, "
                f"max_len={self.max_len})")


def _build_translation(recipe, data_dir, tokenizer, model):
    from ..models.rnn import Seq2SeqObjective
    from ..models.transformer import Seq2SeqLMObjective

    t, d = recipe.train, recipe.data
    if d.corpus != "world":
        raise ConfigError("train.objective=translation needs data.corpus=world (its "
                          "sentences are rendered in both languages)")
    cfg = model.config
    kw = dict(seed=recipe.run.seed, src_lang=d.src_lang, tgt_lang=d.tgt_lang,
              batch_size=t.batch_size, max_len=t.block_size, pad_id=cfg.pad_id,
              bos_id=cfg.bos_id, eos_id=cfg.eos_id, max_eval_batches=t.eval_batches)
    train = TranslationSource.from_world("train", d.world_train_sentences, tokenizer, **kw)
    val = TranslationSource.from_world("val", d.world_eval_sentences, tokenizer, **kw)
    if recipe.arch == "transformer":
        objective = Seq2SeqLMObjective(label_smoothing=t.label_smoothing)
    else:
        if t.label_smoothing:
            raise ConfigError("train.label_smoothing is supported by arch transformer only")
        objective = Seq2SeqObjective()
    return train, val, objective


def _tgt_out(batch: dict, model: Any) -> torch.Tensor:
    y = batch["tgt_out"].reshape(-1)
    return y[y != model.config.pad_id]


def _labels_any(batch: dict, model: Any) -> torch.Tensor:
    return _labels(batch)


register_task(Task("causal_lm", None, _build_causal, _labels_any))
register_task(Task("mlm", ("bert", "deberta_v2"), _build_mlm, _labels_any))
register_task(Task("span_corruption", ("t5",), _build_span, _labels_any))
register_task(Task("translation", ("transformer", "seq2seq_rnn"), _build_translation,
                   _tgt_out))

#: archs that are not decoders, and the objective that trains them
_NON_CAUSAL = {"bert": "mlm", "deberta_v2": "mlm", "t5": "span_corruption",
               "transformer": "translation", "seq2seq_rnn": "translation"}


# ---------------------------------------------------------------------- entry points

def build_task(recipe: Any, data_dir: str | Path, tokenizer: Any, model: Any
               ) -> tuple[Any, Any, Any]:
    """``(train_source, val_source, objective)`` for ``recipe.train.objective``."""
    task = get_task(recipe.train.objective)
    try:
        check_objective(task.name, recipe.arch, nsp=recipe.train.nsp)
    except ValueError as e:
        raise ConfigError(f"config error: {e}") from None
    return task.build(recipe, Path(data_dir), tokenizer, model)


def target_ids(objective: str, batch: dict, model: Any) -> torch.Tensor:
    """The ids a batch asks the model to predict (1-D), e.g. for a unigram baseline."""
    return get_task(objective).targets(batch, model)


def unigram_baseline(recipe: Any, data_dir: str | Path, tokenizer: Any, model: Any) -> float:
    """Entropy (nats) of the empirical unigram distribution of the validation targets.

    ``H = -sum_w p(w) log p(w)`` over the target ids of the validation batches the
    trainer scores (``train.eval_batches`` of them). No context-free predictor averages
    less than ``H`` on those targets (the unigram model fitted to them scores exactly
    ``H``), so a validation loss well below ``H`` shows the model uses its context."""
    import itertools
    from collections import Counter

    _, val, _ = build_task(recipe, data_dir, tokenizer, model)
    counts: Counter = Counter()
    for batch in itertools.islice(val.eval_batches(), recipe.train.eval_batches):
        counts.update(target_ids(recipe.train.objective, batch, model).tolist())
    n = sum(counts.values())
    if n == 0:
        raise ConfigError("the validation batches have no prediction targets")
    return -sum(c / n * np.log(c / n) for c in counts.values())
