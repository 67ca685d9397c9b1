"""The change feed under concurrent writers: a client syncing in a loop the whole time ends with
exactly the server's state, whatever order the writers' transactions committed in."""

from __future__ import annotations

import asyncio
import random

from support.app import create
from support.sync import server_state, sync_once

WRITERS = 6
WRITES_PER_WRITER = 40


async def write_randomly(client, user, ids: list[int], seed: int) -> None:
    """Creates, renames, toggles, replaces and deletes on tasks the writers share; a write on a
    task another writer deleted meanwhile is a 404, as it should be."""
    chance = random.Random(seed)
    for n in range(WRITES_PER_WRITER):
        kind = chance.choice(["create", "create", "patch", "toggle", "put", "delete"])
        if kind == "create" or not ids:
            ids.append((await create(client, user, f"writer {seed} #{n}"))["id"])
            continue
        task_id = chance.choice(ids)
        url = user.url(f"/{task_id}")
        if kind == "patch":
            response = await client.patch(url, json={"title": f"renamed by {seed} #{n}"}, headers=user.headers)
        elif kind == "toggle":
            response = await client.patch(url + "/complete", headers=user.headers)
        elif kind == "put":
            body = {"title": f"put by {seed}", "description": f"#{n}", "completed": bool(n % 2)}
            response = await client.put(url, json=body, headers=user.headers)
        else:
            response = await client.delete(url, headers=user.headers)
            if task_id in ids:
                ids.remove(task_id)
        assert response.status_code in (200, 204, 404), response.text


async def test_a_client_syncing_during_concurrent_writes_ends_with_the_server_state(start_app, alice):
    async with start_app(db_pool_max_size=WRITERS + 4) as client:
        ids = [(await create(client, alice, f"seed {i}"))["id"] for i in range(10)]
        state: dict = {}
        token = await sync_once(client, alice, state, None, limit=3)
        writers = asyncio.gather(*(write_randomly(client, alice, ids, seed) for seed in range(WRITERS)))
        syncs = 0
        while not writers.done():
            token = await sync_once(client, alice, state, token, limit=7)
            syncs += 1
            await asyncio.sleep(0)
        await writers
        await sync_once(client, alice, state, token, limit=7)
        assert syncs > 3  # the client really synced while the writers wrote
        assert state == await server_state(client, alice)


async def test_clients_starting_at_any_moment_all_end_with_the_server_state(start_app, alice):
    """Full listings started while writers run (paged, so they span many transactions)."""
    async with start_app(db_pool_max_size=WRITERS + 4) as client:
        ids = [(await create(client, alice, f"seed {i}"))["id"] for i in range(20)]
        writers = asyncio.gather(*(write_randomly(client, alice, ids, seed) for seed in range(WRITERS)))
        clients: list[tuple[dict, str]] = []
        while not writers.done():
            state: dict = {}
            clients.append((state, await sync_once(client, alice, state, None, limit=4)))
        await writers
        final = await server_state(client, alice)
        assert len(clients) > 1
        for state, token in clients:
            await sync_once(client, alice, state, token, limit=4)
            assert state == final
