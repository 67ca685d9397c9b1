"""The service's errors: a flat tree, each with an HTTP status and a snake_case `code`.

They are rendered as RFC 9457 problem details by `service.app`; `detail` must never carry
internals (no SQL, no stack, no token).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

_DESCRIPTION_CHARS = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}


class ServiceError(Exception):
    status = 500
    code = "internal_error"
    title = "Internal Server Error"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        self.detail = detail or self.title
        self.headers = headers or {}
        super().__init__(self.detail)


class InvalidToken(ServiceError):
    """The Bearer token is absent, malformed, not signed by a published key, or its claims fail."""

    status = 401
    code = "invalid_token"
    title = "Unauthorized"

    def __init__(self, detail: str, reason: str = "malformed") -> None:
        self.reason = reason  # a metrics label: why verification failed
        # RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E only. The detail may quote
        # attacker input (a kid, an alg), so anything else becomes "?" before it reaches a header.
        safe = "".join(c if c in _DESCRIPTION_CHARS else "?" for c in detail)
        super().__init__(
            detail,
            headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{safe}"'},
        )


class MissingToken(InvalidToken):
    code = "missing_token"

    def __init__(self, detail: str = "a Bearer token is required") -> None:
        super().__init__(detail, reason="missing")
        # RFC 6750 §3.1: no error code when the request carried no credentials at all.
        self.headers = {"WWW-Authenticate": 'Bearer realm="tasks"'}


class KeysUnavailable(ServiceError):
    """No usable signing key can be had right now: the JWKS host is down and nothing usable is cached."""

    status = 503
    code = "keys_unavailable"
    title = "Service Unavailable"

    def __init__(self, detail: str, retry_after_seconds: int = 5) -> None:
        super().__init__(detail, headers={"Retry-After": str(max(1, retry_after_seconds))})


class DatabaseUnavailable(ServiceError):
    status = 503
    code = "database_unavailable"
    title = "Service Unavailable"

    def __init__(
        self, detail: str = "the database is unavailable, retry shortly", retry_after_seconds: int = 2
    ) -> None:
        super().__init__(detail, headers={"Retry-After": str(retry_after_seconds)})


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"
    title = "Forbidden"


class TaskNotFound(ServiceError):
    status = 404
    code = "task_not_found"
    title = "Not Found"


class NotFound(ServiceError):
    status = 404
    code = "not_found"
    title = "Not Found"


class MethodNotAllowed(ServiceError):
    status = 405
    code = "method_not_allowed"
    title = "Method Not Allowed"


class PreconditionFailed(ServiceError):
    status = 412
    code = "precondition_failed"
    title = "Precondition Failed"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"
    title = "Content Too Large"


class UnsupportedMediaType(ServiceError):
    status = 415
    code = "unsupported_media_type"
    title = "Unsupported Media Type"


class InvalidRequest(ServiceError):
    """Body, query or header fails validation; `errors` names each field."""

    status = 422
    code = "validation_failed"
    title = "Unprocessable Content"

    def __init__(self, detail: str, errors: list[dict[str, object]] | None = None) -> None:
        super().__init__(detail)
        self.errors = errors or []


class IdempotencyKeyReused(ServiceError):
    status = 422
    code = "idempotency_key_reused"
    title = "Unprocessable Content"


# How ASGI middleware answers with an error before routing: (error, scope, send).
RenderError = Callable[[ServiceError, dict, Callable[[dict], Awaitable[None]]], Awaitable[None]]
