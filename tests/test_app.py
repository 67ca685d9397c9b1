"""The application as a whole: HEAD on every GET route, no redirects for trailing slashes, and
the one typed way to its resources."""

from __future__ import annotations

import gc
import re
from urllib.parse import quote

import pytest
from starlette.routing import Route

from service.resources import Resources, app_resources
from support.app import assert_problem, create

# Bodies that change from one call to the next, so their length does too.
VARYING_BODIES = {"/metrics"}


def get_routes(app) -> list[str]:
    """The path template of every route that answers GET."""
    return sorted({route.path for route in app.routes if isinstance(route, Route) and "GET" in (route.methods or ())})


def concrete(path: str, user_id: str, task_id: int) -> str:
    return path.format(user_id=quote(user_id, safe=""), task_id=task_id)


def comparable(headers, path: str) -> dict[str, str]:
    ignored = {"x-request-id"} | ({"content-length"} if path in VARYING_BODIES else set())
    return {name: value for name, value in headers.items() if name not in ignored}


async def test_every_get_route_answers_head_with_the_same_headers_and_no_body(client, alice):
    task = await create(client, alice)
    paths = get_routes(client.app)
    assert {"/healthz", "/readyz", "/metrics", "/api/{user_id}/tasks", "/api/{user_id}/tasks/{task_id}"} <= set(paths)
    for path in paths:
        if path.endswith("/events"):  # a stream: its GET never ends in-process; HEAD is tested in tests/sync
            continue
        url = concrete(path, alice.id, task["id"])
        got = await client.get(url, headers=alice.headers)
        head = await client.head(url, headers=alice.headers)
        assert (head.status_code, head.content) == (got.status_code, b""), path
        # 503: /readyz may be not ready; 404: the OAuth metadata while OAuth access tokens are off.
        assert got.status_code in (200, 503, 404 if "oauth" in path else 200) and got.content, path
        assert comparable(head.headers, path) == comparable(got.headers, path), path
        assert head.headers["x-request-id"]


@pytest.mark.parametrize(
    "url, headers, status, code",
    [
        pytest.param("/api/{user}/tasks/9223372036854775000", True, 404, "task_not_found", id="missing-task"),
        pytest.param("/api/{user}/tasks?limit=0", True, 422, "validation_failed", id="bad-parameter"),
        pytest.param("/api/{user}/tasks", False, 401, "missing_token", id="no-token"),
        pytest.param("/nope", False, 404, "not_found", id="no-route"),
    ],
)
async def test_head_of_an_error_is_the_errors_headers_without_a_body(client, alice, url, headers, status, code):
    url = url.format(user=quote(alice.id, safe=""))
    sent = alice.headers if headers else {}
    got = await client.get(url, headers=sent)
    head = await client.head(url, headers=sent)
    assert_problem(got, status, code)
    assert head.status_code == status and head.content == b""
    assert comparable(head.headers, url) == comparable(got.headers, url)


HEAD_COUNT = re.compile(
    r'^http_requests_total\{method="HEAD",route="/api/\{user_id\}/tasks",status="200"\} (\S+)$', re.M
)


async def head_count(client) -> float:
    found = HEAD_COUNT.search((await client.get("/metrics")).text)
    return float(found.group(1)) if found else 0.0


async def test_head_is_counted_as_head_on_its_route(client, alice):
    before = await head_count(client)
    await client.head(alice.url(), headers=alice.headers)
    assert await head_count(client) == before + 1


async def test_head_is_not_accepted_where_get_is_not(client, alice):
    task = await create(client, alice)
    response = await client.head(alice.url(f"/{task['id']}/complete"), headers=alice.headers)
    assert response.status_code == 405 and response.content == b""


def all_paths(app) -> list[str]:
    return sorted({route.path for route in app.routes if isinstance(route, Route)})


async def test_a_trailing_slash_is_404_and_never_a_redirect_from_the_host_header(client, alice):
    task = await create(client, alice)
    for path in all_paths(client.app):
        url = concrete(path, alice.id, task["id"]) + "/"
        for method in ("GET", "POST", "DELETE"):
            response = await client.request(method, url, headers={**alice.headers, "Host": "evil.example"})
            assert_problem(response, 404, "not_found")
            assert "location" not in response.headers, (method, url)


async def test_resources_are_reached_through_one_typed_accessor(client):
    resources = app_resources(client.app)
    assert isinstance(resources, Resources)
    with pytest.raises(AttributeError):  # frozen: nothing swaps the pool under running requests
        resources.pool = None  # type: ignore[misc]


async def test_what_start_up_made_is_frozen_out_of_the_collector_while_serving(start_app):
    assert gc.get_freeze_count() == 0
    async with start_app() as client:
        assert (await client.get("/healthz")).status_code == 200
        frozen = gc.get_freeze_count()
        assert frozen > 10_000  # the app, its routes and the libraries' tables
    assert gc.get_freeze_count() == 0  # given back at shutdown: nothing outlives the app
