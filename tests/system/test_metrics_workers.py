"""`python -m service run` with WORKERS=2: /metrics reports the totals of both workers, whichever
of them answers the scrape, and a worker that dies and is replaced loses none of the counts.

The service uses the session's test database and a real JWKS host on 127.0.0.1. Which worker
served a request is read from the workers' own metric files (prometheus_client's multiprocess
format, one file per process) in the directory the service made for them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families

from service.metrics import MULTIPROC_DIR_VARIABLE, PUBLISH_INTERVAL_SECONDS
from service.settings import REPO_ROOT
from service.testing import FakeBetterAuth
from support.jwks_host import serving_jwks
from support.ports import free_port

WORKERS = 2
START_DEADLINE_SECONDS = 60.0
STOP_DEADLINE_SECONDS = 20.0
SPREAD_DEADLINE_SECONDS = 60.0  # until the kernel has handed connections to both workers
CONCURRENT_REQUESTS = 16
TASKS_ROUTE = "/api/{user_id}/tasks"


def service_env(database_url: str, better_auth_url: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != MULTIPROC_DIR_VARIABLE}
    # Empty values also mask a developer's .env: defaults derived from BETTER_AUTH_URL.
    env.update(JWKS_URL="", JWT_ISSUER="", JWT_AUDIENCE="", EMBEDDED_PG_DATA_DIR="")
    env.update(
        DATABASE_URL=database_url,
        BETTER_AUTH_URL=better_auth_url,
        HOST="127.0.0.1",
        PORT=str(port),
        WORKERS=str(WORKERS),
        DB_POOL_MIN_SIZE="1",
        DB_POOL_MAX_SIZE="4",
        ACCESS_LOG="false",
        PYTHONUNBUFFERED="1",
    )
    return env


@contextlib.contextmanager
def running_service(database_url: str, better_auth_url: str, log_path: Path) -> Iterator[tuple[psutil.Popen, str]]:
    port = free_port()
    with open(log_path, "wb") as log_file:
        process = psutil.Popen(
            [sys.executable, "-m", "service", "run"], cwd=REPO_ROOT,
            env=service_env(database_url, better_auth_url, port),
            stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"the service exited with {process.returncode}:\n{log_path.read_text()}", pytrace=False)
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200 and len(workers_of(process)) == WORKERS:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"not ready within {START_DEADLINE_SECONDS:g} s:\n{log_path.read_text()}", pytrace=False)
            time.sleep(0.1)
        yield process, url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_DEADLINE_SECONDS)
            except psutil.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)


def workers_of(process: psutil.Popen) -> list[psutil.Process]:
    """uvicorn's worker processes (spawned: `python -c "from multiprocessing.spawn import spawn_main…"`)."""
    found = []
    for child in process.children():
        with contextlib.suppress(psutil.Error):
            if (
                child.is_running()
                and child.status() != psutil.STATUS_ZOMBIE
                and "spawn_main" in " ".join(child.cmdline())
            ):
                found.append(child)
    return found


def count_in_worker_file(shared: Path, pid: int, route: str) -> float:
    """http_requests_total{route, status=200} as one worker's own file holds it."""
    path = shared / f"counter_{pid}.db"
    if not path.exists():
        return 0.0
    return sum(
        sample.value
        for metric in MultiProcessCollector.merge([str(path)])
        for sample in metric.samples
        if sample.name == "http_requests_total"
        and sample.labels.get("route") == route
        and sample.labels["status"] == "200"
    )


def scraped(text: str, name: str, **labels: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


async def fresh_get(url: str, headers: dict[str, str] | None = None) -> httpx.Response:
    """One request on a connection of its own, so that either worker may accept it."""
    async with httpx.AsyncClient(timeout=15) as http:
        return await http.get(url, headers=headers)


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[FakeBetterAuth]:
    with serving_jwks() as issuer:
        yield issuer


async def test_metrics_totals_cover_both_workers_whichever_answers(database_url, jwks_server, tmp_path):
    user = "user_metrics_workers"
    headers = {"Authorization": f"Bearer {jwks_server.issue_token(user)}"}
    tasks_url = f"/api/{user}/tasks"
    manager = running_service(database_url, jwks_server.base_url, tmp_path / "service.log")
    process, url = await asyncio.to_thread(manager.__enter__)
    try:
        workers = workers_of(process)
        shared = Path(workers[0].environ()[MULTIPROC_DIR_VARIABLE])
        assert await asyncio.to_thread(shared.is_dir) and shared.is_relative_to(tempfile.gettempdir()), shared
        assert {Path(w.environ()[MULTIPROC_DIR_VARIABLE]) for w in workers} == {shared}

        # Requests until the kernel has handed some to each worker.
        sent = 0
        deadline = time.monotonic() + SPREAD_DEADLINE_SECONDS
        while min(count_in_worker_file(shared, w.pid, TASKS_ROUTE) for w in workers) == 0:
            assert time.monotonic() < deadline, "every connection went to the same worker"
            answers = await asyncio.gather(*(fresh_get(url + tasks_url, headers) for _ in range(CONCURRENT_REQUESTS)))
            assert [a.status_code for a in answers] == [200] * CONCURRENT_REQUESTS, answers[0].text
            sent += CONCURRENT_REQUESTS
        by_worker = {w.pid: count_in_worker_file(shared, w.pid, TASKS_ROUTE) for w in workers}
        assert sum(by_worker.values()) == sent and min(by_worker.values()) > 0, by_worker

        # Scrapes until each worker has answered one: every answer has the totals of both.
        deadline = time.monotonic() + SPREAD_DEADLINE_SECONDS
        while min(count_in_worker_file(shared, w.pid, "/metrics") for w in workers) == 0:
            assert time.monotonic() < deadline, "every scrape went to the same worker"
            for answer in await asyncio.gather(*(fresh_get(url + "/metrics") for _ in range(CONCURRENT_REQUESTS))):
                assert scraped(answer.text, "http_requests_total", route=TASKS_ROUTE, status="200") == sent
                assert scraped(answer.text, "http_request_duration_seconds_count", route=TASKS_ROUTE) == sent

        # What the workers hold in memory reaches the totals within the publishing interval.
        deadline = time.monotonic() + 3 * PUBLISH_INTERVAL_SECONDS + 5
        while True:
            text = (await fresh_get(url + "/metrics")).text
            verified = scraped(text, "token_verifications_total", outcome="ok")
            if verified == sent:
                break
            assert verified < sent and time.monotonic() < deadline, f"token_verifications_total: {verified} != {sent}"
            await asyncio.sleep(0.5)
        assert scraped(text, "db_pool_connections", state="total") >= WORKERS  # livesum: each pool has 1+
        assert scraped(text, "jwks_keys") == 1  # livemin: every worker holds the key

        # A worker killed without shutting down is replaced; its counts stay in the totals.
        victim = workers[0]
        victim.kill()
        deadline = time.monotonic() + START_DEADLINE_SECONDS
        while victim.pid in {w.pid for w in workers_of(process)} or len(workers_of(process)) < WORKERS:
            assert time.monotonic() < deadline, "uvicorn did not replace the killed worker"
            await asyncio.sleep(0.2)
        for _ in range(4):
            text = (await fresh_get(url + "/metrics")).text
            assert scraped(text, "http_requests_total", route=TASKS_ROUTE, status="200") == sent
    finally:
        await asyncio.to_thread(manager.__exit__, None, None, None)
    assert process.returncode == 0, (tmp_path / "service.log").read_text()[-3000:]
    assert not await asyncio.to_thread(shared.exists), "the service left its metrics directory behind"
