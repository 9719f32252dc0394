"""API keys and roles of the HTTP server, stored hashed in a SQLite file.

A key's secret is ``lmf-`` followed by 32 random bytes (``secrets.token_urlsafe``). Only
its SHA-256 is stored, and :meth:`KeyStore.verify` looks a key up by that hash. A slow
password KDF (scrypt, PBKDF2) is not needed: it exists to make guessing a low-entropy
password expensive, and a 256-bit random secret cannot be guessed; a fast hash keeps the
per-request check to microseconds, as in GitHub- and Stripe-style token stores. A stolen
database therefore yields no usable key. The first 8 characters after ``lmf-`` are kept
as a non-secret ``prefix`` so that a person can tell keys apart.

Roles grant scopes (:func:`allowed`): ``admin`` everything, ``user`` inference and model
listing, ``reader`` model listing and metrics.

The keys and the audit log (:mod:`lmforge.serve.audit`) share one SQLite file (WAL
journal), :func:`default_db_path` unless given; :func:`connect` opens it for one
transaction, so a store is safe to use from several threads and processes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import hmac
import os
import re
import secrets
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import LmforgeError

ROLES: dict[str, frozenset[str]] = {
    "admin": frozenset({"inference", "models", "metrics", "admin"}),
    "user": frozenset({"inference", "models"}),
    "reader": frozenset({"models", "metrics"}),
}
SCOPES = frozenset().union(*ROLES.values())

SECRET_PREFIX = "lmf-"
_PREFIX_CHARS = 8
_MAX_SECRET_CHARS = 256  # a real secret has 47; longer input is rejected before hashing
_MAX_NAME_CHARS = 100
MAX_LIMIT = 10**12  # per minute; also keeps limits inside SQLite's 64-bit integers
_SECRET_RE = re.compile(re.escape(SECRET_PREFIX) + r"[A-Za-z0-9_-]{16,}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL,
    prefix TEXT NOT NULL,
    hash TEXT NOT NULL UNIQUE,
    created REAL NOT NULL,
    revoked REAL,
    requests_per_minute INTEGER,
    tokens_per_minute INTEGER
);
CREATE UNIQUE INDEX IF NOT EXISTS api_keys_active_name ON api_keys(name)
    WHERE revoked IS NULL;
"""
_FIELDS = ("id, name, role, prefix, created, revoked, requests_per_minute, "
           "tokens_per_minute")


@dataclasses.dataclass(frozen=True)
class KeyRecord:
    """One API key as stored, without its secret or hash; ``revoked`` is None while the
    key is active. A limit of None means unlimited."""

    id: str
    name: str
    role: str
    prefix: str
    created: float
    revoked: float | None
    requests_per_minute: int | None
    tokens_per_minute: int | None


def allowed(role: str, scope: str) -> bool:
    """Whether ``role`` may use routes of ``scope`` (inference, models, metrics, admin).

    An unknown scope is a bug in the caller, not a denial, so it raises ValueError.
    """
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; scopes: {', '.join(sorted(SCOPES))}")
    return scope in ROLES.get(role, frozenset())


def default_db_path() -> Path:
    """The keys-and-audit database: ``$LMFORGE_DB`` if set, else ``~/.lmforge/serve.db``."""
    env = os.environ.get("LMFORGE_DB")
    return Path(env).expanduser() if env else Path.home() / ".lmforge" / "serve.db"


def redact_secrets(text: str) -> str:
    """``text`` with every API-key secret in it replaced, for logs and the audit table."""
    return _SECRET_RE.sub(SECRET_PREFIX + "[redacted]", text)


def hash_secret(secret: str) -> str:
    """The stored form of a secret: its SHA-256 in hex (see the module docstring)."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


@contextlib.contextmanager
def connect(path: str | os.PathLike) -> Iterator[sqlite3.Connection]:
    """A connection to the database at ``path`` for one transaction: committed when the
    block ends, rolled back on an exception, then closed.

    A missing file is created private (mode 0600; a missing parent folder 0700), since it
    holds the key hashes and the audit log. The journal is switched to WAL, so that
    readers do not wait for a writer.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    conn = sqlite3.connect(path, timeout=10.0)
    try:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError:  # locked, read-only, ...: not the file's fault
            raise
        except sqlite3.DatabaseError as e:
            raise LmforgeError(f"{path} is not an lmforge database ({e})") from None
        conn.row_factory = sqlite3.Row
        with conn:
            yield conn
    finally:
        conn.close()


def _check_limit(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                              or not 0 < value <= MAX_LIMIT):
        raise LmforgeError(f"{name} must be an integer from 1 to {MAX_LIMIT:,} or unset, "
                           f"got {value!r}")


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise LmforgeError("a key needs a name (who or what uses it), got an empty one")
    if len(name) > _MAX_NAME_CHARS or not name.isprintable():
        raise LmforgeError(f"a key name must be printable and at most {_MAX_NAME_CHARS} "
                           f"characters, got {name!r}")
    return name


class KeyStore:
    """The API keys in the SQLite file at ``path`` (created with its table if missing).

    Each call opens its own connection (:func:`connect`), so one store may be shared by
    the server's threads.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        with connect(self.path) as conn:
            conn.executescript(_SCHEMA)

    def create(self, role: str, name: str, requests_per_minute: int | None = None,
               tokens_per_minute: int | None = None) -> tuple[KeyRecord, str]:
        """A new active key and its secret; the secret is not stored and cannot be shown
        again. The name must not be that of another active key."""
        if role not in ROLES:
            raise LmforgeError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
        name = _check_name(name)
        _check_limit("requests per minute", requests_per_minute)
        _check_limit("tokens per minute", tokens_per_minute)
        secret = SECRET_PREFIX + secrets.token_urlsafe(32)
        record = KeyRecord(id="key_" + secrets.token_hex(6), name=name, role=role,
                           prefix=secret[len(SECRET_PREFIX):][:_PREFIX_CHARS],
                           created=time.time(), revoked=None,
                           requests_per_minute=requests_per_minute,
                           tokens_per_minute=tokens_per_minute)
        try:
            with connect(self.path) as conn:
                conn.execute(
                    f"INSERT INTO api_keys ({_FIELDS}, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (record.id, record.name, record.role, record.prefix, record.created,
                     None, requests_per_minute, tokens_per_minute, hash_secret(secret)))
        except sqlite3.IntegrityError as e:
            if "api_keys.name" not in str(e):
                raise
            raise LmforgeError(f"an active key named {name!r} exists already; revoke it or "
                               "choose another name") from None
        return record, secret

    def verify(self, secret: str) -> KeyRecord | None:
        """The active key whose secret this is, or None (unknown, malformed or revoked).

        The lookup is by hash, so the database never compares secrets; the final
        comparison is constant-time all the same.
        """
        if not secret.startswith(SECRET_PREFIX) or len(secret) > _MAX_SECRET_CHARS:
            return None
        digest = hash_secret(secret)
        with connect(self.path) as conn:
            row = conn.execute(f"SELECT {_FIELDS}, hash FROM api_keys WHERE hash = ?",
                               (digest,)).fetchone()
        if row is None or not hmac.compare_digest(row["hash"], digest):
            return None
        record = _record(row)
        return record if record.revoked is None else None

    def list(self, include_revoked: bool = False) -> list[KeyRecord]:
        """The active keys (and the revoked ones if asked), oldest first."""
        where = "" if include_revoked else "WHERE revoked IS NULL"
        with connect(self.path) as conn:
            rows = conn.execute(f"SELECT {_FIELDS} FROM api_keys {where} "
                                "ORDER BY created, id").fetchall()
        return [_record(r) for r in rows]

    def revoke(self, id_or_name: str) -> KeyRecord:
        """Revoke the key with this id, else the active key with this name; returns it as
        revoked. An unknown or already revoked key is an error."""
        with connect(self.path) as conn:
            row = (conn.execute(f"SELECT {_FIELDS} FROM api_keys WHERE id = ?",
                                (id_or_name,)).fetchone()
                   or conn.execute(f"SELECT {_FIELDS} FROM api_keys WHERE name = ? "
                                   "ORDER BY revoked IS NOT NULL, revoked DESC",
                                   (id_or_name,)).fetchone())
            if row is None:
                raise LmforgeError(f"no key with id or name {id_or_name!r} (see: lmforge keys "
                                   "list --all)")
            now = time.time()
            done = conn.execute("UPDATE api_keys SET revoked = ? WHERE id = ? AND revoked IS "
                                "NULL", (now, row["id"])).rowcount
        if not done:
            raise LmforgeError(f"key {row['id']} ({row['name']}) is already revoked")
        return dataclasses.replace(_record(row), revoked=now)

    def count_active(self) -> int:
        """How many keys are active (the server may refuse to start without one)."""
        with connect(self.path) as conn:
            return conn.execute("SELECT COUNT(*) FROM api_keys WHERE revoked IS NULL"
                                ).fetchone()[0]


def _record(row: sqlite3.Row) -> KeyRecord:
    return KeyRecord(**{f.name: row[f.name] for f in dataclasses.fields(KeyRecord)})
