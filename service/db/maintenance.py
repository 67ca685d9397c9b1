"""Background upkeep of the database that no request pays for: sweeping expired Idempotency-Keys.

The sweep runs as the database function `sweep_expired_idempotency_keys` (migration 0004), under
its own role that can see only keys older than an hour. Each pass deletes at most
`SWEEP_BATCH_ROWS` keys per call and `SWEEP_MAX_BATCHES` calls, so one pass holds one pooled
connection for a bounded time however many keys expired since the last one.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable

import asyncpg

log = logging.getLogger("service.db.maintenance")

SWEEP_BATCH_ROWS = 1000
SWEEP_MAX_BATCHES = 20


async def sweep_expired_idempotency_keys(
    pool: asyncpg.Pool, ttl_hours: int, *, batch_rows: int = SWEEP_BATCH_ROWS, max_batches: int = SWEEP_MAX_BATCHES
) -> int:
    """Delete expired keys of every user, a batch per statement; the number deleted."""
    deleted = 0
    for _ in range(max_batches):
        batch: int = await pool.fetchval("SELECT sweep_expired_idempotency_keys($1, $2)", ttl_hours, batch_rows)
        deleted += batch
        if batch < batch_rows:
            break
    return deleted


async def run_idempotency_sweeper(
    pool: asyncpg.Pool,
    ttl_hours: int,
    interval_seconds: float,
    *,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> None:
    """Sweep forever, every `interval_seconds` (jittered so replicas spread out)."""
    while True:
        await sleep(interval_seconds * random.uniform(0.8, 1.2))
        try:
            deleted = await sweep_expired_idempotency_keys(pool, ttl_hours)
        except Exception as exc:  # noqa: BLE001 - the next pass retries; requests are unaffected
            log.warning("idempotency key sweep failed: %s", type(exc).__name__)
            continue
        if deleted:
            log.info("idempotency key sweep deleted %d expired key(s)", deleted)
