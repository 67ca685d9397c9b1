"""The change feed's SQL, and the listener's and the purge's: raw asyncpg, `$n` parameters only,
the owner always `$1` in what requests run.

Each read is one statement, so the user's counter (its latest seq and the purge horizon) and
the page come from one snapshot: the horizon cannot move between checking a token and reading
the changes after it. A change is JSON text written by PostgreSQL with the tasks' own
document expression, so it carries whatever fields a task has.
"""

from __future__ import annotations

import asyncpg

from ..db.session import UserConnection
from ..db.statements import OwnedStatement
from ..tasks.queries import TASK_DOCUMENT

_COUNTER = (
    "(SELECT coalesce(max(seq), 0) AS latest, coalesce(max(expired_below), 0) AS expired_below"
    " FROM sync_counters WHERE user_id = $1) AS counter"
)
_UPSERT = '\'{"op":"upsert","task":\' || document || \'}\''

# Changes after seq $2, at most $3, in seq (= commit) order: a task deleted since is a tombstone.
CHANGES_AFTER = (
    "SELECT counter.latest, counter.expired_below, page.seqs, page.changes FROM " + _COUNTER + ", ("
    " SELECT array_agg(seq ORDER BY seq) AS seqs, array_agg(change ORDER BY seq) AS changes FROM ("
    '  SELECT c.seq, CASE WHEN c.deleted THEN \'{"op":"delete","id":\' || c.task_id || \'}\''
    f"   ELSE {_UPSERT} END AS change"
    "  FROM task_changes c"
    f"  LEFT JOIN LATERAL (SELECT {TASK_DOCUMENT} AS document FROM tasks WHERE user_id = $1 AND id = c.task_id) t"
    "   ON true"
    "  WHERE c.user_id = $1 AND c.seq > $2 ORDER BY c.seq LIMIT $3"
    " ) AS rows"
    ") AS page"
)

# The live tasks with an id above $2, at most $3, in id order: the first full listing.
TASKS_AFTER = (
    "SELECT counter.latest, counter.expired_below, page.ids AS seqs, page.changes FROM " + _COUNTER + ", ("
    f" SELECT array_agg(id ORDER BY id) AS ids, array_agg({_UPSERT} ORDER BY id) AS changes FROM ("
    f"  SELECT id, {TASK_DOCUMENT} AS document FROM tasks WHERE user_id = $1 AND id > $2 ORDER BY id LIMIT $3"
    " ) AS rows"
    ") AS page"
)


OWNED_CHANGES_AFTER = OwnedStatement(CHANGES_AFTER)
OWNED_TASKS_AFTER = OwnedStatement(TASKS_AFTER)


def owned_statements() -> list[OwnedStatement]:
    """Every statement of this module that a request sends in one round trip."""
    return [OWNED_CHANGES_AFTER, OWNED_TASKS_AFTER]


async def changes_after(db: UserConnection, user_id: str, seq: int, limit: int) -> asyncpg.Record:
    """latest, expired_below, seqs (int[] or NULL), changes (JSON texts or NULL)."""
    return await db.one_row(OWNED_CHANGES_AFTER, user_id, seq, limit)


async def tasks_after(db: UserConnection, user_id: str, task_id: int, limit: int) -> asyncpg.Record:
    """latest, expired_below, seqs (here: task ids, or NULL), changes (upserts, or NULL)."""
    return await db.one_row(OWNED_TASKS_AFTER, user_id, task_id, limit)


async def purge_tombstones_batch(conn: asyncpg.Connection, retention_days: int, max_rows: int) -> int:
    """Not as a user: the function switches to the role that may purge every user's tombstones."""
    purged: int = await conn.fetchval("SELECT purge_sync_tombstones($1, $2)", retention_days, max_rows)
    return purged


async def ping(conn: asyncpg.Connection) -> None:
    await conn.execute("SELECT 1")
