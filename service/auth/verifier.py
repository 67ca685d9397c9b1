"""Assembling the verifier from settings: fetcher, key cache and token verifier (which reads the
key cache; nothing points back)."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from ..settings import Settings
from .fetch import fetch_jwks
from .jwks import JWKSCache
from .keys import ImportedKeys
from .tokens import TokenVerifier


def build_verifier(
    settings: Settings,
    http: httpx.AsyncClient,
    *,
    clock: Callable[[], float] = time.time,
    token_cache_max_entries: int | None = None,
    min_refetch_interval_seconds: float | None = None,
) -> TokenVerifier:
    """A TokenVerifier over a JWKSCache that fetches `settings.jwks_url` with `http`."""

    async def fetch() -> ImportedKeys:
        return await fetch_jwks(
            http,
            settings.jwks_url,
            timeout_seconds=settings.jwks_fetch_timeout_seconds,
            max_bytes=settings.jwks_max_bytes,
        )

    keys = JWKSCache(
        fetch,
        min_refetch_interval_seconds=(
            settings.jwks_min_refetch_interval_seconds
            if min_refetch_interval_seconds is None
            else min_refetch_interval_seconds
        ),
        refresh_interval_seconds=settings.jwks_refresh_interval_seconds,
        max_staleness_seconds=settings.jwks_max_staleness_seconds,
        clock_skew_seconds=settings.jwt_leeway_seconds,
        clock=clock,
        source=settings.jwks_url,
    )
    return TokenVerifier(
        keys,
        algorithms=settings.jwt_algorithms,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_seconds=settings.jwt_leeway_seconds,
        max_token_bytes=settings.max_token_bytes,
        token_cache_max_entries=(
            settings.token_cache_max_entries if token_cache_max_entries is None else token_cache_max_entries
        ),
        clock=clock,
    )
