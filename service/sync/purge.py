"""Tombstones older than the retention are purged in the background, for all users, in batches.

The purge runs through `purge_sync_tombstones` (migration 0006), as a role that sees nothing
but tombstones; it also moves each user's horizon past what it removed, so an old token gets
410 rather than a feed with a delete missing. Several processes may purge at once: a row
deleted by one is simply not found by the others.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg

from ..db.pool import UNAVAILABLE_ERRORS
from . import queries

log = logging.getLogger("service.sync")

PURGE_INTERVAL_SECONDS = 3600.0
PURGE_BATCH_ROWS = 1000


async def purge_tombstones(pool: asyncpg.Pool, retention_days: int) -> int:
    """Purge every tombstone older than the retention, a batch per transaction; the count."""
    total = 0
    while True:
        async with pool.acquire() as conn:
            purged = await queries.purge_tombstones_batch(conn, retention_days, PURGE_BATCH_ROWS)
        total += purged
        if purged < PURGE_BATCH_ROWS:
            return total


async def purge_forever(pool: asyncpg.Pool, retention_days: int) -> None:
    while True:
        try:
            purged = await purge_tombstones(pool, retention_days)
            if purged:
                log.info("purged %d sync tombstones older than %d days", purged, retention_days)
        except UNAVAILABLE_ERRORS as exc:
            log.warning("tombstone purge skipped: %s", type(exc).__name__)
        except asyncpg.PostgresError as exc:
            log.error("tombstone purge failed: %s", exc)
        await asyncio.sleep(PURGE_INTERVAL_SECONDS)
