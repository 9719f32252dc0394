"""Access and accounting for every HTTP request: request ids, API keys and roles, rate
limits, the audit log and the structured request log.

One ASGI middleware, outermost, so it sees every request and its final status:

- **Request id.** Every response carries ``X-Request-Id``: the client's own (when it is
  1-64 characters of letters, digits, ``-``, ``_``, ``.``), else a new one.
- **Keys** (when the server has a key store with active keys). ``/health``, ``/ready``,
  the OpenAPI schema, the docs and the web UI's files (``/`` and ``/ui/``) are public; every other route needs
  ``Authorization: Bearer <key>``, 401 without a valid one. The key's role must grant
  the route's scope (:func:`~lmforge.serve.keys.allowed`), else 403: ``inference`` for
  generation, embeddings and tokenization, ``models`` for ``GET /v1/models``,
  ``metrics`` for ``/metrics``, ``admin`` for ``/admin/...``.
- **Rate limits.** A key's request and token budgets (:mod:`lmforge.serve.ratelimit`):
  past them a 429 with ``Retry-After`` (whole seconds, rounded up). The tokens a request
  used (prompt and completion) are charged when it ends.
- **Audit.** Every authenticated request is appended to the audit table (time, request
  id, key id (never the key), role, route, method, model and version, status, latency,
  tokens), off the event loop, before the last byte of the response is sent: a client
  that has its answer can read its row.
- **Log.** One JSON line per request on the ``lmforge.serve.access`` logger, with the
  same fields. Prompts and outputs are not logged, unless the server runs with
  ``log_content="redacted"``: then the line has ``content: {"prompts", "outputs"}`` with
  personal data masked (``[PHONE]``, ``[PERSON]``, ... by :mod:`lmforge.privacy.pii`).
  The audit table never holds content.

The middleware puts the caller's key id in ``request.state.key_id`` (the response cache
keeps each key's entries apart). Routes report what they used in ``request.state.usage``
(model, version, prompt and completion tokens) and, for the content log, the texts in
``request.state.content``, and admin routes what they changed in
``request.state.detail``; a stream reports its usage when it ends, which is when this
middleware's call returns.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
import uuid
from typing import Any

from .errors import ApiError
from .keys import KeyRecord, allowed

log = logging.getLogger("lmforge.serve.access")

PUBLIC = ("/health", "/ready", "/openapi.json", "/docs", "/redoc", "/ui/")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


def scope_of(method: str, path: str) -> str:
    """The scope a route needs (module docstring)."""
    if path.startswith("/admin"):
        return "admin"
    if path == "/metrics":
        return "metrics"
    if path.startswith("/v1/models") and method == "GET":
        return "models"
    return "inference"


def _redacted(content: dict[str, list[str]], redact: Any) -> dict[str, list[str]]:
    return {k: [redact(t) for t in texts] for k, texts in content.items()}


class Access:
    """What the middleware checks against: keys (None = open server), limits, audit."""

    def __init__(self, keys: Any = None, limiter: Any = None, audit: Any = None,
                 redact: Any = None):
        self.keys, self.limiter, self.audit = keys, limiter, audit
        self.redact = redact  # text -> text with PII masked: logs prompts and outputs

    def authenticate(self, header: str | None, method: str, path: str) -> KeyRecord | None:
        """The caller's key, or None on an open server; :class:`ApiError` 401/403/429."""
        if self.keys is None:
            return None
        scheme, _, secret = (header or "").partition(" ")
        key = self.keys.verify(secret.strip()) if scheme.lower() == "bearer" else None
        if key is None:
            raise ApiError("invalid or missing API key (send Authorization: Bearer <key>)",
                           401, code="invalid_api_key",
                           headers={"WWW-Authenticate": "Bearer"})
        needed = scope_of(method, path)
        if not allowed(key.role, needed):
            raise ApiError(f"the {key.role} role may not use {path} (needs {needed})", 403)
        if self.limiter is not None:
            wait = self.limiter.check_request(key)
            if wait > 0:
                raise ApiError(f"rate limit of key {key.name} reached; retry in "
                               f"{wait:.1f} s", 429, code="rate_limit_exceeded",
                               headers={"Retry-After": str(math.ceil(wait))})
        return key


class AccessMiddleware:
    """The ASGI middleware of the module docstring."""

    def __init__(self, app, access: Access):
        self.app, self.access = app, access

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.monotonic()
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers") or []}
        rid = headers.get("x-request-id", "")
        rid = rid if _REQUEST_ID.match(rid) else uuid.uuid4().hex
        method, path = scope["method"], scope["path"]
        status = {"code": 500}
        key = None
        done = False

        async def account() -> None:
            nonlocal done
            if not done:
                done = True
                await self._account(scope, rid, key, method, path, status["code"],
                                    time.monotonic() - start)

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message = {**message, "headers": [*message.get("headers", []),
                                                  (b"x-request-id", rid.encode())]}
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                await account()  # before the client sees the end: the row exists by then
            await send(message)

        try:
            if not (path == "/" or path.startswith(PUBLIC)):  # "/": the UI's page
                key = self.access.authenticate(headers.get("authorization"), method, path)
                if key is not None:  # the routes' request.state.key_id
                    scope.setdefault("state", {})["key_id"] = key.id
        except ApiError as e:
            await e.response()(scope, receive, send_with_id)
        else:
            await self.app(scope, receive, send_with_id)
        finally:
            await account()  # a client that went away mid-stream

    async def _account(self, scope, rid: str, key: KeyRecord | None, method: str, path: str,
                       status: int, latency: float) -> None:
        state = scope.get("state") or {}
        usage = state.get("usage") or {}
        row = {"request_id": rid, "key_id": key.id if key else None,
               "role": key.role if key else None, "route": path, "method": method,
               "model": usage.get("model"), "model_version": usage.get("version"),
               "status": status, "latency_s": round(latency, 6),
               "prompt_tokens": usage.get("prompt_tokens"),
               "completion_tokens": usage.get("completion_tokens"),
               "detail": state.get("detail")}
        line = {"time": round(time.time(), 3), **row}
        content = state.get("content")
        if self.access.redact is not None and content:
            line["content"] = await asyncio.to_thread(_redacted, content, self.access.redact)
        log.info(json.dumps(line, ensure_ascii=False))
        if key is None:
            return
        if self.access.limiter is not None:
            used = (usage.get("prompt_tokens") or 0) + (usage.get("completion_tokens") or 0)
            self.access.limiter.charge_tokens(key, used)
        if self.access.audit is not None:
            await asyncio.to_thread(self.access.audit.record, **row)
