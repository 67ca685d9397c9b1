"""Waiting for a pooled connection is first come, first served (the app's pool gate).

asyncpg's pool waits on an asyncio.Queue, where a request arriving just as a connection is
released takes it ahead of those already waiting; under load that starved some requests into
the latency tail. The gate in front of the pool keeps the queue's order. These tests use the
application's own gate, through the same `Resources.transaction` the routes use."""

from __future__ import annotations

import asyncio

import pytest

from service.db.session import UserConnection
from service.resources import Resources, app_resources
from support.app import assert_problem

WAITERS = 5
NEWCOMERS = 20


async def served_order(resources: Resources, user_id: str) -> list[str]:
    """Who got the connection in which order: one holder, then waiters queued behind it, then
    newcomers arriving one per event-loop turn while the waiters are being served."""
    order: list[str] = []
    release_holder = asyncio.Event()

    async def use(name: str, hold: asyncio.Event | None = None) -> None:
        async with resources.transaction(user_id):
            order.append(name)
            if hold is not None:
                await hold.wait()

    tasks = [asyncio.create_task(use("holder", release_holder))]
    while not order:
        await asyncio.sleep(0.01)
    tasks += [asyncio.create_task(use(f"waiter {i}")) for i in range(WAITERS)]
    await asyncio.sleep(0.1)  # all of them are waiting now
    release_holder.set()
    for i in range(NEWCOMERS):
        tasks.append(asyncio.create_task(use(f"newcomer {i}")))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    return order


async def test_waiters_are_served_before_later_arrivals(start_app, alice):
    # One connection, so every transaction of the test waits for the same one.
    async with start_app(db_pool_min_size=1, db_pool_max_size=1, db_pool_acquire_timeout_seconds=10) as client:
        order = await served_order(app_resources(client.app), alice.id)
    assert order == ["holder", *(f"waiter {i}" for i in range(WAITERS)), *(f"newcomer {i}" for i in range(NEWCOMERS))]


async def test_requests_wait_on_the_apps_gate(start_app, alice):
    """With every permit of the gate taken (and idle connections in the pool), a request waits
    its bounded time and gets 503: the routes go through the gate."""
    async with start_app(db_pool_min_size=2, db_pool_max_size=2, db_pool_acquire_timeout_seconds=0.2) as client:
        resources = app_resources(client.app)
        for _ in range(resources.settings.db_pool_max_size):
            await resources.pool_gate.acquire()
        try:
            assert resources.pool.get_idle_size() > 0
            assert_problem(await client.get(alice.url(), headers=alice.headers), 503, "database_unavailable")
        finally:
            for _ in range(resources.settings.db_pool_max_size):
                resources.pool_gate.release()
        assert (await client.get(alice.url(), headers=alice.headers)).status_code == 200


async def test_a_user_connection_cannot_be_used_after_its_transaction(client, alice):
    resources = app_resources(client.app)
    async with resources.transaction(alice.id) as db:
        assert isinstance(db, UserConnection) and db.user_id == alice.id
        assert await db.fetchval("SELECT current_setting('app.user_id')") == alice.id
    with pytest.raises(RuntimeError, match="transaction has ended"):
        await db.fetchval("SELECT 1")


async def test_failed_transactions_give_back_their_gate_permit_and_connection(start_app, alice):
    async with start_app(db_pool_min_size=1, db_pool_max_size=1, db_pool_acquire_timeout_seconds=0.5) as client:
        resources = app_resources(client.app)
        for _ in range(3):  # more failures than permits: a leaked permit would starve the next one
            with pytest.raises(ZeroDivisionError):
                async with resources.transaction(alice.id):
                    raise ZeroDivisionError
        assert (await client.get(alice.url(), headers=alice.headers)).status_code == 200
