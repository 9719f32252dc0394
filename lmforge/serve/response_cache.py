"""The response cache: deterministic requests answered again without generating.

A request is deterministic when it decodes greedily (``temperature`` 0) or fixes its
``seed``: the engine then gives the same tokens every time (:mod:`lmforge.serve.engine`).
Its key is the route, the model's name and version, the id of the caller's API key
(None on a server without keys) and the request body in canonical JSON without the fields
that do not change the output (``stream``, ``stream_options``, ``user``): each key sees
only the responses its own requests stored, so a hit (or its latency) tells a client
nothing about what other keys asked. A hit returns the stored response with a new ``id`` and ``created`` time and
the header ``X-Cache: hit``. Streams are cached too: a stream whose every choice
finished stores the whole response it streamed, and a streamed request that hits gets the
stored response replayed as a stream (each choice's whole text, log-probabilities and
tool calls in one chunk, then the usage chunk when asked).

Entries live at most ``ttl`` seconds and at most ``max_entries`` are kept, the least
recently used dropped first (LRU). ``hits`` and ``lookups`` count the cache's use
(``lmforge:response_cache_hits_total`` in the metrics).
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from ..generate.config import GREEDY_BELOW

IGNORED = ("stream", "stream_options", "user")


def is_deterministic(body: Any) -> bool:
    return body.temperature < GREEDY_BELOW or body.seed is not None


def cache_key(route: str, name: str, version: str, body: Any,
              owner: str | None = None) -> str:
    """The entry of ``body`` (module docstring); ``owner``: the caller's key id."""
    fields = body.model_dump(exclude=set(IGNORED))
    return json.dumps([route, name, version, owner, fields], sort_keys=True,
                      ensure_ascii=False)


class ResponseCache:
    """An LRU cache of response bodies with a time to live (module docstring)."""

    def __init__(self, max_entries: int, ttl: float,
                 clock: Callable[[], float] = time.monotonic):
        self.max_entries, self.ttl, self.clock = max_entries, ttl, clock
        self._entries: OrderedDict[str, tuple[float, dict]] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.lookups = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> dict | None:
        with self._lock:
            self.lookups += 1
            entry = self._entries.get(key)
            if entry is None:
                return None
            stored, body = entry
            if self.clock() - stored > self.ttl:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return body

    def put(self, key: str, body: dict) -> None:
        with self._lock:
            self._entries[key] = (self.clock(), body)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
