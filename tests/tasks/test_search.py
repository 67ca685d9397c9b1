"""Text search (`q`) reaches the trigram index through `matching_task_ids` (migration 0004), and
finds the same tasks whichever plan serves it: the candidate ids for a rare term, the ordered scan
for a common one."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator

import asyncpg
import pytest

from service.db.migrate import apply_migrations
from service.db.session import begin_as
from service.tasks.queries import SEARCH_CANDIDATES_MAX
from service.tasks.search import search_pattern
from support.app import User, create
from support.databases import fresh_database

BIG_TABLE_ROWS = 150_000  # 100,000 of them one user's


@pytest.fixture
async def db(database_url: str, migrated: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    yield conn
    await conn.close()


async def add_tasks(db: asyncpg.Connection, user_id: str, titles: str, count: int) -> None:
    """`count` tasks titled by the SQL expression `titles` over n, written as the user writes them."""
    await db.execute(begin_as(user_id, 60_000))
    await db.execute(
        f"INSERT INTO tasks (user_id, title) SELECT $1, {titles} FROM generate_series(1, $2) AS n", user_id, count
    )
    await db.execute("COMMIT")


async def function_plan(db: asyncpg.Connection, user_id: str, pattern: str) -> str:
    """The plan of the statement inside matching_task_ids, as the function runs it."""
    body = await db.fetchval("SELECT prosrc FROM pg_proc WHERE proname = 'matching_task_ids'")
    for name, number in (("owner", 1), ("pattern", 2), ("max_ids", 3)):
        body = re.sub(rf"\b{name}\b", f"${number}", body)
    await db.execute(f"BEGIN; SET LOCAL ROLE tasks_search; SELECT set_config('app.user_id', '{user_id}', true)")
    try:
        plan = await db.fetchval(f"EXPLAIN (FORMAT JSON) {body}", user_id, pattern, SEARCH_CANDIDATES_MAX + 1)
    finally:
        await db.execute("ROLLBACK")
    return as_text(plan)


def as_text(plan: object) -> str:
    return plan if isinstance(plan, str) else json.dumps(plan)


@pytest.fixture(scope="module")
async def big_table(postgres_admin_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A database of its own whose `tasks` looks like production's: one user with many tasks
    among many users. Loaded before its text index is built, as a bulk load would be."""
    async with fresh_database(postgres_admin_dsn) as url:
        conn = await asyncpg.connect(url)
        try:
            await apply_migrations(conn)
            definition = await conn.fetchval("SELECT indexdef FROM pg_indexes WHERE indexname = 'tasks_text_search'")
            await conn.execute("DROP INDEX tasks_text_search")
            await conn.execute("ALTER TABLE tasks DISABLE TRIGGER USER")  # no quota bookkeeping in a bulk load
            await conn.execute(
                "INSERT INTO tasks (user_id, title) SELECT CASE WHEN n % 3 = 0 THEN 'other-' || (n % 1000)"
                " ELSE 'big' END, 'task ' || md5(n::text) FROM generate_series(1, $1) AS n",
                BIG_TABLE_ROWS,
            )
            await conn.execute("SET maintenance_work_mem = '256MB'")  # a GIN build in memory: seconds, not a minute
            await conn.execute(definition)
            await conn.execute("ANALYZE tasks")
            yield conn
        finally:
            await conn.close()


async def test_a_rare_term_uses_the_trigram_index_which_the_owner_policy_alone_could_not(big_table):
    pattern = search_pattern("abc12")
    assert '"Index Name": "tasks_text_search"' in await function_plan(big_table, "big", pattern)

    # Why the search runs in its own function: under the owner policy, row-level security keeps
    # ILIKE (not leakproof) out of index conditions, so the same search cannot use the trigrams.
    await big_table.execute(begin_as("big", 5000))
    try:
        plan = await big_table.fetchval(
            "EXPLAIN (FORMAT JSON) SELECT id FROM tasks WHERE user_id = $1 AND (title ILIKE $2 OR description ILIKE $2)",
            "big",
            pattern,
        )
    finally:
        await big_table.execute("ROLLBACK")
    assert "~~*" not in "".join(re.findall(r'"Index Cond": "[^"]*"', as_text(plan)))


async def search(client, user: User, q: str, limit: int = 500) -> list[int]:
    found: list[int] = []
    url: str | None = user.url(f"?q={q}&limit={limit}")
    while url:
        response = await client.get(url, headers=user.headers)
        assert response.status_code == 200, response.text
        found += [task["id"] for task in response.json()]
        url = response.links.get("next", {}).get("url")
    return found


@pytest.mark.parametrize(
    "matching",
    [
        pytest.param(3, id="rare-term-by-candidate-ids"),
        pytest.param(SEARCH_CANDIDATES_MAX + 50, id="common-term-by-ordered-scan"),
    ],
)
async def test_both_plans_find_exactly_the_matching_tasks_newest_first(client, db, make_user, matching):
    user = make_user()
    await add_tasks(db, user.id, "CASE WHEN n % 2 = 0 THEN 'plain ' || n ELSE 'other ' || n END", 2 * matching)
    await add_tasks(db, user.id, "'needle ' || n", matching)
    expected = await db.fetch(
        "SELECT id FROM tasks WHERE user_id = $1 AND title LIKE 'needle%' ORDER BY created_at DESC, id DESC", user.id
    )
    assert await search(client, user, "NEEDLE") == [row["id"] for row in expected]


async def test_wildcards_and_the_escape_character_are_searched_literally(client, make_user):
    user = make_user()
    percent = await create(client, user, "100% done")
    underscore = await create(client, user, "snake_case")
    backslash = await create(client, user, "C:\\temp")
    await create(client, user, "1000 done, snakecase, C:temp")
    assert await search(client, user, "%25") == [percent["id"]]
    assert await search(client, user, "_") == [underscore["id"]]
    assert await search(client, user, "%5C") == [backslash["id"]]


async def test_a_search_never_finds_another_users_tasks(client, make_user):
    alice, bob = make_user(), make_user()
    await create(client, bob, "bob's secret plan")
    assert await search(client, alice, "secret") == []
    assert len(await search(client, bob, "secret")) == 1
