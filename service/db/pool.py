"""The asyncpg pool, and the translation of "database unreachable" failures into a 503."""

from __future__ import annotations

import asyncio

import asyncpg

from ..settings import Settings
from .session import keep_session

CONNECT_TIMEOUT_SECONDS = 5.0

# Failures that mean "the database cannot serve right now", as opposed to a bug in a statement.
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.QueryCanceledError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.ConnectionFailureError,
    # A pooled connection whose server went away mid-handshake of its close ("cannot switch to
    # state …; another operation is in progress"): the database is going or gone, not a bug of ours.
    asyncpg.exceptions.InternalClientError,
)


async def create_pool(dsn: str, settings: Settings) -> asyncpg.Pool:
    return await asyncpg.create_pool(
        dsn,
        reset=keep_session,
        # 0 for pgbouncer in transaction mode (Neon, Supabase poolers): no named prepared statements.
        statement_cache_size=settings.db_statement_cache_size,
        min_size=settings.db_pool_min_size,
        max_size=settings.db_pool_max_size,
        timeout=CONNECT_TIMEOUT_SECONDS,
        command_timeout=settings.db_statement_timeout_ms / 1000 + 1 if settings.db_statement_timeout_ms else None,
        # Only what poolers pass through at start-up; timeouts and role are set per transaction.
        server_settings={"application_name": "tasks-service"},
    )


async def connect(dsn: str, settings: Settings) -> asyncpg.Connection:
    """A single connection (migrations), with the same pooler-safe options as the pool."""
    return await asyncpg.connect(
        dsn,
        timeout=CONNECT_TIMEOUT_SECONDS,
        statement_cache_size=settings.db_statement_cache_size,
        server_settings={"application_name": "tasks-service-migrate"},
    )
