"""service/health.py: /healthz, and /readyz, whose public answer says what is not ready but never
which host or what error (those go to the log)."""

from __future__ import annotations

import logging

import httpx

INTERNAL = ("issuer.test", "http://", "ConnectError", "10.9.8.7", "refused", "Error")


async def test_healthz_answers_without_a_token(client):
    response = await client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


async def test_readyz_is_ready_with_a_database_and_a_key(client):
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "problems": [], "keys": 1}


async def test_readyz_without_keys_names_no_host_nor_error_and_logs_them(jwks_router, start_app, caplog):
    caplog.set_level(logging.INFO, "service.health")
    (jwks_route,) = jwks_router.routes
    jwks_route.side_effect = httpx.ConnectError("connect to 10.9.8.7 refused")
    async with start_app() as client:
        response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "problems": ["signing keys: none usable"], "keys": 0}
    assert not [word for word in INTERNAL if word in response.text], response.text
    logged = [r.getMessage() for r in caplog.records if r.name == "service.health"]
    assert len(logged) == 1 and logged[0].startswith("not ready: signing keys: none usable (")
    assert "10.9.8.7" in logged[0] or "ConnectError" in logged[0], logged


async def test_readyz_with_the_database_failing_names_no_error_and_logs_it(client, monkeypatch, caplog):
    caplog.set_level(logging.INFO, "service.health")

    async def refuse(*_args: object) -> None:
        raise ConnectionRefusedError("connect to 10.9.8.7:5432 refused")

    monkeypatch.setattr(type(client.app.state.resources.pool), "fetchval", refuse)
    response = await client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "not ready", "problems": ["database: not answering"], "keys": 1}
    assert not [word for word in INTERNAL if word in response.text], response.text
    (logged,) = [r.getMessage() for r in caplog.records if r.name == "service.health"]
    assert logged == "not ready: database: ConnectionRefusedError: connect to 10.9.8.7:5432 refused"


async def test_readyz_logs_only_when_what_is_wrong_changes(client, monkeypatch, caplog):
    caplog.set_level(logging.INFO, "service.health")
    probe = client.app.state.readiness
    monkeypatch.setattr(probe, "RESULT_TTL_SECONDS", 0.0)  # every call probes

    async def refuse(*_args: object) -> None:
        raise ConnectionRefusedError("down")

    with monkeypatch.context() as patch:
        patch.setattr(type(client.app.state.resources.pool), "fetchval", refuse)
        for _ in range(3):
            assert (await client.get("/readyz")).status_code == 503
    for _ in range(3):
        assert (await client.get("/readyz")).status_code == 200
    messages = [r.getMessage() for r in caplog.records if r.name == "service.health"]
    assert messages == ["not ready: database: ConnectionRefusedError: down", "ready"]
