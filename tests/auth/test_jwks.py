"""The key cache on its own: rotation, floods of unknown kids, outages, removal.

The JWKS host is respx-mocked; time is a fake clock whose `sleep` waits until the test moves the
clock, so nothing here sleeps for real.
"""

from __future__ import annotations

import asyncio
import logging
import secrets

import httpx
import pytest
from joserfc.jwk import OKPKey

from service.auth.jwks import BACKOFF_MAX_WITHOUT_KEYS_SECONDS
from service.errors import InvalidToken, KeysUnavailable, TokenRejection
from support.clock import settle
from support.key_cache import INTERVAL, REFRESH, SKEW, STALENESS


def calls(host) -> int:
    return host.route.call_count


def is_unknown_kid(result: object) -> bool:
    return isinstance(result, InvalidToken) and result.reason is TokenRejection.UNKNOWN_KID


def raises_unknown_kid():
    return pytest.raises(InvalidToken, match="no published key")


# -- freshness --------------------------------------------------------------------------------


async def test_background_refresh_renews_keys_so_requests_never_fetch(make_cache, host, timed_issuer, clock):
    cache = make_cache()
    refresher = asyncio.create_task(cache.run_refresher())
    await settle()
    assert calls(host) == 1  # fetched at start
    for _ in range(3):
        await clock.advance(REFRESH)
        assert (await cache.get_key(timed_issuer.current_key.kid, clock())).kid == timed_issuer.current_key.kid
    assert calls(host) == 4 and cache.stale_seconds() == 0  # one per interval, none by requests
    refresher.cancel()


# -- unknown kid ------------------------------------------------------------------------------


async def test_thousand_concurrent_requests_for_one_new_kid_share_one_fetch(cache, host, timed_issuer, clock):
    await clock.advance(INTERVAL)
    new = timed_issuer.rotate()
    keys = await asyncio.gather(*(cache.get_key(new.kid, clock()) for _ in range(1000)))
    assert {key.kid for key in keys} == {new.kid}
    assert calls(host) == 2


async def test_random_kid_flood_causes_at_most_one_fetch_per_interval_and_bounded_waits(cache, host, clock):
    await clock.advance(1)  # inside the interval after the start-up fetch
    started = clock()
    flood = [asyncio.create_task(cache.get_key(secrets.token_hex(16), clock())) for _ in range(1000)]
    await settle()
    assert calls(host) == 1  # nobody fetched inside the interval
    await clock.advance(INTERVAL - 1)
    results = await asyncio.gather(*flood, return_exceptions=True)
    assert all(is_unknown_kid(r) for r in results)
    assert calls(host) == 2 and clock() - started <= INTERVAL  # one fetch; no wait beyond the interval
    # A second wave in the next interval costs at most one more fetch.
    wave = [asyncio.create_task(cache.get_key(secrets.token_hex(16), clock())) for _ in range(1000)]
    await clock.advance(INTERVAL)
    assert all(is_unknown_kid(r) for r in await asyncio.gather(*wave, return_exceptions=True))
    assert calls(host) == 3


async def test_key_rotated_one_second_after_our_fetch_is_accepted_after_a_bounded_wait(
    cache, host, timed_issuer, clock
):
    await clock.advance(1)
    new = timed_issuer.rotate()  # Better Auth signs with it at once
    pending = asyncio.create_task(cache.get_key(new.kid, issued_at=clock()))
    await settle()
    assert not pending.done()  # waits for the next allowed fetch instead of a 401
    await clock.advance(INTERVAL - 1)
    assert (await pending).kid == new.kid
    assert calls(host) == 2


async def test_unknown_kid_of_a_token_older_than_our_set_is_rejected_without_a_fetch(cache, host, clock):
    fetched_at = clock()
    await clock.advance(INTERVAL * 10)
    with raises_unknown_kid():  # signed before our set was fetched (beyond the skew)
        await cache.get_key("never-published", issued_at=fetched_at - SKEW - 1)
    assert calls(host) == 1


async def test_request_during_the_start_up_fetch_joins_it(make_cache, host, timed_issuer, clock):
    cache = make_cache()
    refresher = asyncio.create_task(cache.run_refresher())
    key = await cache.get_key(timed_issuer.current_key.kid, clock())
    assert key.kid == timed_issuer.current_key.kid and calls(host) == 1
    refresher.cancel()


async def test_a_slow_fetch_is_joined_not_duplicated(cache, host, timed_issuer, clock):
    await clock.advance(INTERVAL)
    release = asyncio.Event()
    new = timed_issuer.rotate()

    async def slow(request):
        await release.wait()
        return timed_issuer.jwks_response(request)

    host.route.mock(side_effect=slow)
    background = asyncio.create_task(cache.refresh())
    await settle()
    waiting = [asyncio.create_task(cache.get_key(new.kid, clock())) for _ in range(50)]
    await settle()
    release.set()
    assert (await background) is not None
    assert {key.kid for key in await asyncio.gather(*waiting)} == {new.kid}
    assert calls(host) == 2


# -- outages ----------------------------------------------------------------------------------

OUTAGES = [
    pytest.param(httpx.ReadTimeout("slow"), id="timeout"),
    pytest.param(httpx.ConnectError("refused"), id="connection-refused"),
    pytest.param(httpx.Response(500), id="http-500"),
    pytest.param(httpx.Response(200, content=b"<html>oops"), id="garbage"),
    pytest.param(httpx.Response(302, headers={"Location": "http://evil.test/jwks"}), id="redirect"),
    pytest.param(httpx.Response(200, content=b'{"keys": []}'), id="empty-keys"),
    pytest.param(httpx.Response(200, json={"keys": "nope"}), id="keys-not-a-list"),
    pytest.param(httpx.Response(200, content=b'{"keys": [' + b" " * 70_000 + b"]}"), id="oversized"),
]


@pytest.mark.parametrize("failure", OUTAGES)
async def test_outage_keeps_last_good_keys_until_max_staleness_then_503(
    cache, host, timed_issuer, clock, failure, caplog
):
    kid = timed_issuer.current_key.kid
    if isinstance(failure, Exception):
        host.route.mock(side_effect=failure)
    else:
        host.route.mock(return_value=failure)
    caplog.set_level(logging.WARNING, "service.auth.jwks")
    for _ in range(3):
        await clock.advance(REFRESH)
        assert await cache.refresh() is None
    assert (await cache.get_key(kid, clock())).kid == kid  # stale keys still serve
    assert cache.stats.failed == 3 and cache.stale_seconds() == 3 * REFRESH
    assert len([r for r in caplog.records if "failing" in r.message]) == 1  # once per state change
    # An unknown kid during the outage is not the token's fault: 503, at once, no extra fetch
    # (for a token signed before the last failed fetch; one from its second or later waits).
    with pytest.raises(KeysUnavailable):
        await cache.get_key("rotated-during-outage", clock() - 1)
    assert calls(host) == 4
    await clock.advance(STALENESS)
    with pytest.raises(KeysUnavailable):
        await cache.get_key(kid, clock())


async def test_no_key_set_at_all_is_503_not_401(make_cache, host, clock):
    host.route.mock(return_value=httpx.Response(503))
    cache = make_cache()
    assert await cache.refresh() is None
    with pytest.raises(KeysUnavailable):
        await cache.get_key("any", clock() - 1)
    assert cache.retry_after_seconds() >= 1


async def test_recovery_after_outage_is_logged_once_and_serves_new_keys(cache, host, timed_issuer, clock, caplog):
    caplog.set_level(logging.INFO, "service.auth.jwks")
    host.route.mock(return_value=httpx.Response(500))
    await clock.advance(REFRESH)
    await cache.refresh()
    timed_issuer.mock(host.router)
    host.route = host.router.routes[-1]
    new = timed_issuer.rotate()
    await clock.advance(REFRESH)
    assert await cache.refresh() is not None
    assert (await cache.get_key(new.kid, clock())).kid == new.kid
    assert len([r for r in caplog.records if "recovered" in r.message]) == 1


async def test_after_an_outage_a_new_kid_refetches_once_the_cooldown_has_passed(cache, host, timed_issuer, clock):
    host.route.mock(return_value=httpx.Response(500))
    await clock.advance(REFRESH)
    assert await cache.refresh() is None  # failing now; the refresher would retry much later
    with pytest.raises(KeysUnavailable):  # inside the cooldown: 503 at once
        await cache.get_key("new-after-restart", clock() - 1)  # signed before the failure
    host.route.mock(side_effect=timed_issuer.jwks_response)  # the host is back with a new key set
    new = timed_issuer.rotate()
    await clock.advance(INTERVAL)
    assert (await cache.get_key(new.kid, clock())).kid == new.kid  # no wait for the refresher


async def test_token_issued_after_a_failed_attempt_waits_for_the_next_fetch_instead_of_503(
    cache, host, timed_issuer, clock
):
    host.route.mock(return_value=httpx.Response(500))
    await clock.advance(REFRESH)
    assert await cache.refresh() is None  # failing, and the cooldown counts from now
    host.route.mock(side_effect=timed_issuer.jwks_response)  # the issuer restarts, with a new key set
    await clock.advance(1)
    new = timed_issuer.rotate()
    pending = asyncio.create_task(cache.get_key(new.kid, issued_at=clock()))  # signed after our failure
    await settle()
    assert not pending.done()  # waits for the next allowed fetch: the issuer is evidently back
    await clock.advance(INTERVAL - 1)
    assert (await pending).kid == new.kid
    assert calls(host) == 3  # start, the failure, the one fetch the waiting request shared


async def test_refresher_backs_off_after_failures(make_cache, host, clock):
    host.route.mock(return_value=httpx.Response(500))
    cache = make_cache()
    refresher = asyncio.create_task(cache.run_refresher())
    await settle()
    attempts = [calls(host)]
    for _ in range(5):
        await clock.advance(1)
        attempts.append(calls(host))
    # 1 at start, then retries after 1 s, 2 s, 4 s ... : at t=1, t=3 (and t=7 beyond this window)
    assert attempts == [1, 2, 2, 3, 3, 3]
    refresher.cancel()


async def test_with_no_keys_held_the_refresher_retries_every_few_seconds_so_start_order_does_not_matter(
    make_cache, host, timed_issuer, clock
):
    host.route.mock(return_value=httpx.Response(500))  # the service started before Better Auth
    cache = make_cache()
    refresher = asyncio.create_task(cache.run_refresher())
    await clock.advance(600)
    assert cache.usable_set() is None
    host.route.mock(side_effect=timed_issuer.jwks_response)  # Better Auth comes up
    await clock.advance(BACKOFF_MAX_WITHOUT_KEYS_SECONDS)
    assert cache.usable_set() is not None
    refresher.cancel()


# -- hygiene and removal ----------------------------------------------------------------------


async def test_one_malformed_key_beside_good_ones_is_skipped(cache, host, timed_issuer, clock, caplog):
    good = timed_issuer.jwks()["keys"]
    broken = {"kty": "OKP", "crv": "Ed25519", "x": "!!not-base64!!", "kid": "broken"}
    host.route.mock(
        return_value=httpx.Response(200, json={"keys": [broken, *good, {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]})
    )
    await clock.advance(REFRESH)
    held = await cache.refresh()
    assert held is not None and set(held.keys) == {key["kid"] for key in good}
    assert any("broken" in r.message for r in caplog.records)


async def test_removed_key_stops_verifying_and_moves_the_generation_on(make_cache, host, timed_issuer, clock):
    cache = make_cache()
    await cache.refresh()
    start = cache.generation
    old = timed_issuer.current_key
    timed_issuer.rotate()
    await clock.advance(REFRESH)
    await cache.refresh()
    assert cache.generation == start  # a key added withdraws nothing
    assert (await cache.get_key(old.kid, clock())).kid == old.kid  # grace period: still published
    timed_issuer.retire(old.kid)
    await clock.advance(REFRESH)
    await cache.refresh()
    assert cache.generation == start + 1
    with raises_unknown_kid():
        await cache.get_key(old.kid, clock() - REFRESH)


async def test_a_key_republished_under_its_kid_with_other_material_moves_the_generation_on(
    cache, host, timed_issuer, clock
):
    start = cache.generation
    published = timed_issuer.jwks()["keys"][0]
    impostor = {**OKPKey.generate_key("Ed25519").as_dict(private=False), "kid": published["kid"], "alg": "EdDSA"}
    host.route.mock(return_value=httpx.Response(200, json={"keys": [impostor]}))
    await clock.advance(REFRESH)
    assert await cache.refresh() is not None
    assert cache.generation == start + 1


async def test_a_routine_refresh_of_the_same_keys_keeps_the_generation(cache, host, clock):
    start = cache.generation
    for _ in range(3):
        await clock.advance(REFRESH)
        assert await cache.refresh() is not None
    assert cache.generation == start


async def test_a_wall_clock_stepped_back_neither_rejects_new_kids_nor_stalls(cache, host, timed_issuer, clock):
    clock.now -= 3600  # NTP steps the clock back an hour: our set now seems fetched in the future
    new = timed_issuer.rotate()
    pending = asyncio.create_task(cache.get_key(new.kid, clock()))
    await settle()
    assert not pending.done()  # waits for a fetch instead of a 401
    await clock.advance(INTERVAL)  # and the wait is still bounded by the interval
    assert (await pending).kid == new.kid
