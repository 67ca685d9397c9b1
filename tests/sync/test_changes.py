"""GET /api/{user_id}/tasks/changes, in-process on a real PostgreSQL: the full listing, changes
in commit order, tombstones, paging, validation, ownership and expired tokens."""

from __future__ import annotations

import time

import asyncpg
import pytest

from service.sync.purge import purge_tombstones
from service.sync.tokens import SyncToken, decode_token
from support.app import assert_problem, create
from support.sync import apply_changes, server_state, sync_once

DAY = 86400


async def changes(client, user, **params):
    response = await client.get(user.url("/changes"), params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    return response.json()


async def test_without_since_every_live_task_comes_as_an_upsert(client, alice, bob):
    first = await create(client, alice, "first")
    second = await create(client, alice, "second")
    await create(client, bob, "not alice's")
    page = await changes(client, alice)
    assert page["changes"] == [{"op": "upsert", "task": first}, {"op": "upsert", "task": second}]
    assert page["more"] is False and isinstance(page["next"], str)


async def test_an_empty_feed_answers_no_changes_and_a_token(client, alice):
    page = await changes(client, alice)
    assert page["changes"] == [] and page["more"] is False
    again = await changes(client, alice, since=page["next"])
    assert again["changes"] == [] and again["more"] is False


async def test_changes_after_a_token_come_in_commit_order_with_tombstones(client, alice):
    kept = await create(client, alice, "kept")
    doomed = await create(client, alice, "doomed")
    token = (await changes(client, alice))["next"]
    renamed = await client.patch(alice.url(f"/{kept['id']}"), json={"title": "renamed"}, headers=alice.headers)
    assert (await client.delete(alice.url(f"/{doomed['id']}"), headers=alice.headers)).status_code == 204
    added = await create(client, alice, "added")
    page = await changes(client, alice, since=token)
    assert page["changes"] == [
        {"op": "upsert", "task": renamed.json()},
        {"op": "delete", "id": doomed["id"]},
        {"op": "upsert", "task": added},
    ]
    assert (await changes(client, alice, since=page["next"]))["changes"] == []


async def test_several_changes_to_one_task_arrive_once_with_its_latest_state(client, alice):
    task = await create(client, alice, "v1")
    token = (await changes(client, alice))["next"]
    for title in ("v2", "v3"):
        await client.patch(alice.url(f"/{task['id']}"), json={"title": title}, headers=alice.headers)
    toggled = await client.patch(alice.url(f"/{task['id']}/complete"), headers=alice.headers)
    page = await changes(client, alice, since=token)
    assert page["changes"] == [{"op": "upsert", "task": toggled.json()}]


async def test_a_task_created_and_deleted_between_syncs_arrives_as_a_delete(client, alice):
    token = (await changes(client, alice))["next"]
    task = await create(client, alice, "short-lived")
    await client.delete(alice.url(f"/{task['id']}"), headers=alice.headers)
    assert (await changes(client, alice, since=token))["changes"] == [{"op": "delete", "id": task["id"]}]


@pytest.mark.parametrize(
    "limit", [pytest.param(1, id="limit-1"), pytest.param(2, id="limit-2"), pytest.param(5, id="limit-equals-tasks")]
)
async def test_paging_through_listing_and_log_ends_at_the_server_state(client, alice, limit):
    tasks = [await create(client, alice, f"task {i}") for i in range(5)]
    state: dict = {}
    token = await sync_once(client, alice, state, None, limit=limit)
    assert state == await server_state(client, alice)
    await client.delete(alice.url(f"/{tasks[0]['id']}"), headers=alice.headers)
    await client.patch(alice.url(f"/{tasks[3]['id']}"), json={"description": "more"}, headers=alice.headers)
    await create(client, alice, "late")
    await sync_once(client, alice, state, token, limit=limit)
    assert state == await server_state(client, alice)


async def test_a_full_page_says_more(client, alice):
    for i in range(3):
        await create(client, alice, f"task {i}")
    page = await changes(client, alice, limit=2)
    assert len(page["changes"]) == 2 and page["more"] is True
    rest = await changes(client, alice, limit=2, since=page["next"])
    assert len(rest["changes"]) == 1 and rest["more"] is False


async def test_changes_during_a_paged_listing_are_not_lost(client, alice):
    tasks = [await create(client, alice, f"task {i}") for i in range(4)]
    state: dict = {}
    first = await changes(client, alice, limit=2)
    apply_changes(state, first["changes"])
    # Between pages: a listed task changes, a listed one and an unlisted one go, one is added.
    await client.patch(alice.url(f"/{tasks[0]['id']}"), json={"title": "changed"}, headers=alice.headers)
    await client.delete(alice.url(f"/{tasks[1]['id']}"), headers=alice.headers)
    await client.delete(alice.url(f"/{tasks[3]['id']}"), headers=alice.headers)
    await create(client, alice, "added")
    await sync_once(client, alice, state, first["next"], limit=2)
    assert state == await server_state(client, alice)


@pytest.mark.parametrize(
    "params, field",
    [
        pytest.param({"since": "not a token!"}, "since", id="since-bad-characters"),
        pytest.param({"since": "QUJD"}, "since", id="since-garbled"),
        pytest.param({"since": "x" * 200}, "since", id="since-too-long"),
        pytest.param({"limit": "0"}, "limit", id="limit-zero"),
        pytest.param({"limit": "1001"}, "limit", id="limit-over-max"),
        pytest.param({"limit": "ten"}, "limit", id="limit-not-a-number"),
    ],
)
async def test_bad_query_is_a_422_naming_the_field(client, alice, params, field):
    response = await client.get(alice.url("/changes"), params=params, headers=alice.headers)
    problem = assert_problem(response, 422, "validation_failed")
    assert field in {error["field"] for error in problem["errors"]}


async def test_another_users_token_is_a_422(client, alice, bob):
    bobs = (await changes(client, bob))["next"]
    response = await client.get(alice.url("/changes"), params={"since": bobs}, headers=alice.headers)
    problem = assert_problem(response, 422, "validation_failed")
    assert problem["errors"] == [{"field": "since", "message": "the token belongs to another user"}]


@pytest.mark.parametrize("suffix", [pytest.param("/changes", id="changes"), pytest.param("/events", id="events")])
async def test_another_users_feed_is_403(client, alice, bob, suffix):
    await create(client, bob, "bob's")
    response = await client.get(bob.url(suffix), headers=alice.headers)
    assert_problem(response, 403, "forbidden")


@pytest.mark.parametrize("suffix", [pytest.param("/changes", id="changes"), pytest.param("/events", id="events")])
async def test_no_token_is_401(client, alice, suffix):
    assert_problem(await client.get(alice.url(suffix)), 401, "missing_token")


async def test_a_token_older_than_the_retention_is_410(client, alice):
    await create(client, alice)
    fresh = decode_token((await changes(client, alice))["next"], alice.id, "since")
    for age_days, status in ((29.9, 200), (30.1, 410)):
        old = SyncToken(fresh.seq, int(time.time() - age_days * DAY)).encode(alice.id)
        response = await client.get(alice.url("/changes"), params={"since": old}, headers=alice.headers)
        if status == 410:
            assert_problem(response, 410, "sync_token_expired")
        else:
            assert response.status_code == 200


async def test_purged_tombstones_expire_the_tokens_that_predate_them(client, alice, database_url):
    task = await create(client, alice)
    before = (await changes(client, alice))["next"]
    await client.delete(alice.url(f"/{task['id']}"), headers=alice.headers)
    after = (await changes(client, alice, since=before))["next"]
    admin = await asyncpg.connect(database_url)
    try:
        await admin.execute(
            "UPDATE task_changes SET changed_at = now() - interval '31 days' WHERE user_id = $1", alice.id
        )
    finally:
        await admin.close()
    assert await purge_tombstones(client.app.state.resources.pool, 30) >= 1
    response = await client.get(alice.url("/changes"), params={"since": before}, headers=alice.headers)
    assert_problem(response, 410, "sync_token_expired")
    assert (await changes(client, alice, since=after))["changes"] == []  # saw the delete: still good
    assert (await changes(client, alice))["changes"] == []  # a full resync always works


async def test_a_token_beyond_the_feed_is_410(client, alice):
    await create(client, alice)
    fresh = decode_token((await changes(client, alice))["next"], alice.id, "since")
    ahead = SyncToken(fresh.seq + 5, int(time.time())).encode(alice.id)
    response = await client.get(alice.url("/changes"), params={"since": ahead}, headers=alice.headers)
    assert_problem(response, 410, "sync_token_expired")
