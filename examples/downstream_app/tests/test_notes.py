"""The notes app against a fake Better Auth, through the `better_auth_testing` pytest plugin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from notes_app.main import create_app

from service.testing import FakeBetterAuth, MovableClock, presets


@pytest.fixture
def client(
    fake_better_auth: FakeBetterAuth, better_auth_clock: MovableClock, better_auth_respx
) -> Iterator[TestClient]:
    # The app verifies on the same clock the fake issuer stamps tokens with.
    with TestClient(create_app(fake_better_auth.base_url, clock=better_auth_clock)) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_a_better_auth_token_identifies_the_user(client, fake_better_auth, better_auth_jwks_route):
    response = client.get("/me", headers=bearer(fake_better_auth.issue_token("user-1")))
    assert response.status_code == 200, response.text
    assert response.json() == {"user": "user-1", "anonymous": False, "organization": None, "plan": None}
    assert better_auth_jwks_route.call_count == 1


def test_a_token_past_its_expiry_is_refused_without_sleeping(client, fake_better_auth, better_auth_clock):
    token = fake_better_auth.issue_token("user-1")
    assert client.get("/me", headers=bearer(token)).status_code == 200
    better_auth_clock.advance(15 * 60 + 31)  # Better Auth's 15 minutes, plus the app's 30 s leeway
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 401 and "expired" in response.json()["detail"]


@pytest.mark.parametrize(
    ("claims", "status"),
    [
        pytest.param(presets.banned(role_name="admin"), 403, id="banned-admin"),
        pytest.param(presets.banned(role_name="admin", expires_at=0), 200, id="ban-expired"),
        pytest.param(presets.role("admin"), 200, id="admin"),
        pytest.param(presets.role("user,admin"), 200, id="several-roles"),
        pytest.param(presets.role("user"), 403, id="user"),
    ],
)
def test_the_admin_page_follows_the_admin_plugins_role_and_ban(client, fake_better_auth, claims, status):
    response = client.get("/admin/stats", headers=bearer(fake_better_auth.issue_token("user-1", claims=claims)))
    assert response.status_code == status, response.text


def test_anonymous_users_and_the_active_organization_are_read_from_the_token(client, fake_better_auth):
    claims = {**presets.anonymous(), **presets.organization("org-7")}
    response = client.get("/me", headers=bearer(fake_better_auth.issue_token("user-1", claims=claims)))
    assert response.status_code == 200
    assert response.json()["anonymous"] is True and response.json()["organization"] == "org-7"


def test_a_custom_define_payload_and_subject_reach_the_app(client, fake_better_auth):
    # jwt({ jwt: { definePayload: ({ user }) => ({ plan: "pro" }), getSubject: ({ user }) => user.email } })
    token = fake_better_auth.issue_token("user-1", payload={"plan": "pro"}, subject="ada@example.com")
    response = client.get("/me", headers=bearer(token))
    assert response.status_code == 200
    assert response.json()["user"] == "ada@example.com" and response.json()["plan"] == "pro"


@pytest.mark.parametrize(
    ("scope", "status"),
    [pytest.param("openid notes:read", 200, id="granted"), pytest.param("openid profile", 403, id="missing")],
)
def test_an_oauth_access_token_needs_the_notes_read_scope(client, fake_better_auth, scope, status):
    token = fake_better_auth.issue_access_token("user-1", scope, audience=fake_better_auth.base_url)
    response = client.get("/notes", headers=bearer(token))
    assert response.status_code == status, response.text


def test_the_session_cookie_cache_jwt_is_not_a_bearer_token(client, fake_better_auth):
    response = client.get("/me", headers=bearer(fake_better_auth.issue_session_cache_token("user-1")))
    assert response.status_code == 401 and "not a bearer token" in response.json()["detail"]


def test_a_rotated_key_is_fetched_once(client, fake_better_auth, better_auth_jwks_route):
    assert client.get("/me", headers=bearer(fake_better_auth.issue_token("user-1"))).status_code == 200
    fake_better_auth.rotate()
    assert client.get("/me", headers=bearer(fake_better_auth.issue_token("user-1"))).status_code == 200
    assert better_auth_jwks_route.call_count == 2


def test_a_rate_limited_jwks_is_a_503_not_a_401(client, fake_better_auth):
    fake_better_auth.refuse_jwks(retry_after_seconds=10)  # Better Auth's 429 with X-Retry-After
    response = client.get("/me", headers=bearer(fake_better_auth.issue_token("user-1")))
    assert response.status_code == 503


@pytest.mark.better_auth(alg="ES256")
def test_keys_are_fetched_over_a_real_port_too(better_auth_jwks_server, better_auth_clock):
    issuer = better_auth_jwks_server
    with TestClient(create_app(issuer.base_url, clock=better_auth_clock)) as client:
        response = client.get("/me", headers=bearer(issuer.issue_token("user-2")))
    assert response.status_code == 200 and response.json()["user"] == "user-2"
    assert issuer.jwks_requests == 1 and issuer.current_key.alg == "ES256"
