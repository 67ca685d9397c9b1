"""Which tokens signed with the issuer's keys count as API credentials: the `typ` policy, and the
extra rules for OAuth access tokens (RFC 9068) and the scopes they carry.

Better Auth signs several kinds of token with the same JWKS keys: the jwt() plugin's session JWTs
(no `typ`), the session cookie cache (`better-auth.session-cache+jwt`, which must never pass as a
Bearer token) and, with @better-auth/oauth-provider, access tokens (`at+jwt`).
"""

from __future__ import annotations

from enum import Enum
from typing import Any

from ..errors import InvalidToken, TokenRejection

SESSION_CACHE_TYP = "better-auth.session-cache+jwt"
ACCESS_TOKEN_TYP = "at+jwt"
READ_SCOPE = "tasks:read"
WRITE_SCOPE = "tasks:write"
SCOPES_SUPPORTED = (READ_SCOPE, WRITE_SCOPE)
READ_METHODS = frozenset({"GET", "HEAD"})
MAX_SCOPE_CHARS = 2048


class TokenKind(Enum):
    SESSION_JWT = "jwt"  # /api/auth/token, get-session's set-auth-jwt: the user's full rights
    OAUTH_ACCESS = "at+jwt"  # a client acting for the user, within its scopes


def token_kind(typ: object, *, oauth_access_tokens: bool) -> TokenKind:
    """The kind of token a header's `typ` names; InvalidToken (type_refused) for any other kind."""
    if typ is None:
        return TokenKind.SESSION_JWT
    if not isinstance(typ, str):
        raise InvalidToken(TokenRejection.TYPE_REFUSED, "typ must be a string")
    # RFC 7515 §4.1.9: a media type, compared case-insensitively, "application/" optional.
    media = typ.lower().removeprefix("application/")
    if media == "jwt":
        return TokenKind.SESSION_JWT
    if media == ACCESS_TOKEN_TYP:
        if oauth_access_tokens:
            return TokenKind.OAUTH_ACCESS
        raise InvalidToken(TokenRejection.TYPE_REFUSED, "OAuth access tokens (typ at+jwt) are not accepted here")
    if media == SESSION_CACHE_TYP:
        raise InvalidToken(TokenRejection.TYPE_REFUSED, "a Better Auth session cookie-cache token is not an API token")
    raise InvalidToken(TokenRejection.TYPE_REFUSED, f"typ {typ[:40]!r} is not accepted")


def access_token_scopes(claims: dict[str, Any]) -> frozenset[str]:
    """The scopes of a verified OAuth access token, after the checks RFC 9068 adds."""
    client_id = claims.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        raise InvalidToken(TokenRejection.CLAIMS, "an access token must carry a string client_id")
    if claims["sub"] == client_id:
        # A client-credentials token: the client acts for itself, and owns no user's tasks.
        raise InvalidToken(TokenRejection.CLAIMS, "an access token without a user (client credentials) is not accepted")
    scope = claims.get("scope", "")
    if not isinstance(scope, str) or len(scope) > MAX_SCOPE_CHARS:
        raise InvalidToken(TokenRejection.CLAIMS, "invalid 'scope' claim: wrong value or type")
    return frozenset(scope.split())


def required_scope(method: str) -> str:
    """The scope an OAuth access token needs for a request: reading, or anything else."""
    return READ_SCOPE if method.upper() in READ_METHODS else WRITE_SCOPE
