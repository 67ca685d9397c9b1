"""The tasks API end to end, in-process, on a real PostgreSQL: each route's happy path,
validation, ownership (403 / 404), conditional writes and idempotent creation."""

from __future__ import annotations

import asyncio

import pytest

from support.app import assert_problem, create

# -- create -----------------------------------------------------------------------------------


async def test_create_returns_201_location_etag_and_the_task(client, alice):
    response = await client.post(
        alice.url(), json={"title": "  Buy milk ", "description": "2 L"}, headers=alice.headers
    )
    assert response.status_code == 201
    task = response.json()
    assert task["title"] == "Buy milk"  # surrounding whitespace trimmed
    assert task["description"] == "2 L" and task["completed"] is False and task["user_id"] == alice.id
    assert set(task) == {"id", "user_id", "title", "description", "completed", "created_at", "updated_at",
                         "due", "priority", "labels", "position", "completed_at"}  # fmt: skip
    assert (task["due"], task["priority"], task["labels"], task["completed_at"]) == (None, "none", [], None)
    assert response.headers["location"] == alice.url(f"/{task['id']}")
    assert response.headers["etag"] == f'"{task["id"]}-1"'


async def test_create_ignores_any_owner_named_in_the_body(client, alice, bob):
    response = await client.post(alice.url(), json={"title": "x", "user_id": bob.id}, headers=alice.headers)
    assert_problem(response, 422, "validation_failed")


@pytest.mark.parametrize(
    "body, field",
    [
        pytest.param({}, "title", id="missing-title"),
        pytest.param({"title": ""}, "title", id="empty-title"),
        pytest.param({"title": "   "}, "title", id="blank-title"),
        pytest.param({"title": "x" * 201}, "title", id="title-over-200"),
        pytest.param({"title": 5}, "title", id="title-not-string"),
        pytest.param({"title": None}, "title", id="title-null"),
        pytest.param({"title": "a\u0000b"}, "title", id="title-nul"),
        pytest.param({"title": "ok", "description": "d" * 1001}, "description", id="description-over-1000"),
        pytest.param({"title": "ok", "description": "a\u0000"}, "description", id="description-nul"),
        pytest.param({"title": "ok", "completed": True}, "completed", id="unknown-field"),
    ],
)
async def test_create_rejects_invalid_bodies_naming_the_field(client, alice, body, field):
    problem = assert_problem(await client.post(alice.url(), json=body, headers=alice.headers), 422, "validation_failed")
    assert field in {error["field"] for error in problem["errors"]}


async def test_create_accepts_limits_exactly(client, alice):
    task = await create(client, alice, "t" * 200, description="d" * 1000)
    assert len(task["title"]) == 200 and len(task["description"]) == 1000


@pytest.mark.parametrize(
    "content, content_type, status, code",
    [
        pytest.param(b"{not json", "application/json", 422, "validation_failed", id="bad-json"),
        pytest.param(b"[1, 2]", "application/json", 422, "validation_failed", id="array"),
        pytest.param(b"", "application/json", 422, "validation_failed", id="empty"),
        pytest.param(b'{"title": "\xff"}', "application/json", 422, "validation_failed", id="invalid-utf8"),
        pytest.param(b"title=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type", id="form"),
        pytest.param(b'{"title": "x"}', None, 415, "unsupported_media_type", id="no-content-type"),
    ],
)
async def test_create_rejects_bodies_that_are_not_json_objects(client, alice, content, content_type, status, code):
    headers = {**alice.headers, **({"Content-Type": content_type} if content_type else {})}
    assert_problem(await client.post(alice.url(), content=content, headers=headers), status, code)


async def test_oversized_body_gets_413_declared_or_streamed(client, alice):
    big = b'{"title": "' + b"x" * 20_000 + b'"}'
    headers = {**alice.headers, "Content-Type": "application/json"}
    assert_problem(await client.post(alice.url(), content=big, headers=headers), 413, "payload_too_large")

    async def chunks():  # no Content-Length: the limit applies while streaming
        for _ in range(40):
            yield b"x" * 1000

    assert_problem(await client.post(alice.url(), content=chunks(), headers=headers), 413, "payload_too_large")


# -- read -------------------------------------------------------------------------------------


async def test_get_returns_the_task_with_its_etag(client, alice):
    task = await create(client, alice)
    response = await client.get(alice.url(f"/{task['id']}"), headers=alice.headers)
    assert response.status_code == 200 and response.json() == task
    assert response.headers["etag"] == f'"{task["id"]}-1"'


@pytest.mark.parametrize(
    "task_id",
    [
        pytest.param("abc", id="text"),
        pytest.param("0", id="zero"),
        pytest.param("-1", id="negative"),
        pytest.param(str(2**63), id="beyond-bigint"),
        pytest.param("1.5", id="fraction"),
    ],
)
async def test_get_rejects_ids_out_of_range(client, alice, task_id):
    problem = assert_problem(
        await client.get(alice.url(f"/{task_id}"), headers=alice.headers), 422, "validation_failed"
    )
    assert problem["errors"][0]["field"] == "task_id"


async def test_another_users_task_is_indistinguishable_from_a_missing_one(client, alice, bob):
    theirs = await create(client, bob, "Bob's secret")
    missing = await client.get(alice.url("/9223372036854775000"), headers=alice.headers)
    foreign = await client.get(alice.url(f"/{theirs['id']}"), headers=alice.headers)
    assert_problem(foreign, 404, "task_not_found")

    def comparable(headers) -> dict:  # the request id differs by design
        return {k: v for k, v in headers.items() if k != "x-request-id"}

    assert foreign.json() == missing.json() and comparable(foreign.headers) == comparable(missing.headers)
    assert "Bob" not in foreign.text


WRITE_ROUTES = [
    pytest.param("GET", "", None, id="get"),
    pytest.param("PUT", "", {"title": "t", "description": "", "completed": True}, id="put"),
    pytest.param("PATCH", "", {"title": "t"}, id="patch"),
    pytest.param("PATCH", "/complete", None, id="complete"),
    pytest.param("DELETE", "", None, id="delete"),
]


# -- list -------------------------------------------------------------------------------------


async def test_list_filters_by_status_and_text(client, alice, bob):
    milk = await create(client, alice, "Buy MILK")
    bread = await create(client, alice, "Bake bread", description="with milk powder")
    done = await create(client, alice, "Call mum")
    await create(client, bob, "Bob buys milk too")
    await client.patch(alice.url(f"/{done['id']}/complete"), headers=alice.headers)

    async def ids(**params) -> list[int]:
        response = await client.get(alice.url(), params=params, headers=alice.headers)
        assert response.status_code == 200, response.text
        return [task["id"] for task in response.json()]

    assert await ids() == [done["id"], bread["id"], milk["id"]]  # newest first by default
    assert await ids(status="pending") == [bread["id"], milk["id"]]
    assert await ids(status="completed") == [done["id"]]
    assert await ids(q="milk") == [bread["id"], milk["id"]]  # title or description, any case
    assert await ids(q="milk", status="completed") == []
    assert await ids(sort="title") == [bread["id"], milk["id"], done["id"]]
    assert await ids(sort="-title") == [done["id"], milk["id"], bread["id"]]
    assert await ids(sort="created_at") == [milk["id"], bread["id"], done["id"]]
    assert (await ids(sort="-updated_at"))[0] == done["id"]
    assert await ids(q="%") == [] and await ids(q="_") == []  # no LIKE wildcards


@pytest.mark.parametrize("sort", ["created_at", "-created_at", "updated_at", "-updated_at", "title", "-title"])
async def test_list_pages_through_everything_once_with_link_next(client, make_user, sort):
    user = make_user()
    created = [await create(client, user, f"task {i % 3}") for i in range(7)]  # duplicate titles on purpose
    seen, url, params = [], user.url(), {"limit": 3, "sort": sort}
    while url:
        response = await client.get(url, params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page) <= 3
        seen += page
        link = response.headers.get("link")
        url, params = (link.split(">;")[0].lstrip("<"), None) if link else (None, None)
        if link:
            assert link.endswith('rel="next"') and len(page) == 3
    assert sorted(task["id"] for task in seen) == sorted(task["id"] for task in created)
    assert len(seen) == 7


async def test_search_in_decomposed_form_finds_the_stored_text(client, make_user):
    user = make_user()
    cafe = await create(client, user, "caf\u00e9 au lait")  # stored in NFC whichever way it is sent
    response = await client.get(user.url(), params={"q": "cafe\u0301"}, headers=user.headers)
    assert response.status_code == 200 and [task["id"] for task in response.json()] == [cafe["id"]]


async def test_link_next_repeats_an_awkward_search_text_exactly(client, make_user):
    """The search text goes back into the Link encoded: "&", "=", "#", "+", "%" or non-Latin-1
    letters neither end the parameter nor change it."""
    user = make_user()
    text = "a&b=c #1 %41+é🙂;,"
    matching = [await create(client, user, f"{text} {i}") for i in range(3)]
    await create(client, user, "a&b=c #1 %41 é🙂;,")  # "+" missing: a near miss
    seen, url, params = [], user.url(), {"q": text, "limit": 1, "sort": "created_at"}
    while url:
        response = await client.get(url, params=params, headers=user.headers)
        assert response.status_code == 200, response.text
        seen += response.json()
        link = response.headers.get("link")
        url, params = (link.split(">;")[0].lstrip("<"), None) if link else (None, None)
    assert seen == matching


@pytest.mark.parametrize(
    "params",
    [
        pytest.param({"limit": 0}, id="limit-zero"),
        pytest.param({"limit": 501}, id="limit-too-big"),
        pytest.param({"limit": "many"}, id="limit-text"),
        pytest.param({"status": "done"}, id="bad-status"),
        pytest.param({"sort": "id; DROP TABLE tasks"}, id="bad-sort"),
        pytest.param({"q": "x" * 201}, id="q-too-long"),
        pytest.param({"q": "a\u0000"}, id="q-nul"),
        pytest.param({"cursor": "!!!"}, id="cursor-garbage"),
        pytest.param({"cursor": "eyJvIjp7fSwiayI6MSwiaSI6MX0"}, id="cursor-other-query"),
    ],
)
async def test_list_rejects_bad_query_parameters(client, alice, params):
    assert_problem(await client.get(alice.url(), params=params, headers=alice.headers), 422, "validation_failed")


async def test_cursor_from_one_sort_is_refused_for_another(client, make_user):
    user = make_user()
    for i in range(3):
        await create(client, user, f"t{i}")
    first = await client.get(user.url(), params={"limit": 1, "sort": "title"}, headers=user.headers)
    cursor = first.headers["link"].split("cursor=")[1].split(">")[0]
    response = await client.get(
        user.url(), params={"limit": 1, "sort": "created_at", "cursor": cursor}, headers=user.headers
    )
    assert_problem(response, 422, "validation_failed")


# -- update and delete ------------------------------------------------------------------------


async def test_put_replaces_and_bumps_the_etag(client, alice):
    task = await create(client, alice, "old", description="old d")
    body = {"title": "new", "description": "", "completed": True}
    response = await client.put(
        alice.url(f"/{task['id']}"), json=body, headers={**alice.headers, "If-Match": f'"{task["id"]}-1"'}
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert (updated["title"], updated["description"], updated["completed"]) == ("new", "", True)
    assert response.headers["etag"] == f'"{task["id"]}-2"' and updated["updated_at"] >= task["updated_at"]


async def test_put_requires_the_whole_representation(client, alice):
    task = await create(client, alice)
    response = await client.put(alice.url(f"/{task['id']}"), json={"title": "only"}, headers=alice.headers)
    problem = assert_problem(response, 422, "validation_failed")
    assert {"description", "completed"} <= {error["field"] for error in problem["errors"]}


async def test_patch_changes_only_given_fields(client, alice):
    task = await create(client, alice, "keep", description="old")
    response = await client.patch(alice.url(f"/{task['id']}"), json={"description": "new"}, headers=alice.headers)
    assert response.status_code == 200
    assert response.json()["title"] == "keep" and response.json()["description"] == "new"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="empty"),
        pytest.param({"title": None}, id="null-title"),
        pytest.param({"completed": "yes"}, id="completed-not-bool"),
        pytest.param({"id": 5}, id="id-not-patchable"),
    ],
)
async def test_patch_rejects_invalid_changes(client, alice, body):
    task = await create(client, alice)
    assert_problem(
        await client.patch(alice.url(f"/{task['id']}"), json=body, headers=alice.headers), 422, "validation_failed"
    )


async def test_complete_toggles_back_and_forth(client, alice):
    task = await create(client, alice)
    first = await client.patch(alice.url(f"/{task['id']}/complete"), headers=alice.headers)
    second = await client.patch(alice.url(f"/{task['id']}/complete"), headers=alice.headers)
    assert first.json()["completed"] is True and second.json()["completed"] is False
    assert second.headers["etag"] == f'"{task["id"]}-3"'


async def test_delete_then_gone(client, alice):
    task = await create(client, alice)
    response = await client.delete(alice.url(f"/{task['id']}"), headers=alice.headers)
    assert response.status_code == 204 and response.content == b""
    assert_problem(await client.get(alice.url(f"/{task['id']}"), headers=alice.headers), 404, "task_not_found")
    assert_problem(await client.delete(alice.url(f"/{task['id']}"), headers=alice.headers), 404, "task_not_found")


@pytest.mark.parametrize("method, suffix, body", WRITE_ROUTES[1:])
async def test_stale_if_match_gets_412_and_changes_nothing(client, alice, method, suffix, body):
    task = await create(client, alice)
    await client.patch(alice.url(f"/{task['id']}"), json={"title": "moved on"}, headers=alice.headers)
    stale = {**alice.headers, "If-Match": f'"{task["id"]}-1"'}
    assert_problem(
        await client.request(method, alice.url(f"/{task['id']}{suffix}"), json=body, headers=stale),
        412,
        "precondition_failed",
    )
    current = await client.get(alice.url(f"/{task['id']}"), headers=alice.headers)
    assert current.json()["title"] == "moved on" and current.headers["etag"] == f'"{task["id"]}-2"'


@pytest.mark.parametrize(
    "if_match, status",
    [
        pytest.param("*", 200, id="star"),
        pytest.param('"0-1", "{id}-1"', 200, id="list-with-current"),
        pytest.param('W/"{id}-1"', 412, id="weak-never-matches"),
        pytest.param('"{other}-1"', 412, id="other-tasks-etag"),
    ],
)
async def test_if_match_forms(client, alice, if_match, status):
    task = await create(client, alice)
    header = if_match.format(id=task["id"], other=task["id"] + 1)
    response = await client.patch(
        alice.url(f"/{task['id']}"), json={"title": "x"}, headers={**alice.headers, "If-Match": header}
    )
    assert response.status_code == status, response.text


async def test_malformed_if_match_is_422(client, alice):
    task = await create(client, alice)
    response = await client.delete(alice.url(f"/{task['id']}"), headers={**alice.headers, "If-Match": "no-quotes"})
    assert_problem(response, 422, "validation_failed")


# -- idempotent create ------------------------------------------------------------------------


async def test_retried_post_with_idempotency_key_creates_one_task(client, alice):
    headers = {**alice.headers, "Idempotency-Key": "create-1"}
    first = await client.post(alice.url(), json={"title": "once"}, headers=headers)
    again = await client.post(alice.url(), json={"title": "once"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["location"] == first.headers["location"]
    assert again.headers["idempotent-replayed"] == "true"
    assert len((await client.get(alice.url(), headers=alice.headers)).json()) == 1


async def test_concurrent_posts_with_one_idempotency_key_create_one_task(client, alice):
    headers = {**alice.headers, "Idempotency-Key": "burst"}
    responses = await asyncio.gather(
        *(client.post(alice.url(), json={"title": "once"}, headers=headers) for _ in range(10))
    )
    assert {r.status_code for r in responses} == {201}
    assert len({r.json()["id"] for r in responses}) == 1
    assert len((await client.get(alice.url(), headers=alice.headers)).json()) == 1


async def test_idempotency_key_reused_with_another_body_is_refused(client, alice):
    headers = {**alice.headers, "Idempotency-Key": "k"}
    await client.post(alice.url(), json={"title": "first"}, headers=headers)
    assert_problem(
        await client.post(alice.url(), json={"title": "second"}, headers=headers), 422, "idempotency_key_reused"
    )


async def test_idempotency_keys_are_per_user(client, alice, bob):
    a = await client.post(alice.url(), json={"title": "same"}, headers={**alice.headers, "Idempotency-Key": "shared"})
    b = await client.post(bob.url(), json={"title": "same"}, headers={**bob.headers, "Idempotency-Key": "shared"})
    assert a.status_code == b.status_code == 201 and a.json()["id"] != b.json()["id"]
    assert "idempotent-replayed" not in b.headers


@pytest.mark.parametrize(
    "key", [pytest.param("", id="empty"), pytest.param("k" * 256, id="too-long"), pytest.param("has space", id="space")]
)
async def test_malformed_idempotency_key_is_422(client, alice, key):
    response = await client.post(alice.url(), json={"title": "x"}, headers={**alice.headers, "Idempotency-Key": key})
    assert_problem(response, 422, "validation_failed")


# -- framework edges --------------------------------------------------------------------------


async def test_unknown_route_and_method_are_problem_details(client, alice):
    assert_problem(await client.get("/nope"), 404, "not_found")
    assert_problem(await client.put(alice.url(), json={}, headers=alice.headers), 405, "method_not_allowed")


# -- found in review --------------------------------------------------------------------------


async def test_if_match_with_non_ascii_digits_is_412_not_500(client, alice):
    task = await create(client, alice)
    headers = {**alice.headers, "If-Match": f'"{task["id"]}-\u00b2"'.encode("latin-1")}
    assert_problem(
        await client.patch(alice.url(f"/{task['id']}/complete"), headers=headers), 412, "precondition_failed"
    )


async def test_cursor_at_the_edge_of_time_is_422_not_500(client, alice):
    import base64

    import orjson

    options = {"sort": "-created_at", "status": "all", "q": None, "due_after": None, "due_before": None}
    payload = {
        "o": {**options, "has_due": None, "priority": None, "label": None},
        "k": "0001-01-01T00:00:00+14:00",
        "i": 1,
    }
    cursor = base64.urlsafe_b64encode(orjson.dumps(payload)).rstrip(b"=").decode()
    assert_problem(
        await client.get(alice.url(), params={"cursor": cursor}, headers=alice.headers), 422, "validation_failed"
    )


async def test_anonymous_oversized_body_is_401_before_413(client, alice):
    big = b'{"title": "' + b"x" * 20_000 + b'"}'
    assert_problem(
        await client.post(alice.url(), content=big, headers={"Content-Type": "application/json"}), 401, "missing_token"
    )
