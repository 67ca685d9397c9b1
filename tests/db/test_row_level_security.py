"""Row-level security: the database itself keeps users apart, even from a statement that forgot
its `WHERE user_id = $1`, and no pooled connection carries a user between requests."""

from __future__ import annotations

import asyncpg
import pytest

from service.db.session import APP_ROLE, sql_literal, user_transaction
from support.app import create


@pytest.fixture
async def pool(client):
    return client.app.state.resources.pool


async def test_a_query_without_the_owner_filter_still_sees_only_the_callers_rows(client, pool, alice, bob):
    mine = await create(client, alice, "alice's")
    await create(client, bob, "bob's")
    async with user_transaction(pool, alice.id, acquire_timeout_seconds=2) as conn:
        rows = await conn.fetch("SELECT id, user_id FROM tasks")  # no WHERE at all
        keys = await conn.fetch("SELECT user_id FROM idempotency_keys")
    assert [(r["id"], r["user_id"]) for r in rows] == [(mine["id"], alice.id)]
    assert all(r["user_id"] == alice.id for r in keys)


async def test_writes_for_another_user_are_refused_by_the_policy(pool, alice, bob):
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        async with user_transaction(pool, alice.id, acquire_timeout_seconds=2) as conn:
            await conn.execute("INSERT INTO tasks (user_id, title) VALUES ($1, 'planted')", bob.id)


async def test_without_a_user_nothing_is_visible(client, pool, alice):
    await create(client, alice)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(f"SET LOCAL ROLE {APP_ROLE}")
        assert await conn.fetchval("SELECT count(*) FROM tasks") == 0


async def test_a_connection_back_in_the_pool_carries_no_user(client, alice):
    await create(client, alice)
    await client.get(alice.url(), headers=alice.headers)
    pool = client.app.state.resources.pool
    connections = [await pool.acquire() for _ in range(pool.get_size())]
    try:
        for conn in connections:
            assert await conn.fetchval("SELECT current_setting('app.user_id', true)") in (None, "")
            assert await conn.fetchval("SELECT current_user = session_user")  # the role ended with the transaction
    finally:
        for conn in connections:
            await pool.release(conn)


async def test_a_failed_request_rolls_back_and_leaves_no_user_behind(pool, alice):
    with pytest.raises(asyncpg.UndefinedTableError):
        async with user_transaction(pool, alice.id, acquire_timeout_seconds=2) as conn:
            await conn.execute("INSERT INTO tasks (user_id, title) VALUES ($1, 'half')", alice.id)
            await conn.execute("SELECT * FROM no_such_table")
    async with user_transaction(pool, alice.id, acquire_timeout_seconds=2) as conn:
        assert await conn.fetchval("SELECT count(*) FROM tasks WHERE title = 'half'") == 0
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_setting('app.user_id', true)") in (None, "")


async def test_the_service_role_neither_owns_the_tables_nor_bypasses_rls(pool, alice):
    async with user_transaction(pool, alice.id, acquire_timeout_seconds=2) as conn:
        role = await conn.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert (role["rolsuper"], role["rolbypassrls"]) == (False, False)
        tables = await conn.fetch(
            "SELECT c.relname, pg_get_userbyid(c.relowner) AS owner, c.relrowsecurity, c.relforcerowsecurity"
            " FROM pg_class c WHERE c.relname IN ('tasks', 'idempotency_keys')"
        )
    assert len(tables) == 2
    for table in tables:
        assert table["owner"] != APP_ROLE and table["relrowsecurity"] and table["relforcerowsecurity"]


@pytest.mark.parametrize(
    "value, literal",
    [
        pytest.param("alice", "E'alice'", id="plain"),
        pytest.param("o'brien", "E'o\\'brien'", id="quote"),
        pytest.param("back\\slash", "E'back\\\\slash'", id="backslash"),
        pytest.param("\\'; DROP TABLE tasks; --", "E'\\\\\\'; DROP TABLE tasks; --'", id="injection"),
    ],
)
async def test_user_ids_are_quoted_as_sql_literals(pool, value, literal):
    assert sql_literal(value) == literal
    async with user_transaction(pool, value, acquire_timeout_seconds=2) as conn:
        assert await conn.fetchval("SELECT current_setting('app.user_id')") == value


def test_nul_cannot_reach_sql():
    with pytest.raises(ValueError):
        sql_literal("a\x00b")
