"""Request ids, one structured log line per request (never the token), metrics, CORS, proxies."""

from __future__ import annotations

import json
import logging

import pytest

from service.observability import JSONFormatter, client_address, hash_user, parse_networks
from support.app import create


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
