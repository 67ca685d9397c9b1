"""`python -m service jwks [TOKEN]`: what the service would make of the configured JWKS (and a token).

For ops during a rotation or an incident: fetches the JWKS exactly as the service does, lists
each key with its verdict, and with a token says whether it verifies and, if not, why.
"""

from __future__ import annotations

import time
from typing import TextIO

import httpx

from ..errors import InvalidToken, KeysUnavailable
from ..settings import Settings
from .fetch import fetch_jwks
from .keys import ALG_KEY_TYPES, JWKSError, PublicKey
from .verifier import build_verifier


def key_verdict(key: PublicKey, allowed: tuple[str, ...]) -> str:
    usable = [alg for alg in allowed if key.accepts(alg)]
    if usable:
        return f"accepted for {', '.join(usable)}"
    fits = [alg for alg in ALG_KEY_TYPES if key.accepts(alg)]
    return f"NOT accepted: fits {', '.join(fits) or 'no algorithm'}, JWT_ALGORITHMS allows {', '.join(allowed)}"


async def inspect_jwks(settings: Settings, token: str | None, out: TextIO) -> int:
    """Print the report; exit status 0 when all is well (and the token verifies), else 1."""
    async with httpx.AsyncClient(follow_redirects=False) as client:
        try:
            imported = await fetch_jwks(
                client,
                settings.jwks_url,
                timeout_seconds=settings.jwks_fetch_timeout_seconds,
                max_bytes=settings.jwks_max_bytes,
            )
        except JWKSError as exc:
            print(f"JWKS {settings.jwks_url}: cannot be used: {exc}", file=out)
            return 1
        print(f"JWKS {settings.jwks_url}: {len(imported.keys)} usable key(s)", file=out)
        for kid, key in imported.keys.items():
            shape = f"{key.kty} {key.crv}" if key.crv else key.kty
            print(f"  kid={kid}  alg={key.alg or '-'}  {shape}  {key_verdict(key, settings.jwt_algorithms)}", file=out)
        for reason in imported.skipped:
            print(f"  skipped: {reason}", file=out)
        if token is None:
            return 0

        verifier = build_verifier(settings, client, token_cache_max_entries=0, min_refetch_interval_seconds=0)
        await verifier.keys.refresh()
        try:
            principal = await verifier.verify_token(token.strip())
        except (InvalidToken, KeysUnavailable) as exc:
            print(f"token: REJECTED ({exc.status}): {exc.detail}", file=out)
            return 1
        remaining = int(principal.expires_at - time.time())
        print(f"token: valid: sub={principal.user_id} kid={principal.kid} expires in {remaining} s", file=out)
        return 0
