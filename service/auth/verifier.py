"""Assembling the verifier from settings: key source (JWKS_URL or JWKS_FILE), key cache, optional
session check, and token verifier (which reads the key cache; nothing points back)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

import httpx

from ..settings import Settings
from .fetch import fetch_jwks
from .jwks import JWKSCache
from .jwks_file import JWKSFile
from .keys import ImportedKeys
from .session_check import SessionChecker
from .tokens import TokenVerifier


def build_verifier(
    settings: Settings,
    http: httpx.AsyncClient,
    *,
    clock: Callable[[], float] = time.time,
    token_cache_max_entries: int | None = None,
    min_refetch_interval_seconds: float | None = None,
) -> TokenVerifier:
    """A TokenVerifier over a JWKSCache that fetches `settings.jwks_url` with `http` (or reads
    `settings.jwks_file`)."""
    fetch, source, refresh_interval = key_source(settings, http)
    keys = JWKSCache(
        fetch,
        min_refetch_interval_seconds=(
            settings.jwks_min_refetch_interval_seconds
            if min_refetch_interval_seconds is None
            else min_refetch_interval_seconds
        ),
        refresh_interval_seconds=refresh_interval,
        max_staleness_seconds=max(settings.jwks_max_staleness_seconds, refresh_interval),
        clock_skew_seconds=settings.jwt_leeway_seconds,
        clock=clock,
        source=source,
    )
    return TokenVerifier(
        keys,
        algorithms=settings.jwt_algorithms,
        issuers=settings.jwt_issuers,
        audiences=settings.jwt_audiences,
        leeway_seconds=settings.jwt_leeway_seconds,
        max_token_bytes=settings.max_token_bytes,
        token_cache_max_entries=(
            settings.token_cache_max_entries if token_cache_max_entries is None else token_cache_max_entries
        ),
        max_lifetime_seconds=settings.jwt_max_lifetime_seconds,
        oauth_access_tokens=settings.oauth_access_tokens,
        session_check=build_session_check(settings, http),
        clock=clock,
    )


def key_source(settings: Settings, http: httpx.AsyncClient) -> tuple[Callable[[], Awaitable[ImportedKeys]], str, float]:
    """(fetch, where the keys come from for the log, refresh interval): the file when JWKS_FILE is
    set, polled for changes; JWKS_URL otherwise."""
    if settings.jwks_file is not None:
        key_file = JWKSFile(settings.jwks_file, max_bytes=settings.jwks_max_bytes)
        return key_file.read, f"the key file {settings.jwks_file}", settings.jwks_file_poll_seconds

    async def fetch() -> ImportedKeys:
        return await fetch_jwks(
            http,
            settings.jwks_url,
            timeout_seconds=settings.jwks_fetch_timeout_seconds,
            max_bytes=settings.jwks_max_bytes,
            max_retry_after_seconds=settings.jwks_max_retry_after_seconds,
        )

    return fetch, settings.jwks_url, settings.jwks_refresh_interval_seconds


def build_session_check(settings: Settings, http: httpx.AsyncClient) -> SessionChecker | None:
    if settings.session_check != "http" or settings.session_check_secret is None:
        return None
    return SessionChecker(
        http,
        settings.session_check_url,
        settings.session_check_secret.get_secret_value(),
        cache_seconds=settings.session_check_cache_seconds,
        timeout_seconds=settings.session_check_timeout_seconds,
        fail_open=settings.session_check_on_error == "open",
    )
