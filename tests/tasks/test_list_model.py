"""The list's task-model filters and sorts through HTTP: due bounds, has_due, priority (any
of), label (all of), combined with status and q; sorts by due, priority and position; pages
that follow Link to the end; cursors bound to the filters."""

from __future__ import annotations

import pytest

from support.app import assert_problem, create


async def ids(client, user, **params) -> list[int]:
    response = await client.get(user.url(), params=params, headers=user.headers)
    assert response.status_code == 200, response.text
    return [task["id"] for task in response.json()]


@pytest.fixture
async def planned(client, make_user):
    """One user's tasks, by name: due dates of both kinds, priorities, labels, one completed."""
    user = make_user()
    spec = {
        "timed_may1": {"due": "2026-05-01T09:00:00+02:00", "priority": "high", "labels": ["work", "urgent"]},
        "allday_may1": {"due": "2026-05-01", "priority": "low", "labels": ["work"]},
        "late_may1": {"due": "2026-05-01T23:30:00-01:00", "labels": ["home"]},  # May 2, 00:30 UTC
        "may2": {"due": "2026-05-02", "priority": "medium", "labels": ["Work"]},
        "none": {"priority": "high"},
        "done": {"due": "2026-04-30", "labels": ["work", "urgent"]},
    }
    tasks = {name: await create(client, user, f"{name} task", **fields) for name, fields in spec.items()}
    await client.patch(user.url(f"/{tasks['done']['id']}/complete"), headers=user.headers)
    return user, {name: task["id"] for name, task in tasks.items()}


@pytest.mark.parametrize(
    "params, expected",
    [
        pytest.param(
            {"due_after": "2026-05-01", "due_before": "2026-05-02"}, ["timed_may1", "allday_may1"], id="day-in-utc"
        ),
        pytest.param({"due_after": "2026-05-01T07:00:00Z"}, ["timed_may1", "late_may1", "may2"], id="after-inclusive"),
        pytest.param({"due_after": "2026-05-01T07:00:00.000001Z"}, ["late_may1", "may2"], id="after-excludes-earlier"),
        pytest.param({"due_before": "2026-05-01T07:00:00Z"}, ["allday_may1", "done"], id="before-exclusive"),
        pytest.param(
            {"due_before": "2026-05-01T09:00:00+02:00", "status": "pending"}, ["allday_may1"], id="with-status"
        ),
        pytest.param({"has_due": "false"}, ["none"], id="no-due"),
        pytest.param({"has_due": "true", "status": "completed"}, ["done"], id="has-due-completed"),
        pytest.param({"priority": ["high", "medium"]}, ["timed_may1", "may2", "none"], id="priority-any-of"),
        pytest.param({"label": ["work", "urgent"]}, ["timed_may1", "done"], id="label-all-of"),
        pytest.param({"label": "work"}, ["timed_may1", "allday_may1", "done"], id="label-exact-spelling"),
        pytest.param(
            {"label": ["work", "work", " work "]}, ["timed_may1", "allday_may1", "done"], id="label-repeats-one"
        ),
        pytest.param({"label": "work", "q": "may1"}, ["timed_may1", "allday_may1"], id="with-q"),
        pytest.param({"label": "nobody"}, [], id="unknown-label"),
        pytest.param({"priority": "none", "has_due": "true"}, ["late_may1", "done"], id="combined"),
    ],
)
async def test_filters_combine_with_each_other_status_and_q(client, planned, params, expected):
    user, named = planned
    found = await ids(client, user, sort="created_at", **params)
    assert found == [named[name] for name in named if name in expected]


@pytest.mark.parametrize(
    "sort, expected",
    [
        pytest.param("due", ["done", "allday_may1", "timed_may1", "may2", "late_may1", "none"], id="due-none-last"),
        pytest.param(
            "priority", ["none", "timed_may1", "may2", "allday_may1", "done", "late_may1"], id="priority-high-first"
        ),
        pytest.param(
            "position", ["done", "none", "may2", "late_may1", "allday_may1", "timed_may1"], id="position-newest-top"
        ),
    ],
)
async def test_new_sorts_order_as_documented(client, planned, sort, expected):
    user, named = planned
    assert await ids(client, user, sort=sort) == [named[name] for name in expected]


@pytest.mark.parametrize("sort", ["due", "priority", "position"])
@pytest.mark.parametrize("filters", [pytest.param({}, id="unfiltered"), pytest.param({"label": "x"}, id="labelled")])
async def test_new_sorts_page_through_everything_once(client, make_user, sort, filters):
    user = make_user()
    dues = [None, "2026-05-01", "2026-05-01T00:00:00Z", None, "2026-04-01T12:00:00+14:00"]
    created = [
        await create(client, user, f"t{i}", due=dues[i % 5], priority=["none", "high", "low"][i % 3], labels=["x"])
        for i in range(11)
    ]
    await create(client, user, "unlabelled")
    seen, url, params = [], user.url(), {"limit": 2, "sort": sort, **filters}
    while url:
        response = await client.get(url, params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        seen += response.json()
        link = response.headers.get("link")
        url, params = (link.split(">;")[0].lstrip("<"), None) if link else (None, None)
    expected = await client.get(user.url(), params={"sort": sort, **filters}, headers=user.headers)
    assert [task["id"] for task in seen] == [task["id"] for task in expected.json()]
    assert len(seen) == len(created) + (0 if filters else 1)


async def test_the_cursor_is_bound_to_the_filters(client, make_user):
    user = make_user()
    for i in range(3):
        await create(client, user, f"t{i}", priority="high", labels=["a"])
    first = await client.get(user.url(), params={"limit": 1, "priority": "high"}, headers=user.headers)
    link = first.headers["link"]
    assert "priority=high" in link
    cursor = link.split("cursor=")[1].split(">")[0]
    for other in ({"priority": "low"}, {"priority": ["high", "low"]}, {"label": "a", "priority": "high"}, {}):
        response = await client.get(user.url(), params={"limit": 1, "cursor": cursor, **other}, headers=user.headers)
        assert_problem(response, 422, "validation_failed")
    again = await client.get(
        user.url(), params={"limit": 1, "cursor": cursor, "priority": "high"}, headers=user.headers
    )
    assert again.status_code == 200


@pytest.mark.parametrize(
    "params, field",
    [
        pytest.param({"due_before": "tomorrow"}, "due_before", id="due-before-text"),
        pytest.param({"due_after": "2026-02-30"}, "due_after", id="due-after-not-a-date"),
        pytest.param({"has_due": "yes"}, "has_due", id="has-due-not-boolean"),
        pytest.param({"priority": ["high", "urgent"]}, "priority", id="priority-unknown"),
        pytest.param({"priority": ["high"] * 5}, "priority", id="priority-repeated-too-often"),
        pytest.param({"label": ""}, "label", id="label-empty"),
        pytest.param({"label": "x" * 51}, "label", id="label-too-long"),
        pytest.param({"label": [f"l{i}" for i in range(21)]}, "label", id="labels-over-20"),
        pytest.param({"sort": "-due"}, "sort", id="no-descending-due"),
    ],
)
async def test_bad_filters_are_422_naming_the_parameter(client, alice, params, field):
    problem = assert_problem(
        await client.get(alice.url(), params=params, headers=alice.headers), 422, "validation_failed"
    )
    assert field in {error["field"] for error in problem["errors"]}


@pytest.mark.parametrize(
    "sort, key",
    [
        pytest.param("due", "2026-13-45 00:00:00+00", id="due-key-not-a-date"),
        pytest.param("due", "soon", id="due-key-text"),
        pytest.param("priority", "urgent", id="priority-key"),
        pytest.param("position", 2**53, id="position-key-beyond-safe"),
        pytest.param("position", "1", id="position-key-text"),
    ],
)
async def test_a_forged_cursor_key_is_422_not_500(client, alice, sort, key):
    import base64

    import orjson

    bound = {"sort": sort, "status": "all", "q": None, "due_after": None, "due_before": None}
    payload = {"o": {**bound, "has_due": None, "priority": None, "label": None}, "k": key, "i": 1}
    cursor = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()
    response = await client.get(alice.url(), params={"sort": sort, "cursor": cursor}, headers=alice.headers)
    assert_problem(response, 422, "validation_failed")
