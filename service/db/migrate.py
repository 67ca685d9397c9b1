"""Applying `migrations/NNNN_*.sql` in order, once each, safely from several replicas at once.

A session-level advisory lock serialises concurrent starts; each file runs in its own
transaction together with its row in `schema_migrations`, so a failed file leaves no trace. The
file's sha256 is recorded: editing an applied migration stops start-up instead of drifting.
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
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", ADVISORY_LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, sha256 text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {r["version"]: r["sha256"] for r in await conn.fetch("SELECT version, sha256 FROM schema_migrations")}
        for migration in migrations:
            if migration.version in done:
                if done[migration.version] != migration.sha256:
                    raise MigrationError(f"{migration.path.name} changed after it was applied; add a new migration instead")
                continue
            async with conn.transaction():
                await conn.execute(migration.path.read_text(encoding="utf-8"))
                await conn.execute(
                    "INSERT INTO schema_migrations (version, sha256) VALUES ($1, $2)", migration.version, migration.sha256
                )
            log.info("applied migration %s", migration.version)
            applied_now.append(migration.version)
    finally:
        if not conn.is_closed():
            try:
                await conn.execute("SELECT pg_advisory_unlock($1)", ADVISORY_LOCK_ID)
            except (asyncpg.PostgresError, OSError):
                pass  # the session's end releases the lock anyway; keep the original error
    return applied_now
