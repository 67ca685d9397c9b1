"""The verified-token cache: hits skip the signature check but never outlive exp or the key."""

from __future__ import annotations

import httpx
import pytest

from service.auth.tokens import TokenVerifier
from service.errors import InvalidToken, KeysUnavailable, TokenRejection
from support.key_cache import REFRESH, STALENESS


def make_verifier(cache, clock, timed_issuer, entries: int = 100) -> TokenVerifier:
    return TokenVerifier(
        cache,
        algorithms=("EdDSA",),
        issuers=(timed_issuer.issuer,),
        audiences=(timed_issuer.audience,),
        leeway_seconds=30,
        max_token_bytes=8192,
        token_cache_max_entries=entries,
        clock=clock,
    )


@pytest.fixture
async def verifier(make_cache, clock, timed_issuer):
    cache = make_cache()
    await cache.refresh()
    return make_verifier(cache, clock, timed_issuer)


async def test_second_verification_is_a_cache_hit(verifier, timed_issuer):
    token = timed_issuer.issue_token("u1")
    first = await verifier.verify_token(token)
    second = await verifier.verify_token(token)
    assert first == second and first.user_id == "u1"
    assert (verifier.cache_misses, verifier.cache_hits) == (1, 1)


async def test_cached_token_is_refused_once_expired(verifier, timed_issuer, clock):
    token = timed_issuer.issue_token("u1")
    await verifier.verify_token(token)
    await clock.advance(15 * 60 + 31)  # exp + leeway
    with pytest.raises(InvalidToken, match="expired"):
        await verifier.verify_token(token)


async def test_cached_token_of_a_removed_key_is_refused_and_dropped(verifier, timed_issuer, clock):
    old = timed_issuer.current_key
    token = timed_issuer.issue_token("u1")
    await verifier.verify_token(token)
    timed_issuer.rotate()
    timed_issuer.retire(old.kid)
    await clock.advance(REFRESH)  # the new set postdates the token by more than the skew
    await verifier.keys.refresh()
    for _ in range(2):  # refused, and stays refused: nothing of it is left in the cache
        with pytest.raises(InvalidToken, match="no published key") as refused:
            await verifier.verify_token(token)
        assert refused.value.reason is TokenRejection.UNKNOWN_KID
        assert verifier.cache_size == 0


async def test_cached_token_of_a_key_still_published_is_verified_again_once_after_a_withdrawal(
    verifier, timed_issuer, clock
):
    old = timed_issuer.current_key
    timed_issuer.rotate()
    await clock.advance(REFRESH)
    await verifier.keys.refresh()
    token = timed_issuer.issue_token("u1")  # signed with the new key
    await verifier.verify_token(token)
    timed_issuer.retire(old.kid)
    await clock.advance(REFRESH)
    await verifier.keys.refresh()
    for _ in range(2):
        assert (await verifier.verify_token(token)).user_id == "u1"
    assert (verifier.cache_misses, verifier.cache_hits) == (2, 1)  # verified afresh once, then a hit


async def test_a_routine_refresh_that_withdraws_nothing_keeps_cache_hits(verifier, timed_issuer, clock):
    token = timed_issuer.issue_token("u1")
    await verifier.verify_token(token)
    timed_issuer.rotate()  # a key added
    await clock.advance(REFRESH)
    await verifier.keys.refresh()
    await verifier.verify_token(token)
    assert (verifier.cache_misses, verifier.cache_hits) == (1, 1)


async def test_cached_token_is_not_served_once_the_key_set_is_too_stale(verifier, timed_issuer, clock, host):
    token = timed_issuer.issue_token("u1", claims={"exp": int(clock()) + 2 * STALENESS})
    await verifier.verify_token(token)
    host.route.mock(return_value=httpx.Response(500))  # no fresh set can be had
    await clock.advance(STALENESS + 1)
    with pytest.raises(KeysUnavailable):
        await verifier.verify_token(token)
    assert verifier.cache_size == 0 and verifier.outcomes[TokenRejection.KEYS_UNAVAILABLE] == 1


async def test_cache_is_bounded_and_counts_evictions(make_cache, clock, timed_issuer):
    cache = make_cache()
    await cache.refresh()
    verifier = make_verifier(cache, clock, timed_issuer, entries=10)
    for i in range(25):
        await verifier.verify_token(timed_issuer.issue_token(f"user{i}"))
    assert verifier.cache_size == 10 and verifier.cache_evictions == 15
