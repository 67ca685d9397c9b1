"""service/db/migrate.py on a real PostgreSQL, and the schema facts DESIGN relies on."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from service.db.migrate import MIGRATIONS_DIR, MigrationError, apply_migrations
from service.tasks.options import ListShape
from service.tasks.queries import KEY_AS_TEXT, MODEL_FILTER_PARAMETERS, list_statement
from service.tasks.schemas import Sort
from service.tasks.search import search_pattern
from support.databases import fresh_database

USERS = 50
TASKS_PER_USER = 2000


@pytest.fixture
async def dsn(postgres_admin_dsn: str) -> AsyncIterator[str]:
    async with fresh_database(postgres_admin_dsn) as url:
        yield url


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(dsn)
    yield connection
    await connection.close()


async def advisory_locks_held(conn: asyncpg.Connection) -> int:
    """Advisory locks in this test's database only (other sessions may share the server)."""
    return await conn.fetchval(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
    )


async def table_names(conn: asyncpg.Connection) -> set[str]:
    rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    return {r["tablename"] for r in rows}


async def test_apply_to_empty_database_creates_tables_and_records_version_with_sha256(conn):
    assert await table_names(conn) == set()
    shipped = sorted(path.stem for path in MIGRATIONS_DIR.glob("*.sql"))
    assert shipped[0] == "0001_tasks"
    assert await apply_migrations(conn) == shipped
    assert await table_names(conn) == {"tasks", "idempotency_keys", "task_counts", "schema_migrations"}
    rows = await conn.fetch("SELECT version, sha256 FROM schema_migrations ORDER BY version")
    expected = [(name, hashlib.sha256((MIGRATIONS_DIR / f"{name}.sql").read_bytes()).hexdigest()) for name in shipped]
    assert [tuple(r) for r in rows] == expected


async def test_second_apply_is_a_no_op(conn):
    await apply_migrations(conn)
    before = await conn.fetch("SELECT version, sha256, applied_at FROM schema_migrations")
    assert await apply_migrations(conn) == []
    assert await conn.fetch("SELECT version, sha256, applied_at FROM schema_migrations") == before


async def test_eight_concurrent_appliers_all_succeed_and_record_each_migration_once(dsn):
    connections = await asyncio.gather(*(asyncpg.connect(dsn) for _ in range(8)))
    try:
        results = await asyncio.gather(*(apply_migrations(c) for c in connections))
        shipped = sorted(path.stem for path in MIGRATIONS_DIR.glob("*.sql"))
        applied = sorted(version for result in results for version in result)
        assert applied == shipped  # each migration applied exactly once, by one of them
        assert await connections[0].fetchval("SELECT count(*) FROM schema_migrations") == len(shipped)
        # The advisory lock was released by every caller.
        assert await advisory_locks_held(connections[0]) == 0
    finally:
        await asyncio.gather(*(c.close() for c in connections))


def write_migrations(directory: Path, files: dict[str, str]) -> Path:
    directory.mkdir(exist_ok=True)
    for name, sql in files.items():
        (directory / name).write_text(sql, encoding="utf-8")
    return directory


async def test_migration_edited_after_it_was_applied_raises(conn, tmp_path):
    directory = write_migrations(tmp_path / "m", {"0001_first.sql": "CREATE TABLE first (id int);"})
    assert await apply_migrations(conn, directory=directory) == ["0001_first"]
    write_migrations(directory, {"0001_first.sql": "CREATE TABLE first (id int, extra text);"})
    with pytest.raises(MigrationError, match="0001_first.sql changed after it was applied"):
        await apply_migrations(conn, directory=directory)
    # The lock is released even on failure: another caller is not stuck behind it.
    assert await advisory_locks_held(conn) == 0


async def test_later_migrations_are_applied_in_order_after_earlier_ones(conn, tmp_path):
    directory = write_migrations(tmp_path / "m", {"0001_first.sql": "CREATE TABLE first (id int);"})
    assert await apply_migrations(conn, directory=directory) == ["0001_first"]
    write_migrations(
        directory, {"0003_third.sql": "ALTER TABLE first ADD c int;", "0002_second.sql": "ALTER TABLE first ADD b int;"}
    )
    assert await apply_migrations(conn, directory=directory) == ["0002_second", "0003_third"]
    columns = await conn.fetch(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'first' ORDER BY ordinal_position"
    )
    assert [r["column_name"] for r in columns] == ["id", "b", "c"]


@pytest.mark.parametrize(
    "files",
    [
        pytest.param({"1_tasks.sql": "SELECT 1;"}, id="short-number"),
        pytest.param({"0001-tasks.sql": "SELECT 1;"}, id="dash"),
        pytest.param({"0001_Tasks.sql": "SELECT 1;"}, id="uppercase"),
        pytest.param({"tasks.sql": "SELECT 1;"}, id="no-number"),
        pytest.param({"0001_a.sql": "SELECT 1;", "0001_b.sql": "SELECT 1;"}, id="shared-number"),
    ],
)
async def test_badly_named_migration_file_raises_before_anything_runs(conn, tmp_path, files):
    with pytest.raises(MigrationError):
        await apply_migrations(conn, directory=write_migrations(tmp_path / "m", files))
    assert await table_names(conn) == set()


async def test_failing_migration_leaves_no_record_and_no_partial_table(conn, tmp_path):
    directory = write_migrations(
        tmp_path / "m",
        {
            "0001_good.sql": "CREATE TABLE good (id int);",
            "0002_bad.sql": "CREATE TABLE partial (id int);\nCREATE INDEX ON partial (no_such_column);",
        },
    )
    with pytest.raises(asyncpg.PostgresError):
        await apply_migrations(conn, directory=directory)
    assert await table_names(conn) == {"good", "schema_migrations"}
    assert [r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")] == ["0001_good"]
    assert await advisory_locks_held(conn) == 0
    # Once fixed, the failed migration applies.
    write_migrations(directory, {"0002_bad.sql": "CREATE TABLE partial (id int);"})
    assert await apply_migrations(conn, directory=directory) == ["0002_bad"]


async def test_primary_key_of_tasks_is_user_id_then_id(conn):
    await apply_migrations(conn)
    columns = await conn.fetch(
        "SELECT a.attname FROM pg_index i"
        " CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, position)"
        " JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum"
        " WHERE i.indrelid = 'tasks'::regclass AND i.indisprimary ORDER BY k.position"
    )
    assert [r["attname"] for r in columns] == ["user_id", "id"]


async def test_the_task_model_migration_keeps_every_row_of_a_populated_database(conn, tmp_path):
    """A database made by the migrations before 0005 (today's main), with tasks in it, upgrades
    without any row losing or changing a value; the new fields get their documented values."""
    before = write_migrations(tmp_path / "before", {})
    for path in MIGRATIONS_DIR.glob("*.sql"):
        if path.name < "0005":
            (before / path.name).write_bytes(path.read_bytes())
    await apply_migrations(conn, directory=before)
    await conn.execute(
        "INSERT INTO tasks (user_id, title, description, completed, version, created_at, updated_at)"
        " SELECT 'user_' || u, 'Task ' || n, repeat('d', n % 5), n % 3 = 0, 1 + n % 4,"
        "  timestamptz '2025-01-01' + (n % 7) * interval '1 hour',"  # ties in created_at on purpose
        "  timestamptz '2025-02-01' + n * interval '1 minute'"
        " FROM generate_series(1, 3) AS u, generate_series(1, 40) AS n"
    )
    await conn.execute(
        "INSERT INTO idempotency_keys (user_id, key, fingerprint, task_id) VALUES ('user_1', 'k', '\\x00', 1)"
    )
    old_columns = "user_id, id, title, description, completed, version, created_at, updated_at"
    tasks_before = await conn.fetch(f"SELECT {old_columns} FROM tasks ORDER BY user_id, id")
    keys_before = await conn.fetch("SELECT * FROM idempotency_keys")

    assert "0005_task_model" in await apply_migrations(conn)

    assert await conn.fetch(f"SELECT {old_columns} FROM tasks ORDER BY user_id, id") == tasks_before
    assert await conn.fetch("SELECT * FROM idempotency_keys") == keys_before
    new = await conn.fetch(
        "SELECT user_id, id, completed, updated_at, due, priority::text, labels, position, completed_at"
        " FROM tasks ORDER BY user_id, created_at DESC, id DESC"
    )
    assert {(r["due"], r["priority"], tuple(r["labels"])) for r in new} == {(None, "none", ())}
    assert all(r["completed_at"] == (r["updated_at"] if r["completed"] else None) for r in new)
    for user in {r["user_id"] for r in new}:  # the manual order starts as newest first, gapped
        positions = [r["position"] for r in new if r["user_id"] == user]
        assert positions == [1048576 * rank for rank in range(1, len(positions) + 1)]


# --- every list query is an index scan that needs no Sort --------------------------------------
# Populating 100,000 rows takes a few seconds, so the EXPLAIN tests share one database of their own.


@pytest.fixture(scope="module")
async def populated(postgres_admin_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    async with fresh_database(postgres_admin_dsn) as url:
        connection = await asyncpg.connect(url)
        try:
            await apply_migrations(connection)
            await connection.execute(
                "INSERT INTO tasks (user_id, title, description, completed, completed_at, created_at, updated_at,"
                " due_at, due_all_day, priority, labels, position)"
                " SELECT 'user_' || u, 'Task ' || md5(u::text || '-' || n), 'notes ' || n, n % 3 = 0,"
                "  CASE WHEN n % 3 = 0 THEN timestamptz '2025-06-01' END,"
                "  timestamptz '2025-01-01' + n * interval '1 minute',"
                "  timestamptz '2025-01-01' + ((n * 7919) % $2) * interval '1 minute',"
                "  CASE WHEN n % 4 = 0 THEN 'infinity' ELSE timestamptz '2026-01-01' + ((n * 31) % 500) * interval '1 hour' END,"
                "  false, (ARRAY['none', 'low', 'medium', 'high'])[1 + n % 4]::task_priority,"
                "  ARRAY['l' || (n % 7)], ((n * 104729) % $2) * 1048576"
                " FROM generate_series(1, $1) AS u, generate_series(1, $2) AS n",
                USERS,
                TASKS_PER_USER,
            )
            await connection.execute("ANALYZE tasks")
            yield connection
        finally:
            await connection.close()


def plan_nodes(plan: dict, allowed: Callable[[dict], bool] = lambda plan: False) -> Iterator[str]:
    """Every node's type, leaving out the nodes `allowed` accepts (their children still count)."""
    if not allowed(plan):
        yield plan["Node Type"]
    for child in plan.get("Plans", ()):
        yield from plan_nodes(child, allowed)


@pytest.mark.parametrize(
    "shape",
    [
        pytest.param(
            shape,
            id=f"{shape.column}-{'desc' if shape.descending else 'asc'}-{shape.status.value}"
            f"{'-q' if shape.search else ''}{'-filtered' if shape.filtered else ''}{'-cursor' if shape.after_cursor else ''}",
        )
        for shape in ListShape.every()
    ],
)
async def test_list_statement_plan_has_no_sort(populated, shape):
    user = "user_7"
    column, descending, status = shape.column, shape.descending, shape.status.value
    sql = list_statement(shape)
    as_text = "::text" if column in KEY_AS_TEXT else ""
    args: list = [user, 100]
    if shape.search:
        args.append(search_pattern("task"))
    if shape.filtered:  # every filter present in the statement, each given NULL: no-ops
        args.extend([None] * sum(MODEL_FILTER_PARAMETERS))
    if shape.after_cursor:
        middle = await populated.fetchrow(
            f"SELECT {column}{as_text} AS key, id FROM tasks WHERE user_id = $1 ORDER BY {column}, id OFFSET $2 LIMIT 1",
            user,
            TASKS_PER_USER // 2,
        )
        args.extend([middle["key"], middle["id"]])
    # As a request runs it: the service's role, under row-level security, as the user.
    await populated.execute("SET ROLE tasks_app")
    await populated.execute("SELECT set_config('app.user_id', $1, false)", user)
    explained = await populated.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    plan = (json.loads(explained) if isinstance(explained, str) else explained)[0]["Plan"]
    # A search may sort: the rare-term branch sorts at most SEARCH_CANDIDATES_MAX rows found by
    # the trigram index, and the common-term branch the owner's matching rows, which
    # MAX_TASKS_PER_USER bounds. Every other list is an index range scan that needs no Sort.
    nodes = list(plan_nodes(plan, allowed=lambda node: shape.search and "Sort" in node["Node Type"]))
    if shape.sort == Sort.priority:  # documented: it reads the user's rows by index, then sorts them
        assert any("Index Scan" in node for node in nodes), (sql, nodes)
    else:
        assert not any("Sort" in node for node in nodes), (sql, nodes)
        assert any(node.startswith("Index") for node in nodes), (sql, nodes)
    # And it returns the page that a plain ORDER BY over all the user's rows gives, filtered here.
    found = await populated.fetchrow(sql, *args)
    direction = "DESC" if descending else "ASC"
    everything = await populated.fetch(
        f"SELECT id, completed, title, description, {column}{as_text} AS key FROM tasks WHERE user_id = $1"
        f" ORDER BY {column} {direction}, id {direction}",
        user,
    )
    rows = {row["id"]: row for row in everything}
    expected = list(rows)  # in the statement's order
    if shape.after_cursor:
        expected = expected[expected.index(middle["id"]) + 1 :]
    if status != "all":
        expected = [i for i in expected if rows[i]["completed"] == (status == "completed")]
    if shape.search:
        expected = [
            i for i in expected if "task" in rows[i]["title"].lower() or "task" in rows[i]["description"].lower()
        ]
    page = json.loads(found["page"])
    assert [task["id"] for task in page] == expected[:100] and {task["user_id"] for task in page} == {user}
    assert found["more"] == (len(expected) > 100)
    if found["more"]:
        assert (found["last_key"], found["last_id"]) == (rows[expected[99]]["key"], expected[99])
