"""Request ids on every answer (a 500 and middleware answers too), one structured log line per
request (never the token), request metrics, CORS, proxies."""

from __future__ import annotations

import json
import logging

import pytest

from service.observability import JSONFormatter, client_address, hash_user, parse_networks
from support.app import assert_problem, create


async def test_request_id_is_echoed_when_sane_and_generated_otherwise(client):
    given = await client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    for bad in ("", "has space", "x" * 200):
        generated = (await client.get("/healthz", headers={"X-Request-ID": bad})).headers["x-request-id"]
        assert generated != bad and len(generated) == 32
    assert (await client.get("/healthz")).headers["x-request-id"] != (await client.get("/healthz")).headers[
        "x-request-id"
    ]


async def test_one_json_log_line_per_request_with_hashed_user_and_no_token(client, alice, caplog):
    caplog.set_level(logging.INFO, "service.request")
    task = await create(client, alice)
    await client.get(alice.url(f"/{task['id']}"), headers={**alice.headers, "X-Request-ID": "req-1"})
    records = [r for r in caplog.records if r.name == "service.request"]
    assert len(records) == 2
    line = JSONFormatter().format(records[-1])
    entry = json.loads(line)
    assert entry["request_id"] == "req-1" and entry["method"] == "GET" and entry["status"] == 200
    assert entry["route"] == "/api/{user_id}/tasks/{task_id}"
    assert entry["user"] == hash_user(alice.id) and alice.id not in line
    assert alice.token not in line and alice.token.split(".")[2] not in line
    assert entry["duration_ms"] >= 0


async def test_metrics_count_requests_by_route_and_status(client, alice):
    await create(client, alice)
    await client.get(alice.url("/999999999"), headers=alice.headers)
    await client.get(alice.url())  # 401 before routing
    text = (await client.get("/metrics")).text
    assert 'http_requests_total{method="POST",route="/api/{user_id}/tasks",status="201"} 1' in text
    assert 'http_requests_total{method="GET",route="/api/{user_id}/tasks/{task_id}",status="404"} 1' in text
    assert 'http_requests_total{method="GET",route="unrouted",status="401"} 1' in text
    assert 'http_request_duration_seconds_count{route="/api/{user_id}/tasks"} 1' in text
    assert (
        'token_verifications_total{outcome="ok"}' in text and 'token_verifications_total{outcome="missing"} 1' in text
    )


async def test_cors_only_for_configured_origins_and_preflight_needs_no_token(start_app, alice):
    async with start_app(cors_origins=("https://app.example.com",)) as client:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        allowed = await client.options(alice.url(), headers={"Origin": "https://app.example.com", **preflight})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
        denied = await client.options(alice.url(), headers={"Origin": "https://evil.example", **preflight})
        assert "access-control-allow-origin" not in denied.headers
        real = await client.get(alice.url(), headers={"Origin": "https://app.example.com", **alice.headers})
        assert real.status_code == 200 and "ETag" in real.headers["access-control-expose-headers"]


async def test_no_cors_headers_by_default(client, alice):
    response = await client.get(alice.url(), headers={"Origin": "https://app.example.com", **alice.headers})
    assert "access-control-allow-origin" not in response.headers


@pytest.mark.parametrize(
    "peer, forwarded, trusted, expected",
    [
        pytest.param("203.0.113.9", "1.2.3.4", "", "203.0.113.9", id="no-trusted-proxies-ignores-header"),
        pytest.param("203.0.113.9", "1.2.3.4", "10.0.0.0/8", "203.0.113.9", id="untrusted-peer-ignores-header"),
        pytest.param("10.0.0.5", "1.2.3.4", "10.0.0.0/8", "1.2.3.4", id="trusted-peer"),
        pytest.param("10.0.0.5", "6.6.6.6, 1.2.3.4, 10.0.0.7", "10.0.0.0/8", "1.2.3.4", id="spoofed-left-hop-ignored"),
    ],
)
def test_client_address_trusts_x_forwarded_for_only_from_trusted_proxies(peer, forwarded, trusted, expected):
    scope = {"client": (peer, 5000), "headers": [(b"x-forwarded-for", forwarded.encode())]}
    assert client_address(scope, parse_networks(trusted)) == expected


async def test_unknown_methods_share_one_metrics_label(client):
    for i in range(5):
        await client.request(f"X{i}", "/healthz")
    text = (await client.get("/metrics")).text
    assert 'method="other"' in text and 'method="X0"' not in text


async def broken_route() -> None:
    raise RuntimeError("connection to 10.1.2.3 refused")  # internals that must stay in the log


@pytest.fixture
async def client_with_a_broken_route(client):
    client.app.add_api_route("/broken", broken_route, methods=["GET"])
    return client


async def test_an_unhandled_error_is_a_500_problem_with_the_request_id(client_with_a_broken_route, caplog):
    client = client_with_a_broken_route
    caplog.set_level(logging.INFO)
    response = await client.get("/broken", headers={"X-Request-ID": "req-500"})
    body = assert_problem(response, 500, "internal_error")
    assert response.headers["x-request-id"] == "req-500"
    assert "10.1.2.3" not in response.text and "RuntimeError" not in response.text, body
    logged = [r for r in caplog.records if r.getMessage() == "unhandled error"]
    assert len(logged) == 1 and logged[0].exc_info and getattr(logged[0], "request_id", None) == "req-500"
    line = next(r for r in caplog.records if r.name == "service.request")
    assert (line.status, line.request_id, line.route) == (500, "req-500", "/broken")  # type: ignore[attr-defined]
    text = (await client.get("/metrics")).text
    assert 'http_requests_total{method="GET",route="/broken",status="500"} 1.0' in text


async def test_an_unhandled_error_gets_a_generated_request_id_too(client_with_a_broken_route):
    response = await client_with_a_broken_route.get("/broken")
    assert_problem(response, 500, "internal_error")
    assert len(response.headers["x-request-id"]) == 32


@pytest.mark.parametrize(
    "request_args, status, code",
    [
        pytest.param({"method": "GET", "headers": {}}, 401, "missing_token", id="bearer-check-no-token"),
        pytest.param(
            {"method": "GET", "headers": {"Authorization": "Bearer not.a.token"}}, 401, "invalid_token", id="bad-token"
        ),
        pytest.param(
            {"method": "POST", "content": b"x" * 20_000, "headers": {"Content-Type": "application/json"}},
            413,
            "payload_too_large",
            id="body-limit",
        ),
    ],
)
async def test_answers_rendered_by_middleware_carry_the_request_id(client, alice, request_args, status, code):
    headers = {**(alice.headers if status == 413 else {}), **request_args["headers"], "X-Request-ID": "req-mw"}
    args = {k: v for k, v in request_args.items() if k != "headers"}
    response = await client.request(url=alice.url(), headers=headers, **args)
    assert_problem(response, status, code)
    assert response.headers["x-request-id"] == "req-mw"


async def test_cors_preflight_answer_carries_the_request_id(start_app, alice):
    async with start_app(cors_origins=("https://app.example.com",)) as client:
        preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}
        response = await client.options(alice.url(), headers={**preflight, "X-Request-ID": "req-cors"})
        assert response.status_code == 200 and response.headers["x-request-id"] == "req-cors"
