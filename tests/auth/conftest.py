"""Fixtures for the key cache and verifier tests: a fake clock, a fake issuer on it (`timed_issuer`), a respx JWKS host."""

from __future__ import annotations

import httpx
import pytest
import respx

from service.auth.fetch import fetch_jwks
from service.auth.jwks import JWKSCache
from service.testing import FakeBetterAuth
from support.clock import FakeClock
from support.key_cache import INTERVAL, JWKS_URL, REFRESH, SKEW, STALENESS


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def timed_issuer(clock) -> FakeBetterAuth:
    return FakeBetterAuth("http://issuer.test", clock=clock)


@pytest.fixture
async def host(timed_issuer):
    """The mocked JWKS host; `host.route` can be re-mocked to fail."""
    with respx.mock(assert_all_called=False) as router:
        route = timed_issuer.mock(router)
        async with httpx.AsyncClient() as client:
            yield type("Host", (), {"route": route, "client": client, "router": router})


@pytest.fixture
def make_cache(host, clock):
    def make(**overrides) -> JWKSCache:
        options = dict(
            min_refetch_interval_seconds=INTERVAL,
            refresh_interval_seconds=REFRESH,
            max_staleness_seconds=STALENESS,
            clock_skew_seconds=SKEW,
        )
        options.update(overrides)
        return JWKSCache(
            lambda: fetch_jwks(host.client, JWKS_URL, timeout_seconds=5, max_bytes=64 * 1024),
            clock=clock,
            sleep=clock.sleep,
            **options,
        )

    return make


@pytest.fixture
async def cache(make_cache) -> JWKSCache:
    cache = make_cache()
    assert await cache.refresh() is not None
    return cache
