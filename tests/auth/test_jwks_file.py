"""JWKS_FILE: keys read from a local file, reloaded when it changes, with the rules fetched keys
follow: each key validated on its own, a file that cannot be used keeps the last good keys."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest
import respx

from service.auth.jwks import JWKSCache
from service.auth.jwks_file import JWKSFile
from service.errors import InvalidToken
from service.testing import FakeBetterAuth
from support.app import new_user_id, running_app, test_settings
from support.clock import FakeClock
from support.key_cache import INTERVAL, REFRESH, SKEW, STALENESS
from support.waiting import wait_until

POLL_SECONDS = 0.05


def write_jwks(path: Path, document: object) -> None:
    """Replace the file at once (write then rename), as a config-management tool would."""
    scratch = path.with_suffix(".tmp")
    scratch.write_text(document if isinstance(document, str) else json.dumps(document))
    os.replace(scratch, path)


@pytest.fixture
def key_file(tmp_path: Path, timed_issuer: FakeBetterAuth) -> Path:
    path = tmp_path / "jwks.json"
    write_jwks(path, timed_issuer.jwks())
    return path


@pytest.fixture
def source(key_file: Path) -> JWKSFile:
    return JWKSFile(key_file, max_bytes=64 * 1024)


@pytest.fixture
async def file_cache(source: JWKSFile, clock: FakeClock) -> JWKSCache:
    cache = JWKSCache(
        source.read,
        min_refetch_interval_seconds=INTERVAL,
        refresh_interval_seconds=REFRESH,
        max_staleness_seconds=STALENESS,
        clock_skew_seconds=SKEW,
        clock=clock,
        sleep=clock.sleep,
    )
    assert await cache.refresh() is not None
    return cache


async def test_keys_come_from_the_file_and_an_unchanged_file_is_not_parsed_again(
    file_cache, source, timed_issuer, clock
):
    kid = timed_issuer.current_key.kid
    for _ in range(3):
        await clock.advance(1)
        assert await file_cache.refresh() is not None
        assert (await file_cache.get_key(kid, clock())).kid == kid
    assert source.reads == 1 and file_cache.stats.ok == 4


async def test_a_rewritten_file_brings_new_keys_and_withdraws_old_ones(file_cache, key_file, timed_issuer, clock):
    old = timed_issuer.current_key
    new = timed_issuer.rotate()
    timed_issuer.retire(old.kid)
    write_jwks(key_file, timed_issuer.jwks())
    await clock.advance(INTERVAL)
    assert (await file_cache.get_key(new.kid, clock())).kid == new.kid  # an unknown kid rereads the file
    with pytest.raises(InvalidToken, match="no published key"):
        await file_cache.get_key(old.kid, clock() - 2 * SKEW)
    assert file_cache.generation == 1


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param("{not json", id="half-written"),
        pytest.param({"keys": []}, id="no-keys"),
        pytest.param({"keys": [{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}]}, id="only-a-symmetric-key"),
        pytest.param(["not", "a", "jwks"], id="not-a-jwks"),
        pytest.param(None, id="deleted"),
    ],
)
async def test_a_file_that_cannot_be_used_keeps_the_last_good_keys_and_is_logged_once(
    file_cache, key_file, timed_issuer, clock, caplog, broken
):
    caplog.set_level(logging.WARNING, "service.auth.jwks")
    if broken is None:
        key_file.unlink()
    else:
        write_jwks(key_file, broken)
    for _ in range(3):
        await clock.advance(1)
        assert await file_cache.refresh() is None
    kid = timed_issuer.current_key.kid
    assert (await file_cache.get_key(kid, clock())).kid == kid
    assert file_cache.stats.failed == 3
    messages = [r.getMessage() for r in caplog.records if "failing" in r.getMessage()]
    assert len(messages) == 1
    assert str(key_file) not in (file_cache.stats.last_error or "")  # it reaches /readyz


async def test_one_bad_key_in_the_file_is_skipped_and_the_rest_serve(file_cache, key_file, timed_issuer, clock):
    new = timed_issuer.rotate()
    keys = timed_issuer.jwks()["keys"]
    write_jwks(key_file, {"keys": [{"kty": "RSA", "kid": "broken", "n": "AQAB", "e": "AQAB"}, *keys]})
    await clock.advance(INTERVAL)
    assert (await file_cache.get_key(new.kid, clock())).kid == new.kid
    assert set(file_cache.usable_set().keys) == {key["kid"] for key in keys}


async def test_the_service_reloads_a_changed_key_file_without_any_http(database_url, tmp_path):
    issuer = FakeBetterAuth("http://issuer.test:3000")
    path = tmp_path / "jwks.json"
    write_jwks(path, issuer.jwks())
    settings = test_settings(database_url, issuer, jwks_file=path, jwks_file_poll_seconds=POLL_SECONDS)
    with respx.mock(assert_all_mocked=True):  # no route at all: any HTTP request would fail
        async with running_app(settings) as client:
            user = new_user_id()
            headers = {"Authorization": f"Bearer {issuer.issue_token(user)}"}
            assert (await client.get(f"/api/{user}/tasks", headers=headers)).status_code == 200
            old = issuer.current_key
            issuer.rotate()
            issuer.retire(old.kid)
            write_jwks(path, issuer.jwks())
            held = client.app.state.resources.jwks.usable_set
            await wait_until(lambda: old.kid not in held().keys, 5, "the rewritten key file picked up")
            headers = {"Authorization": f"Bearer {issuer.issue_token(user)}"}
            assert (await client.get(f"/api/{user}/tasks", headers=headers)).status_code == 200
            headers = {"Authorization": f"Bearer {issuer.issue_token(user, key=old)}"}
            assert (await client.get(f"/api/{user}/tasks", headers=headers)).status_code == 401
