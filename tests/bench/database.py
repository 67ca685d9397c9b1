"""The bench database: a PostgreSQL of its own (embedded in .bench/postgres, or the server of
DATABASE_URL), a fresh `tasks_bench` database, the service's migrations, and set-based seeding.

Seeding runs as a superuser, which bypasses row-level security (the table owner would not:
the tables are FORCE ROW LEVEL SECURITY).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from service.db.embedded import EmbeddedPostgres, start_embedded_postgres
from service.db.migrate import apply_migrations

try:  # the checkout's whole schema step; a service from before one-round-trip statements has migrations only
    from service.schema import prepare_database
except ImportError:
    prepare_database = apply_migrations
from service.db.session import sql_literal

BENCH_DATABASE = "tasks_bench"
MAINTENANCE_DATABASE = "postgres"
ROWS_PER_STATEMENT = 500_000  # one INSERT ... SELECT per chunk of task numbers, for progress lines
BULK_LOAD_ROWS = 1_000_000  # from this size, the indexes (key included) are dropped for the load and rebuilt after
CONNECT_TIMEOUT_SECONDS = 10.0
# A user id as Better Auth makes them (32 characters, random-looking), derived from a number so
# that pgbench can compute the same id: md5('bench' || n).
USER_ID_SQL = "md5('bench' || {n})"

log = logging.getLogger("bench.database")


class BenchSetupError(RuntimeError):
    """The bench cannot run; the message says what to fix."""


def user_id(number: int) -> str:
    return hashlib.md5(f"bench{number}".encode()).hexdigest()


def with_database(dsn: str, database: str) -> str:
    """The same server and credentials, another database."""
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


@dataclass
class BenchServer:
    """Where the bench database lives. `dsn` is a superuser DSN of the `tasks_bench` database."""

    dsn: str
    embedded: EmbeddedPostgres | None

    @property
    def description(self) -> str:
        return f"embedded PostgreSQL in {self.embedded.data_dir}" if self.embedded else "DATABASE_URL's server"

    def postmaster_pid(self) -> int | None:
        """The embedded server's pid (its backends are its children); None for DATABASE_URL's."""
        return self.embedded.server.get_pid() if self.embedded is not None else None

    def stop(self) -> None:
        if self.embedded is not None:
            self.embedded.stop()
            self.embedded = None


def open_server(database_url: str | None, data_dir: Path) -> BenchServer:
    """Start the embedded server (blocking; initdb on first use) or take DATABASE_URL's server."""
    if database_url:
        return BenchServer(dsn=with_database(database_url, BENCH_DATABASE), embedded=None)
    try:
        server = start_embedded_postgres(data_dir)
    except Exception as exc:
        raise BenchSetupError(
            f"cannot start the embedded PostgreSQL in {data_dir}: {exc} (see {data_dir / 'log'})"
        ) from exc
    return BenchServer(dsn=server.dsn(BENCH_DATABASE), embedded=server)


async def connect(dsn: str, server_settings: dict[str, str] | None = None) -> asyncpg.Connection:
    try:
        return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT_SECONDS, server_settings=server_settings)
    except (OSError, asyncpg.PostgresError, TimeoutError) as exc:
        raise BenchSetupError(f"cannot connect to {redacted(dsn)}: {type(exc).__name__}: {exc}") from exc


def seed_tag(users: int, tasks_per_user: int) -> str:
    """Left on the database as a comment once seeding finished; `mark_written` changes it."""
    return f"bench seed: users={users} tasks_per_user={tasks_per_user}"


async def recreate_database(dsn: str, tag: str, reuse: bool) -> dict[str, object]:
    """Drop and create `tasks_bench` (every run starts from the same data), unless `reuse` and it
    holds exactly the seed `tag` names, untouched by writes since. Check we may seed it."""
    admin = await connect(with_database(dsn, MAINTENANCE_DATABASE))
    try:
        role = await admin.fetchrow("SELECT rolname, rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        if not (role["rolsuper"] or role["rolbypassrls"]):
            raise BenchSetupError(
                f"role {role['rolname']!r} of DATABASE_URL must be a superuser (or BYPASSRLS) to seed "
                "tables under FORCE ROW LEVEL SECURITY"
            )
        comment = await admin.fetchval(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1", BENCH_DATABASE
        )
        reused = reuse and comment == tag
        if not reused:
            await admin.execute(f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)')
            await admin.execute(f'CREATE DATABASE "{BENCH_DATABASE}"')
        info = await admin.fetchrow(
            "SELECT version() AS version, current_setting('shared_buffers') AS shared_buffers,"
            " current_setting('max_connections')::int AS max_connections,"
            " current_setting('synchronous_commit') AS synchronous_commit, current_setting('fsync') AS fsync"
        )
        return {**dict(info), "reused": reused}
    finally:
        await admin.close()


async def mark_written(dsn: str) -> None:
    """Rows were added: the data no longer matches its seed tag, so `--reuse-data` reseeds."""
    conn = await connect(dsn)
    try:
        await conn.execute(f"COMMENT ON DATABASE \"{BENCH_DATABASE}\" IS 'written after seeding'")
    finally:
        await conn.close()


async def migrate_and_seed(
    dsn: str, users: int, tasks_per_user: int, progress: Callable[[str], None], *, seed: bool = True
) -> dict[str, object]:
    conn = await connect(dsn)
    try:
        applied = await prepare_database(conn)
        started = time.perf_counter()
        if not seed:
            return {
                "migrations_applied": applied, "users": users, "tasks_per_user": tasks_per_user,
                "rows": await conn.fetchval("SELECT count(*) FROM tasks"), "reused": True,
                "tasks_total_bytes": await conn.fetchval("SELECT pg_total_relation_size('tasks')"), "seed_seconds": 0.0,
            }  # fmt: skip
        await conn.execute("SET synchronous_commit = off; SET maintenance_work_mem = '1GB'")
        rows = users * tasks_per_user
        dropped = await _drop_indexes(conn) if rows >= BULK_LOAD_ROWS else []
        per_statement = max(1, ROWS_PER_STATEMENT // max(users, 1))
        for first in range(1, tasks_per_user + 1, per_statement):
            last = min(tasks_per_user, first + per_statement - 1)
            await conn.execute(_SEED_SQL, first, last, users)
            if rows >= BULK_LOAD_ROWS:
                progress(f"seeded tasks {first}-{last} of {tasks_per_user} for {users:,} users")
        for name, definition in dropped:
            progress(f"rebuilding {name}")
            await conn.execute(definition)
        await conn.execute("VACUUM (ANALYZE) tasks")
        await conn.execute("VACUUM (ANALYZE) idempotency_keys")
        await conn.execute(f'COMMENT ON DATABASE "{BENCH_DATABASE}" IS {sql_literal(seed_tag(users, tasks_per_user))}')
        size = await conn.fetchval("SELECT pg_total_relation_size('tasks')")
        return {
            "migrations_applied": applied,
            "users": users,
            "tasks_per_user": tasks_per_user,
            "rows": await conn.fetchval("SELECT count(*) FROM tasks"),
            "tasks_total_bytes": size,
            "seed_seconds": round(time.perf_counter() - started, 2),
        }
    finally:
        await conn.close()


# Task t of every user in one statement: rows land interleaved across users, as tasks created
# over time would, so a user's list reads rows from many heap pages rather than a few.
_SEED_SQL = f"""
INSERT INTO tasks (user_id, title, description, completed, completed_at, created_at, updated_at)
SELECT {USER_ID_SQL.format(n="u")},
       'Task ' || t || ': ' || (ARRAY['buy milk', 'write report', 'call the bank', 'fix the bike', 'plan the trip'])[1 + (u + t) % 5],
       CASE WHEN t % 3 = 0 THEN repeat('Some details about this task. ', 1 + (u + t) % 4) ELSE '' END,
       (u + t) % 4 = 0,
       CASE WHEN (u + t) % 4 = 0 THEN ts END,  -- completed_at goes with completed (migration 0005)
       ts, ts
FROM generate_series($1::int, $2::int) AS t
CROSS JOIN generate_series(1, $3::int) AS u
CROSS JOIN LATERAL (SELECT timestamptz '2025-01-01 00:00:00+00' + make_interval(mins => t, secs => u % 60)) AS c(ts)
"""


async def _drop_indexes(conn: asyncpg.Connection) -> list[tuple[str, str]]:
    """Drop the primary key and indexes of `tasks`; return (name, statement) to rebuild each after
    the load (building an index from sorted data is much faster than inserting into it row by row)."""
    rebuild: list[tuple[str, str]] = []
    key = await conn.fetchrow(
        "SELECT conname, pg_get_constraintdef(oid) AS definition FROM pg_constraint"
        " WHERE conrelid = 'tasks'::regclass AND contype = 'p'"
    )
    indexes = await conn.fetch(
        "SELECT i.relname AS name, pg_get_indexdef(x.indexrelid) AS definition FROM pg_index x"
        " JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = 'tasks'::regclass AND NOT x.indisprimary"
    )
    if key is not None:
        await conn.execute(f'ALTER TABLE tasks DROP CONSTRAINT "{key["conname"]}"')
        rebuild.append((key["conname"], f'ALTER TABLE tasks ADD CONSTRAINT "{key["conname"]}" {key["definition"]}'))
    for row in indexes:
        await conn.execute(f'DROP INDEX "{row["name"]}"')
        rebuild.append((row["name"], row["definition"]))
    return rebuild


async def task_ids(dsn: str, numbers: list[int], per_user: int) -> dict[int, list[int]]:
    """The seeded task ids of the given users (at most `per_user` each), by user number."""
    conn = await connect(dsn)
    try:
        by_id = {user_id(n): n for n in numbers}
        rows = await conn.fetch(
            "SELECT user_id, (array_agg(id ORDER BY id))[1:$2] AS ids FROM tasks WHERE user_id = ANY($1::text[]) GROUP BY user_id",
            list(by_id),
            per_user,
        )
        return {by_id[row["user_id"]]: list(row["ids"]) for row in rows}
    finally:
        await conn.close()


def redacted(dsn: str) -> str:
    """The DSN without its password, for messages."""
    parts = urlsplit(dsn)
    netloc = parts.netloc
    if "@" in netloc:
        credentials, _, host = netloc.rpartition("@")
        netloc = f"{credentials.split(':')[0]}:***@{host}" if ":" in credentials else netloc
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))
