"""Tombstones older than the retention are purged in the background, for all users, in batches.

The purge runs through `purge_sync_tombstones` (migration 0006), as a role that sees nothing
but tombstones; it also moves each user's horizon past what it removed, so an old token gets
410 rather than a feed with a delete missing. Batching and the periodic pass are the shared
ones of service.db.maintenance.
"""

from __future__ import annotations

import asyncpg

from ..db.maintenance import Batch, in_batches, run_periodically
from . import queries

PURGE_INTERVAL_SECONDS = 3600.0


def tombstone_purge(pool: asyncpg.Pool, retention_days: int) -> Batch:
    async def batch(max_rows: int) -> int:
        async with pool.acquire() as conn:
            return await queries.purge_tombstones_batch(conn, retention_days, max_rows)

    return batch


async def purge_tombstones(pool: asyncpg.Pool, retention_days: int) -> int:
    """One pass of the purge; the number of tombstones removed."""
    return await in_batches(tombstone_purge(pool, retention_days))


async def purge_forever(pool: asyncpg.Pool, retention_days: int) -> None:
    await run_periodically("sync tombstone purge", tombstone_purge(pool, retention_days), PURGE_INTERVAL_SECONDS)
