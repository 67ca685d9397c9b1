"""Owned statements (service/db/statements.py): a request's one statement, run as its owner by a
function of its own, in one round trip and in no transaction of ours."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from service.db.migrate import MigrationError
from service.db.session import APP_ROLE, user_transaction
from service.db.statements import SCHEMA, OwnedStatement, function_definition, install_owned_statements
from service.schema import owned_statements
from support.app import create

# Who runs the statement, in which zone, and whose rows a statement without an owner filter sees.
PROBE = OwnedStatement(
    "SELECT $1::text AS asked, current_setting('app.user_id', true) AS who, current_user::text AS role,"
    " current_setting('TimeZone') AS zone, (SELECT array_agg(DISTINCT user_id) FROM tasks) AS owners"
)


def unique(sql: str) -> str:
    """`sql` with a tag of its own: a function name no other test made or found missing."""
    return sql.replace("SELECT ", f"SELECT '{uuid.uuid4().hex}' AS tag, ", 1)


@pytest.fixture
async def pool(client):
    return client.app.state.resources.pool


async def install(pool: asyncpg.Pool, *statements: OwnedStatement) -> list[str]:
    async with pool.acquire() as conn:
        return await install_owned_statements(conn, list(statements))


async def test_a_statement_without_the_owner_filter_sees_only_the_callers_rows(client, pool, alice, bob):
    await create(client, alice, "alice's")
    await create(client, bob, "bob's")
    await install(pool, PROBE)
    async with user_transaction(pool, alice.id, acquire_timeout_seconds=2) as db:
        row = await db.one_row(PROBE, alice.id)
        assert not db.began  # one statement, its own implicit transaction
    assert row is not None
    assert dict(row) == {"asked": alice.id, "who": alice.id, "role": APP_ROLE, "zone": "UTC", "owners": [alice.id]}
    async with pool.acquire() as raw:  # the role and the user ended with the statement
        assert await raw.fetchval("SELECT current_setting('app.user_id', true)") in (None, "")
        assert await raw.fetchval("SELECT current_user = session_user")


async def test_a_create_for_another_user_is_refused_by_the_policy(pool, alice, bob):
    planted = OwnedStatement(
        "INSERT INTO tasks (user_id, title) SELECT $2::text, 'planted' WHERE $1::text IS NOT NULL RETURNING id"
    )
    await install(pool, planted)
    async with user_transaction(pool, alice.id, acquire_timeout_seconds=2) as db:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await db.one_row(planted, alice.id, bob.id)
        assert not db.began


async def test_after_a_write_the_statement_runs_in_the_requests_transaction(pool, alice):
    titles = OwnedStatement("SELECT array_agg(title) AS titles FROM tasks WHERE user_id = $1")
    await install(pool, titles)
    with pytest.raises(ZeroDivisionError):
        async with user_transaction(pool, alice.id, acquire_timeout_seconds=2) as db:
            await db.execute("INSERT INTO tasks (user_id, title) VALUES ($1, 'uncommitted')", alice.id)
            row = await db.one_row(titles, alice.id)
            assert db.began and row is not None and row["titles"] == ["uncommitted"]
            raise ZeroDivisionError  # rolls the insert back
    async with user_transaction(pool, alice.id, acquire_timeout_seconds=2) as db:
        row = await db.one_row(titles, alice.id)
    assert row is not None and row["titles"] is None


async def test_a_missing_function_runs_its_statement_in_a_transaction(pool, alice):
    never_made = OwnedStatement(unique("SELECT current_setting('app.user_id', true) AS who WHERE $1::text IS NOT NULL"))
    async with user_transaction(pool, alice.id, acquire_timeout_seconds=2) as db:
        row = await db.one_row(never_made, alice.id)
        assert db.began
    assert row is not None and row["who"] == alice.id


async def test_a_statement_runs_only_as_the_connections_user(pool, alice, bob):
    await install(pool, PROBE)
    async with user_transaction(pool, alice.id, acquire_timeout_seconds=2) as db:
        with pytest.raises(ValueError, match="connection's user"):
            await db.one_row(PROBE, bob.id)


async def test_a_statement_outlasting_the_timeout_is_cancelled_and_the_connection_serves_on(start_app, alice):
    slow = OwnedStatement("SELECT pg_sleep(5)::text AS slept WHERE $1::text IS NOT NULL")
    async with start_app(db_statement_timeout_ms=200) as client:
        pool = client.app.state.resources.pool
        await install(pool, slow, PROBE)
        async with user_transaction(pool, alice.id, acquire_timeout_seconds=2, statement_timeout_ms=200) as db:
            with pytest.raises(TimeoutError):
                await db.one_row(slow, alice.id)
        async with user_transaction(pool, alice.id, acquire_timeout_seconds=2, statement_timeout_ms=200) as db:
            row = await db.one_row(PROBE, alice.id)
        assert row is not None and row["who"] == alice.id


async def test_every_owned_statement_of_the_service_is_made_as_its_sql_verbatim(client, pool):
    statements = owned_statements()
    assert len(statements) >= 3 + 216 + 2  # get, create, labels, every list shape, two change feeds
    async with pool.acquire() as raw:
        made = {
            row["proname"]: row
            for row in await raw.fetch(
                "SELECT proname, prosrc, proconfig, prosecdef, proacl::text[] AS acl FROM pg_proc"
                " WHERE pronamespace = $1::regnamespace",
                SCHEMA,
            )
        }
    for statement in statements:
        function = made[statement.name]
        assert function["prosrc"] == statement.body and f"RETURN QUERY {statement.sql};" in function["prosrc"]
        assert sorted(function["proconfig"]) == ["TimeZone=UTC", f"role={APP_ROLE}"]
        assert not function["prosecdef"]  # runs with the caller's rights, narrowed to tasks_app
        grantees = {entry.split("=")[0] for entry in function["acl"]}
        assert APP_ROLE in grantees and "" not in grantees  # "" is PUBLIC


async def test_making_them_again_makes_nothing_and_replicas_starting_together_make_each_once(database_url, migrated):
    statement = OwnedStatement(unique("SELECT $1::text AS asked"))
    connections = [await asyncpg.connect(database_url) for _ in range(3)]
    try:
        made = await asyncio.gather(*(install_owned_statements(c, [statement, PROBE]) for c in connections))
        assert sorted(len(names) for names in made) == [0, 0, 1]
        assert await install_owned_statements(connections[0], owned_statements()) == []
        assert await connections[0].fetchval("SELECT count(*) FROM pg_proc WHERE proname = $1", statement.name) == 1
    finally:
        for conn in connections:
            await conn.close()


async def test_an_edited_function_stops_start_up(database_url, migrated):
    statement = OwnedStatement(unique("SELECT $1::text AS asked"))
    conn = await asyncpg.connect(database_url)
    try:
        await install_owned_statements(conn, [statement])
        edited = (await function_definition(conn, statement)).replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
        await conn.execute(edited.replace("RETURN QUERY SELECT", "RETURN QUERY SELECT /* edited */"))
        with pytest.raises(MigrationError, match="changed after it was made"):
            await install_owned_statements(conn, [statement])
    finally:
        await conn.close()


def test_a_statement_numbers_its_parameters_from_the_owner_up():
    with pytest.raises(ValueError, match=r"\$1..\$n"):
        _ = OwnedStatement("SELECT $2::text AS skipped").parameters
    assert OwnedStatement("SELECT $1::text AS a, $2::int AS b").parameters == 2
    with_quota = OwnedStatement("SELECT $1::text AS a", sets_quota=True)
    assert with_quota.call.endswith("($1, $2)") and "app.max_tasks" in with_quota.body


def test_a_changed_statement_gets_another_function():
    assert OwnedStatement("SELECT $1::text AS a").name != OwnedStatement("SELECT $1::text AS b").name
    assert OwnedStatement("SELECT $1::text AS a").name != OwnedStatement("SELECT $1::text AS a", sets_quota=True).name
    assert OwnedStatement("SELECT $1::text AS a").name == OwnedStatement("SELECT $1::text AS a").name
