"""Waiting for a pooled connection is first come, first served (the app's pool gate).

asyncpg's pool waits on an asyncio.Queue, where a request arriving just as a connection is
released takes it ahead of those already waiting; under load that starved some requests into
the latency tail. The gate in front of the pool keeps the queue's order. These tests use the
application's own gate, through the same `Resources.transaction` the routes use."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from service.db.session import UserConnection
from service.db.statements import SCHEMA
from service.resources import Resources, app_resources
from support.app import assert_problem, create

WAITERS = 5
NEWCOMERS = 20


async def served_order(resources: Resources, user_id: str) -> list[str]:
    """Who got the connection in which order: one holder, then waiters queued behind it, then
    newcomers arriving one per event-loop turn while the waiters are being served."""
    order: list[str] = []
    release_holder = asyncio.Event()

    async def use(name: str, hold: asyncio.Event | None = None) -> None:
        async with resources.transaction(user_id):
            order.append(name)
            if hold is not None:
                await hold.wait()

    tasks = [asyncio.create_task(use("holder", release_holder))]
    while not order:
        await asyncio.sleep(0.01)
    tasks += [asyncio.create_task(use(f"waiter {i}")) for i in range(WAITERS)]
    await asyncio.sleep(0.1)  # all of them are waiting now
    release_holder.set()
    for i in range(NEWCOMERS):
        tasks.append(asyncio.create_task(use(f"newcomer {i}")))
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    return order


async def test_waiters_are_served_before_later_arrivals(start_app, alice):
    # One connection, so every transaction of the test waits for the same one.
    async with start_app(db_pool_min_size=1, db_pool_max_size=1, db_pool_acquire_timeout_seconds=10) as client:
        order = await served_order(app_resources(client.app), alice.id)
    assert order == ["holder", *(f"waiter {i}" for i in range(WAITERS)), *(f"newcomer {i}" for i in range(NEWCOMERS))]


async def test_requests_wait_on_the_apps_gate(start_app, alice):
    """With every permit of the gate taken (and idle connections in the pool), a request waits
    its bounded time and gets 503: the routes go through the gate."""
    async with start_app(db_pool_min_size=2, db_pool_max_size=2, db_pool_acquire_timeout_seconds=0.2) as client:
        resources = app_resources(client.app)
        for _ in range(resources.settings.db_pool_max_size):
            await resources.pool_gate.acquire()
        try:
            assert resources.pool.get_idle_size() > 0
            assert_problem(await client.get(alice.url(), headers=alice.headers), 503, "database_unavailable")
        finally:
            for _ in range(resources.settings.db_pool_max_size):
                resources.pool_gate.release()
        assert (await client.get(alice.url(), headers=alice.headers)).status_code == 200


async def test_a_user_connection_cannot_be_used_after_its_transaction(client, alice):
    resources = app_resources(client.app)
    async with resources.transaction(alice.id) as db:
        assert isinstance(db, UserConnection) and db.user_id == alice.id
        assert await db.fetchval("SELECT current_setting('app.user_id')") == alice.id
    with pytest.raises(RuntimeError, match="transaction has ended"):
        await db.fetchval("SELECT 1")


async def test_failed_transactions_give_back_their_gate_permit_and_connection(start_app, alice):
    async with start_app(db_pool_min_size=1, db_pool_max_size=1, db_pool_acquire_timeout_seconds=0.5) as client:
        resources = app_resources(client.app)
        for _ in range(3):  # more failures than permits: a leaked permit would starve the next one
            with pytest.raises(ZeroDivisionError):
                async with resources.transaction(alice.id):
                    raise ZeroDivisionError
        assert (await client.get(alice.url(), headers=alice.headers)).status_code == 200


# -- round trips: a one-statement request is one, other writes keep their transaction ----------


@pytest.fixture
def statements_sent(monkeypatch) -> list[str]:
    """The SQL of every statement the app's connections send (one per round trip)."""
    sent: list[str] = []
    for method in ("execute", "fetch", "fetchrow", "fetchval"):
        original = getattr(asyncpg.Connection, method)

        async def spy(self, query, *args, _original=original, **kwargs):
            sent.append(query)
            return await _original(self, query, *args, **kwargs)

        monkeypatch.setattr(asyncpg.Connection, method, spy)
    return sent


@pytest.mark.parametrize(
    "method, path, status, statements",
    [
        pytest.param("GET", "/tasks", 200, 1, id="list"),
        pytest.param("GET", "/tasks?q=task&priority=high&sort=due", 200, 1, id="list-searched-and-filtered"),
        pytest.param("GET", "/tasks/{task}", 200, 1, id="get"),
        pytest.param("GET", "/tasks/{task}", 404, 1, id="get-missing"),
        pytest.param("POST", "/tasks", 201, 1, id="create"),
        pytest.param("GET", "/labels", 200, 1, id="labels"),
        pytest.param("GET", "/tasks/changes?since={since}", 200, 1, id="changes"),
        # The first sync lists the tasks, then reads the log after the listing's seq: two reads.
        pytest.param("GET", "/tasks/changes", 200, 2, id="changes-first-sync"),
    ],
)
async def test_a_one_statement_request_is_one_round_trip(
    client, alice, statements_sent, method, path, status, statements
):
    created = await create(client, alice)
    since = (await client.get(alice.url("/changes"), headers=alice.headers)).json()["next"]
    statements_sent.clear()
    task = created["id"] if status != 404 else created["id"] + 1000
    response = await client.request(
        method,
        f"/api/{alice.id}{path.format(task=task, since=since)}",
        headers=alice.headers,
        json={"title": "t"} if method == "POST" else None,
    )
    assert response.status_code == status, response.text
    assert len(statements_sent) == statements, statements_sent
    assert all(sql.startswith(f"SELECT * FROM {SCHEMA}.s_") for sql in statements_sent), statements_sent


async def test_other_writes_keep_their_transaction(client, alice, statements_sent):
    created = await create(client, alice)
    statements_sent.clear()
    response = await client.patch(alice.url(f"/{created['id']}/complete"), headers=alice.headers)
    assert response.status_code == 200
    assert [sql.split()[0] for sql in statements_sent] == ["BEGIN;", "UPDATE", "COMMIT"]
