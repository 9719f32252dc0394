"""The FastAPI application: the models it serves, health and metrics, limits, errors,
and access control (:mod:`lmforge.serve.access`: keys, roles, rate limits, audit).

:func:`build_app` returns the app; the models load on a background thread when the app
starts, so ``GET /health`` answers at once (the process is alive) while ``GET /ready``
answers 503 until every model is loaded (200 after), like llama.cpp's server. ``/ready``
is public, so its body names models by their served name and state only; why a model
failed to load (which can name its folder) is in the log and ``GET /admin/models``. A
request for a model still loading is a 503 with ``Retry-After``; an unknown model a 404.

Limits: a request body over ``max_body_bytes`` is a 413 (checked on ``Content-Length``
and while reading a chunked body); past the engine's ``max_waiting`` queued sequences a
503 with ``Retry-After``; a sequence running longer than ``request_timeout`` seconds
ends with a 408 (or an error event in a stream).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from .. import __version__
from ..errors import ConfigError
from ..privacy.encrypted_io import using_key
from ..privacy.keys import resolve_key
from . import admin, errors, task_routes, ui
from .access import Access, AccessMiddleware
from .audit import AuditLog
from .errors import ApiError
from .keys import KeyStore
from .metrics import ServerMetrics
from .models import ModelSpec, ServedModel, load_model
from .ratelimit import RateLimiter
from .response_cache import ResponseCache
from .routes import router
from .tool_parsers import tool_parser

log = logging.getLogger("lmforge.serve")


@dataclass
class ServerOptions:
    """What ``lmforge serve`` configures (the engine's options are passed through).
    ``db``: the keys and audit database; with active keys in it, every route but the
    public ones needs a key (:mod:`lmforge.serve.access`). ``response_cache_entries``
    > 0 turns the response cache on (:mod:`lmforge.serve.response_cache`). ``registry``
    is the folder admins load other versions from (:mod:`lmforge.serve.registry`).
    ``model_roots``: the folders admins may load a model folder from by ``path`` (with
    the registry); empty: any folder the process can read (:mod:`lmforge.serve.admin`).
    ``key`` says where the key of encrypted model folders comes from (``key_file``,
    ``key_env`` or ``passphrase_env``, as :func:`lmforge.privacy.keys.resolve_key` takes
    them), never the key itself, so that ``--workers N`` can hand it to each worker; the
    folders are decrypted in memory (:mod:`lmforge.privacy.encrypted_io`).
    ``log_content``: ``off`` (prompts and outputs are never logged) or ``redacted`` (the
    request log line carries them with personal data masked, :mod:`lmforge.privacy.pii`;
    the audit table never does). ``tool_call_parser``: the format of function calls
    (:data:`lmforge.serve.tool_parsers.PARSERS`)."""

    engine: dict[str, Any] = field(default_factory=dict)
    max_body_bytes: int = 4 * 1024 * 1024
    request_timeout: float | None = 600.0
    db: Path | None = None
    registry: Path | None = None
    model_roots: list[Path] = field(default_factory=list)
    response_cache_entries: int = 0
    response_cache_ttl: float = 300.0
    key: dict[str, str | None] | None = None
    log_content: str = "off"
    tool_call_parser: str = "hermes"


ENV_CONFIG = "LMFORGE_SERVE_CONFIG"
LOG_CONTENT = ("off", "redacted")


def config_json(specs: list[ModelSpec], options: ServerOptions) -> str:
    """What ``lmforge serve --workers N`` hands each worker process (:func:`app_from_env`)."""
    opts = dataclasses.asdict(options)
    for k in ("db", "registry"):
        opts[k] = None if opts[k] is None else str(opts[k])
    opts["model_roots"] = [str(p) for p in opts["model_roots"]]
    return json.dumps({"specs": [dataclasses.asdict(s) for s in specs], "options": opts})


def app_from_env() -> FastAPI:
    """The app of one worker of ``lmforge serve --workers N``: built from the JSON that
    the parent process put in ``$LMFORGE_SERVE_CONFIG`` (:func:`config_json`). Each
    worker loads its own copy of the models."""
    cfg = json.loads(os.environ[ENV_CONFIG])
    opts = cfg["options"]
    for k in ("db", "registry"):
        opts[k] = None if opts[k] is None else Path(opts[k])
    opts["model_roots"] = [Path(p) for p in opts["model_roots"]]
    return build_app([ModelSpec(**s) for s in cfg["specs"]], ServerOptions(**opts))


def make_access(db: Path | None, log_content: str = "off") -> Access:
    """Keys, rate limits and audit from ``db`` when it holds active keys, else an open
    server's (no checks); with ``log_content="redacted"``, the PII redactor of the log."""
    if log_content not in LOG_CONTENT:
        raise ConfigError(f"log_content must be one of {', '.join(LOG_CONTENT)}, got "
                          f"{log_content!r}")
    redact = None
    if log_content == "redacted":
        from ..privacy.pii.redact_files import make_redactor

        redact = make_redactor()
        # load the recognizers' tables now (jieba, the name network's statistics: seconds
        # on a cold start), not while the first logged request waits for its line
        redact("warm-up: 张三 John Smith 13800138000")
    if db is None or not Path(db).is_file():
        return Access(redact=redact)
    keys = KeyStore(db)
    if keys.count_active() == 0:
        return Access(redact=redact)
    return Access(keys, RateLimiter(db=db), AuditLog(db), redact=redact)


class Server:
    """The state shared by the routes: the models and the metrics."""

    def __init__(self, specs: list[ModelSpec], options: ServerOptions):
        self.specs, self.options = specs, options
        self.models: dict[str, ServedModel] = {}
        self.load_error: str | None = None
        self.failed: str | None = None
        self.loaded = threading.Event()
        self.request_timeout = options.request_timeout
        self.metrics = ServerMetrics(self._engines)
        self.access = make_access(options.db, options.log_content)
        self.tool_parser = tool_parser(options.tool_call_parser)
        self.response_cache = (
            ResponseCache(options.response_cache_entries, options.response_cache_ttl)
            if options.response_cache_entries > 0 else None)
        self._encode_lock = threading.Lock()
        self._retiring: set[asyncio.Task] = set()
        self.key = resolve_key(**options.key) if options.key else None

    def _engines(self):
        return [(m.name, m.version, m.engine) for m in self.models.values()
                if m.engine is not None]

    def load(self) -> None:
        """Load every model (on a background thread at startup), up to the first that
        fails: its name is :attr:`failed`, the error (which can name its path) goes to
        the log and :attr:`load_error`, which only admins see (``GET /admin/models``)."""
        name = None
        try:
            for spec in self.specs:
                name = spec.name
                self.models[name] = self._load(spec)
        except Exception as e:  # the process stays up; /ready says which model failed
            self.failed, self.load_error = name, f"{type(e).__name__}: {e}"
            log.error("loading model %s failed: %s", self.failed, self.load_error)
        finally:
            self.loaded.set()

    def readiness(self) -> tuple[int, dict]:
        """``/ready``'s status and body: the served names and their state (ready,
        loading, failed), never paths or error text (the route is public)."""
        if self.ready:
            return 200, {"status": "ready", "models": sorted(self.models)}
        if self.load_error is not None:
            return 503, {"status": "failed", "failed": [self.failed],
                         "error": f"model {self.failed} failed to load; the server log "
                                  "says why"}
        loading = [s.name for s in self.specs if s.name not in self.models]
        return 503, {"status": "loading", "loading": loading}

    def _load(self, spec: ModelSpec) -> ServedModel:
        with using_key(self.key):  # the loading thread's own context
            served = load_model(spec, self.options.engine)
        served.version = spec.version
        log.info("loaded model %s version %s from %s", spec.name, spec.version, spec.path)
        return served

    async def switch(self, spec: ModelSpec) -> ServedModel:
        """Load ``spec`` and send its name's traffic to it at once; the version it
        replaces finishes its running and queued requests first, then is unloaded. A
        request picks its model and submits to its engine without yielding to the event
        loop, so no request can reach an engine that is being retired."""
        served = await asyncio.to_thread(self._load, spec)
        old = self.models.get(spec.name)
        self.models[spec.name] = served
        self.specs = [s for s in self.specs if s.name != spec.name] + [spec]
        if old is not None:
            self._retiring.add(asyncio.create_task(self._retire(old)))
        return served

    async def unload(self, name: str) -> ServedModel:
        """Stop serving ``name`` (its running requests finish first)."""
        served = self.model(name)
        del self.models[name]
        self.specs = [s for s in self.specs if s.name != name]
        self._retiring.add(asyncio.create_task(self._retire(served)))
        return served

    async def _retire(self, served: ServedModel) -> None:
        engine = served.engine
        deadline = time.monotonic() + (self.request_timeout or 600.0)
        while engine is not None and (engine.num_running or engine.num_waiting) \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await asyncio.to_thread(served.close)
        log.info("unloaded model %s version %s", served.name, served.version)
        self._retiring.discard(asyncio.current_task())

    def close(self) -> None:
        for m in self.models.values():
            m.close()

    @property
    def ready(self) -> bool:
        return self.loaded.is_set() and self.load_error is None

    def model(self, name: str) -> ServedModel:
        """The served model ``name``: 404 if unknown, 503 while loading."""
        served = self.models.get(name)
        if served is not None:
            return served
        if any(s.name == name for s in self.specs) and not self.loaded.is_set():
            raise ApiError(f"model {name} is still loading", 503,
                           headers={"Retry-After": "5"})
        names = ", ".join(s.name for s in self.specs)
        raise ApiError(f"the model {name!r} does not exist; served: {names}", 404,
                       param="model", code="model_not_found")

    def generator(self, name: str) -> ServedModel:
        served = self.model(name)
        if served.engine is None:
            raise ApiError(f"model {name} serves {task_routes.route_of(served)}; this route "
                           "needs a language model", param="model")
        return served

    def encode(self, served: ServedModel, texts: list[str]):
        with self._encode_lock:  # one encoder pass at a time (they use every core)
            return served.encoder.encode(texts)


class _BodyLimit:
    """ASGI middleware: 413 for a body over ``limit`` bytes (module docstring)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        too_big = ApiError(f"the request body is over the limit of {self.limit} bytes", 413)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await too_big.response()(scope, receive, send)
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooBig
            return message

        try:
            await self.app(scope, limited, send)
        except _TooBig:
            await too_big.response()(scope, receive, send)


class _TooBig(Exception):
    pass


def build_app(specs: list[ModelSpec], options: ServerOptions | None = None) -> FastAPI:
    """The server for ``specs`` (module docstring)."""
    server = Server(specs, options or ServerOptions())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if server.access.keys is not None and not server.options.model_roots:
            log.warning("admin loads are unrestricted: POST /admin/models may load any "
                        "folder this process can read (--model-root limits them)")
        threading.Thread(target=server.load, name="lmforge-load", daemon=True).start()
        try:
            yield
        finally:
            server.close()

    app = FastAPI(title="lmforge", version=__version__, lifespan=lifespan,
                  description="An OpenAI-compatible API over lmforge models.",
                  responses=errors.ERROR_RESPONSES)
    app.state.server = server
    errors.install(app)
    app.include_router(router)
    app.include_router(task_routes.router)
    app.include_router(admin.router)
    ui.install(app)

    @app.get("/health", summary="The process is alive")
    async def health():
        return {"status": "ok"}

    @app.get("/ready", summary="Every model is loaded (503 until then)")
    async def ready():
        status, body = server.readiness()
        headers = {"Retry-After": "5"} if body["status"] == "loading" else None
        return JSONResponse(body, status, headers=headers)

    @app.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
    async def metrics():
        return Response(server.metrics.scrape(),
                        media_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_middleware(_BodyLimit, limit=server.options.max_body_bytes)
    app.add_middleware(AccessMiddleware, access=server.access)  # outermost: sees all
    return app
