"""A test kit for apps that trust Better Auth's JWTs, and for this service's own tests.

`FakeBetterAuth` stands in for a Next.js host running Better Auth's jwt() plugin: real key pairs,
their JWKS (through a respx route, or a real port with `serve_jwks`) and tokens with exactly
Better Auth's header and claim shapes; `presets` has what its plugins add to the payload;
`MovableClock` is a clock the test moves. With pytest, the `better_auth_testing` plugin
(`service.testing.plugin`) offers all of it as fixtures.

    issuer = FakeBetterAuth("http://localhost:3000")             # EdDSA / Ed25519, like the default
    with respx.mock(assert_all_called=True) as router:
        issuer.mock(router)                                      # GET /api/auth/jwks -> the keys
        token = issuer.issue_token("user-123")
        ...  # call the service with Authorization: Bearer <token>
        issuer.rotate()                                          # a new kid, the old key kept
"""

from __future__ import annotations

from . import presets
from .clock import MovableClock
from .issuer import (
    ACCESS_TOKEN_LIFETIME_SECONDS,
    ACCESS_TOKEN_TYP,
    SESSION_CACHE_AUDIENCE,
    SESSION_CACHE_TYP,
    TOKEN_LIFETIME_SECONDS,
    FakeBetterAuth,
)
from .server import serve_jwks
from .signing import SUPPORTED_TEST_ALGORITHMS, SigningKey, b64url, new_kid, sign_claims, sign_compact

__all__ = [
    "ACCESS_TOKEN_LIFETIME_SECONDS",
    "ACCESS_TOKEN_TYP",
    "SESSION_CACHE_AUDIENCE",
    "SESSION_CACHE_TYP",
    "SUPPORTED_TEST_ALGORITHMS",
    "TOKEN_LIFETIME_SECONDS",
    "FakeBetterAuth",
    "MovableClock",
    "SigningKey",
    "b64url",
    "new_kid",
    "presets",
    "serve_jwks",
    "sign_claims",
    "sign_compact",
]
