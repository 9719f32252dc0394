"""Token shards: the on-disk format of prepared training data.

A prepared-data folder holds flat binary files of token ids, read back with
``numpy.memmap`` so that a corpus far larger than RAM costs no memory::

    DIR/
      meta.json             # format, dtype, vocab size, splits and their shards
      tokenizer.json        # the tokenizer that produced the ids
      train-00000.bin ...   # little-endian uint16 (vocab <= 65536) or uint32 ids
      val-00000.bin ...

Each document is stored as ``[bos] ids [eos]`` and documents are concatenated. A
training batch is ``batch_size`` windows of ``block_size + 1`` tokens at random offsets:
``x = w[:-1]``, ``y = w[1:]``. Offsets come from a generator seeded by the caller, so a
batch is a pure function of (seed, step) and resuming a run replays the data exactly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import DataError
from ..io import read_json

FORMAT = "lmforge-shards"
VERSION = 1


def dtype_for_vocab(vocab_size: int) -> np.dtype:
    """uint16 when every id fits in 16 bits, else uint32."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


@dataclass
class SplitInfo:
    shards: list[dict] = field(default_factory=list)  # [{"file": str, "tokens": int}]
    tokens: int = 0
    documents: int = 0


class ShardWriter:
    """Append token ids for one split to size-capped shard files in ``out_dir``."""

    def __init__(self, out_dir: str | Path, split: str, dtype: np.dtype,
                 shard_tokens: int = 2**26):
        self.out_dir = Path(out_dir)
        self.split = split
        self.dtype = np.dtype(dtype)
        self.shard_tokens = int(shard_tokens)
        self.info = SplitInfo()
        self._f = None
        self._in_shard = 0

    def _open_next(self) -> None:
        self._close()
        name = f"{self.split}-{len(self.info.shards):05d}.bin"
        self._f = open(self.out_dir / name, "wb")
        self.info.shards.append({"file": name, "tokens": 0})
        self._in_shard = 0

    def _close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None

    def add_document(self, ids: np.ndarray | list[int]) -> None:
        """Append one document's ids (already wrapped in bos/eos by the caller)."""
        arr = np.asarray(ids, dtype=self.dtype)
        self.info.documents += 1
        while arr.size:
            if self._f is None or self._in_shard >= self.shard_tokens:
                self._open_next()
            room = self.shard_tokens - self._in_shard
            part, arr = arr[:room], arr[room:]
            self._f.write(part.tobytes())
            self._in_shard += part.size
            self.info.shards[-1]["tokens"] += int(part.size)
            self.info.tokens += int(part.size)

    def close(self) -> SplitInfo:
        self._close()
        return self.info


def write_meta(out_dir: str | Path, *, dtype: np.dtype, vocab_size: int,
               splits: dict[str, SplitInfo], extra: dict | None = None) -> dict:
    """Write ``meta.json`` describing the shards (call inside an atomic folder write)."""
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "dtype": np.dtype(dtype).name,
        "vocab_size": int(vocab_size),
        "tokenizer": "tokenizer.json",
        "splits": {k: {"shards": v.shards, "tokens": v.tokens, "documents": v.documents}
                   for k, v in splits.items()},
    }
    meta.update(extra or {})
    try:
        data = json.dumps(meta, indent=2, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # an input path that is not UTF-8 (held as "\udcXX" escapes)
        data = json.dumps(meta, indent=2).encode("ascii")
    (Path(out_dir) / "meta.json").write_bytes(data)
    return meta


def read_meta(data_dir: str | Path) -> dict:
    """Read and check ``meta.json`` of a prepared-data folder."""
    path = Path(data_dir) / "meta.json"
    if not path.is_file():
        raise DataError(f"{data_dir} is not a prepared-data folder (no meta.json); "
                        "create one with `lmforge data prepare`")
    meta = read_json(path, error=DataError)
    if meta.get("format") != FORMAT:
        raise DataError(f"{path}: format is {meta.get('format')!r}, expected {FORMAT!r}")
    _check_meta(path, meta)
    return meta


def _is_count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _check_meta(path: Path, meta: dict) -> None:
    """The fields that reading the shards relies on, with one-line errors naming them."""
    def bad(what: str) -> DataError:
        return DataError(f"{path} is corrupt: {what}")

    if meta.get("dtype") not in ("uint16", "uint32"):
        raise bad(f"dtype is {meta.get('dtype')!r}, expected 'uint16' or 'uint32'")
    if not _is_count(meta.get("vocab_size")) or meta["vocab_size"] < 1:
        raise bad(f"vocab_size is {meta.get('vocab_size')!r}, expected a positive integer")
    splits = meta.get("splits")
    if not isinstance(splits, dict):
        raise bad("splits is missing or not an object")
    for name, info in splits.items():
        shards = info.get("shards") if isinstance(info, dict) else None
        if not isinstance(shards, list):
            raise bad(f"splits.{name}.shards is missing or not a list")
        for i, sh in enumerate(shards):
            where = f"splits.{name}.shards[{i}]"
            if not isinstance(sh, dict):
                raise bad(f"{where} is not an object")
            file = sh.get("file")
            if not isinstance(file, str) or not file or Path(file).name != file:
                raise bad(f"{where}.file is {file!r}, expected a file name in the folder")
            if not _is_count(sh.get("tokens")):
                raise bad(f"{where}.tokens is {sh.get('tokens')!r}, expected an integer >= 0")


class TokenShards:
    """Memory-mapped view of one split of a prepared-data folder."""

    def __init__(self, data_dir: str | Path, split: str):
        self.data_dir = Path(data_dir)
        self.meta = read_meta(self.data_dir)
        if split not in self.meta["splits"]:
            raise DataError(f"{self.data_dir} has no {split!r} split "
                            f"(has: {', '.join(self.meta['splits'])})")
        self.split = split
        self.dtype = np.dtype(self.meta["dtype"])
        self.arrays: list[np.ndarray] = []
        for sh in self.meta["splits"][split]["shards"]:
            path = self.data_dir / sh["file"]
            expected = sh["tokens"] * self.dtype.itemsize
            if not path.is_file() or path.stat().st_size != expected:
                got = path.stat().st_size if path.is_file() else "missing"
                raise DataError(f"shard {path} is truncated or missing "
                                f"(expected {expected} bytes, found {got})")
            if sh["tokens"]:
                self.arrays.append(np.memmap(path, dtype=self.dtype, mode="r"))
        self.tokens = sum(a.size for a in self.arrays)
        if self.tokens == 0:
            raise DataError(f"the {split!r} split of {self.data_dir} is empty")
        self._sizes = np.array([a.size for a in self.arrays], dtype=np.int64)

    @property
    def vocab_size(self) -> int:
        return int(self.meta["vocab_size"])

    def documents(self, eos_id: int, bos_id: int | None = None):
        """Yield each stored document's ids (a list) without its ``[bos]`` and ``[eos]``.
        A document is everything up to an ``eos``; a trailing piece without one (only in
        hand-made shards) is yielded as well."""
        for arr in self.arrays:
            a = np.asarray(arr, dtype=np.int64)
            start = 0
            for end in [*np.flatnonzero(a == eos_id).tolist(), a.size]:
                doc = a[start:end]
                if bos_id is not None and doc.size and doc[0] == bos_id:
                    doc = doc[1:]
                if doc.size or end < a.size:
                    yield doc.tolist()
                start = end + 1

    def _check_block(self, block_size: int) -> None:
        if self._sizes.max() < block_size + 1:
            raise DataError(f"the {self.split!r} split has {self.tokens} tokens, fewer than "
                            f"block_size + 1 = {block_size + 1}; use a smaller block_size "
                            "or more data")

    def sample(self, batch_size: int, block_size: int, rng: np.random.Generator,
               keep: range | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Random windows: a batch ``(x, y)`` of shape ``(batch_size, block_size)``.

        ``keep`` reads only those rows (a rank's share of a global batch): the windows are
        drawn as for the whole batch, so the rows are those of the full draw."""
        self._check_block(block_size)
        keep = range(batch_size) if keep is None else keep
        room = np.maximum(self._sizes - block_size, 0).astype(np.float64)
        shard_ids = rng.choice(len(self.arrays), size=batch_size, p=room / room.sum())
        rows = []
        for i, s in enumerate(shard_ids):
            off = int(rng.integers(0, self._sizes[s] - block_size))
            if i in keep:
                rows.append(np.asarray(self.arrays[s][off: off + block_size + 1],
                                       dtype=np.int64))
        w = torch.from_numpy(np.stack(rows))
        return w[:, :-1], w[:, 1:]

    def sequential(self, batch_size: int, block_size: int, max_batches: int | None = None):
        """Non-overlapping windows from the start, in order (deterministic evaluation)."""
        self._check_block(block_size)
        rows, n = [], 0
        for arr in self.arrays:
            for off in range(0, arr.size - block_size, block_size):
                rows.append(np.asarray(arr[off: off + block_size + 1], dtype=np.int64))
                if len(rows) == batch_size:
                    w = torch.from_numpy(np.stack(rows))
                    yield w[:, :-1], w[:, 1:]
                    rows, n = [], n + 1
                    if max_batches is not None and n >= max_batches:
                        return
        if rows:
            w = torch.from_numpy(np.stack(rows))
            yield w[:, :-1], w[:, 1:]
