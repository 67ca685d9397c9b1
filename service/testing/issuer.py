"""`FakeBetterAuth`: a stand-in for a Next.js host running Better Auth's jwt() plugin.

It holds real key pairs, publishes their JWKS (through a respx route, or the real-port server in
`service.testing.server`) and signs tokens with exactly Better Auth 1.7's header and claim shapes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from .presets import iso_timestamp
from .signing import SigningKey, new_kid, sign_claims

TOKEN_LIFETIME_SECONDS = 15 * 60  # Better Auth's jwt.expirationTime default: "15m"
ACCESS_TOKEN_LIFETIME_SECONDS = 60 * 60  # @better-auth/oauth-provider's accessTokenExpiresIn default
SESSION_CACHE_TYP = "better-auth.session-cache+jwt"  # session.cookieCache with the JWT strategy
SESSION_CACHE_AUDIENCE = "better-auth:session-cache"
ACCESS_TOKEN_TYP = "at+jwt"  # RFC 9068, as @better-auth/oauth-provider sets it
DEFAULT_BASE_PATH = "/api/auth"


class FakeBetterAuth:
    """Key pairs, a JWKS and Better Auth-shaped tokens, for respx-mocked integration tests."""

    def __init__(
        self,
        base_url: str = "http://localhost:3000",
        alg: str = "EdDSA",
        *,
        clock: Callable[[], float] = time.time,
        base_path: str = DEFAULT_BASE_PATH,
    ):
        self.base_url = base_url.rstrip("/")
        self.base_path = base_path
        self.jwks_url = f"{self.base_url}{base_path}/jwks"
        self.issuer = self.audience = self.base_url  # what /api/auth/token puts in iss and aud
        self.clock = clock
        self.keys: list[SigningKey] = []
        self.jwks_requests = 0
        self.jwks_refusal: int | None = None  # seconds of X-Retry-After while refusing with 429
        self.rotate(alg)

    @property
    def current_key(self) -> SigningKey:
        return self.keys[-1]

    def rotate(self, alg: str | None = None) -> SigningKey:
        """Make a new signing key, as Better Auth does when `rotationInterval` elapses; older keys
        stay published (its grace period) until `retire()`."""
        key = SigningKey.generate(alg or (self.keys[-1].alg if self.keys else "EdDSA"))
        self.keys.append(key)
        return key

    def retire(self, kid: str) -> None:
        """Stop publishing a key (its grace period is over)."""
        self.keys = [key for key in self.keys if key.kid != kid]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self.keys]}

    def refuse_jwks(self, retry_after_seconds: int | None = 10) -> None:
        """Answer the JWKS as Better Auth's rate limiter does when its bucket is empty: 429 with
        `X-Retry-After` (not `Retry-After`). `None` serves the keys again."""
        self.jwks_refusal = retry_after_seconds

    def user_object(self, user_id: str, *, name: str | None = None, email: str | None = None) -> dict[str, Any]:
        """Better Auth's user, as the default payload carries it (no `image` when there is none)."""
        stamp = iso_timestamp(int(self.clock()))
        return {
            "name": name or f"User {user_id}",
            "email": email or f"{user_id.lower()}@example.com",
            "emailVerified": False,
            "createdAt": stamp,
            "updatedAt": stamp,
            "id": user_id,
        }

    def claims_for(
        self,
        user_id: str,
        *,
        name: str | None = None,
        email: str | None = None,
        payload: dict[str, Any] | None = None,
        subject: str | None = None,
    ) -> dict[str, Any]:
        """Better Auth's claims, in its order: iat, the payload (the user object, or what a
        `definePayload` returned), then sub (`getSubject`'s, or the user id), exp, iss, aud."""
        now = int(self.clock())
        body = self.user_object(user_id, name=name, email=email) if payload is None else payload
        return {
            "iat": now,
            **body,
            "sub": subject or user_id,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "iss": self.issuer,
            "aud": self.audience,
        }

    def issue_token(
        self,
        user_id: str,
        *,
        key: SigningKey | None = None,
        claims: dict[str, Any] | None = None,
        drop_claims: Iterable[str] = (),
        header: dict[str, Any] | None = None,
        payload: dict[str, Any] | None = None,
        subject: str | None = None,
    ) -> str:
        """A token for `user_id`, as `/api/auth/token` returns it. `payload` stands for a custom
        `definePayload` (it replaces the user object), `subject` for `getSubject`; `claims`
        overrides or adds members, `drop_claims` removes some, `header` overrides the protected
        header (default: exactly {alg, kid})."""
        values = {**self.claims_for(user_id, payload=payload, subject=subject), **(claims or {})}
        for name in drop_claims:
            values.pop(name, None)
        return sign_claims(key or self.current_key, values, header=header)

    def issue_access_token(
        self,
        user_id: str,
        scope: str | Iterable[str],
        *,
        audience: str | list[str] | None = None,
        client_id: str = "tasks-test-client",
        sid: str | None = None,
        claims: dict[str, Any] | None = None,
        lifetime_seconds: int = ACCESS_TOKEN_LIFETIME_SECONDS,
    ) -> str:
        """An OAuth access token as @better-auth/oauth-provider issues it: `typ: at+jwt`, `scope`
        space-separated, `client_id` = `azp`, a `jti`, and an `iss` that includes the basePath.
        `audience` is the requested resource (default: this issuer's origin)."""
        now = int(self.clock())
        values = {
            "sub": user_id,
            "aud": audience if audience is not None else self.audience,
            "client_id": client_id,
            "azp": client_id,
            "scope": scope if isinstance(scope, str) else " ".join(scope),
            **({"sid": sid} if sid else {}),
            "iss": f"{self.base_url}{self.base_path}",
            "iat": now,
            "exp": now + lifetime_seconds,
            "jti": new_kid(),
            **(claims or {}),
        }
        return sign_claims(self.current_key, values, typ=ACCESS_TOKEN_TYP)

    def issue_session_cache_token(self, user_id: str, *, lifetime_seconds: int = 300) -> str:
        """The `session_data` cookie of `session.cookieCache` with the JWT strategy: signed with
        the same keys, but not an API token (a verifier must refuse it)."""
        now = int(self.clock())
        session_token = new_kid()
        values = {
            "session": {"token": session_token, "userId": user_id, "expiresAt": iso_timestamp(now + 7 * 86400)},
            "user": self.user_object(user_id),
            "sid": session_token,
            "iat": now,
            "exp": now + lifetime_seconds,
            "iss": self.base_url,
            "aud": SESSION_CACHE_AUDIENCE,
            "sub": user_id,
        }
        return sign_claims(self.current_key, values, typ=SESSION_CACHE_TYP)

    def jwks_response(self, request: httpx.Request) -> httpx.Response:
        self.jwks_requests += 1
        if self.jwks_refusal is not None:
            body = {"message": "Too many requests. Please try again later."}
            return httpx.Response(429, json=body, headers={"X-Retry-After": str(self.jwks_refusal)})
        return httpx.Response(200, json=self.jwks())

    def mock(self, router: Any) -> Any:
        """Serve the JWKS at `jwks_url` from a respx router (e.g. `respx.mock(...)`); the route
        reads the current keys on every call, so `rotate()` and `retire()` show at once."""
        return router.get(self.jwks_url).mock(side_effect=self.jwks_response)
