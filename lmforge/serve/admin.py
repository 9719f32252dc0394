"""Admin routes (the ``admin`` role): API keys and the audit log over HTTP.

The same operations as ``lmforge keys`` and ``lmforge audit``; the audit row of a key
change says what changed (``detail``), as the CLI's rows do. They exist only on a server with
keys (an open server has no one to authorise them).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from ..errors import LmforgeError
from .errors import ApiError

router = APIRouter(prefix="/admin", tags=["admin"])


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["admin", "user", "reader"]
    name: str = Field(min_length=1, max_length=100)
    requests_per_minute: int | None = Field(None, ge=1)
    tokens_per_minute: int | None = Field(None, ge=1)


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
