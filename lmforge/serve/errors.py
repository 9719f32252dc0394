"""Errors in OpenAI's envelope: ``{"error": {"message", "type", "param", "code"}}``.

The official ``openai`` client turns the status into its own exception type
(``BadRequestError`` for 400, ``AuthenticationError`` 401, ``PermissionDeniedError``
403, ``NotFoundError`` 404, ``RateLimitError`` 429, ``InternalServerError`` 5xx) and
reads the message from this envelope; a flat body loses the message. Every error the
server sends has this shape: validation errors name the field in ``param``, unknown
routes are 404, a wrong method 405, a body over the limit 413.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..errors import LmforgeError

log = logging.getLogger("lmforge.serve")

_TYPES = {400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
          404: "not_found_error", 405: "invalid_request_error", 408: "timeout_error",
          413: "invalid_request_error", 429: "rate_limit_error", 503: "service_unavailable"}


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | int | None = None


class ErrorBody(BaseModel):
    """OpenAI's error envelope."""

    error: ErrorDetail


_DESCRIPTIONS = {400: "Invalid request (the field is in error.param)",
                 401: "Missing or invalid API key", 403: "The key's role may not use this route",
                 404: "Unknown model or route", 408: "The request timed out",
                 413: "Request body over the limit", 429: "Rate limit reached (Retry-After)",
                 500: "Internal error", 503: "Overloaded or loading (Retry-After)"}

# every route documents these (OpenAPI ``responses``), so clients and fuzzers know them
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in _DESCRIPTIONS.items()}


class ApiError(Exception):
    """An error answered with ``status`` and OpenAI's envelope (module docstring)."""

    def __init__(self, message: str, status: int = 400, *, param: str | None = None,
                 code: str | int | None = None, headers: dict[str, str] | None = None,
                 type: str | None = None):
        super().__init__(message)
        self.message, self.status, self.param, self.code = message, status, param, code
        self.headers = headers or {}
        self.type = type or _TYPES.get(status, "server_error")

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def _field(loc: tuple) -> str | None:
    """``("body", "messages", 0, "role")`` -> ``"messages[0].role"``."""
    parts = [p for p in loc if p not in ("body", "query", "path", "header")]
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


def validation_error(exc: RequestValidationError) -> ApiError:
    """The first problem of a request body, as a 400 naming the field."""
    errors = exc.errors()
    if not errors:
        return ApiError("invalid request body")
    e = errors[0]
    param = _field(tuple(e.get("loc", ())))
    if e.get("type") == "json_invalid":
        return ApiError(f"the body is not valid JSON: {e.get('msg', '')}".rstrip(": "))
    if e.get("type") == "missing":
        return ApiError(f"{param} is required", param=param)
    msg = str(e.get("msg", "invalid value")).removeprefix("Value error, ")
    return ApiError(f"{param}: {msg}" if param else msg, param=param)


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` in OpenAI's envelope."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        cause = next((c for c in _causes(exc) if isinstance(c, ApiError)), None)
        return (cause or validation_error(exc)).response()

    @app.exception_handler(LmforgeError)
    async def _user(_: Request, exc: LmforgeError):
        return ApiError(str(exc)).response()

    @app.exception_handler(Exception)
    async def _bug(_: Request, exc: Exception):  # a bug: still OpenAI's envelope, logged
        log.exception("unhandled error", exc_info=exc)
        return ApiError(f"internal error: {type(exc).__name__}", 500,
                        type="server_error").response()

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        message = {404: "no such route", 405: "method not allowed on this route"}.get(
            exc.status_code, str(exc.detail))
        return ApiError(message, exc.status_code,
                        headers=dict(getattr(exc, "headers", None) or {})).response()


def _causes(exc: RequestValidationError):
    for e in exc.errors():
        ctx = e.get("ctx") or {}
        if isinstance(ctx.get("error"), ApiError):
            yield ctx["error"]
