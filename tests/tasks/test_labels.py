"""GET /api/{user_id}/labels: the caller's labels with their task counts, nobody else's."""

from __future__ import annotations

from support.app import assert_problem, create


def labels_url(user) -> str:
    return f"/api/{user.id}/labels"


async def test_labels_list_each_spelling_with_its_task_count_in_order(client, alice, bob):
    await create(client, alice, "a", labels=["work", "home"])
    await create(client, alice, "b", labels=["work", "Work "])  # one label within a task: "work"
    await create(client, alice, "c", labels=["Work", "café"])
    await create(client, alice, "d")
    await create(client, bob, "theirs", labels=["work", "secret"])
    response = await client.get(labels_url(alice), headers=alice.headers)
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    counts = {entry["label"]: entry["tasks"] for entry in response.json()}
    assert counts == {"work": 2, "home": 1, "Work": 1, "café": 1}


async def test_labels_come_ordered_by_label(client, alice):
    await create(client, alice, labels=["pear", "apple"])
    await create(client, alice, labels=["fig"])
    response = await client.get(labels_url(alice), headers=alice.headers)
    assert [entry["label"] for entry in response.json()] == ["apple", "fig", "pear"]


async def test_labels_of_a_user_without_any_is_an_empty_array(client, alice):
    await create(client, alice)
    response = await client.get(labels_url(alice), headers=alice.headers)
    assert response.status_code == 200 and response.json() == []


async def test_labels_follow_the_tasks_changes(client, alice):
    task = await create(client, alice, labels=["a", "b"])
    await client.patch(alice.url(f"/{task['id']}"), json={"labels": ["b", "c"]}, headers=alice.headers)
    assert {e["label"] for e in (await client.get(labels_url(alice), headers=alice.headers)).json()} == {"b", "c"}
    await client.delete(alice.url(f"/{task['id']}"), headers=alice.headers)
    assert (await client.get(labels_url(alice), headers=alice.headers)).json() == []


async def test_labels_naming_another_user_is_403_and_without_a_token_401(client, alice, bob):
    await create(client, bob, labels=["secret"])
    assert_problem(await client.get(labels_url(bob), headers=alice.headers), 403, "forbidden")
    assert_problem(await client.get(labels_url(bob)), 401, "missing_token")
