"""FastAPI glue: every `/api/` request is authenticated before routing, then the owner is checked.

Authentication is an ASGI middleware rather than a route dependency so that (a) no route under
`/api/` can be added without it and (b) an anonymous caller learns nothing from body or query
validation: 401 comes before 422. The scope an OAuth access token needs is decided here too, by
method (tasks:read for GET and HEAD, tasks:write for the rest), so no route can forget it.
"""

from __future__ import annotations

import re

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from ..errors import Forbidden, InsufficientScope, InvalidToken, MissingToken, ServiceError, TokenRejection
from ..oauth_metadata import discovery_challenge
from ..problems import render_error
from ..resources import app_resources
from .token_types import required_scope
from .tokens import Principal, TokenVerifier

PROTECTED_PREFIX = "/api/"
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")  # RFC 6750 §2.1
USER_ID_MAX_CHARS = 255


def bearer_token(headers: list[tuple[bytes, bytes]]) -> str:
    """The token of the single `Authorization: Bearer` header; raise a 401 otherwise."""
    values = [value for name, value in headers if name == b"authorization"]
    if not values:
        raise MissingToken()
    if len(values) > 1:
        raise InvalidToken(TokenRejection.MALFORMED, "send exactly one Authorization header")
    scheme, _, token = values[0].decode("latin-1").strip(" \t").partition(" ")
    if scheme.lower() != "bearer":
        raise InvalidToken(TokenRejection.MALFORMED, "the Authorization scheme must be Bearer")
    token = token.lstrip(" ")  # RFC 7235: 1*SP between scheme and credentials
    if not _B64TOKEN.fullmatch(token):
        raise InvalidToken(TokenRejection.MALFORMED, "the Bearer token is empty or malformed")
    return token


class BearerAuthMiddleware:
    """Verifies the Bearer token of every `/api/` request and stores the Principal in the scope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PROTECTED_PREFIX):
            await self.app(scope, receive, send)
            return
        opened = app_resources(scope["app"])
        verifier: TokenVerifier = opened.verifier
        try:
            try:
                token = bearer_token(scope["headers"])
            except InvalidToken as exc:
                verifier.count_rejection(exc.reason, exc.detail)  # verify_token counts the rest
                raise
            principal = await verifier.verify_token(token)
            if principal.scopes is not None:
                scope_needed = required_scope(scope["method"])
                if scope_needed not in principal.scopes:
                    refusal = InsufficientScope(scope_needed)
                    verifier.count_rejection(refusal.reason, refusal.detail)
                    raise refusal
        except ServiceError as exc:
            challenge = exc.headers.get("WWW-Authenticate")
            headers = {"WWW-Authenticate": discovery_challenge(opened.settings, challenge)} if challenge else None
            await render_error(exc, scope, send, headers)
            return
        scope.setdefault("state", {})["principal"] = principal
        await self.app(scope, receive, send)


def owner(request: Request, user_id: str) -> str:
    """The caller's user id (from the verified token), after checking it is `user_id`, the one
    named in the path; 403 otherwise."""
    principal = request.scope.get("state", {}).get("principal")
    if not isinstance(principal, Principal):  # only reachable if a route were mounted outside /api/
        raise MissingToken()
    if principal.user_id != user_id:
        raise Forbidden("the token's subject does not match the user in the path")
    return principal.user_id
