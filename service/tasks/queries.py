"""Every SQL statement on tasks: raw asyncpg, `$n` parameters only, the owner always `$1`.

Writes are single statements with the ownership filter in their WHERE clause (no read-then-
write). The only dynamic SQL is built from the fixed allow-lists below, never from input. Each
function takes a `UserConnection`: the owner's scope, which row-level security needs (on a bare
pool connection every statement would silently match nothing). A statement that is a request's
whole database work is an `OwnedStatement`, sent in one round trip (service.db.statements);
`owned_statements()` lists every one of them.

A task comes back as `id`, `version` (for the ETag) and `document`: its JSON text written by
PostgreSQL (row type `task_document`, migration 0003), which is the response body as is.
Decoding two timestamps per row into Python and encoding them again cost more than the rest of
a list request's database work. Timestamps are written in the transaction's TimeZone, which
`service.db.session.begin_as` and the owned statements' functions set to UTC.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from functools import cache
from typing import Any

import asyncpg

from ..db.session import UserConnection
from ..db.statements import OwnedStatement
from ..errors import InvalidRequest, TaskLimitReached
from .due import due_arguments
from .options import ListOptions, ListShape, sort_column
from .positions import POSITION_GAP, POSITION_MAX
from .schemas import Sort, Status, TaskCreate, TaskReplace

DOCUMENT_FIELDS = (  # task_document's attributes, in order
    "id, user_id, title, description, completed, created_at, updated_at, due, priority, labels, position, completed_at"
)
TASK_DOCUMENT = f"to_json(ROW({DOCUMENT_FIELDS})::task_document)::text"
TASK_COLUMNS = f"id, version, {TASK_DOCUMENT} AS document"
STATUS_FILTERS = {Status.all: "", Status.pending: " AND completed = false", Status.completed: " AND completed = true"}

# One task of the owner: $1 the owner, $2 the task's id.
OWNED_TASK = "user_id = $1 AND id = $2"
# ...and, for conditional writes, at one of the versions in $3 (an int[] from If-Match; NULL: any).
OWNED_TASK_AT_VERSION = f"{OWNED_TASK} AND ($3::int[] IS NULL OR version = ANY($3::int[]))"

# A due date's key from its parameters (due.due_arguments): local time minus offset, as UTC;
# NULL (no due date) is 'infinity', which sorts last.
DUE_KEY = "coalesce((${local}::text::timestamp - ${offset}::interval) AT TIME ZONE 'UTC', 'infinity')"
# The top of the owner's manual order, for a new task: one gap above the first key.
TOP_POSITION = (
    f"(SELECT greatest(coalesce(min(position), 0) - {POSITION_GAP}, -{POSITION_MAX}) FROM tasks WHERE user_id = $1)"
)
# completed_at follows completed ({completed}: the new value; completed_at is the old one).
COMPLETED_AT = "CASE WHEN {completed} THEN coalesce(completed_at, now()) END"

# The list's key columns whose values go through the cursor as text: a due key can lie outside
# Python's datetime (year 0 or 10000 in UTC, or 'infinity'), a priority is an enum label.
KEY_AS_TEXT = {"due_at": "timestamptz", "priority": "task_priority"}
# The task-model filters, in parameter order; each is a no-op when its (first) parameter is NULL.
MODEL_FILTERS = (
    "(${0}::text::timestamp IS NULL OR (isfinite(due_at) AND due_at >= (${0}::text::timestamp - ${1}::interval) AT TIME ZONE 'UTC'))",
    "(${0}::text::timestamp IS NULL OR due_at < (${0}::text::timestamp - ${1}::interval) AT TIME ZONE 'UTC')",
    "(${0}::boolean IS NULL OR isfinite(due_at) = ${0}::boolean)",
    "(${0}::text[] IS NULL OR priority = ANY(${0}::text[]::task_priority[]))",
    "(${0}::text[] IS NULL OR labels @> ${0}::text[])",
)
MODEL_FILTER_PARAMETERS = (2, 2, 1, 1, 1)


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


INSERT_TASK = OwnedStatement(
    "INSERT INTO tasks (user_id, title, description, due_at, due_all_day, priority, labels, position)"
    f" VALUES ($1, $2, $3, {DUE_KEY.format(local=4, offset=5)}, $6, $7::text::task_priority, $8::text[], {TOP_POSITION})"
    f" RETURNING {TASK_COLUMNS}",
    sets_quota=True,
)


async def insert_task(db: UserConnection, user_id: str, task: TaskCreate) -> asyncpg.Record:
    with task_quota():
        return await db.one_row(INSERT_TASK, user_id, *_fields_arguments(task))


def _fields_arguments(task: TaskCreate | TaskReplace) -> tuple[Any, ...]:
    """title, description, the due date's three parameters, priority, labels."""
    return (task.title, task.description, *due_arguments(task.due), task.priority, task.labels)


GET_TASK = OwnedStatement(f"SELECT {TASK_COLUMNS} FROM tasks WHERE {OWNED_TASK}")


async def get_task(db: UserConnection, user_id: str, task_id: int) -> asyncpg.Record | None:
    return await db.one_row(GET_TASK, user_id, task_id)


async def task_exists(db: UserConnection, user_id: str, task_id: int) -> bool:
    return bool(await db.fetchval(f"SELECT 1 FROM tasks WHERE {OWNED_TASK}", user_id, task_id))


@cache
def list_statement(shape: ListShape) -> str:
    """The list SQL for one shape of options (a finite set, so each is prepared once).

    Parameters: $1 owner, $2 the page size, then the search pattern if any (search_rows), then the model
    filters' parameters if any (see MODEL_FILTERS), then the cursor's (key, id). One row comes
    back: `page`, the JSON array of up to $2 tasks; `more`, whether a next page exists (the scan
    reads one row beyond the page to know); and `last_key`/`last_id`, the sort key and id of the
    page's last task when the page is full, for the next cursor.
    """
    column, status = shape.column, shape.status
    if column not in {sort_column(sort) for sort in Sort} or status not in STATUS_FILTERS:
        raise ValueError("not an allowed sort column or status")
    descending = shape.descending
    direction = "DESC" if descending else "ASC"
    order = f"{column} {direction}, id {direction}"
    where = "user_id = $1" + STATUS_FILTERS[status]
    next_param = 4 if shape.search else 3  # the search pattern is $3 (see search_rows)
    if shape.filtered:
        for condition, count in zip(MODEL_FILTERS, MODEL_FILTER_PARAMETERS, strict=True):
            where += " AND " + condition.format(*range(next_param, next_param + count))
            next_param += count
    key_type = KEY_AS_TEXT.get(column)
    if shape.after_cursor:
        # Row comparison over (sort key, id): one index range scan, no OFFSET.
        key = f"${next_param}::text::{key_type}" if key_type else f"${next_param}"
        where += f" AND ({column}, id) {'<' if descending else '>'} ({key}, ${next_param + 1})"
    on_page = "FILTER (WHERE n <= $2)"
    last = "FILTER (WHERE n = $2)"
    last_key = f"min({column}) {last}" + ("::text" if key_type else "")
    columns = DOCUMENT_FIELDS if column in DOCUMENT_FIELDS.split(", ") else f"{DOCUMENT_FIELDS}, {column}"
    if shape.search:
        found = search_rows(columns, where, order)
        rows = f"SELECT *, row_number() OVER (ORDER BY {order}) AS n FROM ({found}) AS found"
    else:
        rows = (
            f"SELECT {columns}, row_number() OVER (ORDER BY {order}) AS n"
            f" FROM tasks WHERE {where} ORDER BY {order} LIMIT $2 + 1"
        )
    return (
        f"SELECT coalesce(json_agg(ROW({DOCUMENT_FIELDS})::task_document ORDER BY {order}) {on_page}, '[]')::text AS page,"
        f" count(*) > $2 AS more, {last_key} AS last_key, min(id) {last} AS last_id"
        f" FROM ({rows}) AS rows"
    )


@cache
def owned_list_statement(shape: ListShape) -> OwnedStatement:
    return OwnedStatement(list_statement(shape))


# A search asks the trigram index for at most this many of the owner's matching ids first.
SEARCH_CANDIDATES_MAX = 1000


def search_rows(columns: str, where: str, order: str) -> str:
    """The page's rows when searching for the pattern $3, by whichever of two plans fits the term.

    Row-level security keeps ILIKE out of index conditions, so the trigram index is reached
    through `matching_task_ids` (migration 0004), which returns at most SEARCH_CANDIDATES_MAX + 1
    of the owner's matching ids. When the term is rare enough to fit, those rows are looked up id
    by id by primary key and materialized, then sorted (at most that many), so that no plan walks
    a whole sort index to find them; when it is common, the sort-key index is walked and
    filtered, and it fills the page after few rows. A one-time filter runs only one branch.
    """
    few = f"(SELECT cardinality(ids) <= {SEARCH_CANDIDATES_MAX} FROM hits)"
    page = f"ORDER BY {order} LIMIT $2 + 1"
    candidates = (
        "SELECT found.* FROM unnest((SELECT ids FROM hits)) AS hit(hit_id),"
        f" LATERAL (SELECT {columns} FROM tasks WHERE {where} AND id = hit_id AND {few}) AS found"
    )
    by_ids = f"SELECT {columns} FROM candidates {page}"
    by_scan = (
        f"SELECT {columns} FROM tasks WHERE {where} AND (title ILIKE $3 OR description ILIKE $3) AND NOT {few} {page}"
    )
    return (
        f"WITH hits AS MATERIALIZED (SELECT matching_task_ids($1, $3, {SEARCH_CANDIDATES_MAX + 1}) AS ids),"
        f" candidates AS MATERIALIZED ({candidates})"
        f" ({by_ids}) UNION ALL ({by_scan})"
    )


async def list_tasks(
    db: UserConnection, user_id: str, options: ListOptions, after: tuple[Any, int] | None, limit: int
) -> asyncpg.Record:
    statement = owned_list_statement(options.shape(after_cursor=after is not None))
    args: list[Any] = [limit, *options.filter_arguments()]
    if after is not None:
        args.extend(after)
    try:
        return await db.one_row(statement, user_id, *args)
    except asyncpg.DataError:  # a cursor's text key that PostgreSQL cannot read as one
        if after is None:
            raise
        message = "the cursor is not valid"
        raise InvalidRequest(message, [{"field": "cursor", "message": message}]) from None


async def replace_task(
    db: UserConnection, user_id: str, task_id: int, expected_versions: list[int] | None, task: TaskReplace
) -> asyncpg.Record | None:
    return await db.fetchrow(
        f"UPDATE tasks SET title = $4, description = $5, due_at = {DUE_KEY.format(local=6, offset=7)}, due_all_day = $8,"
        " priority = $9::text::task_priority, labels = $10::text[],"
        f" completed = $11, completed_at = {COMPLETED_AT.format(completed='$11')}, version = version + 1, updated_at = now() "
        f"WHERE {OWNED_TASK_AT_VERSION} RETURNING {TASK_COLUMNS}",
        user_id,
        task_id,
        expected_versions,
        *_fields_arguments(task),
        task.completed,
    )


# What PATCH may change: field -> (its assignments, with {0}, {1}... for its parameters' numbers).
PATCHABLE: dict[str, str] = {
    "title": "title = ${0}",
    "description": "description = ${0}",
    "completed": "completed = ${0}, completed_at = " + COMPLETED_AT.format(completed="${0}"),
    "due": "due_at = " + DUE_KEY.format(local="{0}", offset="{1}") + ", due_all_day = ${2}",
    "priority": "priority = ${0}::text::task_priority",
    "labels": "labels = ${0}::text[]",
}


async def patch_task(
    db: UserConnection, user_id: str, task_id: int, expected_versions: list[int] | None, changes: dict[str, Any]
) -> asyncpg.Record | None:
    """`changes`: field -> new value, for a non-empty subset of PATCHABLE (`due`: a Due or None)."""
    fields = [name for name in PATCHABLE if name in changes]
    if not fields or len(fields) != len(changes):
        raise ValueError("changes must be a non-empty subset of the patchable fields")
    assignments: list[str] = []
    values: list[Any] = []
    for name in fields:
        given = due_arguments(changes[name]) if name == "due" else (changes[name],)
        first = 4 + len(values)
        assignments.append(PATCHABLE[name].format(*range(first, first + len(given))))
        values.extend(given)
    return await db.fetchrow(
        f"UPDATE tasks SET {', '.join(assignments)}, version = version + 1, updated_at = now() "
        f"WHERE {OWNED_TASK_AT_VERSION} RETURNING {TASK_COLUMNS}",
        user_id,
        task_id,
        expected_versions,
        *values,
    )


async def toggle_task(
    db: UserConnection, user_id: str, task_id: int, expected_versions: list[int] | None
) -> asyncpg.Record | None:
    return await db.fetchrow(
        "UPDATE tasks SET completed = NOT completed, completed_at = CASE WHEN completed THEN NULL ELSE now() END,"
        f" version = version + 1, updated_at = now() WHERE {OWNED_TASK_AT_VERSION} RETURNING {TASK_COLUMNS}",
        user_id,
        task_id,
        expected_versions,
    )


# Where a move puts the task $2: at the top ($4 NULL) or after the task $4, by the rule of
# positions.key_between over the neighbours' keys (the moved task itself left out); NULL when
# there is no room there (then the move statement changes nothing).
MOVE_POSITION = (
    "CASE WHEN $4::bigint IS NULL THEN"
    " (SELECT CASE WHEN min(position) IS NULL THEN 0"
    f" WHEN min(position) - {POSITION_GAP} >= -{POSITION_MAX} THEN min(position) - {POSITION_GAP} END"
    " FROM tasks WHERE user_id = $1 AND id <> $2)"
    " ELSE (SELECT CASE"
    f" WHEN following.position IS NULL THEN (CASE WHEN anchor.position + {POSITION_GAP} <= {POSITION_MAX}"
    f" THEN anchor.position + {POSITION_GAP} END)"
    " WHEN following.position - anchor.position >= 2"
    " THEN anchor.position + (following.position - anchor.position) / 2 END"
    " FROM (SELECT position, id FROM tasks WHERE user_id = $1 AND id = $4 AND id <> $2) AS anchor"
    " LEFT JOIN LATERAL (SELECT position FROM tasks WHERE user_id = $1 AND id <> $2"
    " AND (position, id) > (anchor.position, anchor.id) ORDER BY position, id LIMIT 1) AS following ON true)"
    " END"
)


async def move_task(
    db: UserConnection, user_id: str, task_id: int, expected_versions: list[int] | None, after: int | None
) -> asyncpg.Record | None:
    """One row written: the task's new position. None when the task is missing, at another
    version, `after` is missing (or the task itself), or there is no room: see move_obstacle."""
    return await db.fetchrow(
        f"UPDATE tasks SET position = target.key, version = version + 1, updated_at = now()"
        f" FROM (SELECT {MOVE_POSITION} AS key) AS target"
        f" WHERE {OWNED_TASK_AT_VERSION} AND target.key IS NOT NULL RETURNING {TASK_COLUMNS}",
        user_id,
        task_id,
        expected_versions,
        after,
    )


async def task_version(db: UserConnection, user_id: str, task_id: int) -> int | None:
    version: int | None = await db.fetchval(f"SELECT version FROM tasks WHERE {OWNED_TASK}", user_id, task_id)
    return version


async def position_keys(db: UserConnection, user_id: str, moving_id: int) -> list[asyncpg.Record]:
    """(id, position) of the owner's tasks in manual order, but the one being moved (bounded by
    the per-user quota; read only to respace)."""
    return await db.fetch(
        "SELECT id, position FROM tasks WHERE user_id = $1 AND id <> $2 ORDER BY position, id", user_id, moving_id
    )


async def respace_positions(
    db: UserConnection, user_id: str, ids: list[int], old_keys: list[int], new_keys: list[int]
) -> None:
    """Give each task its new key, unless its key changed since it was read (a concurrent move
    wins; the caller's move then finds out whether there is room)."""
    await db.execute(
        "UPDATE tasks SET position = moved.key, version = version + 1"
        " FROM unnest($2::bigint[], $3::bigint[], $4::bigint[]) AS moved(id, old, key)"
        " WHERE user_id = $1 AND tasks.id = moved.id AND tasks.position = moved.old",
        user_id,
        ids,
        old_keys,
        new_keys,
    )


LIST_LABELS = OwnedStatement(
    "SELECT coalesce(json_agg(json_build_object('label', label, 'tasks', tasks) ORDER BY label), '[]')::text AS labels"
    " FROM (SELECT label, count(*) AS tasks FROM tasks CROSS JOIN LATERAL unnest(labels) AS label"
    " WHERE user_id = $1 GROUP BY label) AS counted"
)


async def list_labels(db: UserConnection, user_id: str) -> str:
    """The owner's labels with how many tasks carry each, as a JSON array ordered by label."""
    found = await db.one_row(LIST_LABELS, user_id)
    page: str = found["labels"] if found is not None else "[]"
    return page


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


async def insert_task_for_key(db: UserConnection, user_id: str, key: str, task: TaskCreate) -> asyncpg.Record:
    """Create the task and record it against the idempotency key, in one statement."""
    with task_quota():
        return await db.fetchrow(
            "WITH created AS ("
            " INSERT INTO tasks (user_id, title, description, due_at, due_all_day, priority, labels, position)"
            f" VALUES ($1, $3, $4, {DUE_KEY.format(local=5, offset=6)}, $7, $8::text::task_priority, $9::text[], {TOP_POSITION})"
            f" RETURNING {TASK_COLUMNS}"
            "), recorded AS ("
            " UPDATE idempotency_keys SET task_id = (SELECT id FROM created) WHERE user_id = $1 AND key = $2"
            ") SELECT id, version, document FROM created",
            user_id,
            key,
            *_fields_arguments(task),
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


def owned_statements() -> list[OwnedStatement]:
    """Every statement of this module that a request sends in one round trip."""
    return [GET_TASK, INSERT_TASK, LIST_LABELS, *(owned_list_statement(shape) for shape in ListShape.every())]
