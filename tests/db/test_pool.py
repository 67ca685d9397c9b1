"""The database unavailable or saturated: a 503 with Retry-After, promptly, never a hang or a 500."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import asyncpg

from service.resources import app_resources
from support.app import assert_problem, create


async def test_pool_exhausted_gets_503_after_the_bounded_wait(start_app, alice):
    async with start_app(db_pool_min_size=1, db_pool_max_size=1, db_pool_acquire_timeout_seconds=0.2) as client:
        pool = app_resources(client.app).pool
        held = await pool.acquire()
        try:
            started = time.monotonic()
            response = await client.get(alice.url(), headers=alice.headers)
            assert_problem(response, 503, "database_unavailable")
            assert response.headers["retry-after"].isdigit()
            assert time.monotonic() - started < 5  # bounded by the acquire timeout, not a hang
        finally:
            await pool.release(held)
        assert (await client.get(alice.url(), headers=alice.headers)).status_code == 200


async def test_database_refusing_connections_gets_503_then_recovers(start_app, alice, postgres_admin_dsn, database_url):
    name = urlsplit(database_url).path.lstrip("/")
    admin = await asyncpg.connect(postgres_admin_dsn)
    async with start_app(db_pool_min_size=0) as client:
        task = await create(client, alice)
        await app_resources(client.app).pool.expire_connections()
        try:
            await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
            await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
            for _ in range(3):
                response = await client.get(alice.url(f"/{task['id']}"), headers=alice.headers)
                assert_problem(response, 503, "database_unavailable")
            ready = await client.get("/readyz")
            assert ready.status_code == 503 and ready.json()["problems"][0].startswith("database")
        finally:
            await admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
            await admin.close()
        response = await client.get(alice.url(f"/{task['id']}"), headers=alice.headers)
        assert response.status_code == 200 and response.json()["id"] == task["id"]
