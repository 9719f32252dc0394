"""The audit log: one row per request to the server and per key-management action.

Rows live in the ``audit`` table of the keys database (:func:`~lmforge.serve.keys.
default_db_path`). The log is append-only, and the database itself enforces it: triggers
abort every UPDATE and DELETE, so neither a bug nor a stray SQL statement can rewrite
history (someone who can write the file can still drop the triggers; the file is private
to its owner for that reason). Secrets never reach the table: :meth:`AuditLog.record`
redacts anything shaped like a key secret from every text field.
"""

from __future__ import annotations

import csv
import json
import os
import re
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TextIO

from ..errors import LmforgeError
from .keys import connect, redact_secrets

COLUMNS: dict[str, str] = {
    "time": "REAL NOT NULL",
    "request_id": "TEXT",
    "key_id": "TEXT",
    "role": "TEXT",
    "route": "TEXT",
    "method": "TEXT",
    "model": "TEXT",
    "model_version": "TEXT",
    "status": "INTEGER",
    "latency_s": "REAL",
    "prompt_tokens": "INTEGER",
    "completion_tokens": "INTEGER",
    "detail": "TEXT",
}
FORMATS = ("jsonl", "csv")

_APPEND_ONLY = "RAISE(ABORT, 'audit log is append-only')"
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS audit ({", ".join(f"{c} {t}" for c, t in COLUMNS.items())});
CREATE INDEX IF NOT EXISTS audit_time ON audit(time);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
    BEGIN SELECT {_APPEND_ONLY}; END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
    BEGIN SELECT {_APPEND_ONLY}; END;
"""
_SELECT = f"SELECT {', '.join(COLUMNS)} FROM audit"

_DURATION = re.compile(r"(\d+)([smhdw])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_SINCE_FORMS = ("an ISO-8601 date or time (2026-12-05, 2026-12-05T10:00:00, "
                "2026-12-05T10:00:00Z or +02:00; no zone = UTC) or a duration before now "
                "(30s, 15m, 2h, 7d, 2w)")


class AuditLog:
    """The append-only audit table in the SQLite file at ``path`` (created if missing)."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        with connect(self.path) as conn:
            conn.executescript(_SCHEMA)

    def record(self, **fields: str | int | float | None) -> None:
        """Append one row; ``fields`` are columns of :data:`COLUMNS` (``time`` defaults to
        now, the others to NULL). Text that looks like a key secret is redacted."""
        unknown = sorted(set(fields) - set(COLUMNS))
        if unknown:
            raise TypeError(f"unknown audit field(s) {', '.join(unknown)}; "
                            f"columns: {', '.join(COLUMNS)}")
        row = {"time": time.time(), **fields}
        row = {c: redact_secrets(v) if isinstance(v, str) else v for c, v in row.items()}
        with connect(self.path) as conn:
            conn.execute(f"INSERT INTO audit ({', '.join(row)}) "
                         f"VALUES ({', '.join('?' * len(row))})", tuple(row.values()))

    def tail(self, n: int = 20) -> list[dict]:
        """The newest ``n`` rows, oldest first (newest last)."""
        if n < 0:
            raise LmforgeError(f"the number of rows must be 0 or more, got {n}")
        with connect(self.path) as conn:
            rows = conn.execute(f"{_SELECT} ORDER BY time DESC, rowid DESC LIMIT ?",
                                (n,)).fetchall()
        return [dict(r) for r in reversed(rows)]

    def since(self, t: float) -> list[dict]:
        """Every row at or after unix time ``t``, oldest first."""
        return list(self._iter(t))

    def _iter(self, since: float | None) -> Iterator[dict]:
        with connect(self.path) as conn:
            for r in conn.execute(f"{_SELECT} WHERE time >= ? ORDER BY time, rowid",
                                  (float("-inf") if since is None else since,)):
                yield dict(r)

    def export(self, since: float | None, fmt: str, out: TextIO) -> int:
        """Write the rows at or after ``since`` (all if None), oldest first, to ``out`` as
        JSON lines or CSV with a header; returns how many rows were written."""
        if fmt not in FORMATS:
            raise LmforgeError(f"unknown export format {fmt!r}; formats: {', '.join(FORMATS)}")
        if fmt == "csv":
            writer = csv.DictWriter(out, fieldnames=list(COLUMNS), lineterminator="\n")
            writer.writeheader()
        count = 0
        for row in self._iter(since):
            if fmt == "csv":
                writer.writerow(row)
            else:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
        return count


def parse_since(text: str, now: float | None = None) -> float:
    """The unix time that ``text`` names: an ISO-8601 date or time (naive = UTC) or a
    duration such as ``15m``, ``2h`` or ``7d`` before ``now`` (default: the clock)."""
    text = text.strip()
    duration = _DURATION.fullmatch(text)
    if duration:
        amount, unit = duration.groups()
        return (time.time() if now is None else now) - int(amount) * _UNIT_S[unit]
    iso = text[:-1] + "+00:00" if text[-1:] in ("Z", "z") else text  # Python 3.10 needs it
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise LmforgeError(f"cannot read the time {text!r}: give {_SINCE_FORMS}") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.timestamp()


def format_time(t: float) -> str:
    """A unix time as ISO-8601 UTC to the second, e.g. ``2026-12-05T10:00:00Z``."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
