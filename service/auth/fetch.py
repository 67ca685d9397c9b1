"""Fetching the issuer's JWKS over HTTP: total deadline, no redirects, size cap, each key on its own."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx

from .keys import ImportedKeys, InvalidJWKS, import_jwks

log = logging.getLogger("service.auth.fetch")


class JWKSFetchError(Exception):
    """The JWKS host did not give us a usable key set; the message says why (no secrets)."""


async def fetch_jwks(client: httpx.AsyncClient, url: str, *, timeout_seconds: float, max_bytes: int) -> ImportedKeys:
    """GET the JWKS with a total deadline, no redirects and a size cap; import each key on its own."""
    try:
        async with asyncio.timeout(timeout_seconds):
            async with client.stream(
                "GET", url, follow_redirects=False, headers={"Accept": "application/json"}
            ) as response:
                if response.status_code != 200:
                    raise JWKSFetchError(f"HTTP {response.status_code} from {url}")
                declared = response.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    raise JWKSFetchError(f"body of {declared} bytes exceeds the {max_bytes}-byte cap")
                body = bytearray()
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > max_bytes:
                        raise JWKSFetchError(f"body exceeds the {max_bytes}-byte cap")
    except TimeoutError:
        raise JWKSFetchError(f"no answer within {timeout_seconds:g} s") from None
    except httpx.HTTPError as exc:
        raise JWKSFetchError(f"{type(exc).__name__} fetching {url}") from exc
    try:
        imported = import_jwks(json.loads(body))
    except (ValueError, InvalidJWKS) as exc:
        raise JWKSFetchError(f"not a JWKS: {exc}") from None
    for reason in imported.skipped:
        log.warning("jwks key skipped: %s", reason)
    if not imported.keys:
        raise JWKSFetchError("the JWKS holds no usable signing key")
    return imported
