"""The pool under faults, through the app in-process: exhausted behind a row lock, a statement
over the timeout, a pooled connection the server kills while it is idle. Each gets a prompt 503
`database_unavailable` with Retry-After (never a hang, never a 500), applies nothing, and leaves
the pool usable."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import httpx

from support.app import assert_problem, create
from support.delayed_close_proxy import DelayedCloseProxy
from support.row_locks import row_locked, wait_for_lock_waiters
from support.waiting import timed


async def test_pool_exhausted_by_a_slow_statement_answers_every_queued_request_with_a_prompt_503(
    start_app, alice, database_url
):
    acquire_timeout = 0.3
    async with start_app(
        db_pool_min_size=1, db_pool_max_size=1, db_pool_acquire_timeout_seconds=acquire_timeout
    ) as client:
        task = await create(client, alice)
        async with row_locked(database_url, alice.id, task["id"]) as admin:
            # The only connection is taken by a PUT waiting on the row lock: really slow, not a held handle.
            put = asyncio.create_task(client.put(alice.url(f"/{task['id']}"), json={"title": "slow", "description": "", "completed": False},
                                                 headers=alice.headers))  # fmt: skip
            await wait_for_lock_waiters(admin, 1)
            started = time.monotonic()
            queued = await asyncio.gather(
                *(timed(client.get(alice.url(f"/{task['id']}"), headers=alice.headers)) for _ in range(15)),
                *(
                    timed(client.post(alice.url(), json={"title": f"queued {i}"}, headers=alice.headers))
                    for i in range(5)
                ),
                timed(client.get("/readyz")),
            )
            wall = time.monotonic() - started
            for response, seconds in queued[:-1]:
                assert_problem(response, 503, "database_unavailable")
                assert response.headers["retry-after"].isdigit()
                assert acquire_timeout * 0.8 <= seconds < acquire_timeout + 0.7, seconds  # waited, boundedly
            ready, ready_seconds = queued[-1]
            assert ready.status_code == 503 and ready.json()["problems"][0].startswith("database"), ready.text
            assert ready_seconds < 2
            assert wall < 2.5, f"the queued requests were answered one after another ({wall:.2f} s), not together"
            assert not put.done()
        response = await asyncio.wait_for(put, 5)
        assert response.status_code == 200 and response.json()["title"] == "slow", response.text
        listing = await client.get(alice.url(), headers=alice.headers)
        assert [t["title"] for t in listing.json()] == ["slow"]  # no queued create slipped in
        pool = client.app.state.resources.pool
        assert pool.get_size() == 1 and pool.get_idle_size() == 1


async def test_statement_over_the_timeout_is_cancelled_with_503_and_applies_nothing(start_app, alice, database_url):
    async with start_app(db_statement_timeout_ms=300, db_pool_max_size=2) as client:
        task = await create(client, alice)
        async with row_locked(database_url, alice.id, task["id"]):
            started = time.monotonic()
            response = await client.put(alice.url(f"/{task['id']}"), json={"title": "late", "description": "", "completed": True},
                                        headers=alice.headers)  # fmt: skip
            seconds = time.monotonic() - started
        assert_problem(response, 503, "database_unavailable")
        assert 0.25 <= seconds < 1.5, seconds
        after = await client.get(alice.url(f"/{task['id']}"), headers=alice.headers)
        assert after.json() == task and after.headers["etag"] == f'"{task["id"]}-1"'
        again = await client.put(alice.url(f"/{task['id']}"), json={"title": "now", "description": "", "completed": True},
                                 headers=alice.headers)  # fmt: skip
        assert again.status_code == 200, again.text  # the cancelled connection went back to the pool usable


async def test_connection_killed_by_the_server_while_idle_gets_503_not_500(
    start_app, alice, database_url, postgres_admin_dsn
):
    async with DelayedCloseProxy(database_url, hold_close_seconds=1.5) as proxy:
        async with start_app(database_url=proxy.dsn(database_url), db_pool_min_size=1, db_pool_max_size=1) as client:
            assert (await client.get(alice.url(), headers=alice.headers)).status_code == 200
            async with client.app.state.resources.pool.acquire() as conn:
                backend = conn.get_server_pid()
            admin = await asyncpg.connect(postgres_admin_dsn)
            try:
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", backend)
            finally:
                await admin.close()
            await asyncio.wait_for(proxy.server_closed.wait(), 5)
            await asyncio.sleep(0.1)  # the FATAL is read; the close is still held back by the proxy

            # As uvicorn would: the app's own answer, even when it re-raises after a 500.
            transport = httpx.ASGITransport(app=client.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as http:
                response = await http.get(alice.url(), headers=alice.headers)
            try:
                assert_problem(response, 503, "database_unavailable")
            finally:
                await asyncio.sleep(proxy.hold_close_seconds)  # the close arrives; the pool reconnects
                recovered = await client.get(alice.url(), headers=alice.headers)
                assert recovered.status_code == 200, recovered.text
