"""A 429 (Better Auth's rate limiter: `X-Retry-After`) or a 503 with `Retry-After` from the JWKS
host: no fetch before the time it names, stale keys keep serving, one log line, one counter."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from service.auth.fetch import DEFAULT_RATE_LIMIT_WAIT_SECONDS, retry_after_seconds
from service.errors import KeysUnavailable
from support.clock import settle
from support.key_cache import INTERVAL, REFRESH

RETRY_AFTER = 40  # longer than the unknown-kid cooldown (INTERVAL): requests must not wait for it


def calls(host) -> int:
    return host.route.call_count


def limited(retry_after: int = RETRY_AFTER, header: str = "X-Retry-After", status: int = 429) -> httpx.Response:
    return httpx.Response(status, headers={header: str(retry_after)}, json={"message": "Too many requests."})


@pytest.mark.parametrize(
    "headers, expected",
    [
        pytest.param({"X-Retry-After": "7"}, 7.0, id="better-auth-x-retry-after"),
        pytest.param({"Retry-After": "12"}, 12.0, id="standard-retry-after-seconds"),
        pytest.param({"X-Retry-After": "7", "Retry-After": "99"}, 7.0, id="x-retry-after-first"),
        pytest.param({"Retry-After": "soon"}, None, id="unreadable"),
        pytest.param({"Retry-After": "-5"}, None, id="negative"),
        pytest.param({}, None, id="absent"),
    ],
)
def test_retry_after_headers_are_read_in_seconds(headers, expected):
    assert retry_after_seconds(httpx.Headers(headers), now=1_800_000_000.0) == expected


def test_retry_after_as_an_http_date_counts_from_now():
    now = datetime(2027, 1, 1, 12, 0, 0, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds(httpx.Headers({"Retry-After": later}), now.timestamp()) == 30.0


async def test_429_stops_every_fetch_until_its_retry_time_while_stale_keys_serve(
    cache, host, timed_issuer, clock, caplog
):
    caplog.set_level(logging.WARNING, "service.auth.jwks")
    kid = timed_issuer.current_key.kid
    host.route.mock(return_value=limited())
    await clock.advance(REFRESH)
    assert await cache.refresh() is None
    assert calls(host) == 2 and cache.stats.rate_limited == 1

    # Within the retry time: neither the refresher's refresh nor a flood of unknown kids fetches,
    # the known key keeps verifying, and a new kid is answered at once (503), without waiting.
    for _ in range(3):
        assert await cache.refresh() is None
        assert (await cache.get_key(kid, clock())).kid == kid
        flood = [asyncio.create_task(cache.get_key(secrets.token_hex(16), clock())) for _ in range(100)]
        await settle()
        assert all(task.done() for task in flood)
        results = await asyncio.gather(*flood, return_exceptions=True)
        assert all(isinstance(result, KeysUnavailable) for result in results)
        assert 1 <= cache.retry_after_seconds() <= RETRY_AFTER
        await clock.advance(RETRY_AFTER / 4)
    assert calls(host) == 2

    host.route.mock(side_effect=timed_issuer.jwks_response)
    await clock.advance(RETRY_AFTER / 4)  # now past the retry time
    new = timed_issuer.rotate()
    assert (await cache.get_key(new.kid, clock())).kid == new.kid
    assert calls(host) == 3
    warnings = [r for r in caplog.records if "failing" in r.getMessage()]
    assert len(warnings) == 1 and "429" in warnings[0].getMessage()  # logged once, with the status


async def test_a_new_kid_within_the_cooldown_of_a_short_retry_time_waits_for_it(cache, host, timed_issuer, clock):
    host.route.mock(return_value=limited(retry_after=2))
    await clock.advance(REFRESH)
    assert await cache.refresh() is None
    host.route.mock(side_effect=timed_issuer.jwks_response)
    await clock.advance(1)
    new = timed_issuer.rotate()
    pending = asyncio.create_task(cache.get_key(new.kid, issued_at=clock()))
    await settle()
    assert not pending.done()
    await clock.advance(INTERVAL)
    assert (await pending).kid == new.kid


async def test_the_refresher_sleeps_until_the_retry_time(make_cache, host, timed_issuer, clock):
    host.route.mock(return_value=limited())
    cache = make_cache()
    refresher = asyncio.create_task(cache.run_refresher())
    try:
        await settle()
        assert calls(host) == 1
        await clock.advance(RETRY_AFTER - 1)  # its usual backoff would have retried after 1, 2, 4 ... s
        assert calls(host) == 1
        host.route.mock(side_effect=timed_issuer.jwks_response)
        await clock.advance(1)
        assert calls(host) == 2 and cache.usable_set() is not None
    finally:
        refresher.cancel()


@pytest.mark.parametrize(
    "response, held_off",
    [
        pytest.param(limited(header="Retry-After", status=503), RETRY_AFTER, id="503-with-retry-after"),
        pytest.param(httpx.Response(429), DEFAULT_RATE_LIMIT_WAIT_SECONDS, id="429-without-header"),
        pytest.param(limited(retry_after=10**6), 300.0, id="huge-retry-after-is-bounded"),
        pytest.param(limited(retry_after=0), 1.0, id="zero-means-one-second"),
    ],
)
async def test_retry_times_are_honoured_within_bounds(make_cache, host, clock, response, held_off):
    host.route.mock(return_value=response)
    cache = make_cache()
    assert await cache.refresh() is None
    await clock.advance(held_off - 0.5)
    assert await cache.refresh() is None and calls(host) == 1
    await clock.advance(0.5)
    assert await cache.refresh() is None and calls(host) == 2
    assert cache.stats.rate_limited == 2


async def test_a_503_without_a_retry_time_is_an_ordinary_failure(make_cache, host, clock):
    host.route.mock(return_value=httpx.Response(503))
    cache = make_cache()
    assert await cache.refresh() is None
    assert await cache.refresh() is None
    assert calls(host) == 2 and cache.stats.rate_limited == 0
