"""Applying `migrations/NNNN_*.sql` in order, once each, safely from several replicas at once.

Each file runs in its own transaction together with its row in `schema_migrations`, so a failed
file leaves no trace. That transaction first takes a transaction-level advisory lock and re-reads
`schema_migrations`: concurrent starts apply each file exactly once, and the lock is released by
the COMMIT on the same server connection, also behind a pooler in transaction mode (a session
lock's unlock could land on another server connection there). The file's sha256 is recorded:
editing an applied migration stops start-up instead of drifting.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

import asyncpg

log = logging.getLogger("service.db.migrate")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
ADVISORY_LOCK_ID = 0x7A5C_0001  # arbitrary, constant: "tasks service migrations"
LOCK_TIMEOUT_SECONDS = 120  # another replica's migration taking longer than this stops our start-up
_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


class MigrationError(RuntimeError):
    pass


@dataclass(frozen=True)
class Migration:
    version: str
    path: Path
    sha256: str


def find_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found = []
    for path in sorted(directory.glob("*.sql")):
        if not _NAME.match(path.name):
            raise MigrationError(f"{path.name}: migration files are named NNNN_lowercase_words.sql")
        found.append(Migration(path.stem, path, hashlib.sha256(path.read_bytes()).hexdigest()))
    numbers = [m.version[:4] for m in found]
    if len(set(numbers)) != len(numbers):
        raise MigrationError("two migration files share a number")
    return found


async def apply_migrations(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply what is missing; return the versions applied by this call."""
    migrations = find_migrations(directory)
    async with conn.transaction():
        await take_migration_lock(conn)
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
    applied_now: list[str] = []
    for migration in migrations:
        async with conn.transaction():
            await take_migration_lock(conn)
            recorded = await conn.fetchval("SELECT sha256 FROM schema_migrations WHERE version = $1", migration.version)
            if recorded is not None:
                if recorded != migration.sha256:
                    raise MigrationError(
                        f"{migration.path.name} changed after it was applied; add a new migration instead"
                    )
                continue
            await conn.execute(migration.path.read_text(encoding="utf-8"))
            await conn.execute(
                "INSERT INTO schema_migrations (version, sha256) VALUES ($1, $2)", migration.version, migration.sha256
            )
        log.info("applied migration %s", migration.version)
        applied_now.append(migration.version)
    return applied_now


async def take_migration_lock(conn: asyncpg.Connection) -> None:
    """Wait (bounded) for any other replica's migration transaction to end."""
    await conn.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT_SECONDS}s'")
    await conn.execute("SELECT pg_advisory_xact_lock($1)", ADVISORY_LOCK_ID)
