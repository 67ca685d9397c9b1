"""The verified-token cache: hits skip the signature check but never outlive exp or the key."""

from __future__ import annotations

import pytest

from service.auth.tokens import TokenVerifier
from service.errors import InvalidToken

from .conftest import REFRESH


def make_verifier(cache, clock, timed_issuer, entries: int = 100) -> TokenVerifier:
    verifier = TokenVerifier(
        cache,
        algorithms=("EdDSA",),
        issuer=timed_issuer.issuer,
        audience=timed_issuer.audience,
        leeway_seconds=30,
        max_token_bytes=8192,
        token_cache_max_entries=entries,
        clock=clock,
    )
    cache.on_keys_removed = verifier.forget_keys
    return verifier


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


async def test_cached_token_of_a_removed_key_is_purged_and_refused(verifier, timed_issuer, clock, make_cache):
    old = timed_issuer.current_key
    token = timed_issuer.issue_token("u1")
    await verifier.verify_token(token)
    timed_issuer.rotate()
    timed_issuer.retire(old.kid)
    await clock.advance(REFRESH)  # the new set postdates the token by more than the skew
    await verifier._keys.refresh()
    assert verifier.cache_size == 0  # purged when the key left the JWKS
    with pytest.raises(InvalidToken, match="no published key"):
        await verifier.verify_token(token)


async def test_cache_is_bounded_and_counts_evictions(make_cache, clock, timed_issuer):
    cache = make_cache()
    await cache.refresh()
    verifier = make_verifier(cache, clock, timed_issuer, entries=10)
    for i in range(25):
        await verifier.verify_token(timed_issuer.issue_token(f"user{i}"))
    assert verifier.cache_size == 10 and verifier.cache_evictions == 15
