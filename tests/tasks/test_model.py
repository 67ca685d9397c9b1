"""The task model's fields through HTTP on a real PostgreSQL: due, priority, labels and
completed_at on create, PUT, PATCH and the toggle; their validation; and Idempotency-Key."""

from __future__ import annotations

import pytest

from support.app import assert_problem, create


@pytest.mark.parametrize(
    "sent, returned",
    [
        pytest.param("2026-05-01", "2026-05-01", id="all-day-date"),
        pytest.param("2026-05-01T09:30:00+02:00", "2026-05-01T07:30:00+00:00", id="offset-to-utc"),
        pytest.param("2026-05-01T09:30:00.250Z", "2026-05-01T09:30:00.25+00:00", id="zulu-fraction"),
        pytest.param("2026-05-01t09:30:00z", "2026-05-01T09:30:00+00:00", id="lowercase-t-and-z"),
        pytest.param("2026-05-01T09:30:00.123456789-00:00", "2026-05-01T09:30:00.123456+00:00", id="nanoseconds-cut"),
        pytest.param("2026-05-01T23:30:00-23:59", "2026-05-02T23:29:00+00:00", id="largest-offset"),
        pytest.param("0001-01-01T00:00:00+23:59", "0001-12-31T00:01:00 BC+00:00", id="utc-before-year-1"),
        pytest.param("9999-12-31T23:59:59-23:59", "10000-01-01T23:58:59+00:00", id="utc-after-year-9999"),
        pytest.param(None, None, id="null"),
    ],
)
async def test_due_is_a_date_or_a_utc_date_time_and_the_kinds_stay_distinct(client, make_user, sent, returned):
    user = make_user()
    task = await create(client, user, due=sent)
    assert task["due"] == returned
    fetched = await client.get(user.url(f"/{task['id']}"), headers=user.headers)
    assert fetched.json()["due"] == returned


@pytest.mark.parametrize(
    "body, field",
    [
        pytest.param({"due": "2026-02-30"}, "due", id="due-not-a-calendar-date"),
        pytest.param({"due": "2026-05-01T09:30:00"}, "due", id="due-without-offset"),
        pytest.param({"due": "2026-05-01 09:30:00Z"}, "due", id="due-space-separator"),
        pytest.param({"due": "2026-05-01T24:00:00Z"}, "due", id="due-hour-24"),
        pytest.param({"due": "2026-12-31T23:59:60Z"}, "due", id="due-leap-second"),
        pytest.param({"due": "2026-05-01T09:30:00+24:00"}, "due", id="due-offset-24h"),
        pytest.param({"due": "20260501"}, "due", id="due-basic-format"),
        pytest.param({"due": 1714550400}, "due", id="due-number"),
        pytest.param({"priority": "urgent"}, "priority", id="priority-unknown"),
        pytest.param({"priority": None}, "priority", id="priority-null"),
        pytest.param({"labels": "work"}, "labels", id="labels-not-array"),
        pytest.param({"labels": [""]}, "labels.0", id="label-empty"),
        pytest.param({"labels": ["   "]}, "labels.0", id="label-blank"),
        pytest.param({"labels": ["ok", "x" * 51]}, "labels.1", id="label-over-50"),
        pytest.param({"labels": ["a\tb"]}, "labels.0", id="label-control-character"),
        pytest.param({"labels": [5]}, "labels.0", id="label-not-string"),
        pytest.param({"labels": [f"l{i}" for i in range(21)]}, "labels", id="labels-over-20"),
        pytest.param({"completed_at": "2026-05-01T00:00:00Z"}, "completed_at", id="completed-at-not-writable"),
        pytest.param({"position": 5}, "position", id="position-not-writable"),
    ],
)
async def test_create_refuses_bad_model_fields_naming_them(client, alice, body, field):
    response = await client.post(alice.url(), json={"title": "t", **body}, headers=alice.headers)
    problem = assert_problem(response, 422, "validation_failed")
    assert field in {error["field"] for error in problem["errors"]}, problem


async def test_labels_are_normalised_and_case_variants_keep_the_first_spelling(client, alice):
    labels = ["  Work ", "cafe\u0301", "work", "WORK", "Café", "x" * 50, *[f"l{i}" for i in range(14)]]
    task = await create(client, alice, labels=labels)
    assert task["labels"] == ["Work", "café", "x" * 50, *[f"l{i}" for i in range(14)]]


async def test_create_takes_every_field(client, alice):
    task = await create(client, alice, due="2026-05-01", priority="high", labels=["home"])
    assert (task["due"], task["priority"], task["labels"]) == ("2026-05-01", "high", ["home"])
    assert task["completed"] is False and task["completed_at"] is None


async def test_put_replaces_the_model_fields_and_absent_ones_return_to_their_defaults(client, alice):
    task = await create(client, alice, due="2026-05-01", priority="high", labels=["a"])
    url = alice.url(f"/{task['id']}")
    body = {"title": "t", "description": "", "completed": False, "due": "2026-06-01T10:00:00Z", "labels": ["b"]}
    replaced = (await client.put(url, json=body, headers=alice.headers)).json()
    assert (replaced["due"], replaced["priority"], replaced["labels"]) == ("2026-06-01T10:00:00+00:00", "none", ["b"])
    bare = {"title": "t", "description": "", "completed": False}
    replaced = (await client.put(url, json=bare, headers=alice.headers)).json()
    assert (replaced["due"], replaced["priority"], replaced["labels"]) == (None, "none", [])
    assert replaced["position"] == task["position"]  # the manual order is changed by /move only


async def test_patch_changes_only_the_given_fields_and_null_clears_the_due_date(client, alice):
    task = await create(client, alice, due="2026-05-01", priority="low", labels=["a"])
    url = alice.url(f"/{task['id']}")
    patched = (await client.patch(url, json={"priority": "medium"}, headers=alice.headers)).json()
    assert (patched["due"], patched["priority"], patched["labels"]) == ("2026-05-01", "medium", ["a"])
    patched = (await client.patch(url, json={"labels": [], "due": "2026-05-02"}, headers=alice.headers)).json()
    assert (patched["due"], patched["labels"]) == ("2026-05-02", [])
    response = await client.patch(url, json={"due": None}, headers=alice.headers)
    assert response.status_code == 200 and response.json()["due"] is None
    assert response.json()["priority"] == "medium"


@pytest.mark.parametrize(
    "body, field",
    [
        pytest.param({"priority": None}, "priority", id="null-priority"),
        pytest.param({"labels": None}, "labels", id="null-labels"),
        pytest.param({"due": "tomorrow"}, "due", id="due-text"),
    ],
)
async def test_patch_refuses_bad_model_fields(client, alice, body, field):
    task = await create(client, alice)
    response = await client.patch(alice.url(f"/{task['id']}"), json=body, headers=alice.headers)
    problem = assert_problem(response, 422, "validation_failed")
    assert field in {error["field"] for error in problem["errors"]}


@pytest.mark.parametrize("route", ["put", "patch", "toggle"])
async def test_completed_at_is_set_on_completion_kept_while_completed_and_cleared_on_reopening(client, alice, route):
    task = await create(client, alice)
    url = alice.url(f"/{task['id']}")

    async def set_completed(value: bool) -> dict:
        if route == "toggle":
            response = await client.patch(f"{url}/complete", headers=alice.headers)
        elif route == "put":
            body = {"title": "t", "description": "", "completed": value}
            response = await client.put(url, json=body, headers=alice.headers)
        else:
            response = await client.patch(url, json={"completed": value}, headers=alice.headers)
        assert response.status_code == 200 and response.json()["completed"] is value, response.text
        return response.json()

    done = await set_completed(True)
    assert done["completed_at"] is not None and done["completed_at"] >= task["created_at"]
    if route != "toggle":  # completing a completed task keeps when it was completed
        assert (await set_completed(True))["completed_at"] == done["completed_at"]
    assert (await set_completed(False))["completed_at"] is None


async def test_idempotency_key_fingerprint_covers_the_model_fields(client, alice):
    headers = {**alice.headers, "Idempotency-Key": "model-1"}
    body = {"title": "once", "due": "2026-05-01T09:00:00+02:00", "priority": "high", "labels": ["a"]}
    first = await client.post(alice.url(), json=body, headers=headers)
    same = {**body, "due": "2026-05-01T07:00:00Z"}  # the same instant, written otherwise: another body
    assert first.status_code == 201
    replay = await client.post(alice.url(), json=body, headers=headers)
    assert replay.status_code == 201 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json() == first.json()
    for changed in (same, {**body, "priority": "low"}, {**body, "labels": ["b"]}, {**body, "due": None}):
        assert_problem(await client.post(alice.url(), json=changed, headers=headers), 422, "idempotency_key_reused")


async def test_a_body_without_model_fields_keeps_the_fingerprint_it_had_before_them(client, alice):
    import hashlib

    import orjson

    from service.tasks.routes import fingerprint
    from service.tasks.schemas import TaskCreate

    assert fingerprint(TaskCreate(title="t", description="d")) == hashlib.sha256(orjson.dumps(["t", "d"])).digest()
