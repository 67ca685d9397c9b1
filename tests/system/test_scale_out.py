"""Scale-out: three service processes (`python -m service run`, as in production) against one
database, with concurrent traffic spread across them. The service keeps no state of its own
besides caches, so they must agree: one task per Idempotency-Key, no lost update, the same lists
everywhere. (One winner per If-Match is tests/tasks/test_concurrent_writes.py's, with writers
certain to overlap: across processes it rests on the same row lock and adds nothing.)

The processes share the session's test database (DATABASE_URL) and a real JWKS host on
127.0.0.1; each has its own pool and key cache. They are started once for the module (at the
same time, so their migrations race under the advisory lock) and always stopped.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from service.testing import FakeBetterAuth
from support.jwks_host import serving_jwks
from support.service_process import ServiceProcess, spawn_service, stop_all

PROCESSES = 3
REQUEST_TIMEOUT_SECONDS = 30.0
REPLICA_SETTINGS = dict(WORKERS="1", DB_POOL_MIN_SIZE="1", DB_POOL_MAX_SIZE="5", ACCESS_LOG="false")


def start_replicas(database_url: str, better_auth_url: str, log_dir: Path) -> list[ServiceProcess]:
    """PROCESSES service processes started at once (so their migrations race, under the lock),
    all ready; if one is not, all are stopped."""
    replicas: list[ServiceProcess] = []
    try:
        for n in range(PROCESSES):
            replicas.append(
                spawn_service(
                    log_dir / f"replica-{n}.log",
                    better_auth_url=better_auth_url,
                    database_url=database_url,
                    **REPLICA_SETTINGS,
                )
            )
        for replica in replicas:
            replica.wait_until_answers("/readyz", 200)
    except BaseException:
        stop_all(replicas)
        raise
    return replicas


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[FakeBetterAuth]:
    with serving_jwks() as issuer:
        yield issuer


@pytest.fixture(scope="module")
async def replicas(
    database_url: str, jwks_server: FakeBetterAuth, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[list[httpx.AsyncClient]]:
    started = await asyncio.to_thread(
        start_replicas, database_url, jwks_server.base_url, tmp_path_factory.mktemp("replicas")
    )
    clients = [replica.async_client(timeout=REQUEST_TIMEOUT_SECONDS) for replica in started]
    try:
        yield clients
    finally:
        for client in clients:
            await client.aclose()
        codes = await asyncio.to_thread(stop_all, started)  # SIGTERM to all at once: a rolling stop
        assert codes == [0] * PROCESSES, "\n".join(r.log()[-2000:] for r in started)


def token_headers(issuer: FakeBetterAuth, user_id: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {issuer.issue_token(user_id)}"}


@pytest.fixture
def user(jwks_server: FakeBetterAuth) -> tuple[str, dict[str, str]]:
    user_id = f"user_{secrets.token_hex(8)}"
    return user_id, token_headers(jwks_server, user_id)


async def test_the_same_idempotency_key_on_every_replica_creates_one_task(replicas, user):
    user_id, auth = user
    path = f"/api/{user_id}/tasks"
    for round_number in range(5):
        key = f"key-{round_number}-{secrets.token_hex(4)}"
        body = {"title": f"once {round_number}"}
        headers = {**auth, "Idempotency-Key": key}
        responses = await asyncio.gather(
            *(client.post(path, json=body, headers=headers) for client in replicas for _ in range(4))
        )
        assert [r.status_code for r in responses] == [201] * len(responses), [r.text for r in responses]
        assert len({r.json()["id"] for r in responses}) == 1
        assert len({r.headers["location"] for r in responses}) == 1
        replayed = [r.headers.get("idempotent-replayed") for r in responses]
        assert replayed.count(None) == 1 and replayed.count("true") == len(responses) - 1, replayed

    listed = (await replicas[0].get(f"{path}?limit=500", headers=auth)).json()
    assert sorted(t["title"] for t in listed) == sorted(f"once {n}" for n in range(5))


async def test_concurrent_unconditional_writes_on_every_replica_lose_nothing(replicas, user):
    """Each write is one statement (`UPDATE … version = version + 1`): 30 toggles spread over the
    processes are 30 versions, and the final state is the parity of the count."""
    user_id, auth = user
    path = f"/api/{user_id}/tasks"
    created = await replicas[1].post(path, json={"title": "toggled"}, headers=auth)
    task_url = f"{path}/{created.json()['id']}"
    toggles = 31
    responses = await asyncio.gather(
        *(replicas[n % PROCESSES].patch(f"{task_url}/complete", headers=auth) for n in range(toggles))
    )
    assert [r.status_code for r in responses] == [200] * toggles
    versions = sorted(int(r.headers["etag"].strip('"').split("-")[1]) for r in responses)
    assert versions == list(range(2, toggles + 2))  # every toggle saw the one before it
    final = await replicas[2].get(task_url, headers=auth)
    assert final.json()["completed"] is True and final.headers["etag"].endswith(f'-{toggles + 1}"')


async def test_every_replica_lists_the_same_tasks_after_mixed_concurrent_traffic(replicas, user, jwks_server):
    user_id, auth = user
    other_id = f"user_{secrets.token_hex(8)}"
    other_auth = token_headers(jwks_server, other_id)
    path = f"/api/{user_id}/tasks"
    creates = await asyncio.gather(
        *(replicas[n % PROCESSES].post(path, json={"title": f"task {n:02d}"}, headers=auth) for n in range(30)),
        *(
            replicas[n % PROCESSES].post(f"/api/{other_id}/tasks", json={"title": "not yours"}, headers=other_auth)
            for n in range(6)
        ),
    )
    assert all(r.status_code == 201 for r in creates), [r.text for r in creates if r.status_code != 201]
    mine = [r.json() for r in creates[:30]]
    writes = []
    for n, task in enumerate(mine):
        client = replicas[(n + 1) % PROCESSES]  # not the replica that created it
        if n % 3 == 0:
            writes.append(client.delete(f"{path}/{task['id']}", headers=auth))
        elif n % 3 == 1:
            writes.append(client.patch(f"{path}/{task['id']}", json={"title": f"edited {n:02d}"}, headers=auth))
        else:
            writes.append(client.patch(f"{path}/{task['id']}/complete", headers=auth))
    results = await asyncio.gather(*writes)
    assert all(r.status_code in (200, 204) for r in results), [r.text for r in results]

    for query in ("?limit=500", "?status=completed", "?sort=title&limit=7", "?q=edited"):
        answers = await asyncio.gather(*(client.get(path + query, headers=auth) for client in replicas))
        assert all(a.status_code == 200 for a in answers)
        bodies = [a.json() for a in answers]
        assert bodies[0] == bodies[1] == bodies[2], query
        assert all(t["user_id"] == user_id for t in bodies[0])
        assert len({a.headers.get("link") for a in answers}) == 1  # same next-page cursor everywhere
    listed = (await replicas[0].get(f"{path}?limit=500", headers=auth)).json()
    assert len(listed) == 20
    assert sum(t["completed"] for t in listed) == 10
    assert sum(t["title"].startswith("edited") for t in listed) == 10
