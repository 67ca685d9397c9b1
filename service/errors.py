"""The service's errors: a flat tree, each with an HTTP status and a snake_case `code`.

They are rendered as RFC 9457 problem details by `service.problems`; `detail` must never carry
internals (no SQL, no stack, no token, no internal host or URL). An error is complete when built:
nothing sets its fields afterwards.
"""

from __future__ import annotations

from enum import StrEnum

_DESCRIPTION_CHARS = frozenset(chr(c) for c in range(0x20, 0x7F)) - {'"', "\\"}


class ServiceError(Exception):
    status = 500
    code = "internal_error"
    title = "Internal Server Error"

    def __init__(self, detail: str | None = None, *, headers: dict[str, str] | None = None) -> None:
        self.detail = detail or self.title
        self.headers = headers or {}
        super().__init__(self.detail)


class TokenRejection(StrEnum):
    """Why a Bearer token was not accepted: the closed set behind the 401/503 answers, the
    `token_verifications_total{outcome}` label and the log."""

    MISSING = "missing"  # no credentials at all
    MALFORMED = "malformed"  # not one well-formed compact JWS in one Bearer header
    TOO_LARGE = "too_large"
    ALG_NOT_ALLOWED = "alg_not_allowed"
    HEADER_REFUSED = "header_refused"  # a header member that brings its own key or processing
    UNKNOWN_KID = "unknown_kid"  # the issuer does not publish the token's key
    KEY_MISMATCH = "key_mismatch"  # the published key cannot verify the token's alg
    BAD_SIGNATURE = "bad_signature"
    TYPE_REFUSED = "type_refused"  # a `typ` we do not take as an API token (session cache, at+jwt when off)
    EXPIRED = "expired"
    LIFETIME_TOO_LONG = "lifetime_too_long"  # exp - iat beyond the configured ceiling
    CLAIMS = "claims"  # a claim missing, of the wrong type or value, or not yet valid
    USER_BANNED = "user_banned"  # the admin plugin's `banned`, and the ban has not expired
    SESSION_ENDED = "session_ended"  # the session check says the token's `sid` is gone (signed out)
    INSUFFICIENT_SCOPE = "insufficient_scope"  # an OAuth token without the route's scope
    KEYS_UNAVAILABLE = "keys_unavailable"  # not the token's fault: we cannot learn its key now
    SESSION_CHECK_UNAVAILABLE = "session_check_unavailable"  # fail-closed session check could not be made


class InvalidToken(ServiceError):
    """The Bearer token is absent, malformed, not signed by a published key, or its claims fail."""

    status = 401
    code = "invalid_token"
    title = "Unauthorized"

    def __init__(self, reason: TokenRejection, detail: str) -> None:
        self.reason = reason
        super().__init__(detail, headers={"WWW-Authenticate": self._challenge(detail)})

    @staticmethod
    def _challenge(detail: str) -> str:
        # RFC 6750 §3: error_description is %x20-21 / %x23-5B / %x5D-7E only. The detail may quote
        # attacker input (a kid, an alg), so anything else becomes "?" before it reaches a header.
        safe = "".join(c if c in _DESCRIPTION_CHARS else "?" for c in detail)
        return f'Bearer error="invalid_token", error_description="{safe}"'


class MissingToken(InvalidToken):
    code = "missing_token"

    def __init__(self, detail: str = "a Bearer token is required") -> None:
        super().__init__(TokenRejection.MISSING, detail)

    @staticmethod
    def _challenge(detail: str) -> str:
        # RFC 6750 §3.1: no error code when the request carried no credentials at all.
        return 'Bearer realm="tasks"'


class KeysUnavailable(ServiceError):
    """No usable signing key can be had right now: the JWKS host is down and nothing usable is
    cached. The answer says only what a caller can act on; the cause goes to the log."""

    status = 503
    code = "keys_unavailable"
    title = "Service Unavailable"
    reason = TokenRejection.KEYS_UNAVAILABLE

    def __init__(self, retry_after_seconds: int = 5) -> None:
        super().__init__(
            "signing keys are temporarily unavailable, retry later",
            headers={"Retry-After": str(max(1, retry_after_seconds))},
        )


class TokenRefused(ServiceError):
    """A verified token that may not be used here: its user is banned, or it lacks the route's scope."""

    status = 403
    title = "Forbidden"

    def __init__(self, reason: TokenRejection, detail: str, *, headers: dict[str, str] | None = None) -> None:
        self.reason = reason
        super().__init__(detail, headers=headers)


class UserBanned(TokenRefused):
    code = "user_banned"

    def __init__(self, detail: str) -> None:
        super().__init__(TokenRejection.USER_BANNED, detail)


class InsufficientScope(TokenRefused):
    """RFC 6750 §3.1: the token is good, but does not grant `scope`."""

    code = "insufficient_scope"

    def __init__(self, scope: str, challenge_extra: str = "") -> None:
        detail = f"this request needs the {scope} scope"
        challenge = f'Bearer error="insufficient_scope", scope="{scope}", error_description="{detail}"{challenge_extra}'
        super().__init__(TokenRejection.INSUFFICIENT_SCOPE, detail, headers={"WWW-Authenticate": challenge})


class SessionCheckUnavailable(ServiceError):
    """The session check is required (fail closed) and cannot be made now."""

    status = 503
    code = "session_check_unavailable"
    title = "Service Unavailable"
    reason = TokenRejection.SESSION_CHECK_UNAVAILABLE

    def __init__(self, retry_after_seconds: int = 2) -> None:
        super().__init__(
            "the session cannot be checked right now, retry later",
            headers={"Retry-After": str(max(1, retry_after_seconds))},
        )


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


class TaskLimitReached(ServiceError):
    status = 409
    code = "task_limit_reached"
    title = "Conflict"


class IdempotencyKeyReused(ServiceError):
    status = 422
    code = "idempotency_key_reused"
    title = "Unprocessable Content"


class HTTPError(ServiceError):
    """Any other status the framework answers with (its own routing and parsing)."""

    code = "http_error"

    def __init__(self, status: int, detail: str) -> None:
        self.status = status
        self.title = detail
        super().__init__(detail)
