"""MAX_TASKS_PER_USER: a create past the quota gets 409 `task_limit_reached`, also when many
creates race, and a delete frees a place."""

from __future__ import annotations

import asyncio

from support.app import assert_problem, create

QUOTA = 5


async def test_concurrent_creates_never_exceed_the_quota(start_app, make_user):
    user = make_user()
    async with start_app(max_tasks_per_user=QUOTA) as client:
        responses = await asyncio.gather(
            *(client.post(user.url(), json={"title": f"t{n}"}, headers=user.headers) for n in range(4 * QUOTA))
        )
        assert sorted(r.status_code for r in responses) == [201] * QUOTA + [409] * (3 * QUOTA)
        problem = assert_problem(next(r for r in responses if r.status_code == 409), 409, "task_limit_reached")
        assert str(QUOTA) in problem["detail"]
        listed = await client.get(user.url(), headers=user.headers)
        assert len(listed.json()) == QUOTA


async def test_a_delete_frees_a_place_and_other_users_have_their_own_quota(start_app, make_user):
    alice, bob = make_user(), make_user()
    async with start_app(max_tasks_per_user=2) as client:
        first = await create(client, alice, "one")
        await create(client, alice, "two")
        assert_problem(
            await client.post(alice.url(), json={"title": "three"}, headers=alice.headers), 409, "task_limit_reached"
        )
        await create(client, bob, "bob's first")  # bob counts his own
        assert (await client.delete(alice.url(f"/{first['id']}"), headers=alice.headers)).status_code == 204
        await create(client, alice, "three")


async def test_a_keyed_create_past_the_quota_is_refused_and_leaves_its_key_free(start_app, make_user):
    user = make_user()
    async with start_app(max_tasks_per_user=1) as client:
        await create(client, user, "the only one")
        keyed = {**user.headers, "Idempotency-Key": "retry-me"}
        assert_problem(await client.post(user.url(), json={"title": "x"}, headers=keyed), 409, "task_limit_reached")
        listed = await client.get(user.url(), headers=user.headers)
        await client.delete(user.url(f"/{listed.json()[0]['id']}"), headers=user.headers)
        response = await client.post(user.url(), json={"title": "x"}, headers=keyed)  # the same key, now it fits
        assert response.status_code == 201 and "idempotent-replayed" not in response.headers
