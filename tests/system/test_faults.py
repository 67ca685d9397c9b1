"""Faults seen from outside: the service run as `make run` does (`python -m service run`, with
its own embedded PostgreSQL and a JWKS host on a real port), every call over real HTTP, while the
things it depends on fail. What clients see, and that it recovers by itself:

* the database stopped (`pg_ctl stop -m fast`) while traffic flows, then started again with
  the options it was started with (postmaster.opts);
* the database frozen (SIGSTOP on every server process), then thawed;
* SIGTERM while requests are in flight. Some are held on row locks or on uncommitted
  idempotency-key rows from a superuser connection, and released only after the signal;
* an idempotent POST whose response the client never reads (a real client-side timeout).

The same faults in-process, through the app's pool, are tests/db/test_pool_faults.py; a JWKS
host failing is tests/auth/test_jwks_outage.py.

One embedded data folder for the module, so initdb runs once. Every wait is bounded. Every
process a test starts (the service, a PostgreSQL it restarts) is stopped in a `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from service.testing import FakeBetterAuth
from support.app import assert_problem
from support.embedded_postgres import (
    admin_dsn,
    new_data_dir,
    postgres_running,
    server_processes,
    start_postgres,
    stop_postgres,
)
from support.jwks_host import serving_jwks
from support.row_locks import wait_for_lock_waiters
from support.service_process import (
    SHUTDOWN_LOG_LINE,
    STOP_DEADLINE_SECONDS,
    ServiceProcess,
    running_service_async,
)
from support.traffic import Traffic, bearer
from support.waiting import POLL_INTERVAL_SECONDS, READY_CACHE_SECONDS, readyz_becomes, timed

pytestmark = pytest.mark.timeout(90)

REQUEST_TIMEOUT_SECONDS = 5.0  # the traffic's own bound: a request that takes longer is a hang
OUTAGE_ANSWER_SECONDS = 1.0  # each request during a database outage is answered within this
RECOVERY_DEADLINE_SECONDS = 5.0
# Idle keep-alive connections are dropped by the client well before uvicorn's 5 s keep-alive
# timeout closes them; at equal timeouts a request can race the server's close (a ReadError
# that is the client's, not the service's).
CLIENT_LIMITS = httpx.Limits(keepalive_expiry=1.0)


@pytest.fixture(scope="module")
def jwks_host() -> Iterator[FakeBetterAuth]:
    """Better Auth's JWKS endpoint on a real port, serving a FakeBetterAuth's keys."""
    with serving_jwks() as issuer:
        yield issuer


@pytest.fixture(scope="module")
def pg_data_dir() -> Iterator[Path]:
    """One embedded data folder for the module's services (initdb once), never left running."""
    with new_data_dir(prefix="tasks-faults-") as data_dir:
        yield data_dir


def start_service(
    jwks_host: FakeBetterAuth, data_dir: Path, log_path: Path, **settings: str
) -> contextlib.AbstractAsyncContextManager[ServiceProcess]:
    """The service on the module's embedded PostgreSQL, once /readyz answers 200."""
    return running_service_async(log_path, better_auth_url=jwks_host.base_url, data_dir=data_dir, **settings)


def assert_no_internal_errors(service: ServiceProcess) -> None:
    """No 500, no error-level line, no traceback in the service's log. (asyncpg's pool logs
    one traceback at warning level each time it fails to refill its minimum size; that is
    the library retrying, not a request failing.)"""
    for line in service.log().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            if "Traceback" in line:
                raise service.error(f"the service printed a traceback: {line}") from None
            continue
        noisy_but_fine = entry.get("logger") == "asyncpg.pool" and entry.get("level") == "warning"
        if (
            entry.get("status") == 500
            or entry.get("level") in ("error", "critical")
            or ("exc" in entry and not noisy_but_fine)
        ):
            raise service.error(f"the service logged an internal error: {line[:2000]}")


@contextlib.asynccontextmanager
async def postgres_up(data_dir: Path, log_path: Path) -> AsyncIterator[asyncpg.Connection]:
    """A superuser connection to the server in `data_dir`, starting it if it is stopped (and
    stopping it again afterwards if we started it)."""
    started = False
    if not postgres_running(data_dir):
        await asyncio.to_thread(start_postgres, data_dir, log_path)
        started = True
    conn = await asyncpg.connect(admin_dsn(data_dir), timeout=10)
    try:
        yield conn
    finally:
        await conn.close()
        if started:
            await asyncio.to_thread(stop_postgres, data_dir, log_path)


# -- database stopped mid-traffic ---------------------------------------------------------------


async def test_database_stopped_mid_traffic_gets_prompt_503s_then_recovers_by_itself(
    jwks_host: FakeBetterAuth, pg_data_dir: Path, tmp_path: Path
):
    user_id = f"user_{secrets.token_hex(8)}"
    token = jwks_host.issue_token(user_id)
    log_path = tmp_path / "service.log"
    # The pool starts with a connection per worker: no request waits on a first connect under load.
    async with start_service(jwks_host, pg_data_dir, log_path, DB_POOL_MIN_SIZE="4") as service:
        loop = asyncio.get_running_loop()
        stopped_pg = False
        try:
            async with service.async_client(timeout=REQUEST_TIMEOUT_SECONDS, limits=CLIENT_LIMITS) as client:
                first = await client.post(
                    f"/api/{user_id}/tasks", json={"title": "before the outage"}, headers=bearer(token)
                )
                assert first.status_code == 201, first.text
                traffic = Traffic(client, user_id, token, first.json()["id"])
                workers = [asyncio.create_task(traffic.worker(n)) for n in range(4)]
                try:
                    await asyncio.sleep(0.8)
                    healthy_until = loop.time()

                    await asyncio.to_thread(stop_postgres, pg_data_dir, tmp_path / "pg_ctl.log")
                    stopped_pg = True
                    down_from = loop.time()
                    await asyncio.sleep(0.5)
                    ready = await readyz_becomes(client, 503, READY_CACHE_SECONDS + OUTAGE_ANSWER_SECONDS)
                    assert any(p.startswith("database") for p in ready.json()["problems"]), ready.text
                    await asyncio.sleep(max(0.0, down_from + 1.5 - loop.time()))
                    down_until = loop.time()

                    await asyncio.to_thread(start_postgres, pg_data_dir, tmp_path / "pg_ctl.log")
                    stopped_pg = False
                    up_from = loop.time()
                    deadline = up_from + RECOVERY_DEADLINE_SECONDS
                    while not any(o.status in (200, 201) for o in traffic.between(up_from, loop.time())):
                        assert loop.time() < deadline, "no successful request within the recovery deadline"
                        await asyncio.sleep(POLL_INTERVAL_SECONDS)
                    recovered_at = loop.time()
                    await asyncio.sleep(1.0)
                    settled_from = recovered_at + 0.3
                finally:
                    traffic.stop.set()
                    await asyncio.wait_for(asyncio.gather(*workers), REQUEST_TIMEOUT_SECONDS + 2)
                await readyz_becomes(client, 200, READY_CACHE_SECONDS + 1)

                everything = traffic.outcomes
                unexplained = [o for o in everything if (o.error or o.status == 500 or (o.status or 0) > 503)]
                assert not unexplained, unexplained[:5]  # no dropped connection, no 500, nothing but 503 for errors
                slowest = max(everything, key=lambda o: o.seconds)
                assert slowest.seconds < REQUEST_TIMEOUT_SECONDS / 2, slowest  # nothing near a hang, even at the edges

                before = traffic.between(0, healthy_until)
                assert before and all(o.status in (200, 201) for o in before), [
                    o for o in before if o.status not in (200, 201)
                ][:5]

                during = traffic.between(down_from, down_until)
                assert len(during) >= 10, f"too little traffic during the outage: {len(during)}"
                for o in during:
                    assert o.status == 503 and o.code == "database_unavailable", o
                    assert o.content_type == "application/problem+json" and o.retry_after and o.retry_after.isdigit(), o
                    assert o.seconds < OUTAGE_ANSWER_SECONDS, o

                after = traffic.between(settled_from, loop.time())
                assert after and all(o.status in (200, 201) for o in after), [
                    o for o in after if o.status not in (200, 201)
                ][:5]

                # A client retrying its failed creates with the same key ends with exactly one task per key,
                # whether or not the first attempt committed before the connection died.
                creates = [o for o in everything if o.kind == "create"]
                for o in creates:
                    if o.status != 201:
                        retry = await client.post(f"/api/{user_id}/tasks", json={"title": o.key},
                                                  headers={**bearer(token), "Idempotency-Key": o.key})  # fmt: skip
                        assert retry.status_code == 201, retry.text
                listing = await client.get(f"/api/{user_id}/tasks", params={"limit": "500"}, headers=bearer(token))
                titles = [t["title"] for t in listing.json()]
                assert sorted(titles) == sorted([o.key for o in creates] + ["before the outage"])
            assert_no_internal_errors(service)
        finally:
            if stopped_pg and not postgres_running(pg_data_dir):
                await asyncio.to_thread(start_postgres, pg_data_dir, tmp_path / "pg_ctl.log")
    # embedded-postgres stops the server at exit only if the postmaster it started is still the
    # one running; after the restart above it is not, so the server is stopped here.
    if postgres_running(pg_data_dir):
        await asyncio.to_thread(stop_postgres, pg_data_dir, tmp_path / "pg_ctl.log")


async def test_database_frozen_gets_503s_bounded_by_the_configured_timeouts_then_recovers(
    jwks_host: FakeBetterAuth, pg_data_dir: Path, tmp_path: Path
):
    """A database that stops answering without closing anything (a hung host, a partition;
    here SIGSTOP on every server process). A request already holding a pooled connection
    waits for the client-side command timeout (DB_STATEMENT_TIMEOUT_MS + 1 s). A request
    needing a new connection waits for the acquire timeout. Both then get a 503. Nothing
    waits longer than those settings allow, and the pool recovers on SIGCONT."""
    statement_timeout_s, acquire_timeout_s = 0.5, 0.5
    bound = statement_timeout_s + 1 + acquire_timeout_s + 1.0  # command timeout, then cleanup; plus slack
    user_id = f"user_{secrets.token_hex(8)}"
    token = jwks_host.issue_token(user_id)
    url = f"/api/{user_id}/tasks"
    settings = dict(DB_STATEMENT_TIMEOUT_MS=str(int(statement_timeout_s * 1000)),
                    DB_POOL_ACQUIRE_TIMEOUT_SECONDS=str(acquire_timeout_s), DB_POOL_MIN_SIZE="2")  # fmt: skip
    async with start_service(jwks_host, pg_data_dir, tmp_path / "service.log", **settings) as service:
        async with service.async_client(timeout=REQUEST_TIMEOUT_SECONDS * 2, limits=CLIENT_LIMITS) as client:
            assert (await client.post(url, json={"title": "before"}, headers=bearer(token))).status_code == 201
            frozen = server_processes(pg_data_dir)
            for proc in frozen:
                proc.suspend()
            try:
                answers = await asyncio.gather(*(timed(client.get(url, headers=bearer(token))) for _ in range(6)))
                for response, seconds in answers:
                    assert_problem(response, 503, "database_unavailable")
                    assert response.headers["retry-after"].isdigit()
                    assert seconds < bound, f"{seconds:.2f} s with the database frozen (bound {bound} s)"
                # Each answer within `bound`, not READINESS_DB_TIMEOUT_SECONDS (1 s): cancelling a
                # query on a frozen server waits for asyncpg's connection clean-up (2.5 s seen).
                await readyz_becomes(client, 503, READY_CACHE_SECONDS + bound)
            finally:
                for proc in frozen:
                    with contextlib.suppress(psutil.Error):
                        proc.resume()
            deadline = time.monotonic() + RECOVERY_DEADLINE_SECONDS
            while (response := await client.get(url, headers=bearer(token))).status_code != 200:
                assert time.monotonic() < deadline, f"not recovered after SIGCONT: {response.text}"
                await asyncio.sleep(POLL_INTERVAL_SECONDS)
            assert [t["title"] for t in response.json()] == ["before"]
        assert_no_internal_errors(service)


# -- SIGTERM under load ----------------------------------------------------------------------


async def test_sigterm_under_load_finishes_in_flight_requests_refuses_new_ones_and_exits_0(
    jwks_host: FakeBetterAuth, pg_data_dir: Path, tmp_path: Path
):
    user_id = f"user_{secrets.token_hex(8)}"
    token = jwks_host.issue_token(user_id)
    url = f"/api/{user_id}/tasks"
    log_path = tmp_path / "service.log"
    settings = dict(SHUTDOWN_TIMEOUT_SECONDS="15", DB_POOL_MAX_SIZE="20", DB_STATEMENT_TIMEOUT_MS="30000")
    async with start_service(jwks_host, pg_data_dir, log_path, **settings) as service:
        async with service.async_client(timeout=20, limits=CLIENT_LIMITS) as client:
            seeded = []
            for i in range(5):
                response = await client.post(
                    url, json={"title": f"seed {i}", "description": "before"}, headers=bearer(token)
                )
                assert response.status_code == 201, response.text
                seeded.append(response.json())
            keys = [f"slow-create-{i}" for i in range(2)]

            admin = await asyncpg.connect(admin_dsn(pg_data_dir))
            try:
                hold = admin.transaction()
                await hold.start()
                # Row locks: the writes below wait inside their UPDATE/DELETE. Uncommitted key rows:
                # the idempotent creates wait inside their claim INSERT.
                await admin.execute("SELECT 1 FROM tasks WHERE user_id = $1 FOR UPDATE", user_id)
                for key in keys:
                    await admin.execute("INSERT INTO idempotency_keys (user_id, key, fingerprint) VALUES ($1, $2, '\\x00')",
                                        user_id, key)  # fmt: skip
                changed = {"title": "after SIGTERM", "description": "applied whole", "completed": True}
                slow_requests = [
                    ("PUT", f"{url}/{seeded[0]['id']}", changed, {}, 200),
                    ("PUT", f"{url}/{seeded[1]['id']}", changed, {"If-Match": f'"{seeded[1]["id"]}-1"'}, 200),
                    ("PATCH", f"{url}/{seeded[2]['id']}", {"description": "patched after SIGTERM"}, {}, 200),
                    ("PATCH", f"{url}/{seeded[3]['id']}/complete", None, {}, 200),
                    ("DELETE", f"{url}/{seeded[4]['id']}", None, {}, 204),
                    *(("POST", url, {"title": key, "description": key}, {"Idempotency-Key": key}, 201) for key in keys),
                ]
                slow = [
                    asyncio.create_task(client.request(method, path, json=body, headers={**bearer(token), **headers}))
                    for method, path, body, headers, _ in slow_requests
                ]
                traffic = Traffic(client, user_id, token, seeded[0]["id"])  # fast requests around the slow ones
                workers = [asyncio.create_task(traffic.worker(n)) for n in range(3)]
                try:
                    await wait_for_lock_waiters(admin, len(slow_requests))
                    await asyncio.sleep(0.3)
                    service.process.send_signal(signal.SIGTERM)

                    # New connections are refused while the slow requests are still in flight. (Until
                    # uvicorn's next tick it may still serve one; a connection caught in the listen
                    # backlog as it closes is dropped unanswered, which is not a refusal yet.)
                    deadline = time.monotonic() + 2.0
                    while True:
                        async with service.async_client(timeout=1.0) as fresh:
                            try:
                                await fresh.get("/healthz")
                            except httpx.ConnectError:
                                refused_at = asyncio.get_running_loop().time()
                                break
                            except (httpx.RemoteProtocolError, httpx.ReadError):
                                pass
                        assert time.monotonic() < deadline, "new connections still accepted 2 s after SIGTERM"
                        await asyncio.sleep(POLL_INTERVAL_SECONDS)
                    assert not any(task.done() for task in slow), "a held request finished before the lock was released"
                    assert service.process.poll() is None, "the service exited with requests in flight"
                    await asyncio.sleep(0.3)
                    assert not any(task.done() for task in slow)
                finally:
                    traffic.stop.set()
                    await hold.rollback()  # releases the row locks and drops the blocking key rows
                responses = await asyncio.wait_for(asyncio.gather(*slow), 15)
                await asyncio.wait_for(asyncio.gather(*workers), 10)
            finally:
                await admin.close()

        for (method, path, _, _, status), response in zip(slow_requests, responses):
            assert response.status_code == status, f"{method} {path}: {response.status_code} {response.text}"
            assert response.headers.get("connection") == "close", response.headers  # last answer on its connection
        try:
            code = service.process.wait(timeout=STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            raise service.error("the service did not exit after its in-flight requests finished") from None
        assert code == 0, f"exit code {code}"
        assert SHUTDOWN_LOG_LINE in service.log()
        assert_no_internal_errors(service)

        # Fast traffic: answered normally before shutdown, refused (never a 5xx) after it.
        for o in traffic.outcomes:
            assert o.error or o.status in (200, 201), o
            if o.started > refused_at:
                assert o.error, f"a request sent after the listener closed was served: {o}"
        assert any(o.status in (200, 201) for o in traffic.outcomes)

    # Afterwards, in the database: every write whole or absent, nothing twice.
    async with postgres_up(pg_data_dir, tmp_path / "pg_ctl.log") as admin:
        rows = {r["id"]: r for r in await admin.fetch("SELECT * FROM tasks WHERE user_id = $1", user_id)}
        key_rows = {
            r["key"]: r
            for r in await admin.fetch("SELECT key, task_id FROM idempotency_keys WHERE user_id = $1", user_id)
        }
    for task in seeded[:2]:
        row = rows[task["id"]]
        assert (row["title"], row["description"], row["completed"], row["version"]) == (
            "after SIGTERM",
            "applied whole",
            True,
            2,
        )
    assert (rows[seeded[2]["id"]]["description"], rows[seeded[2]["id"]]["title"]) == ("patched after SIGTERM", "seed 2")
    assert rows[seeded[3]["id"]]["completed"] is True and rows[seeded[3]["id"]]["version"] == 2
    assert seeded[4]["id"] not in rows
    for key, response in zip(keys, responses[-len(keys) :]):
        created = response.json()
        assert key_rows[key]["task_id"] == created["id"] and rows[created["id"]]["title"] == key
    titles = [r["title"] for r in rows.values() if r["title"] != changed["title"]]  # two PUTs wrote that one
    assert len(titles) == len(set(titles)), "a create was applied twice"
    for o in traffic.outcomes:
        if o.kind == "create":
            matching = [r for r in rows.values() if r["title"] == o.key]
            assert len(matching) == (1 if o.status == 201 else len(matching)) and len(matching) <= 1, o
            if matching:
                assert key_rows[o.key]["task_id"] == matching[0]["id"]  # task and key recorded together


# -- idempotent POST whose answer was lost -------------------------------------------------------


async def test_idempotent_post_retried_after_a_client_timeout_creates_one_task(
    jwks_host: FakeBetterAuth, pg_data_dir: Path, tmp_path: Path
):
    """The first attempt is held inside its transaction past the client's timeout: a superuser
    holds the key's row, so the claim waits. The client gives up and its connection closes. The
    server then commits the task and writes an answer nobody reads.

    * "lost": the client retries only after that commit. The retry replays the task.
    * "overlapping": the client retries while the first attempt is still held. Whichever
      attempt takes the key creates the task; the other replays it.

    Either way there is exactly one task per key."""
    user_id = f"user_{secrets.token_hex(8)}"
    token = jwks_host.issue_token(user_id)
    url = f"/api/{user_id}/tasks"
    async with start_service(jwks_host, pg_data_dir, tmp_path / "service.log") as service:
        admin = await asyncpg.connect(admin_dsn(pg_data_dir))
        try:
            async with service.async_client(timeout=REQUEST_TIMEOUT_SECONDS, limits=CLIENT_LIMITS) as client:
                created = []
                for scenario in ("lost", "overlapping"):
                    body = {"title": f"pay the rent ({scenario})", "description": "once"}
                    key = f"rent-{scenario}-{secrets.token_hex(4)}"
                    headers = {**bearer(token), "Idempotency-Key": key}
                    hold = admin.transaction()
                    await hold.start()
                    await admin.execute("INSERT INTO idempotency_keys (user_id, key, fingerprint) VALUES ($1, $2, '\\x00')",
                                        user_id, key)  # fmt: skip
                    with pytest.raises(httpx.ReadTimeout):
                        await client.post(url, json=body, headers=headers, timeout=0.5)  # the answer is lost
                    early_retry = None
                    if scenario == "overlapping":
                        early_retry = asyncio.create_task(client.post(url, json=body, headers=headers))
                        await wait_for_lock_waiters(admin, 2)  # the abandoned attempt and the retry
                    else:
                        await wait_for_lock_waiters(admin, 1)  # the abandoned attempt, still running
                    await hold.rollback()

                    deadline = time.monotonic() + 5
                    query = "SELECT count(*) FROM tasks WHERE user_id = $1 AND title = $2"
                    while not await admin.fetchval(query, user_id, body["title"]):
                        assert time.monotonic() < deadline, "the abandoned request never committed"
                        await asyncio.sleep(POLL_INTERVAL_SECONDS)
                    retries = [await asyncio.wait_for(early_retry, REQUEST_TIMEOUT_SECONDS)] if early_retry else []
                    retries.append(await client.post(url, json=body, headers=headers))

                    for retry in retries:
                        assert retry.status_code == 201, retry.text
                        assert retry.json() == retries[-1].json()
                    assert retries[-1].headers["idempotent-replayed"] == "true"
                    assert await admin.fetchval(query, user_id, body["title"]) == 1
                    assert await admin.fetchval("SELECT task_id FROM idempotency_keys WHERE user_id = $1 AND key = $2",
                                                user_id, key) == retries[-1].json()["id"]  # fmt: skip
                    other = await client.post(url, json={"title": "something else"}, headers=headers)
                    assert_problem(other, 422, "idempotency_key_reused")
                    created.append(retries[-1].json())
                listing = await client.get(url, params={"sort": "created_at"}, headers=bearer(token))
                assert listing.json() == created
        finally:
            await admin.close()
        assert_no_internal_errors(service)
