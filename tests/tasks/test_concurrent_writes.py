"""Writers racing on one task with If-Match, through the app in-process: exactly one of many
truly overlapping writes wins, and a client that loses re-reads and retries without losing the
other client's change."""

from __future__ import annotations

import asyncio

from support.app import assert_problem, create
from support.row_locks import row_locked, wait_for_lock_waiters


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
