"""``prepare_data``: text files -> cleaned, deduplicated, tokenized, memory-mapped shards.

The pipeline streams: documents are read, cleaned and encoded in batches and appended to
shard files, so memory does not grow with the corpus (apart from the dedup table, 16-32
bytes per unique document). When no tokenizer is given one is trained first, which takes
two passes over the inputs::

    pass 1  read -> clean -> sample (at most tokenizer_train_bytes) -> dedup -> trainer
    pass 2  read -> clean -> dedup -> split -> encode_batch -> [bos] ids [eos] -> shards

Train/val split (by document)
    A document goes to ``val`` iff ``u < val_fraction``, where ``u`` is the first 8 bytes
    of ``BLAKE2b(seed as 8-byte little-endian int || UTF-8 of the cleaned text)`` read as a
    little-endian integer and divided by 2**64. Membership therefore depends only on the
    text and the seed, never on the order of the inputs. If the rule leaves ``val`` empty
    while there are at least two documents (and ``val_fraction > 0``), the document with
    the smallest ``u`` moves to ``val``; if it leaves ``train`` empty, the one with the
    largest ``u`` moves to ``train``. Both choices are order-independent too.

Tokenizer sample
    The tokenizer trainer's memory grows with the number of distinct pre-tokens (for
    Chinese, whole clauses), about 40 bytes per byte of text for byte-level BPE. It is
    therefore trained on a deterministic sample: a document is used iff
    ``digest64(raw text) / 2**64 < tokenizer_train_bytes / input_bytes`` (order-independent;
    only these documents need cleaning in pass 1), stopping at ``tokenizer_train_bytes``
    bytes of cleaned text. Pass ``tokenizer_train_bytes=None`` to train on everything.

The output folder (see :mod:`lmforge.data.shards`) is staged and renamed into place in one
step (:func:`lmforge.io.atomic_dir`): a crash or an error leaves no half-written folder.
"""

from __future__ import annotations

import hashlib
import os
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, DataError
from ..io import atomic_dir, ensure_writable_dir
from .clean import CLEAN_OPTIONS as _CLEAN_OPTIONS
from .clean import clean_text
from .dedup import ExactDedup, digest64
from .readers import TXT_MODES, iter_documents, resolve_inputs
from .shards import ShardWriter, dtype_for_vocab, write_meta

SPLIT_RULE = ("val iff blake2b-64(int64le(seed) || utf8(cleaned text)) / 2**64 < val_fraction; "
              "if val is empty (>= 2 documents) the smallest hash moves to val, if train is "
              "empty the largest moves to train")
_TWO64 = float(2**64)


def split_value(text: str, seed: int) -> float:
    """The split hash ``u`` in [0, 1) of a (cleaned) document for ``seed``."""
    return _split_u(_seed_hasher(seed), text.encode("utf-8", "surrogatepass"))


def _seed_hasher(seed: int):
    return hashlib.blake2b(struct.pack("<q", seed), digest_size=8)


def _split_u(seeded, data: bytes) -> float:
    h = seeded.copy()
    h.update(data)
    return int.from_bytes(h.digest(), "little") / _TWO64


def _spec_get(spec: Any, name: str, default: Any) -> Any:
    if spec is None:
        return default
    if isinstance(spec, Mapping):
        value = spec.get(name, default)
    else:
        value = getattr(spec, name, default)
    return default if value is None else value


def _describe(inputs: list[str], texts: bool) -> str:
    parts = list(inputs[:3]) + (["..."] if len(inputs) > 3 else [])
    if texts:
        parts.append("<texts>")
    return ", ".join(parts) or "<nothing>"


class _Stats:
    def __init__(self) -> None:
        self.read = 0       # documents read
        self.empty = 0      # empty after cleaning
        self.duplicate = 0  # dropped as exact duplicates


def _raw(files: list[Path], texts: Iterable[str] | None, *, field: str, column: str,
         txt_mode: str, redact: Callable[[str], str] | None = None) -> Iterator[str]:
    """Document texts as read: those of ``files``, then those of ``texts``; each passed
    through ``redact`` when given."""
    docs = _read(files, texts, field=field, column=column, txt_mode=txt_mode)
    yield from docs if redact is None else map(redact, docs)


def _read(files: list[Path], texts: Iterable[str] | None, *, field: str, column: str,
          txt_mode: str) -> Iterator[str]:
    if files:
        for doc in iter_documents(files, field=field, column=column, txt_mode=txt_mode):
            yield doc.text
    if texts is not None:
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise DataError(f"texts[{i}] is a {type(t).__name__}, expected a string")
            yield t


def _pii_redactor(redact_pii: bool | Sequence[str], clean: dict | None):
    """None (no redaction), or text -> cleaned text with PII masked (``[PHONE]``): it
    cleans first so that full-width digits and the like are recognised."""
    if redact_pii is False or redact_pii is None:
        return None
    from ..privacy.pii.redact_files import make_redactor

    redactor = make_redactor(None if redact_pii is True else list(redact_pii))
    if clean is None:
        return redactor
    return lambda text: redactor(clean_text(text, **clean))


def _clean(text: str, clean: dict | None) -> str | None:
    """The cleaned text (``clean``: clean_text options, None: no cleaning), or None when
    nothing is left."""
    if clean is not None:
        text = clean_text(text, **clean)
    return None if not text or text.isspace() else text


def _cleaned(raw: Iterable[str], clean: dict | None, stats: _Stats) -> Iterator[str]:
    """Cleaned, non-empty texts (counted in ``stats``)."""
    for text in raw:
        stats.read += 1
        text = _clean(text, clean)
        if text is None:
            stats.empty += 1
            continue
        yield text


def _training_sample(raw: Iterable[str], clean: dict | None, total_bytes: int, cap: int | None,
                     dedup: bool, fed: dict) -> Iterator[str]:
    """Pass 1: the deterministic hash sample that trains the tokenizer.

    A document is drawn iff ``digest64(raw text) / 2**64 < cap / total_bytes``; only drawn
    documents are cleaned (and deduplicated), so the pass costs little more than reading.
    If none is drawn, the non-empty document with the smallest hash is used.
    """
    rate = 1.0 if not cap or total_bytes <= cap else cap / total_bytes
    seen: set[int] = set()
    best: tuple[float, str] | None = None
    for raw_text in raw:
        u = digest64(raw_text) / _TWO64
        if u >= rate or (cap and fed["bytes"] >= cap):
            if fed["docs"] == 0 and (best is None or u < best[0]):
                text = _clean(raw_text, clean)
                if text is not None:
                    best = (u, text)
            continue
        text = _clean(raw_text, clean)
        if text is None:
            continue
        if dedup:
            d = digest64(text)
            if d in seen:
                continue
            seen.add(d)
        fed["bytes"] += len(text.encode("utf-8", "surrogatepass"))
        fed["docs"] += 1
        yield text
    fed["done"] = True
    if fed["docs"] == 0 and best is not None:
        fed["docs"] = 1
        fed["bytes"] = len(best[1].encode("utf-8", "surrogatepass"))
        yield best[1]


class _SplitRouter:
    """Send encoded documents to train/val, holding back one candidate per split until the
    other split is known to be non-empty (see the module docstring)."""

    def __init__(self, train: ShardWriter, val: ShardWriter, val_fraction: float):
        self.w = {"train": train, "val": val}
        self.enabled = val_fraction > 0
        self.n = {"train": 0, "val": 0}
        self.held: dict[str, tuple[float, np.ndarray] | None] = {"train": None, "val": None}

    def add(self, split: str, u: float, ids: np.ndarray) -> None:
        other = "val" if split == "train" else "train"
        self.n[split] += 1
        if self.held[other] is not None:  # the other split is now known to be non-empty
            self.w[other].add_document(self.held[other][1])
            self.held[other] = None
        if not self.enabled or self.n[other] > 0:
            self.w[split].add_document(ids)
            return
        held = self.held[split]
        # train keeps back its smallest u (the one that would move to val), val its largest.
        better = held is None or (u < held[0] if split == "train" else u > held[0])
        if better:
            if held is not None:
                self.w[split].add_document(held[1])
            self.held[split] = (u, ids)
        else:
            self.w[split].add_document(ids)

    def finish(self) -> None:
        total = self.n["train"] + self.n["val"]
        for split in ("train", "val"):
            held = self.held[split]
            if held is None:
                continue
            other = "val" if split == "train" else "train"
            target = other if (self.enabled and total >= 2 and self.n[other] == 0) else split
            self.w[target].add_document(held[1])
            self.held[split] = None


def _clean_options(clean: Any) -> dict | None:
    """``clean`` as keyword arguments of :func:`clean_text` (None: do not clean)."""
    if isinstance(clean, bool):
        return {} if clean else None
    if isinstance(clean, Mapping):
        bad = [k for k in clean if k not in _CLEAN_OPTIONS]
        if bad:
            raise ConfigError(f"clean: unknown option {bad[0]!r}; allowed: "
                              f"{', '.join(_CLEAN_OPTIONS)}")
        if not all(isinstance(v, bool) for v in clean.values()):
            raise ConfigError("clean: every option must be true or false")
        return dict(clean)
    raise ConfigError(f"clean={clean!r} must be true, false or a mapping of clean_text options")


def _check_out_dir(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DataError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / "meta.json").is_file():
        raise DataError(f"output folder {out} is not empty and is not a prepared-data folder; "
                        "refusing to replace it (choose a new --out)")
    ensure_writable_dir(out.resolve().parent)


def prepare_data(inputs: Iterable[str | os.PathLike] | str | os.PathLike | None,
                 out_dir: str | os.PathLike, *, tokenizer: Any = None,
                 tokenizer_spec: Any = None, field: str = "text", column: str = "text",
                 txt_mode: str = "line", clean: bool | Mapping[str, bool] = True,
                 dedup: bool = True,
                 val_fraction: float = 0.05, seed: int = 0, shard_tokens: int = 2**26,
                 batch_size: int = 1000, tokenizer_train_bytes: int | None = 2**23,
                 show_progress: bool = True, texts: Iterable[str] | None = None,
                 redact_pii: bool | Sequence[str] = False) -> dict:
    """Turn text into a prepared-data folder ``out_dir``; returns its meta (``meta.json``).

    ``inputs``: files, folders and glob patterns (``.txt``/``.jsonl``/``.csv``/
    ``.parquet``, see :mod:`lmforge.data.readers`); ``texts``: strings to use besides (or
    instead of) them, e.g. a built-in corpus. ``tokenizer``: a
    :class:`~lmforge.tokenize.Tokenizer` or a path to load one from; without it a
    tokenizer is trained from ``tokenizer_spec`` (an object or mapping with ``kind``,
    ``vocab_size``, ``min_frequency``, ``special_tokens``; default byte-level BPE of 4096),
    and ``texts`` must then be re-iterable (a list, not a generator). The split rule and
    the tokenizer sample are described in the module docstring. ``clean`` is True (all
    :func:`~lmforge.data.clean.clean_text` rules), False, or a mapping of its options, e.g.
    ``{"whitespace": False, "strip_html": False}`` for source code, whose indentation and
    ``<`` characters must survive. ``redact_pii`` masks personal data in every document
    before anything else sees it (True: every type, or a list of types, see
    :mod:`lmforge.privacy.pii`).
    """
    from ..tokenize import Tokenizer, check_vocab_size, train_tokenizer
    from ..tokenize.tokenizer import DEFAULT_SPECIAL_TOKENS

    # ---------------------------------------------------------------- validation
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, (int, float)) \
            or not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"data.val_fraction={val_fraction!r} must be in [0, 1)")
    if isinstance(seed, bool) or not isinstance(seed, int) or not -2**63 <= seed < 2**63:
        raise ConfigError(f"seed={seed!r} must be a 64-bit integer")
    if not isinstance(shard_tokens, int) or shard_tokens < 1:
        raise ConfigError(f"shard_tokens={shard_tokens!r} must be a positive integer")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size={batch_size!r} must be a positive integer")
    if tokenizer_train_bytes is not None and (not isinstance(tokenizer_train_bytes, int)
                                              or tokenizer_train_bytes < 1):
        raise ConfigError(f"tokenizer_train_bytes={tokenizer_train_bytes!r} must be a "
                          "positive integer or None")
    if txt_mode not in TXT_MODES:
        raise ConfigError(f"txt_mode={txt_mode!r} is not one of {', '.join(TXT_MODES)}")
    if isinstance(texts, str):
        raise ConfigError("texts must be an iterable of strings, not one string")
    clean_opts = _clean_options(clean)
    redact = _pii_redactor(redact_pii, clean_opts)

    if inputs is None:
        given: list[str] = []
    elif isinstance(inputs, (str, os.PathLike)):
        given = [os.fspath(inputs)]
    else:
        given = [os.fspath(x) for x in inputs]
    files = resolve_inputs(given) if given else []
    if not files and texts is None:
        raise DataError("no inputs: give input files, folders or patterns")
    where = _describe(given, texts is not None)

    if tokenizer is not None and not isinstance(tokenizer, Tokenizer):
        tokenizer = Tokenizer.load(tokenizer)
    if tokenizer is None:
        kind = _spec_get(tokenizer_spec, "kind", "bpe")
        vocab_size = _spec_get(tokenizer_spec, "vocab_size", 4096)
        min_frequency = _spec_get(tokenizer_spec, "min_frequency", 2)
        special_tokens = list(_spec_get(tokenizer_spec, "special_tokens", []))
        if kind not in DEFAULT_SPECIAL_TOKENS:
            raise ConfigError(f"tokenizer.kind={kind!r} is not one of "
                              f"{', '.join(DEFAULT_SPECIAL_TOKENS)}")
        n_special = len(set(DEFAULT_SPECIAL_TOKENS[kind].values()) | set(special_tokens))
        check_vocab_size(kind, int(vocab_size), n_special)
        if texts is not None and iter(texts) is texts:
            raise ConfigError("texts is a one-shot iterator, but training a tokenizer needs "
                              "two passes: pass a list, or a tokenizer")
    out = Path(out_dir).expanduser()
    _check_out_dir(out)

    # ---------------------------------------------------------------- pass 1: tokenizer
    trained_on: dict | None = None
    if tokenizer is None:
        total_bytes = sum(p.stat().st_size for p in files)
        if texts is not None:
            total_bytes += sum(len(t.encode("utf-8", "surrogatepass")) for t in texts
                               if isinstance(t, str))
        fed = {"docs": 0, "bytes": 0}
        raw = _raw(files, texts, field=field, column=column, txt_mode=txt_mode,
                   redact=redact)
        try:
            tokenizer = train_tokenizer(
                kind, texts=_training_sample(raw, clean_opts, total_bytes, tokenizer_train_bytes,
                                             dedup, fed),
                vocab_size=int(vocab_size), min_frequency=int(min_frequency),
                special_tokens=special_tokens, show_progress=show_progress)
        except DataError:
            if fed.get("done") and fed["docs"] == 0:
                raise DataError(f"empty corpus: no documents in {where}") from None
            raise
        trained_on = {"documents": fed["docs"], "bytes": fed["bytes"],
                      "max_bytes": tokenizer_train_bytes}

    bos, eos = tokenizer.bos_id, tokenizer.eos_id
    if bos is None and eos is None:
        raise ConfigError("the tokenizer has neither a bos nor an eos token, so documents "
                          "could not be told apart; add one (e.g. --special-token)")
    head = [bos] if bos is not None else []
    tail = [eos] if eos is not None else []
    dtype = dtype_for_vocab(tokenizer.vocab_size)

    # ---------------------------------------------------------------- pass 2: shards
    stats = _Stats()
    seeded = _seed_hasher(seed)
    dd = ExactDedup() if dedup else None
    bar = None
    if show_progress:
        from tqdm.auto import tqdm

        bar = tqdm(desc="prepare: encode", unit=" docs", dynamic_ncols=True)
    with atomic_dir(out) as tmp:
        writers = {s: ShardWriter(tmp, s, dtype, shard_tokens) for s in ("train", "val")}
        router = _SplitRouter(writers["train"], writers["val"], float(val_fraction))

        def flush(batch: list[str]) -> None:
            data = [t.encode("utf-8", "surrogatepass") for t in batch]
            if dd is not None:
                digests = np.fromiter(
                    (int.from_bytes(hashlib.blake2b(b, digest_size=8).digest(), "little")
                     for b in data), dtype=np.uint64, count=len(data))
                keep = np.flatnonzero(dd.add_digests(digests)).tolist()
                stats.duplicate += len(batch) - len(keep)
                batch = [batch[i] for i in keep]
                data = [data[i] for i in keep]
            if not batch:
                return
            for text_ids, b in zip(tokenizer.encode_batch(batch), data, strict=True):
                u = _split_u(seeded, b)
                ids = np.asarray(head + text_ids + tail, dtype=dtype)
                router.add("val" if u < val_fraction else "train", u, ids)
            if bar is not None:
                bar.update(len(batch))

        try:
            batch: list[str] = []
            raw = _raw(files, texts, field=field, column=column, txt_mode=txt_mode,
                       redact=redact)
            for text in _cleaned(raw, clean_opts, stats):
                batch.append(text)
                if len(batch) >= batch_size:
                    flush(batch)
                    batch = []
            flush(batch)
            router.finish()
            infos = {s: w.close() for s, w in writers.items()}
        finally:
            for w in writers.values():
                w.close()
            if bar is not None:
                bar.close()
        kept = infos["train"].documents + infos["val"].documents
        if kept == 0:
            raise DataError(f"empty corpus: no documents in {where}")
        tokenizer.save(tmp)
        extra = {
            "tokenizer_kind": tokenizer.kind,
            "bos_id": bos,
            "eos_id": eos,
            "inputs": given,
            "texts": texts is not None,
            "field": field,
            "column": column,
            "txt_mode": txt_mode,
            "clean": clean if isinstance(clean, bool) else dict(clean),
            "dedup": bool(dedup),
            "seed": int(seed),
            "val_fraction": float(val_fraction),
            "split_rule": SPLIT_RULE,
            "documents": {"read": stats.read, "empty_after_cleaning": stats.empty,
                          "duplicates": stats.duplicate, "kept": kept},
            "tokenizer_trained_on": trained_on,
        }
        meta = write_meta(tmp, dtype=dtype, vocab_size=tokenizer.vocab_size, splits=infos,
                          extra=extra)
    return meta
