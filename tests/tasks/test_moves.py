"""Manual order: POST /api/{user_id}/tasks/{id}/move through HTTP (one row per move, If-Match,
validation, other users' tasks), respacing when a spot runs out of room, and the key rules of
service/tasks/positions.py as tables."""

from __future__ import annotations

import asyncpg
import pytest

from service.tasks.positions import POSITION_GAP, POSITION_MAX, key_between, respace
from support.app import assert_problem, create


async def order(client, user) -> list[int]:
    response = await client.get(user.url(), params={"sort": "position", "limit": 500}, headers=user.headers)
    assert response.status_code == 200, response.text
    return [task["id"] for task in response.json()]


async def move(client, user, task_id: int, after: int | None, **headers: str):
    return await client.post(user.url(f"/{task_id}/move"), json={"after": after}, headers={**user.headers, **headers})


async def test_a_new_task_goes_to_the_top(client, alice):
    first = await create(client, alice, "first")
    second = await create(client, alice, "second")
    assert await order(client, alice) == [second["id"], first["id"]]
    assert second["position"] < first["position"]


async def test_move_after_a_task_and_to_the_top(client, alice):
    a, b, c = [await create(client, alice, name) for name in "abc"]  # order: c b a
    moved = await move(client, alice, c["id"], a["id"])
    assert moved.status_code == 200, moved.text
    assert moved.headers["etag"] == f'"{c["id"]}-2"' and moved.json()["position"] > a["position"]
    assert await order(client, alice) == [b["id"], a["id"], c["id"]]
    top = await move(client, alice, a["id"], None)
    assert top.status_code == 200 and await order(client, alice) == [a["id"], b["id"], c["id"]]
    between = await move(client, alice, c["id"], a["id"])
    assert between.status_code == 200 and await order(client, alice) == [a["id"], c["id"], b["id"]]


async def test_a_move_writes_only_the_moved_row(client, alice, database_url):
    tasks = [await create(client, alice, f"t{i}") for i in range(5)]
    conn = await asyncpg.connect(database_url)
    try:
        before = {r["id"]: tuple(r) for r in await conn.fetch("SELECT * FROM tasks WHERE user_id = $1", alice.id)}
        assert (await move(client, alice, tasks[0]["id"], tasks[3]["id"])).status_code == 200
        after = {r["id"]: tuple(r) for r in await conn.fetch("SELECT * FROM tasks WHERE user_id = $1", alice.id)}
    finally:
        await conn.close()
    assert [task_id for task_id in before if before[task_id] != after[task_id]] == [tasks[0]["id"]]


async def test_moves_into_one_spot_respace_a_bounded_run_and_keep_the_order(client, alice):
    """Each move into the same gap halves it: after ~20 there is no room, and the tasks around
    the spot are respaced, while the list keeps exactly the order the moves asked for."""
    anchor = await create(client, alice, "anchor")
    tail = await create(client, alice, "tail")
    await move(client, alice, tail["id"], anchor["id"])  # anchor, tail
    movers = [await create(client, alice, f"m{i}") for i in range(40)]
    for mover in movers:  # each goes right after the anchor
        response = await move(client, alice, mover["id"], anchor["id"])
        assert response.status_code == 200, response.text
    expected = [anchor["id"], *[m["id"] for m in reversed(movers)], tail["id"]]
    assert await order(client, alice) == expected
    positions = [
        t["position"]
        for t in (await client.get(alice.url(), params={"sort": "position"}, headers=alice.headers)).json()
    ]
    assert positions == sorted(set(positions))  # no ties
    # Respacing happened: some tasks moved once (version 2) were given new keys (version 3)...
    etags = [(await client.get(alice.url(f"/{m['id']}"), headers=alice.headers)).headers["etag"] for m in movers]
    respaced = [etag for etag in etags if etag.endswith('-3"')]
    # ...but a bounded run of them, not the whole list.
    assert 0 < len(respaced) <= 32, etags


async def test_moving_to_the_top_again_and_again_stays_in_order(client, alice):
    tasks = [await create(client, alice, f"t{i}") for i in range(6)]
    for task in tasks:
        assert (await move(client, alice, task["id"], None)).status_code == 200
    assert await order(client, alice) == [t["id"] for t in reversed(tasks)]


async def test_move_honours_if_match(client, alice):
    a, b = await create(client, alice, "a"), await create(client, alice, "b")
    await client.patch(alice.url(f"/{a['id']}"), json={"title": "changed"}, headers=alice.headers)
    stale = await move(client, alice, a["id"], None, **{"If-Match": f'"{a["id"]}-1"'})
    assert_problem(stale, 412, "precondition_failed")
    assert await order(client, alice) == [b["id"], a["id"]]
    fresh = await move(client, alice, a["id"], None, **{"If-Match": f'"{a["id"]}-2"'})
    assert fresh.status_code == 200 and await order(client, alice) == [a["id"], b["id"]]


@pytest.mark.parametrize(
    "body, field",
    [
        pytest.param({}, "after", id="missing-after"),
        pytest.param({"after": "1"}, "after", id="after-text"),
        pytest.param({"after": 0}, "after", id="after-zero"),
        pytest.param({"after": 2**63}, "after", id="after-beyond-bigint"),
        pytest.param({"after": None, "position": 3}, "position", id="unknown-field"),
    ],
)
async def test_move_refuses_bad_bodies_naming_the_field(client, alice, body, field):
    task = await create(client, alice)
    response = await client.post(alice.url(f"/{task['id']}/move"), json=body, headers=alice.headers)
    problem = assert_problem(response, 422, "validation_failed")
    assert field in {error["field"] for error in problem["errors"]}


async def test_move_after_itself_or_a_missing_task_is_422_naming_after(client, alice, bob):
    task = await create(client, alice)
    theirs = await create(client, bob)
    for after in (task["id"], theirs["id"], 9223372036854775000):
        problem = assert_problem(await move(client, alice, task["id"], after), 422, "validation_failed")
        assert problem["errors"] == [{"field": "after", "message": problem["errors"][0]["message"]}]
    assert "Bob" not in str(problem)


async def test_move_of_another_users_task_is_404_and_leaves_it_alone(client, alice, bob):
    theirs = await create(client, bob)
    mine = await create(client, alice)
    assert_problem(await move(client, alice, theirs["id"], None), 404, "task_not_found")
    assert_problem(await move(client, alice, theirs["id"], mine["id"]), 404, "task_not_found")
    assert (await client.get(bob.url(f"/{theirs['id']}"), headers=bob.headers)).json() == theirs


async def test_move_naming_another_user_in_the_path_is_403(client, alice, bob):
    theirs = await create(client, bob)
    assert_problem(
        await move(client, bob, theirs["id"], None, Authorization=alice.headers["Authorization"]), 403, "forbidden"
    )


# -- the key rules, as tables -----------------------------------------------------------------


@pytest.mark.parametrize(
    "before, after, expected",
    [
        pytest.param(None, None, 0, id="alone"),
        pytest.param(None, 0, -POSITION_GAP, id="top"),
        pytest.param(7, None, 7 + POSITION_GAP, id="last"),
        pytest.param(0, 10, 5, id="midpoint"),
        pytest.param(-3, 0, -2, id="midpoint-rounds-down"),
        pytest.param(4, 6, 5, id="two-apart"),
        pytest.param(4, 5, None, id="adjacent"),
        pytest.param(4, 4, None, id="tied"),
        pytest.param(None, -POSITION_MAX + POSITION_GAP - 1, None, id="no-room-above-top"),
        pytest.param(POSITION_MAX - POSITION_GAP + 1, None, None, id="no-room-below-last"),
    ],
)
def test_key_between(before, after, expected):
    assert key_between(before, after) == expected


@pytest.mark.parametrize(
    "keys, slot",
    [
        pytest.param([0, 1, 2, 3], 2, id="crowded-middle"),
        pytest.param([5, 5, 5], 1, id="ties"),
        pytest.param([-POSITION_MAX, -POSITION_MAX + 1], 0, id="top-at-the-limit"),
        pytest.param([POSITION_MAX - 1, POSITION_MAX], 2, id="last-at-the-limit"),
        pytest.param(list(range(1000)), 500, id="long-crowded-run"),
        pytest.param([i * POSITION_GAP for i in range(100)] + [99 * POSITION_GAP + 1], 100, id="one-tight-spot"),
    ],
)
def test_respace_makes_room_at_the_slot_and_keeps_order(keys, slot):
    start, spread = respace(keys, slot)
    new = keys[:start] + spread + keys[start + len(spread) :]
    assert len(new) == len(keys) and new == sorted(set(new))
    assert all(-POSITION_MAX <= key <= POSITION_MAX for key in new)
    assert key_between(new[slot - 1] if slot else None, new[slot] if slot < len(new) else None) is not None


def test_respace_touches_a_small_run_when_the_crowding_is_local():
    keys = [i * POSITION_GAP for i in range(10_000)]
    keys[5000:5000] = [4999 * POSITION_GAP + 1]  # now 4999*GAP and 4999*GAP + 1 are adjacent
    start, spread = respace(keys, 5001)
    assert len(spread) <= 32 and start <= 5001 <= start + len(spread)


async def test_after_may_be_an_integral_json_number_written_with_a_fraction(client, alice):
    a, b = await create(client, alice, "a"), await create(client, alice, "b")
    response = await client.post(alice.url(f"/{b['id']}/move"), json={"after": float(a["id"])}, headers=alice.headers)
    assert response.status_code == 200 and await order(client, alice) == [a["id"], b["id"]]
    half = await client.post(alice.url(f"/{b['id']}/move"), json={"after": a["id"] + 0.5}, headers=alice.headers)
    assert_problem(half, 422, "validation_failed")
