"""Waiting for a pooled connection is first come, first served (service.db.session's gate).

asyncpg's pool waits on an asyncio.Queue, where a request arriving just as a connection is
released takes it ahead of those already waiting; under load that starved some requests into
the latency tail. The gate in front of the pool keeps the queue's order."""

from __future__ import annotations

import asyncio

from service.db.session import user_transaction

WAITERS = 5
NEWCOMERS = 20


async def served_order(pool, user_id: str, gate: asyncio.Semaphore | None) -> list[str]:
    """Who got the connection in which order: one holder, then waiters queued behind it, then
    newcomers arriving one per event-loop turn while the waiters are being served."""
    order: list[str] = []
    release_holder = asyncio.Event()

    async def use(name: str, hold: asyncio.Event | None = None) -> None:
        async with user_transaction(pool, user_id, acquire_timeout_seconds=10, gate=gate):
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


async def test_waiters_are_served_before_later_arrivals(client, alice):
    pool = client.app.state.resources.pool
    size = pool.get_max_size()
    # Hold all connections but one, so the test's requests share a single connection.
    others = [await pool.acquire() for _ in range(size - 1)]
    try:
        order = await served_order(pool, alice.id, asyncio.Semaphore(1))
    finally:
        for conn in others:
            await pool.release(conn)
    assert order == ["holder", *(f"waiter {i}" for i in range(WAITERS)), *(f"newcomer {i}" for i in range(NEWCOMERS))]
