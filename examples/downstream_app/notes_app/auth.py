"""Verifying Better Auth JWTs with joserfc: keys from the JWKS, one refetch for an unknown kid."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any

import httpx
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

ALGORITHMS = ["EdDSA", "ES256", "ES512", "RS256", "PS256"]  # Better Auth's jwt() plugin choices
LEEWAY_SECONDS = 30
# No typ: /api/auth/token's JWT; at+jwt: an OAuth access token. Anything else signed with the same
# keys (the session cookie cache's JWT) is not a bearer token.
ACCEPTED_TYPES = {None, "JWT", "at+jwt"}


class Unauthorized(Exception):
    pass


class KeysUnavailable(Exception):
    pass


class BetterAuthVerifier:
    def __init__(self, auth_url: str, http: httpx.AsyncClient, *, clock: Callable[[], float] = time.time) -> None:
        self.jwks_url = f"{auth_url}/api/auth/jwks"
        # /api/auth/token puts the origin in iss; the OAuth provider puts the origin + basePath.
        self.issuers = [auth_url, f"{auth_url}/api/auth"]
        self.audience = auth_url
        self.http = http
        self.clock = clock
        self.keys: KeySet | None = None

    async def fetch_keys(self) -> KeySet:
        try:
            response = await self.http.get(self.jwks_url, timeout=5)
            response.raise_for_status()
            self.keys = KeySet.import_key_set(response.json())
        except (httpx.HTTPError, ValueError, JoseError) as exc:
            raise KeysUnavailable(type(exc).__name__) from exc
        return self.keys

    async def verify(self, token: str) -> dict[str, Any]:
        keys = self.keys or await self.fetch_keys()
        try:
            try:
                decoded = jwt.decode(token, keys, algorithms=ALGORITHMS)
            except InvalidKeyIdError:  # a rotated key: fetch once more
                decoded = jwt.decode(token, await self.fetch_keys(), algorithms=ALGORITHMS)
            if decoded.header.get("typ") not in ACCEPTED_TYPES:
                raise Unauthorized(f"not a bearer token (typ {decoded.header.get('typ')})")
            registry = JWTClaimsRegistry(
                now=lambda: int(self.clock()),
                leeway=LEEWAY_SECONDS,
                iss={"essential": True, "values": self.issuers},
                aud={"essential": True, "value": self.audience},
                sub={"essential": True},
                exp={"essential": True},
            )
            registry.validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise Unauthorized(str(exc)) from exc
        return decoded.claims

    def is_banned(self, claims: dict[str, Any]) -> bool:
        """The admin plugin's ban, unless its banExpires has passed."""
        if claims.get("banned") is not True:
            return False
        expires = claims.get("banExpires")
        return expires is None or datetime.fromisoformat(expires).timestamp() > self.clock()
