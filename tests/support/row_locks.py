"""Requests held inside the database for certain: a superuser transaction holds a row lock, and
the test waits until the service's backends are queued on it. Concurrent requests then truly
overlap, rather than happening to run one after another."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import asyncpg
import pytest

POLL_INTERVAL_SECONDS = 0.05
APPLICATION_NAME = "tasks-service"  # the service's connections say so in pg_stat_activity


@contextlib.asynccontextmanager
async def row_locked(database_url: str, user_id: str, task_id: int) -> AsyncIterator[asyncpg.Connection]:
    """A superuser transaction holding FOR UPDATE on one task until the block ends (rolled back)."""
    admin = await asyncpg.connect(database_url)
    try:
        hold = admin.transaction()
        await hold.start()
        try:
            await admin.execute("SELECT 1 FROM tasks WHERE user_id = $1 AND id = $2 FOR UPDATE", user_id, task_id)
            yield admin
        finally:
            await hold.rollback()
    finally:
        await admin.close()


async def wait_for_lock_waiters(admin: asyncpg.Connection, count: int, deadline_seconds: float = 5.0) -> None:
    """Until `count` service backends wait on a lock (so their requests are surely in flight)."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        await admin.execute("SELECT pg_stat_clear_snapshot()")  # else a transaction sees one snapshot forever
        waiting = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock'",
            APPLICATION_NAME,
        )
        if waiting >= count:
            return
        if time.monotonic() > deadline:
            activity = await admin.fetch(
                "SELECT state, wait_event_type, wait_event, left(query, 120) AS query FROM pg_stat_activity"
                " WHERE application_name = $1",
                APPLICATION_NAME,
            )
            pytest.fail(f"only {waiting} of {count} requests are waiting on a lock: {[dict(r) for r in activity]}")
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
