"""Fetching the issuer's JWKS over HTTP: total deadline, no redirects, size cap, each key on its own."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx

from .keys import ImportedKeys, JWKSError, JWKSProblem, import_jwks

log = logging.getLogger("service.auth.fetch")


async def fetch_jwks(client: httpx.AsyncClient, url: str, *, timeout_seconds: float, max_bytes: int) -> ImportedKeys:
    """GET the JWKS with a total deadline, no redirects and a size cap; import each key on its own.

    Raises JWKSError, whose message never names `url`: it may reach /readyz."""
    try:
        async with asyncio.timeout(timeout_seconds):
            async with client.stream(
                "GET", url, follow_redirects=False, headers={"Accept": "application/json"}
            ) as response:
                if response.status_code != 200:
                    raise JWKSError(JWKSProblem.HTTP_STATUS, f"HTTP {response.status_code}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise JWKSError(JWKSProblem.TOO_LARGE, f"body of {declared} bytes exceeds the {max_bytes}-byte cap")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise JWKSError(JWKSProblem.TOO_LARGE, f"body exceeds the {max_bytes}-byte cap")
    except TimeoutError:
        raise JWKSError(JWKSProblem.TIMEOUT, f"no answer within {timeout_seconds:g} s") from None
    except httpx.HTTPError as exc:
        # The type only: httpx's messages can carry the URL.
        raise JWKSError(JWKSProblem.UNREACHABLE, type(exc).__name__) from exc
    try:
        document = json.loads(body)
    except ValueError:
        raise JWKSError(JWKSProblem.NOT_JSON, "the body is not JSON") from None
    imported = import_jwks(document)
    for reason in imported.skipped:
        log.warning("jwks key skipped: %s", reason)
    if not imported.keys:
        raise JWKSError(JWKSProblem.NO_USABLE_KEY, "the JWKS holds no usable signing key")
    return imported
