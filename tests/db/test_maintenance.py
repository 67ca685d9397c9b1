"""The idempotency-key sweep: expired keys of every user go, live keys stay, each pass is bounded."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest

from service.db.maintenance import sweep_expired_idempotency_keys
from service.db.session import begin_as

TTL_HOURS = 24


@pytest.fixture
async def pool(database_url: str, migrated: str) -> AsyncIterator[asyncpg.Pool]:
    async with asyncpg.create_pool(database_url, min_size=1, max_size=2) as pool:
        yield pool


async def add_key(pool: asyncpg.Pool, user_id: str, key: str, age_hours: float) -> None:
    """A key written as its user writes it (row-level security on), then aged."""
    async with pool.acquire() as conn:
        await conn.execute(begin_as(user_id, 5000))
        await conn.execute(
            "INSERT INTO idempotency_keys (user_id, key, fingerprint, created_at)"
            " VALUES ($1, $2, '\\x00', now() - make_interval(secs => $3))",
            user_id,
            key,
            age_hours * 3600,
        )
        await conn.execute("COMMIT")


async def keys_of(pool: asyncpg.Pool, user_id: str) -> set[str]:
    async with pool.acquire() as conn:
        await conn.execute(begin_as(user_id, 5000))
        rows = await conn.fetch("SELECT key FROM idempotency_keys WHERE user_id = $1", user_id)
        await conn.execute("COMMIT")
    return {row["key"] for row in rows}


async def test_sweep_deletes_expired_keys_of_every_user_and_keeps_live_ones(pool, make_user):
    users = [make_user().id for _ in range(3)]
    for user in users:
        await add_key(pool, user, "old", TTL_HOURS + 1)
        await add_key(pool, user, "fresh", 1.5)
    assert await sweep_expired_idempotency_keys(pool, TTL_HOURS) >= len(users)
    for user in users:
        assert await keys_of(pool, user) == {"fresh"}


async def test_sweep_never_deletes_a_key_younger_than_an_hour_whatever_the_ttl(pool, make_user):
    user = make_user().id
    await add_key(pool, user, "recent", 0.5)
    await add_key(pool, user, "older", 2)
    await sweep_expired_idempotency_keys(pool, 0)  # a TTL of 0 h would take everything
    assert await keys_of(pool, user) == {"recent"}


async def test_each_pass_deletes_at_most_its_batches(pool, make_user):
    user = make_user().id
    for index in range(7):
        await add_key(pool, user, f"k{index}", TTL_HOURS + 2)
    assert await sweep_expired_idempotency_keys(pool, TTL_HOURS, batch_rows=2, max_batches=2) == 4
    assert len(await keys_of(pool, user)) == 3
    assert await sweep_expired_idempotency_keys(pool, TTL_HOURS, batch_rows=2, max_batches=10) == 3
    assert await keys_of(pool, user) == set()


async def test_the_running_app_sweeps_expired_keys_by_itself(start_app, pool, make_user):
    user = make_user().id
    await add_key(pool, user, "old", TTL_HOURS + 1)
    async with start_app(idempotency_key_ttl_hours=TTL_HOURS, idempotency_sweep_interval_seconds=0.2):
        for _ in range(100):  # bounded: 10 s at most
            if not await keys_of(pool, user):
                break
            await asyncio.sleep(0.1)
    assert await keys_of(pool, user) == set()
