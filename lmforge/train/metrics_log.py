"""``metrics.jsonl``: one JSON object per line, appended as training goes.

Training lines: ``{"step", "loss", "lr", "tok_per_s", "grad_norm", "time", ...}``
(``ex_per_s`` instead of ``tok_per_s`` where the objective counts examples).
Evaluation lines: ``{"step", "val_loss", "val_ppl", ..., "time"}``.

Lines are flushed as they are written and the file is fsync-ed at every evaluation and
before every checkpoint, so the lines up to a checkpoint's step are on disk before the
checkpoint is. A kill can still leave a torn last line or lines for steps after the last
checkpoint; :func:`truncate_after` (run on resume) drops both and rewrites the file
atomically, so the resumed run appends exactly the lines an uninterrupted run would.

**Encrypted at rest.** A log opened while an encryption key is active
(:func:`lmforge.privacy.encrypted_io.using_key`) is one encrypted file, which cannot be
appended to: its lines (a resumed run's earlier lines first) are kept in memory and the
whole file is rewritten, encrypted and atomically, at every sync (each evaluation and
checkpoint) and at close, so the lines up to a checkpoint's step are still on disk
before the checkpoint is, and no plaintext line ever is. A kill loses the lines since the
last sync, which :func:`truncate_after` would drop on resume anyway. The readers here
decrypt with the active key; an encrypted file without one is the one-line
:class:`~lmforge.errors.ConfigError` of :func:`~lmforge.privacy.encrypted_io.read_bytes`.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

from ..privacy.encrypted_io import (
    active_key,
    check_key,
    read_bytes,
    write_bytes_as,
    write_text,
)


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


def _lines(data: bytes) -> list[dict]:
    """Every complete JSON object line of ``data`` (a torn or garbled line is skipped)."""
    records = []
    for line in data.decode("utf-8", errors="replace").splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return records


def read_metrics(path: str | Path) -> list[dict]:
    """Every complete JSON line of a metrics file, decrypted in memory when it is
    encrypted (a torn or garbled line is skipped; no file: no records)."""
    path = Path(path)
    return _lines(read_bytes(path)) if path.is_file() else []


def truncate_after(path: str | Path, step: int) -> list[dict]:
    """Keep only the records with ``step <= step`` (and no torn lines); rewrite atomically,
    encrypted when a key is active."""
    path = Path(path)
    if not path.is_file():
        return []
    data = read_bytes(path)
    raw_lines = [ln for ln in data.splitlines() if ln.strip()]
    records = _lines(data)
    kept = [r for r in records if int(r.get("step", 0)) <= step]
    dropped_torn = len(raw_lines) - len(records)
    if dropped_torn > 1:
        warnings.warn(f"{path}: skipped {dropped_torn} unreadable lines", stacklevel=2)
    if len(kept) != len(raw_lines):
        write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept))
    return kept


class MetricsLog:
    """Appends records to ``metrics.jsonl`` (``fresh``: starts it empty). With a key
    active at construction the text is held in memory and each :meth:`sync` rewrites the
    file encrypted (module docstring)."""

    def __init__(self, path: str | Path, fresh: bool):
        self.path = Path(path)
        self._key = active_key()
        self._closed = False
        if self._key is None:
            if not fresh and self.path.is_file():
                check_key(self.path)  # never append plaintext lines to an encrypted log
            self._f = open(self.path, "w" if fresh else "a", encoding="utf-8")
            return
        old = b"" if fresh or not self.path.is_file() else read_bytes(self.path)
        self._text = [old.decode("utf-8", errors="replace")]
        self.sync()

    def write(self, record: dict) -> None:
        rec = {k: _clean(v) for k, v in record.items()}
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        if self._key is not None:
            self._text.append(line)
            return
        self._f.write(line)
        self._f.flush()

    def sync(self) -> None:
        if self._key is not None:
            write_bytes_as(self.path, "".join(self._text).encode("utf-8"), self._key)
            return
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if self._closed:
            return
        self.sync()
        self._closed = True
        if self._key is None:
            self._f.close()


class NullLog:
    """The log of a rank other than 0 in a distributed run: rank 0 writes the file."""

    def write(self, record: dict) -> None: ...

    def sync(self) -> None: ...

    def close(self) -> None: ...
