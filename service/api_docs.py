"""OpenAPI descriptions of what the code really answers: problem responses and headers."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from .tasks.schemas import Problem

_PROBLEM_SCHEMA = Problem.model_json_schema()

# status -> (description, code of the example, detail of the example, headers)
_PROBLEMS: dict[int, tuple[str, str, str, dict[str, str]]] = {
    401: (
        "Missing, malformed, expired or untrusted Bearer token",
        "invalid_token",
        "token has expired",
        {"WWW-Authenticate": 'Bearer error="invalid_token", error_description="…" (RFC 6750)'},
    ),
    403: (
        "The token's subject is not the user named in the path",
        "forbidden",
        "the token's subject does not match the user in the path",
        {},
    ),
    404: ("No such task, or it belongs to someone else", "task_not_found", "no such task", {}),
    412: (
        "If-Match no longer matches the task's ETag",
        "precondition_failed",
        "the task changed since that ETag; GET it again",
        {},
    ),
    413: ("Body larger than MAX_BODY_BYTES", "payload_too_large", "the body exceeds 16384 bytes", {}),
    415: ("Body is not application/json", "unsupported_media_type", "the body must be application/json", {}),
    422: (
        "Invalid body, query, header or id; `errors` names each field",
        "validation_failed",
        "title: String should have at most 200 characters",
        {},
    ),
    503: (
        "Signing keys or the database are unavailable; retry later",
        "keys_unavailable",
        "signing keys cannot be fetched right now; retry later",  # public answers name no internal host
        {"Retry-After": "Seconds to wait before retrying"},
    ),
}
_TITLES = {
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    412: "Precondition Failed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
    422: "Unprocessable Content",
    503: "Service Unavailable",
}


def _header_docs(headers: dict[str, str]) -> dict[str, Any]:
    return {name: {"description": text, "schema": {"type": "string"}} for name, text in headers.items()}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for the given error statuses, each an RFC 9457 problem with an example."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, code, detail, headers = _PROBLEMS[status]
        example = {"type": "about:blank", "title": _TITLES[status], "status": status, "detail": detail, "code": code}
        responses[status] = {
            "description": description,
            "content": {"application/problem+json": {"schema": _PROBLEM_SCHEMA, "example": example}},
            "headers": _header_docs({"X-Request-ID": "The request's id (echoed or generated)", **headers}),
        }
    return responses


def success_headers(**headers: str) -> dict[str, Any]:
    """Headers of a success response, for `responses={status: {...}}`."""
    return {"headers": _header_docs({"X-Request-ID": "The request's id (echoed or generated)", **headers})}


BEARER_SCHEME = {"type": "http", "scheme": "bearer", "description": "A JWT from Better Auth's /api/auth/token"}


def document_bearer_auth(app: FastAPI, protected_prefix: str) -> None:
    """Mark every operation under `protected_prefix` as needing the Bearer scheme in OpenAPI.

    BearerAuthMiddleware enforces it for that same prefix, so the docs follow the code; declaring
    it per route with FastAPI's `Security(HTTPBearer())` would instead run per request for nothing.
    """
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = build()
            spec.setdefault("components", {}).setdefault("securitySchemes", {})["HTTPBearer"] = BEARER_SCHEME
            for path, operations in spec.get("paths", {}).items():
                if path.startswith(protected_prefix):
                    for operation in operations.values():
                        operation["security"] = [{"HTTPBearer": []}]
            app.openapi_schema = spec
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]  # FastAPI's documented way to customise the schema
