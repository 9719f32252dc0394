"""Admin routes (the ``admin`` role): models and their versions, API keys and the audit
log over HTTP.

- ``GET /admin/models`` lists what is served, with the registry's versions, and
  ``load_error``: the model that failed to load at startup and why (else null);
  ``POST /admin/models`` loads a model (a registry version, or a folder) and switches
  its name's traffic to it with no failed request; a folder given by ``path`` must lie,
  once resolved (``..`` and symbolic links followed), inside one of the server's
  ``--model-root`` folders or its registry, else 403 (without ``--model-root``, any
  folder the process can read); ``DELETE /admin/models/NAME`` stops
  serving it (:meth:`lmforge.serve.app.Server.switch`).
- The key and audit routes do what ``lmforge keys`` and ``lmforge audit`` do.

The audit row of each change says what changed (``detail``), as the CLI's rows do. The
routes exist only on a server with keys (an open server has no one to authorise them).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ..errors import LmforgeError
from .errors import ApiError
from .keys import MAX_LIMIT

router = APIRouter(prefix="/admin", tags=["admin"])


class ModelLoad(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=128)
    version: str | None = Field(None, description="A registry version (default: the "
                                                  "latest).")
    path: str | None = Field(None, description="A model folder instead of the registry "
                                               "(inside a --model-root when the server "
                                               "has them).")


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["admin", "user", "reader"]
    name: str = Field(min_length=1, max_length=100)
    requests_per_minute: int | None = Field(None, ge=1, le=MAX_LIMIT)
    tokens_per_minute: int | None = Field(None, ge=1, le=MAX_LIMIT)


def _access(request: Request):
    access = request.app.state.server.access
    if access.keys is None:
        raise ApiError("this server has no API keys; admin routes need them", 404)
    return access


def _key_json(record) -> dict:
    return {"id": record.id, "name": record.name, "role": record.role,
            "prefix": record.prefix, "created": record.created, "revoked": record.revoked,
            "requests_per_minute": record.requests_per_minute,
            "tokens_per_minute": record.tokens_per_minute}


@router.get("/keys", summary="The API keys (never their secrets)")
async def list_keys(request: Request, all: bool = False):
    access = _access(request)
    records = await asyncio.to_thread(access.keys.list, all)
    return {"object": "list", "data": [_key_json(r) for r in records]}


@router.post("/keys", summary="Create a key; its secret is in this response only")
async def create_key(body: KeyCreate, request: Request):
    access = _access(request)
    try:
        record, secret = await asyncio.to_thread(
            access.keys.create, body.role, body.name, body.requests_per_minute,
            body.tokens_per_minute)
    except LmforgeError as e:
        raise ApiError(str(e), param="name") from None
    request.state.detail = f"created {record.id} ({record.role})"
    return {**_key_json(record), "secret": secret}


@router.delete("/keys/{key}", summary="Revoke a key by id or name")
async def revoke_key(key: str, request: Request):
    access = _access(request)
    try:
        record = await asyncio.to_thread(access.keys.revoke, key)
    except LmforgeError as e:
        status = 404 if "no key" in str(e) else 400
        raise ApiError(str(e), status) from None
    request.state.detail = f"revoked {record.id}"
    return _key_json(record)


@router.get("/audit", summary="Audit rows, newest last")
async def audit(request: Request, since: str | None = None,
                limit: int = Query(100, ge=1, le=10_000)):
    from .audit import parse_since

    access = _access(request)
    try:
        t = parse_since(since) if since else None
    except LmforgeError as e:
        raise ApiError(str(e), param="since") from None
    rows = await asyncio.to_thread(access.audit.since, t) if t is not None else \
        await asyncio.to_thread(access.audit.tail, limit)
    return {"object": "list", "data": rows[-limit:]}


def _allowed_folder(path: str, options) -> Path:
    """``path`` resolved (``..`` and symbolic links followed); 403 when the server has
    model roots and it lies in none of them nor in the registry. The message names the
    path as given, never where it resolved to."""
    folder = Path(path).resolve()
    if not options.model_roots:
        return folder
    roots = [*options.model_roots, *([options.registry] if options.registry else [])]
    if not any(folder.is_relative_to(Path(r).resolve()) for r in roots):
        raise ApiError(f"{path} is outside the folders this server loads models from "
                       "(--model-root)", 403, param="path")
    return folder


def _model_json(served, registry) -> dict:
    from .registry import versions

    out = {"name": served.name, "version": served.version, "path": served.path,
           "kind": served.kind}
    if registry is not None:
        try:
            out["versions"] = versions(registry, served.name)
        except LmforgeError:
            out["versions"] = []
    return out


@router.get("/models", summary="The served models and their registry versions")
async def list_served(request: Request):
    _access(request)
    server = request.app.state.server
    return {"object": "list", "data": [_model_json(m, server.options.registry)
                                       for m in server.models.values()],
            "load_error": None if server.load_error is None else
            {"name": server.failed, "error": server.load_error}}


@router.post("/models", summary="Load a model version and switch its traffic to it")
async def load_served(body: ModelLoad, request: Request):
    from .models import ModelSpec
    from .registry import resolve

    _access(request)
    server = request.app.state.server
    if body.path is not None:
        if body.version is None:
            raise ApiError("give the version of a model loaded by path", param="version")
        folder = _allowed_folder(body.path, server.options)
        if not folder.exists():
            raise ApiError(f"{body.path} does not exist", param="path")
        spec = ModelSpec(body.name, str(folder), body.version)
    elif server.options.registry is None:
        raise ApiError("this server has no registry (--registry); give a path",
                       param="path")
    else:
        try:
            spec = resolve(server.options.registry, body.name, body.version)
        except LmforgeError as e:
            raise ApiError(str(e), 404, param="version") from None
    try:
        served = await server.switch(spec)
    except LmforgeError as e:
        raise ApiError(f"loading {spec.name} {spec.version} failed: {e}") from None
    request.state.detail = f"loaded {spec.name} version {spec.version}"
    return _model_json(served, server.options.registry)


@router.delete("/models/{name}", summary="Stop serving a model")
async def unload_served(name: str, request: Request):
    _access(request)
    served = await request.app.state.server.unload(name)
    request.state.detail = f"unloaded {served.name} version {served.version}"
    return {"name": served.name, "version": served.version, "unloaded": True}
