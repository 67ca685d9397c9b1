"""A request's database work: one pooled connection, scoped to one user, in as few round trips
as the work allows.

A request whose work is one statement (a read, or a create) sends it in one round trip, as a call
of that statement's function (`service.db.statements`): the function takes the unprivileged role
for its own duration and sets the user id that row-level security compares with, in the call's
own implicit transaction. Any other work opens a transaction on its first statement: BEGIN, the
role (`SET LOCAL ROLE tasks_app`), the timeouts, UTC for the timestamps PostgreSQL writes into JSON
responses, and the user id (`set_config('app.user_id', …, true)`), in one round trip; then the
statements; then COMMIT. Nothing outlives the call or the transaction, so no pooled connection,
and no pgbouncer server connection in transaction mode, ever carries a user (or a role) into
another request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import asyncpg

from ..errors import DatabaseUnavailable

if TYPE_CHECKING:
    from .statements import OwnedStatement

log = logging.getLogger("service.db")

APP_ROLE = "tasks_app"  # created by migration 0002; neither owns the tables nor bypasses RLS


class UserConnection:
    """A connection scoped to one user: the only handle the task queries take.

    Under forced row-level security, a statement run on the pool (or on a connection outside
    `user_transaction`) sees no user and silently matches no rows. Queries are typed to take
    this class, which only `user_transaction` makes, so that mistake fails the type check; and
    using it after its request ended raises instead of reaching a connection someone else
    may hold by then.

    `one_row` sends an owned statement in one round trip; the other methods open the transaction
    on first use, and `one_row` then runs its statement inside it.
    """

    __slots__ = ("_conn", "_max_tasks", "_statement_timeout_ms", "began", "user_id")

    def __init__(
        self, conn: asyncpg.Connection, user_id: str, *, statement_timeout_ms: int, max_tasks: int | None
    ) -> None:
        self._conn: asyncpg.Connection | None = conn
        self._statement_timeout_ms = statement_timeout_ms
        self._max_tasks = max_tasks
        self.began = False
        self.user_id = user_id

    def _connection(self) -> asyncpg.Connection:
        if self._conn is None:
            raise RuntimeError("this UserConnection's transaction has ended")
        return self._conn

    async def _in_transaction(self) -> asyncpg.Connection:
        conn = self._connection()
        if not self.began:
            await conn.execute(begin_as(self.user_id, self._statement_timeout_ms, self._max_tasks))
            self.began = True
        return conn

    async def one_row(self, statement: OwnedStatement, user_id: str, *args: Any) -> asyncpg.Record | None:
        """The first row of `statement` run as `user_id` (its $1), in one round trip.

        The call's statement timeout is the client's: a function's settings cannot bound the
        statement that called it, so asyncpg cancels it after DB_STATEMENT_TIMEOUT_MS (a 503,
        as the server's timeout is)."""
        if user_id != self.user_id:
            raise ValueError("an owned statement runs as the connection's user")
        if self.began or statement.name in _missing_functions:
            return await (await self._in_transaction()).fetchrow(statement.sql, user_id, *args)
        quota = (self._max_tasks,) if statement.sets_quota else ()
        timeout = self._statement_timeout_ms / 1000 if self._statement_timeout_ms else None
        try:
            return await self._connection().fetchrow(statement.call, user_id, *args, *quota, timeout=timeout)
        except asyncpg.UndefinedFunctionError as exc:
            if statement.name not in str(exc):  # something the statement itself calls
                raise
            # Made by nobody yet (the schema was migrated by another version): run it the long way.
            log.warning(
                "owned statement function %s is missing; running its statement in a transaction", statement.name
            )
            _missing_functions.add(statement.name)
            return await (await self._in_transaction()).fetchrow(statement.sql, user_id, *args)

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await (await self._in_transaction()).fetch(sql, *args)
        return rows

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await (await self._in_transaction()).fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await (await self._in_transaction()).fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        status: str = await (await self._in_transaction()).execute(sql, *args)
        return status

    def _end(self) -> None:
        self._conn = None


# Functions found missing in this process: their statements run in a transaction until restart.
_missing_functions: set[str] = set()


def sql_literal(value: str) -> str:
    """An escape-string constant (E'…') for the simple-query protocol: its meaning does not
    depend on standard_conforming_strings, which a pooler or server may set either way."""
    if "\x00" in value:
        raise ValueError("NUL cannot appear in a PostgreSQL string")
    return "E'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def begin_as(user_id: str, statement_timeout_ms: int, max_tasks: int | None = None) -> str:
    """BEGIN, the role, the timeouts, the user and their task quota (`app.max_tasks`, which the
    insert trigger of migration 0004 enforces), as one simple-query message: one round trip."""
    idle_ms = max(statement_timeout_ms * 2, 10_000)
    quota = "" if max_tasks is None else f", set_config('app.max_tasks', '{int(max_tasks)}', true)"
    return (
        f"BEGIN; SET LOCAL ROLE {APP_ROLE}; SET LOCAL statement_timeout = {int(statement_timeout_ms)}; "
        f"SET LOCAL idle_in_transaction_session_timeout = {idle_ms}; SET LOCAL TimeZone = 'UTC'; "
        f"SELECT set_config('app.user_id', {sql_literal(user_id)}, true){quota}"
    )


async def acquire_connection(
    pool: asyncpg.Pool, timeout_seconds: float, gate: asyncio.Semaphore | None = None
) -> asyncpg.Connection:
    """A pooled connection; waiting is bounded, and failing to get one is a 503, not a 500.

    `gate`, a semaphore as large as the pool, makes the wait first come, first served: asyncpg's
    pool waits on an asyncio.Queue, where a newcomer can take the connection released for a
    waiter, which then queues again at the back. Under load that starved some requests and
    doubled the p99 (figures in tests/bench/README.md).
    The caller releases the gate after the connection (see user_transaction).
    """
    try:
        async with asyncio.timeout(timeout_seconds):
            if gate is not None:
                await gate.acquire()
            try:
                return await pool.acquire()
            except BaseException:
                if gate is not None:
                    gate.release()
                raise
    except TimeoutError:
        raise DatabaseUnavailable("all database connections are busy, retry shortly") from None
    except Exception as exc:
        log.warning("cannot get a database connection: %s", type(exc).__name__)
        raise DatabaseUnavailable() from exc


@contextlib.asynccontextmanager
async def user_transaction(
    pool: asyncpg.Pool,
    user_id: str,
    *,
    acquire_timeout_seconds: float,
    statement_timeout_ms: int = 5000,
    max_tasks: int | None = None,
    gate: asyncio.Semaphore | None = None,
) -> AsyncIterator[UserConnection]:
    """Run the body as `user_id`; a transaction it opened commits on success and rolls back on
    any error (a body that sent only one owned statement opened none)."""
    conn = await acquire_connection(pool, acquire_timeout_seconds, gate)
    handle = UserConnection(conn, user_id, statement_timeout_ms=statement_timeout_ms, max_tasks=max_tasks)
    try:
        try:
            yield handle
        except BaseException:
            if handle.began and not conn.is_closed():
                try:
                    await conn.execute("ROLLBACK")
                except Exception:  # noqa: BLE001 - a connection that cannot roll back is not reused
                    conn.terminate()
            raise
        if handle.began:
            await conn.execute("COMMIT")
    finally:
        handle._end()
        try:
            # Bounded like the acquire: releasing a connection whose query timed out waits for
            # the server to confirm the cancel, which a frozen server never does.
            await pool.release(conn, timeout=acquire_timeout_seconds)
        finally:
            if gate is not None:
                gate.release()


async def keep_session(conn: asyncpg.Connection) -> None:
    """Pool `reset`: nothing to undo, so no extra round trip on release. The service keeps no
    session state (all of it is transaction-local), and asyncpg rolls back any transaction left
    open before this runs."""
