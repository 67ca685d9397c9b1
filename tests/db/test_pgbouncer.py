"""The service behind a real pgbouncer in transaction mode, as Neon's and Supabase's pooled
endpoints are: server connections shared between clients (and so between users) from one
transaction to the next.

pgbouncer is the Debian package (installed by `tests/support/pgbouncer.py` when missing and
root), started per test on 127.0.0.1 with `default_pool_size = 2`, in front of the test server.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import random
import subprocess
import sys
import uuid
from typing import Any

import asyncpg
import httpx
import psutil
import pytest

from service.db.migrate import ADVISORY_LOCK_ID, apply_migrations
from service.db.pool import create_pool
from service.db.session import APP_ROLE, begin_as, user_transaction
from service.db.statements import OwnedStatement, install_owned_statements
from service.settings import REPO_ROOT, Settings
from support.app import User
from support.pgbouncer import Pgbouncer, ensure_pgbouncer, pgbouncer_version, running_pgbouncer

SERVER_CONNECTIONS = 2  # pgbouncer's default_pool_size in these tests
CLIENT_CONNECTIONS = 8  # the app's pool: more clients than server connections
TASKS_PER_USER = 30


@pytest.fixture
def bouncer(postgres_admin_dsn: str) -> Pgbouncer:
    with running_pgbouncer(postgres_admin_dsn, default_pool_size=SERVER_CONNECTIONS) as bouncer:
        yield bouncer


def pool_counts(bouncer: Pgbouncer, database: str) -> tuple[int, int]:
    """(server connections, clients active or waiting) of `database`'s pools, from SHOW POOLS."""
    pools = [p for p in bouncer.show("POOLS") if p["database"] == database]
    servers = sum(int(p[k]) for p in pools for k in ("sv_active", "sv_idle", "sv_used", "sv_tested", "sv_login"))
    return servers, sum(int(p["cl_active"]) + int(p["cl_waiting"]) for p in pools)


def client_connections(bouncer: Pgbouncer, database: str) -> int:
    return sum(1 for c in bouncer.show("CLIENTS") if c["database"] == database)


def test_pgbouncer_runs_unprivileged_in_transaction_mode(bouncer: Pgbouncer):
    assert psutil.Process(bouncer.process.pid).uids().real != 0  # pgbouncer refuses root anyway
    config = {row["key"]: row["value"] for row in bouncer.show("CONFIG")}
    assert config["pool_mode"] == "transaction"
    assert config["default_pool_size"] == str(SERVER_CONNECTIONS)
    assert config["ignore_startup_parameters"] == ""  # asyncpg sends nothing pgbouncer does not track


# -- mixed traffic from two users ------------------------------------------------------------


@dataclasses.dataclass
class Call:
    user: User
    method: str
    path: str
    expected: int
    body: Any = None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


def mixed_calls(users: dict[str, User], tasks: dict[str, list[dict]], other: dict[str, str]) -> tuple[list[Call], dict]:
    """One user's share of the traffic: every kind of request, each task written at most once,
    so the final state is known. Returns the calls and each user's expected {id: (title, completed)}."""
    calls: list[Call] = []
    expected: dict[str, dict[int, tuple[str, bool]]] = {}
    for name, user in users.items():
        own = tasks[name]
        state = {t["id"]: (t["title"], False) for t in own}
        for i, task in enumerate(own):
            path = user.url(f"/{task['id']}")
            kind = i % 6
            if kind == 0:
                calls.append(Call(user, "PATCH", path, 200, {"title": f"{name} renamed {i}"}))
                state[task["id"]] = (f"{name} renamed {i}", False)
            elif kind == 1:
                calls.append(Call(user, "PATCH", path + "/complete", 200))
                state[task["id"]] = (task["title"], True)
            elif kind == 2:
                calls.append(Call(user, "DELETE", path, 204))
                del state[task["id"]]
            elif kind == 3:
                calls.append(
                    Call(user, "PUT", path, 200, {"title": f"{name} put {i}", "description": "d", "completed": True})
                )
                state[task["id"]] = (f"{name} put {i}", True)
            else:
                calls.append(Call(user, "GET", path, 200))
        for i in range(25):
            calls.append(Call(user, "GET", user.url(f"?limit=500&sort={random.choice(['title', '-created_at'])}"), 200))
        for i in range(6):
            key = f"{name}-key-{i}"
            for _ in range(2):  # each key twice: the replay answers the same task
                calls.append(
                    Call(user, "POST", user.url(), 201, {"title": f"{name} keyed {i}"}, {"Idempotency-Key": key})
                )
        for other_id in list(other[name])[:4]:  # someone else's task: as missing as a task that never existed
            calls.append(Call(user, "GET", user.url(f"/{other_id}"), 404))
        expected[name] = state
    return calls, expected


async def send(client: httpx.AsyncClient, call: Call) -> httpx.Response:
    return await client.request(
        call.method, call.path, json=call.body, headers={**call.user.headers, **call.headers}, timeout=30
    )


async def run_mixed_traffic(
    client: httpx.AsyncClient, alice: User, bob: User
) -> tuple[list[tuple[Call, httpx.Response]], dict]:
    users = {"alice": alice, "bob": bob}
    creates = [
        Call(user, "POST", user.url(), 201, {"title": f"{name} task {i:02d}"})
        for i in range(TASKS_PER_USER)
        for name, user in users.items()
    ]
    created = await asyncio.gather(*(send(client, c) for c in creates))
    results = list(zip(creates, created))
    tasks: dict[str, list[dict]] = {"alice": [], "bob": []}
    for call, response in results:
        if response.status_code == 201:
            tasks["alice" if call.user is alice else "bob"].append(response.json())
    other = {"alice": [t["id"] for t in tasks["bob"]], "bob": [t["id"] for t in tasks["alice"]]}
    calls, expected = mixed_calls(users, tasks, other)
    random.Random(7).shuffle(calls)
    responses = await asyncio.gather(*(send(client, c) for c in calls))
    return results + list(zip(calls, responses)), expected


def failures(results: list[tuple[Call, httpx.Response]]) -> list[str]:
    return [
        f"{c.method} {c.path} -> {r.status_code} (expected {c.expected}): {r.text[:200]}"
        for c, r in results
        if r.status_code != c.expected
    ]


async def test_mixed_traffic_of_two_users_through_pgbouncer_transaction_mode(
    start_app_at, bouncer: Pgbouncer, migrated: str, alice: User, bob: User
):
    samples: list[tuple[int, int]] = []
    stop = asyncio.Event()

    async def sample_pools() -> None:
        while not stop.is_set():
            samples.append(await asyncio.to_thread(pool_counts, bouncer, migrated))
            await asyncio.sleep(0.05)

    async with start_app_at(
        bouncer.dsn(migrated),
        db_statement_cache_size=0,
        db_pool_min_size=CLIENT_CONNECTIONS,
        db_pool_max_size=CLIENT_CONNECTIONS,
        db_pool_acquire_timeout_seconds=10,
    ) as client:
        sampler = asyncio.create_task(sample_pools())
        try:
            results, expected = await run_mixed_traffic(client, alice, bob)
        finally:
            stop.set()
            await sampler

        assert len(results) >= 200
        assert failures(results) == [], (
            "\n".join(failures(results)[:20]) + "\n--- pgbouncer ---\n" + bouncer.log()[-3000:]
        )

        # Each user sees exactly their own tasks, in the state their own writes left them.
        for name, user in {"alice": alice, "bob": bob}.items():
            for call, response in results:
                if call.user is user and call.method == "GET" and response.status_code == 200:
                    body = response.json()
                    items = body if isinstance(body, list) else [body]
                    assert {item["user_id"] for item in items} <= {user.id}, (call.path, body)
            response = await client.get(user.url("?limit=500"), headers=user.headers)
            assert response.status_code == 200, response.text
            listed = response.json()
            assert {t["user_id"] for t in listed} == {user.id}
            plain = {t["id"]: (t["title"], t["completed"]) for t in listed if "keyed" not in t["title"]}
            assert plain == expected[name]
            keyed = sorted(t["title"] for t in listed if "keyed" in t["title"])
            assert keyed == sorted(f"{name} keyed {i}" for i in range(6))  # one task per Idempotency-Key

        # The server connections really were shared: more clients than servers, never more than two servers.
        assert client_connections(bouncer, migrated) >= CLIENT_CONNECTIONS
        assert samples, "pgbouncer's pools were never sampled"
        assert max(servers for servers, _ in samples) <= SERVER_CONNECTIONS, samples
        assert max(clients for _, clients in samples) > SERVER_CONNECTIONS, samples


async def left_behind(pool: asyncpg.Pool, after: str) -> list[str]:
    """A user or a role still set on whichever server connection pgbouncer hands out next."""
    async with pool.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT current_setting('app.user_id', true) AS u, current_user = session_user AS own_role"
        )
    return [] if row["u"] in (None, "") and row["own_role"] else [f"outside, after {after}: {dict(row)}"]


async def test_rls_user_is_set_inside_each_transaction_and_gone_outside_it(
    bouncer: Pgbouncer, migrated: str, alice, bob
):
    """The service's own transaction code (`user_transaction`) on 6 client connections over 2
    server connections: inside, `app.user_id` and the role are the caller's; outside (on whatever
    server connection pgbouncer picks next) nothing is left."""
    settings = Settings(db_statement_cache_size=0, db_pool_min_size=6, db_pool_max_size=6)
    pool = await create_pool(bouncer.dsn(migrated), settings)
    seen: dict[str, set[int]] = {alice.id: set(), bob.id: set()}
    problems: list[str] = []

    async def worker(user_id: str, rounds: int) -> None:
        for _ in range(rounds):
            async with user_transaction(pool, user_id, acquire_timeout_seconds=10) as conn:
                before = await conn.fetchrow(
                    "SELECT current_setting('app.user_id', true) AS u, current_user AS r, pg_backend_pid() AS pid"
                )
                await asyncio.sleep(random.uniform(0, 0.004))  # let other clients' transactions interleave
                after = await conn.fetchrow(
                    "SELECT current_setting('app.user_id', true) AS u, current_user AS r, pg_backend_pid() AS pid"
                )
                seen[user_id].add(before["pid"])
                if (
                    (before["u"], before["r"]) != (user_id, APP_ROLE)
                    or after["u"] != user_id
                    or after["pid"] != before["pid"]
                ):
                    problems.append(f"inside {user_id}: {dict(before)} then {dict(after)}")
            problems.extend(await left_behind(pool, user_id))  # outside any transaction of ours

    try:
        await asyncio.gather(*(worker(user.id, 25) for user in (alice, bob, alice, bob, alice, bob)))
    finally:
        await pool.close()
    assert problems == []
    # Both users' transactions ran on the same (at most two) server connections.
    assert len(seen[alice.id] | seen[bob.id]) <= SERVER_CONNECTIONS
    assert seen[alice.id] & seen[bob.id], seen


async def test_owned_statements_run_as_the_caller_and_leave_nothing_behind(
    bouncer: Pgbouncer, migrated: str, alice, bob
):
    """Statements sent in one round trip (service.db.statements), made through pgbouncer, on 6
    client connections over 2 server connections: inside, the user and the role are the
    caller's and a statement without an owner filter sees only the caller's rows; outside, on
    whatever server connection pgbouncer picks next, nothing is left."""
    tag = uuid.uuid4().hex  # a statement of this test's own, so pgbouncer's clients make it
    probe = OwnedStatement(
        f"SELECT '{tag}' AS tag, current_setting('app.user_id', true) AS who, current_user::text AS role,"
        " pg_backend_pid() AS pid, (SELECT array_agg(DISTINCT user_id) FROM tasks) AS owners WHERE $1::text IS NOT NULL"
    )
    settings = Settings(db_statement_cache_size=0, db_pool_min_size=6, db_pool_max_size=6)
    pool = await create_pool(bouncer.dsn(migrated), settings)
    seen: dict[str, set[int]] = {alice.id: set(), bob.id: set()}
    problems: list[str] = []

    async def worker(user_id: str, rounds: int) -> None:
        for _ in range(rounds):
            async with user_transaction(pool, user_id, acquire_timeout_seconds=10) as db:
                row = await db.one_row(probe, user_id)
                assert row is not None and not db.began
                seen[user_id].add(row["pid"])
                if (row["who"], row["role"], row["owners"]) != (user_id, APP_ROLE, [user_id]):
                    problems.append(f"inside {user_id}: {dict(row)}")
            problems.extend(await left_behind(pool, user_id))  # outside any statement of ours

    try:
        async with pool.acquire() as conn:
            assert await install_owned_statements(conn, [probe]) == [probe.name]
        for user in (alice, bob):
            async with user_transaction(pool, user.id, acquire_timeout_seconds=10) as db:
                await db.execute("INSERT INTO tasks (user_id, title) VALUES ($1, 'mine')", user.id)
        await asyncio.gather(*(worker(user.id, 25) for user in (alice, bob, alice, bob, alice, bob)))
    finally:
        await pool.close()
    assert problems == []
    assert len(seen[alice.id] | seen[bob.id]) <= SERVER_CONNECTIONS
    assert seen[alice.id] & seen[bob.id], seen


async def test_the_begin_message_is_one_simple_query_that_pgbouncer_passes_whole(
    bouncer: Pgbouncer, migrated: str, alice
):
    """`begin_as` is several statements in one simple-query message: pgbouncer keeps the server
    connection for the whole transaction it opens, and `SET LOCAL` dies with it."""
    conn = await asyncpg.connect(bouncer.dsn(migrated), statement_cache_size=0)
    try:
        await conn.execute(begin_as(alice.id, 1000))
        assert await conn.fetchval("SELECT current_setting('statement_timeout')") == "1s"
        assert await conn.fetchval("SELECT current_setting('app.user_id', true)") == alice.id
        await conn.execute("COMMIT")
        assert await conn.fetchval("SELECT current_setting('statement_timeout')") != "1s"
    finally:
        await conn.close()


# -- the failure mode DB_STATEMENT_CACHE_SIZE=0 prevents --------------------------------------


async def test_the_default_statement_cache_breaks_behind_pgbouncer_transaction_mode(
    start_app_at, bouncer: Pgbouncer, migrated: str, alice: User, bob: User, caplog
):
    """With asyncpg's named prepared statements (DB_STATEMENT_CACHE_SIZE=100, the default), a
    statement prepared on one server connection is used on another: requests fail."""
    caplog.set_level(logging.ERROR, logger="service")
    async with start_app_at(
        bouncer.dsn(migrated),
        db_pool_min_size=CLIENT_CONNECTIONS,
        db_pool_max_size=CLIENT_CONNECTIONS,
        db_pool_acquire_timeout_seconds=10,
    ) as client:
        assert client.app.state.resources.settings.db_statement_cache_size == 100
        # Answers as a real server would send them (ASGITransport re-raises the app's errors by default).
        transport = httpx.ASGITransport(app=client.app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as http:
            results, _ = await run_mixed_traffic(http, alice, bob)
    statuses = [r.status_code for _, r in results]
    assert statuses.count(500) > 0, f"expected failures with the statement cache on: {sorted(set(statuses))}"
    assert all(r.json()["code"] == "internal_error" for _, r in results if r.status_code == 500)
    assert 'prepared statement "__asyncpg_stmt_' in caplog.text and "does not exist" in caplog.text


async def test_max_prepared_statements_needs_pgbouncer_1_21(postgres_admin_dsn: str, migrated: str):
    """pgbouncer >= 1.21 can track named prepared statements itself (`max_prepared_statements`),
    so the statement cache could stay on. Older pgbouncers (Debian 12 ships 1.18) refuse the setting."""
    version = pgbouncer_version(ensure_pgbouncer())
    if version >= (1, 21):
        with running_pgbouncer(postgres_admin_dsn, extra={"max_prepared_statements": "200"}) as bouncer:
            await _cached_statements_work(bouncer.dsn(migrated))
    else:
        with pytest.raises(pytest.fail.Exception, match="unknown parameter: pgbouncer/max_prepared_statements"):
            with running_pgbouncer(postgres_admin_dsn, extra={"max_prepared_statements": "200"}):
                pass


async def _cached_statements_work(dsn: str) -> None:
    pool = await create_pool(dsn, Settings(db_statement_cache_size=100, db_pool_min_size=6, db_pool_max_size=6))
    try:

        async def worker(n: int) -> None:
            for i in range(30):
                async with user_transaction(pool, f"user_{n}", acquire_timeout_seconds=10) as conn:
                    assert await conn.fetchval("SELECT count(*) FROM tasks WHERE user_id = $1", f"user_{n}") == 0

        await asyncio.gather(*(worker(n) for n in range(6)))
    finally:
        await pool.close()


# -- migrations through the pooler ---------------------------------------------------------------


def service_command_env(dsn: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=dsn, DB_STATEMENT_CACHE_SIZE="0", BETTER_AUTH_URL="http://127.0.0.1:9",
        JWKS_URL="", JWT_ISSUER="", JWT_AUDIENCE="", PYTHONUNBUFFERED="1",
    )  # fmt: skip
    return env


async def test_a_second_process_can_migrate_through_pgbouncer_transaction_mode(postgres_admin_dsn: str, migrated: str):
    with running_pgbouncer(postgres_admin_dsn, default_pool_size=1) as bouncer:
        env = service_command_env(bouncer.dsn(migrated))
        outputs = []
        for _ in range(2):  # two starts (a restart, or a second replica) through the same pooler
            result = await asyncio.to_thread(
                subprocess.run, [sys.executable, "-m", "service", "migrate"], cwd=REPO_ROOT, env=env,
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            outputs.append(f"exit {result.returncode}: {result.stdout[-300:]} {result.stderr[-600:]}")
        assert all(o.startswith("exit 0") for o in outputs), "\n".join(outputs)


async def test_migrations_through_pgbouncer_transaction_mode_leave_no_lock_behind(
    postgres_admin_dsn: str, migrated: str
):
    # FIFO reuse of server connections (busy poolers hop between them anyway).
    with running_pgbouncer(postgres_admin_dsn, extra={"server_round_robin": "1", "min_pool_size": "2"}) as bouncer:
        dsn = bouncer.dsn(migrated)
        warm = [await asyncpg.connect(dsn, statement_cache_size=0) for _ in range(SERVER_CONNECTIONS)]

        async def hold(conn: asyncpg.Connection) -> None:
            async with conn.transaction():
                await conn.execute("SELECT pg_sleep(0.1)")

        await asyncio.gather(*(hold(c) for c in warm))  # two server connections exist
        for conn in warm:
            await conn.close()
        conn = await asyncpg.connect(dsn, statement_cache_size=0)
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        admin = await asyncpg.connect(postgres_admin_dsn)
        try:
            held = await admin.fetch(
                "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
                " WHERE l.locktype = 'advisory' AND d.datname = $1 AND l.objid = $2::bigint::oid",
                migrated, ADVISORY_LOCK_ID,
            )  # fmt: skip
        finally:
            await admin.close()
        assert held == [], (
            f"the migrations' advisory lock is still held by server connection(s) {[r['pid'] for r in held]}"
        )
