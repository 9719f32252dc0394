"""``metrics.jsonl``: one JSON object per line, appended as training goes.

Training lines: ``{"step", "loss", "lr", "tok_per_s", "grad_norm", "time", ...}``
(``ex_per_s`` instead of ``tok_per_s`` where the objective counts examples).
Evaluation lines: ``{"step", "val_loss", "val_ppl", ..., "time"}``.

Lines are flushed as they are written and the file is fsync-ed at every evaluation and
before every checkpoint, so the lines up to a checkpoint's step are on disk before the
checkpoint is. A kill can still leave a torn last line or lines for steps after the last
checkpoint; :func:`truncate_after` (run on resume) drops both and rewrites the file
atomically, so the resumed run appends exactly the lines an uninterrupted run would.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path

from ..io import atomic_write_text


def _clean(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    return value


def read_metrics(path: str | Path) -> list[dict]:
    """Every complete JSON line of a metrics file (a torn or garbled line is skipped)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
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


def truncate_after(path: str | Path, step: int) -> list[dict]:
    """Keep only the records with ``step <= step`` (and no torn lines); rewrite atomically."""
    path = Path(path)
    if not path.is_file():
        return []
    raw_lines = [ln for ln in path.read_bytes().splitlines() if ln.strip()]
    records = read_metrics(path)
    kept = [r for r in records if int(r.get("step", 0)) <= step]
    dropped_torn = len(raw_lines) - len(records)
    if dropped_torn > 1:
        warnings.warn(f"{path}: skipped {dropped_torn} unreadable lines", stacklevel=2)
    if len(kept) != len(raw_lines):
        atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n"
                                        for r in kept))
    return kept


class MetricsLog:
    """Appends records to ``metrics.jsonl``."""

    def __init__(self, path: str | Path, fresh: bool):
        self.path = Path(path)
        self._f = open(self.path, "w" if fresh else "a", encoding="utf-8")

    def write(self, record: dict) -> None:
        rec = {k: _clean(v) for k, v in record.items()}
        self._f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        self._f.flush()

    def sync(self) -> None:
        self._f.flush()
        os.fsync(self._f.fileno())

    def close(self) -> None:
        if not self._f.closed:
            self.sync()
            self._f.close()


class NullLog:
    """The log of a rank other than 0 in a distributed run: rank 0 writes the file."""

    def write(self, record: dict) -> None: ...

    def sync(self) -> None: ...

    def close(self) -> None: ...
