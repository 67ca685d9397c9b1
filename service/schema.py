"""The database as this version of the service needs it: the migrations, then the functions of
the statements it sends in one round trip. Run at start-up and by `python -m service migrate`."""

from __future__ import annotations

import asyncpg

from .db.migrate import apply_migrations
from .db.statements import OwnedStatement, install_owned_statements
from .sync import queries as sync_queries
from .tasks import queries as task_queries


def owned_statements() -> list[OwnedStatement]:
    """Every statement a request sends in one round trip."""
    return [*task_queries.owned_statements(), *sync_queries.owned_statements()]


async def prepare_database(conn: asyncpg.Connection) -> list[str]:
    """Apply the missing migrations and make the missing statement functions; return the
    migrations applied."""
    applied = await apply_migrations(conn)
    await install_owned_statements(conn, owned_statements())
    return applied
