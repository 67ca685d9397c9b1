"""Every SQL statement on tasks: raw asyncpg, `$n` parameters only, the owner always `$1`.

Writes are single statements with the ownership filter in their WHERE clause (no read-then-
write). The only dynamic SQL is built from the fixed allow-lists below, never from input. Each
function takes a `UserConnection`: a transaction as the owner, which row-level security needs
(on a bare pool connection every statement would silently match nothing).

A task comes back as `id`, `version` (for the ETag) and `document`: its JSON text written by
PostgreSQL (row type `task_document`, migration 0003), which is the response body as is.
Decoding two timestamps per row into Python and encoding them again cost more than the rest of
a list request's database work. Timestamps are written in the transaction's TimeZone, which
`service.db.session.begin_as` sets to UTC.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cache
from typing import Any

import asyncpg

from ..db.session import UserConnection
from ..errors import TaskLimitReached
from .options import ListOptions, ListShape
from .schemas import Status

DOCUMENT_FIELDS = "id, user_id, title, description, completed, created_at, updated_at"  # task_document's
TASK_DOCUMENT = f"to_json(ROW({DOCUMENT_FIELDS})::task_document)::text"
TASK_COLUMNS = f"id, version, {TASK_DOCUMENT} AS document"
SORT_COLUMNS = ("created_at", "updated_at", "title")
PATCHABLE_COLUMNS = ("title", "description", "completed")
STATUS_FILTERS = {Status.all: "", Status.pending: " AND completed = false", Status.completed: " AND completed = true"}

# One task of the owner: $1 the owner, $2 the task's id.
OWNED_TASK = "user_id = $1 AND id = $2"
# ...and, for conditional writes, at one of the versions in $3 (an int[] from If-Match; NULL: any).
OWNED_TASK_AT_VERSION = f"{OWNED_TASK} AND ($3::int[] IS NULL OR version = ANY($3::int[]))"


# Raised by the insert trigger of migration 0004 when the owner's task quota is full.
TASK_LIMIT_SQLSTATE = "TQ001"


@contextlib.contextmanager
def task_quota() -> Iterator[None]:
    """Translate the quota trigger's error into the 409 the caller can act on."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        if exc.sqlstate != TASK_LIMIT_SQLSTATE:
            raise
        raise TaskLimitReached(f"{exc.args[0]}: delete tasks to create more") from None


async def insert_task(db: UserConnection, user_id: str, title: str, description: str) -> asyncpg.Record:
    with task_quota():
        return await db.fetchrow(
            f"INSERT INTO tasks (user_id, title, description) VALUES ($1, $2, $3) RETURNING {TASK_COLUMNS}",
            user_id,
            title,
            description,
        )


async def get_task(db: UserConnection, user_id: str, task_id: int) -> asyncpg.Record | None:
    return await db.fetchrow(f"SELECT {TASK_COLUMNS} FROM tasks WHERE {OWNED_TASK}", user_id, task_id)


async def task_exists(db: UserConnection, user_id: str, task_id: int) -> bool:
    return bool(await db.fetchval(f"SELECT 1 FROM tasks WHERE {OWNED_TASK}", user_id, task_id))


@cache
def list_statement(shape: ListShape) -> str:
    """The list SQL for one shape of options (a finite set, so each is prepared once).

    Parameters: $1 owner, $2 the page size, then the search pattern if any (see
    `search_pattern`), then the cursor's (key, id). One row comes back: `page`, the JSON array of
    up to $2 tasks; `more`, whether a next page exists (the scan reads one row beyond the page to
    know); and `last_key`/`last_id`, the sort key and id of the page's last task when the page is
    full, for the next cursor.
    """
    column, status = shape.column, shape.status
    if column not in SORT_COLUMNS or status not in STATUS_FILTERS:
        raise ValueError("not an allowed sort column or status")
    descending = shape.descending
    direction = "DESC" if descending else "ASC"
    order = f"{column} {direction}, id {direction}"
    where = "user_id = $1" + STATUS_FILTERS[status]
    cursor_param = 4 if shape.search else 3
    if shape.after_cursor:
        # Row comparison over (sort key, id): one index range scan, no OFFSET.
        where += f" AND ({column}, id) {'<' if descending else '>'} (${cursor_param}, ${cursor_param + 1})"
    if shape.search:
        page = f"SELECT {DOCUMENT_FIELDS} FROM tasks WHERE {{}} ORDER BY {order} LIMIT $2 + 1"
        rows = f"SELECT *, row_number() OVER (ORDER BY {order}) AS n FROM ({search_rows(page, where)}) AS found"
    else:
        rows = (
            f"SELECT {DOCUMENT_FIELDS}, row_number() OVER (ORDER BY {order}) AS n"
            f" FROM tasks WHERE {where} ORDER BY {order} LIMIT $2 + 1"
        )
    on_page = "FILTER (WHERE n <= $2)"
    last = "FILTER (WHERE n = $2)"
    return (
        f"SELECT coalesce(json_agg(ROW({DOCUMENT_FIELDS})::task_document ORDER BY {order}) {on_page}, '[]')::text AS page,"
        f" count(*) > $2 AS more, min({column}) {last} AS last_key, min(id) {last} AS last_id"
        f" FROM ({rows}) AS rows"
    )


# A search asks the trigram index for at most this many of the owner's matching ids first.
SEARCH_CANDIDATES_MAX = 1000


def search_rows(page: str, where: str) -> str:
    """The page's rows when searching for the pattern $3, by whichever of two plans fits the term.

    Row-level security keeps ILIKE out of index conditions, so the trigram index is reached
    through `matching_task_ids` (migration 0004), which returns at most SEARCH_CANDIDATES_MAX + 1
    of the owner's matching ids. When the term is rare enough to fit, the page is read by those
    ids and sorted (at most that many rows); when it is common, the sort-key index is walked and
    filtered, and it fills the page after few rows. A one-time filter runs only one branch.
    """
    few = f"(SELECT cardinality(ids) <= {SEARCH_CANDIDATES_MAX} FROM hits)"
    by_ids = page.format(f"{where} AND id = ANY((SELECT ids FROM hits)::bigint[]) AND {few}")
    by_scan = page.format(f"{where} AND (title ILIKE $3 OR description ILIKE $3) AND NOT {few}")
    candidates = f"SELECT matching_task_ids($3, {SEARCH_CANDIDATES_MAX + 1}) AS ids"
    return f"WITH hits AS MATERIALIZED ({candidates}) ({by_ids}) UNION ALL ({by_scan})"


async def list_tasks(
    db: UserConnection, user_id: str, options: ListOptions, after: tuple[Any, int] | None, limit: int
) -> asyncpg.Record:
    sql = list_statement(options.shape(after_cursor=after is not None))
    args: list[Any] = [user_id, limit, *options.filter_arguments()]
    if after is not None:
        args.extend(after)
    return await db.fetchrow(sql, *args)


async def replace_task(
    db: UserConnection,
    user_id: str,
    task_id: int,
    expected_versions: list[int] | None,
    title: str,
    description: str,
    completed: bool,
) -> asyncpg.Record | None:
    return await db.fetchrow(
        "UPDATE tasks SET title = $4, description = $5, completed = $6, version = version + 1, updated_at = now() "
        f"WHERE {OWNED_TASK_AT_VERSION} RETURNING {TASK_COLUMNS}",
        user_id,
        task_id,
        expected_versions,
        title,
        description,
        completed,
    )


async def patch_task(
    db: UserConnection, user_id: str, task_id: int, expected_versions: list[int] | None, changes: dict[str, Any]
) -> asyncpg.Record | None:
    columns = [name for name in PATCHABLE_COLUMNS if name in changes]
    if not columns or len(columns) != len(changes):
        raise ValueError("changes must be a non-empty subset of the patchable columns")
    assignments = ", ".join(f"{name} = ${index}" for index, name in enumerate(columns, start=4))
    return await db.fetchrow(
        f"UPDATE tasks SET {assignments}, version = version + 1, updated_at = now() "
        f"WHERE {OWNED_TASK_AT_VERSION} RETURNING {TASK_COLUMNS}",
        user_id,
        task_id,
        expected_versions,
        *(changes[name] for name in columns),
    )


async def toggle_task(
    db: UserConnection, user_id: str, task_id: int, expected_versions: list[int] | None
) -> asyncpg.Record | None:
    return await db.fetchrow(
        "UPDATE tasks SET completed = NOT completed, version = version + 1, updated_at = now() "
        f"WHERE {OWNED_TASK_AT_VERSION} RETURNING {TASK_COLUMNS}",
        user_id,
        task_id,
        expected_versions,
    )


async def delete_task(db: UserConnection, user_id: str, task_id: int, expected_versions: list[int] | None) -> bool:
    deleted = await db.fetchval(
        f"DELETE FROM tasks WHERE {OWNED_TASK_AT_VERSION} RETURNING 1",
        user_id,
        task_id,
        expected_versions,
    )
    return bool(deleted)


async def claim_idempotency_key(db: UserConnection, user_id: str, key: str, fingerprint: bytes, ttl_hours: int) -> bool:
    """Take `key` for a new request; False when a live request already holds it.

    A concurrent duplicate blocks on the unique index until the first transaction ends. An
    expired key is taken over in the same statement.
    """
    claimed = await db.fetchval(
        # Expired keys of every user are swept in the background (service.db.maintenance).
        "INSERT INTO idempotency_keys (user_id, key, fingerprint) VALUES ($1, $2, $3) "
        "ON CONFLICT (user_id, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, task_id = NULL, created_at = now() "
        "WHERE idempotency_keys.created_at < now() - make_interval(hours => $4) RETURNING true",
        user_id,
        key,
        fingerprint,
        ttl_hours,
    )
    return bool(claimed)


async def insert_task_for_key(
    db: UserConnection, user_id: str, key: str, title: str, description: str
) -> asyncpg.Record:
    """Create the task and record it against the idempotency key, in one statement."""
    with task_quota():
        return await db.fetchrow(
            "WITH created AS ("
            f" INSERT INTO tasks (user_id, title, description) VALUES ($1, $3, $4) RETURNING {TASK_COLUMNS}"
            "), recorded AS ("
            " UPDATE idempotency_keys SET task_id = (SELECT id FROM created) WHERE user_id = $1 AND key = $2"
            ") SELECT id, version, document FROM created",
            user_id,
            key,
            title,
            description,
        )


async def find_idempotent_result(db: UserConnection, user_id: str, key: str) -> asyncpg.Record | None:
    """The fingerprint of the request that holds `key`, and the task it created (if it still exists)."""
    return await db.fetchrow(
        f"SELECT k.fingerprint, t.id, t.version, to_json(ROW({_qualified('t', DOCUMENT_FIELDS)})::task_document)::text AS document"
        " FROM idempotency_keys k LEFT JOIN tasks t ON t.user_id = k.user_id AND t.id = k.task_id"
        " WHERE k.user_id = $1 AND k.key = $2",
        user_id,
        key,
    )


def _qualified(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{name.strip()}" for name in columns.split(","))
