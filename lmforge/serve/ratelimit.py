"""Per-key rate limits: token buckets for requests per minute and tokens per minute.

A bucket with refill rate ``r`` per second (``rate_per_minute / 60``) and capacity ``C``
holds a level ``L``. After ``dt`` seconds it has refilled to ``L = min(C, L + r * dt)``.
Taking ``n`` succeeds when ``L >= n`` and leaves ``L - n``; otherwise the caller must
wait ``(n - L) / r`` seconds, the ``Retry-After`` (the server rounds it up to whole
seconds). A new bucket is full, so a key may burst ``C`` at once (one minute's worth by
default) and is held to ``r`` on average.

Requests are taken before they run. Generated tokens are only known afterwards, so they
are charged unconditionally (:meth:`TokenBucket.charge`) and the level may go below zero;
the key then waits, at its next request, until its token budget holds at least one token
again (``(1 - L) / r`` seconds).
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator

from .keys import KeyRecord, connect

PRUNE_EVERY_S = 60.0


class TokenBucket:
    """A token bucket refilled at ``rate_per_minute``, holding at most ``capacity``
    (default: ``rate_per_minute``). Not locked: :class:`RateLimiter` serialises access."""

    def __init__(self, rate_per_minute: float, capacity: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if rate_per_minute <= 0:
            raise ValueError(f"rate_per_minute must be positive, got {rate_per_minute}")
        self.rate = rate_per_minute / 60.0
        self.capacity = float(rate_per_minute if capacity is None else capacity)
        if self.capacity < 1:
            raise ValueError(f"capacity must be at least 1, got {self.capacity}")
        self.clock = clock
        self.level = self.capacity
        self.updated = clock()

    def _refill(self) -> None:
        now = self.clock()
        self.level = min(self.capacity, self.level + self.rate * max(0.0, now - self.updated))
        self.updated = now

    def wait_time(self, n: float = 1) -> float:
        """Seconds until ``n`` could be taken (0.0 if now); takes nothing."""
        if n > self.capacity:
            raise ValueError(f"{n} can never be taken from a bucket of capacity "
                             f"{self.capacity}")
        self._refill()
        return max(0.0, (n - self.level) / self.rate)

    def try_take(self, n: float = 1) -> float:
        """Take ``n`` and return 0.0, or take nothing and return the seconds to wait."""
        wait = self.wait_time(n)
        if wait == 0.0:
            self.level -= n
        return wait

    def charge(self, n: float) -> None:
        """Take ``n`` even if that leaves the level below zero (spent tokens, a debt)."""
        self._refill()
        self.level -= n

    def is_full(self) -> bool:
        """Whether the bucket has refilled to capacity, and so is as good as a new one."""
        self._refill()
        return self.level >= self.capacity


class RateLimiter:
    """The buckets of every key, by key id: one for requests (when the key has
    ``requests_per_minute``) and one for generated tokens (``tokens_per_minute``).

    In memory by default: thread-safe, and every ``PRUNE_EVERY_S`` seconds the buckets
    that are full again are dropped (a new one is identical), so memory grows with the keys
    in recent use only. With ``db`` (the server's SQLite file) the buckets live in its
    ``rate_buckets`` table and each check is one ``BEGIN IMMEDIATE`` transaction, so the
    workers of ``lmforge serve --workers N`` and replicas sharing the file share each key's
    limits; time is then the wall clock (``time.time``), which every process reads alike.
    """

    def __init__(self, clock: Callable[[], float] | None = None,
                 db: str | os.PathLike | None = None) -> None:
        self.db = db
        self.clock = clock or (time.time if db is not None else time.monotonic)
        self._requests: dict[str, TokenBucket] = {}
        self._tokens: dict[str, TokenBucket] = {}
        self._lock = threading.Lock()
        self._pruned = self.clock()
        if db is not None:
            with connect(db) as conn:
                conn.execute("CREATE TABLE IF NOT EXISTS rate_buckets (key_id TEXT NOT NULL, "
                             "kind TEXT NOT NULL, level REAL NOT NULL, updated REAL NOT NULL, "
                             "PRIMARY KEY (key_id, kind))")

    def __len__(self) -> int:
        """How many buckets are held."""
        if self.db is not None:
            with connect(self.db) as conn:
                return conn.execute("SELECT COUNT(*) FROM rate_buckets").fetchone()[0]
        with self._lock:
            return len(self._requests) + len(self._tokens)

    def _bucket(self, table: dict[str, TokenBucket], key_id: str, rate: int) -> TokenBucket:
        if key_id not in table:
            table[key_id] = TokenBucket(rate, clock=self.clock)
        return table[key_id]

    def _prune(self) -> None:
        if self.clock() - self._pruned < PRUNE_EVERY_S:
            return
        for table in (self._requests, self._tokens):
            for key_id in [k for k, b in table.items() if b.is_full()]:
                del table[key_id]
        self._pruned = self.clock()

    @contextlib.contextmanager
    def _buckets(self, key: KeyRecord) -> Iterator[tuple[TokenBucket | None,
                                                          TokenBucket | None]]:
        """``(requests, tokens)``: ``key``'s buckets (None where it has no such limit),
        held exclusively inside the block and kept when it ends."""
        limits = (("requests", key.requests_per_minute), ("tokens", key.tokens_per_minute))
        if self.db is None:
            with self._lock:
                self._prune()
                yield tuple(None if rate is None else self._bucket(
                    self._requests if kind == "requests" else self._tokens, key.id, rate)
                    for kind, rate in limits)
            return
        with connect(self.db) as conn:
            conn.execute("BEGIN IMMEDIATE")  # one process at a time reads and writes
            buckets = []
            for kind, rate in limits:
                bucket = None if rate is None else TokenBucket(rate, clock=self.clock)
                row = bucket and conn.execute(
                    "SELECT level, updated FROM rate_buckets WHERE key_id = ? AND kind = ?",
                    (key.id, kind)).fetchone()
                if row is not None and bucket is not None:
                    bucket.level, bucket.updated = min(row[0], bucket.capacity), row[1]
                buckets.append(bucket)
            yield tuple(buckets)
            conn.executemany("INSERT OR REPLACE INTO rate_buckets VALUES (?, ?, ?, ?)",
                             [(key.id, kind, b.level, b.updated)
                              for (kind, _), b in zip(limits, buckets, strict=True) if b])

    def check_request(self, key: KeyRecord) -> float:
        """Admit one request of ``key`` and return 0.0, or return the seconds to wait
        (the longer of the request limit's and the token budget's) and admit nothing."""
        if self.db is not None and key.requests_per_minute is key.tokens_per_minute is None:
            return 0.0  # no limits: no transaction
        with self._buckets(key) as (requests, tokens):
            waits = [0.0] if tokens is None else [tokens.wait_time(1)]
            if requests is None:
                return max(waits)
            if max(waits) > 0.0:
                return max(*waits, requests.wait_time(1))
            return requests.try_take(1)

    def charge_tokens(self, key: KeyRecord, n: int) -> None:
        """Charge ``n`` tokens (prompt plus completion, as the server counts them) to
        ``key``'s token budget; a key without ``tokens_per_minute`` is not limited."""
        if n < 0:
            raise ValueError(f"cannot charge a negative number of tokens ({n})")
        if key.tokens_per_minute is None:
            return
        with self._buckets(key) as (_, tokens):
            tokens.charge(n)
