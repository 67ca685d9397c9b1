"""Background upkeep of the database that no request pays for, in bounded batches.

Each job is a database function that runs under its own narrow role and deletes at most a batch
per call: expired Idempotency-Keys (`sweep_expired_idempotency_keys`, migration 0004) and sync
tombstones (`purge_sync_tombstones`, migration 0006). A pass makes at most `MAX_BATCHES` calls,
so it holds one pooled connection for a bounded time however much expired since the last pass;
several processes may run the same job at once (a row deleted by one is not found by another).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

import asyncpg

log = logging.getLogger("service.db.maintenance")

BATCH_ROWS = 1000
MAX_BATCHES = 20

Batch = Callable[[int], Awaitable[int]]  # deletes at most that many rows; how many it deleted


async def in_batches(batch: Batch, *, batch_rows: int = BATCH_ROWS, max_batches: int = MAX_BATCHES) -> int:
    """Run `batch` until it deletes fewer than a full batch, at most `max_batches` times; the total."""
    deleted = 0
    for _ in range(max_batches):
        done = await batch(batch_rows)
        deleted += done
        if done < batch_rows:
            break
    return deleted


async def run_periodically(
    what: str,
    batch: Batch,
    interval_seconds: float,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """A pass of `batch` every `interval_seconds` (jittered so replicas spread out), forever."""
    while True:
        await sleep(interval_seconds * random.uniform(0.8, 1.2))
        try:
            deleted = await in_batches(batch)
        except Exception as exc:  # noqa: BLE001 - the next pass retries; requests are unaffected
            log.warning("%s failed: %s", what, type(exc).__name__)
            continue
        if deleted:
            log.info("%s deleted %d row(s)", what, deleted)


def idempotency_sweep(pool: asyncpg.Pool, ttl_hours: int) -> Batch:
    """One batch of expired Idempotency-Keys of every user."""

    async def batch(max_rows: int) -> int:
        deleted: int = await pool.fetchval("SELECT sweep_expired_idempotency_keys($1, $2)", ttl_hours, max_rows)
        return deleted

    return batch


async def sweep_expired_idempotency_keys(
    pool: asyncpg.Pool, ttl_hours: int, *, batch_rows: int = BATCH_ROWS, max_batches: int = MAX_BATCHES
) -> int:
    """One pass of the sweep; the number deleted."""
    return await in_batches(idempotency_sweep(pool, ttl_hours), batch_rows=batch_rows, max_batches=max_batches)
