"""One HTTP request's sequences on the engine, seen from the event loop.

The engine thread delivers :class:`~lmforge.serve.engine.Event` s through a callback;
:class:`Job` moves them onto the asyncio loop (``call_soon_threadsafe``) into one queue,
tagged with the choice index, and records the latency metrics as the client sees them.
A job whose client disconnects cancels its sequences, which free their slots at the
engine's next iteration.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from ..errors import LmforgeError
from ..generate.config import GenerationConfig
from .engine import EngineFull, Event, Request
from .errors import ApiError

DISCONNECT_POLL_S = 0.5


def _param(message: str) -> str | None:
    """The request field an engine error is about (OpenAI's ``param``), if one is named."""
    if "max_new_tokens" in message:
        return "max_tokens"
    return "response_format" if "json_schema" in message else None


class Job:
    """The engine requests of one HTTP request (module docstring)."""

    def __init__(self, served: Any, metrics: Any, timeout: float | None):
        self.served, self.metrics, self.timeout = served, metrics, timeout
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[int, Event]] = asyncio.Queue()
        self.requests: list[Request] = []
        self.arrival = time.monotonic()
        self._last: dict[int, float] = {}
        self._labels = (served.name, served.version)

    def submit(self, prompt: list[int], config: GenerationConfig, stop_ids: frozenset[int],
               logprobs: int | None) -> None:
        """Queue one sequence; its events arrive tagged with its index."""
        index = len(self.requests)

        def emit(event: Event) -> None:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, (index, event))

        req = Request(prompt, config, emit, stop_ids, logprobs, self.timeout)
        try:
            self.served.engine.submit(req)
        except EngineFull as e:
            self.cancel()
            raise ApiError(str(e), 503, headers={"Retry-After": "1"}) from None
        except LmforgeError as e:
            self.cancel()
            raise ApiError(str(e), param=_param(str(e))) from None
        self.requests.append(req)

    def cancel(self) -> None:
        for req in self.requests:
            req.cancel()

    async def events(self, http: Any = None) -> AsyncIterator[tuple[int, Event]]:
        """Every event of every sequence until all have finished. With ``http`` (the
        Starlette request) a disconnected client cancels the job."""
        open_ = len(self.requests)
        try:
            while open_:
                try:
                    index, event = await asyncio.wait_for(self.queue.get(), DISCONNECT_POLL_S)
                except TimeoutError:
                    if http is not None and await http.is_disconnected():
                        self.cancel()
                        return
                    continue
                self._observe(index, event)
                if event.finish_reason is not None:
                    open_ -= 1
                yield index, event
        finally:
            if open_:
                self.cancel()

    def _observe(self, index: int, event: Event) -> None:
        m, now = self.metrics, time.monotonic()
        if m is None:
            return
        for _ in event.tokens:
            last = self._last.get(index)
            if last is None:
                m.ttft.labels(*self._labels).observe(now - self.arrival)
            else:
                m.itl.labels(*self._labels).observe(now - last)
            self._last[index] = now
        if event.tokens:
            m.generation_tokens.labels(*self._labels).inc(len(event.tokens))
        if event.finish_reason is not None:
            m.e2e.labels(*self._labels).observe(now - self.arrival)
            m.success.labels(*self._labels, event.finish_reason).inc()
