"""A request's database work: one pooled connection, one transaction, scoped to one user.

The user id is set transaction-locally (`set_config('app.user_id', …, true)`) in the same round
trip as BEGIN, so row-level security sees it for exactly this transaction and no pooled
connection (or pgbouncer server connection) ever carries it into another request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import AsyncIterator

import asyncpg

from ..errors import DatabaseUnavailable

log = logging.getLogger("service.db")

APP_ROLE = "tasks_app"  # created by migration 0002; neither owns the tables nor bypasses RLS


def sql_literal(value: str) -> str:
    """A string constant for the simple-query protocol (standard_conforming_strings is on)."""
    if "\x00" in value:
        raise ValueError("NUL cannot appear in a PostgreSQL string")
    return "'" + value.replace("'", "''") + "'"


async def acquire_connection(pool: asyncpg.Pool, timeout_seconds: float) -> asyncpg.Connection:
    """A pooled connection; waiting is bounded, and failing to get one is a 503, not a 500."""
    try:
        return await pool.acquire(timeout=timeout_seconds)
    except asyncio.TimeoutError:
        raise DatabaseUnavailable("all database connections are busy, retry shortly") from None
    except Exception as exc:  # noqa: BLE001 - cannot connect at all: not the caller's fault
        log.warning("cannot get a database connection: %s", type(exc).__name__)
        raise DatabaseUnavailable() from exc


@contextlib.asynccontextmanager
async def user_transaction(
    pool: asyncpg.Pool, user_id: str, *, acquire_timeout_seconds: float
) -> AsyncIterator[asyncpg.Connection]:
    """Run the body in a transaction as `user_id`; commit on success, roll back on any error."""
    conn = await acquire_connection(pool, acquire_timeout_seconds)
    try:
        await conn.execute(f"BEGIN; SELECT set_config('app.user_id', {sql_literal(user_id)}, true)")
        try:
            yield conn
        except BaseException:
            if not conn.is_closed():
                with contextlib.suppress(Exception):
                    await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")
    finally:
        await pool.release(conn)


async def enter_app_role(conn: asyncpg.Connection) -> None:
    """Pool `init`: every statement of the service runs as the unprivileged role."""
    await conn.execute(f"SET ROLE {APP_ROLE}")


async def keep_session(conn: asyncpg.Connection) -> None:
    """Pool `reset`: nothing to undo. Our only session state is the role set at connect; the user
    id is transaction-local and asyncpg rolls back any open transaction before this runs."""
