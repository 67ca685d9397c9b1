"""Fetching the issuer's JWKS over HTTP: total deadline, no redirects, size cap, each key on its own,
and the retry time of a 429 or 503 (Better Auth's rate limiter answers 429 with `X-Retry-After`)."""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time

import httpx

from .keys import ImportedKeys, JWKSError, JWKSProblem, import_jwks

log = logging.getLogger("service.auth.fetch")


# Better Auth's limiter window (10 s by default): the wait after a 429 that names no retry time.
DEFAULT_RATE_LIMIT_WAIT_SECONDS = 10.0
MIN_RETRY_AFTER_SECONDS = 1.0


async def fetch_jwks(
    client: httpx.AsyncClient,
    url: str,
    *,
    timeout_seconds: float,
    max_bytes: int,
    max_retry_after_seconds: float = 300.0,
) -> ImportedKeys:
    """GET the JWKS with a total deadline, no redirects and a size cap; import each key on its own.

    Raises JWKSError, whose message never names `url`: it may reach /readyz. A 429, or a 503
    naming a retry time, carries that time (bounded by `max_retry_after_seconds`)."""
    try:
        async with asyncio.timeout(timeout_seconds):
            async with client.stream(
                "GET", url, follow_redirects=False, headers={"Accept": "application/json"}
            ) as response:
                if response.status_code != 200:
                    raise _status_error(response, max_retry_after_seconds)
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
    return load_jwks(bytes(body))


def load_jwks(body: bytes) -> ImportedKeys:
    """A JWKS document's usable keys (JWKSError when there is none); skipped keys are logged."""
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


def _status_error(response: httpx.Response, max_wait: float) -> JWKSError:
    status = response.status_code
    wait = retry_after_seconds(response.headers, time.time())
    if status == 429 or (status == 503 and wait is not None):
        wait = DEFAULT_RATE_LIMIT_WAIT_SECONDS if wait is None else wait
        wait = min(max(wait, MIN_RETRY_AFTER_SECONDS), max_wait)
        return JWKSError(JWKSProblem.RATE_LIMITED, f"HTTP {status}, no fetch for {wait:g} s", retry_after_seconds=wait)
    return JWKSError(JWKSProblem.HTTP_STATUS, f"HTTP {status}")


def retry_after_seconds(headers: httpx.Headers, now: float) -> float | None:
    """Seconds to wait from `X-Retry-After` (Better Auth: seconds) or `Retry-After` (seconds or an
    HTTP date); None when neither is there or readable."""
    for name in ("x-retry-after", "retry-after"):
        value = headers.get(name, "").strip()
        if not value:
            continue
        if value.isdigit():
            return float(min(int(value[:12]), 10**9))
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            continue
        if when.tzinfo is not None:
            return max(0.0, when.timestamp() - now)
    return None
