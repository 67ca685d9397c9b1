"""RFC 9457 problem details: the one place an error becomes a response.

Used by the exception handlers (errors raised inside routes), by the ASGI middlewares that answer
before routing (the Bearer check, the body limit, the 500 for an unhandled error) and by the HTTP
server's own refusals (service.refusals), so every error body has the same members.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, cast

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Message, Scope, Send

from . import errors
from .db.pool import UNAVAILABLE_ERRORS

log = logging.getLogger("service")

PROBLEM_MEDIA_TYPE = "application/problem+json"


def problem_body(status: int, title: str, detail: str, code: str, fields: list[dict[str, Any]] | None = None) -> bytes:
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status, "detail": detail, "code": code}
    if fields:
        body["errors"] = fields
    return orjson.dumps(body)


def problem_response(exc: errors.ServiceError, headers: Mapping[str, str] | None = None) -> Response:
    """The problem for `exc`; `headers` override the error's own (e.g. a challenge with more to say)."""
    fields = exc.errors if isinstance(exc, errors.InvalidRequest) else None
    body = problem_body(exc.status, exc.title, exc.detail, exc.code, fields)
    merged = {**exc.headers, **headers} if headers else exc.headers
    return Response(body, status_code=exc.status, media_type=PROBLEM_MEDIA_TYPE, headers=merged)


async def render_error(
    exc: errors.ServiceError, scope: Scope, send: Send, headers: Mapping[str, str] | None = None
) -> None:
    """Answer `exc` from ASGI middleware, outside any route."""

    async def no_body() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    await problem_response(exc, headers)(scope, no_body, send)


def _validation_problem(exc: RequestValidationError) -> errors.InvalidRequest:
    fields: list[dict[str, object]] = []
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part not in ("body", "query", "path", "header")]
        fields.append({"field": ".".join(location) or "request", "message": error.get("msg", "invalid")})
    return errors.InvalidRequest("; ".join(f"{f['field']}: {f['message']}" for f in fields), fields)


def _http_problem(exc: StarletteHTTPException) -> errors.ServiceError:
    if exc.status_code == 404:
        return errors.NotFound("no such route")
    if exc.status_code == 405:
        return errors.MethodNotAllowed("method not allowed on this route", headers=dict(exc.headers or {}))
    return errors.HTTPError(exc.status_code, str(exc.detail))


def install_error_handlers(app: FastAPI) -> None:
    # Starlette types every handler as taking Exception; each is registered for one class below.
    async def on_service_error(_: Request, exc: Exception) -> Response:
        return problem_response(cast(errors.ServiceError, exc))

    async def on_validation_error(_: Request, exc: Exception) -> Response:
        return problem_response(_validation_problem(cast(RequestValidationError, exc)))

    async def on_http_error(_: Request, exc: Exception) -> Response:
        return problem_response(_http_problem(cast(StarletteHTTPException, exc)))

    async def on_database_unavailable(_: Request, exc: Exception) -> Response:
        log.warning("database unavailable: %s", type(exc).__name__)
        return problem_response(errors.DatabaseUnavailable())

    async def on_client_gone(_: Request, exc: Exception) -> Response:
        log.info("client disconnected before its request body was read")
        return Response(status_code=400)  # nobody is listening any more

    app.add_exception_handler(errors.ServiceError, on_service_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(ClientDisconnect, on_client_gone)
    for exc_type in UNAVAILABLE_ERRORS:
        app.add_exception_handler(exc_type, on_database_unavailable)
