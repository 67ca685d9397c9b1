"""The test kit's tokens have Better Auth 1.7's exact shapes, and its real-port host answers as
Better Auth does, rate limiter included."""

from __future__ import annotations

import json
import time
from email.utils import parsedate_to_datetime

import httpx
import pytest
from joserfc import jws
from joserfc.jwk import KeySet

from service.testing import (
    ACCESS_TOKEN_LIFETIME_SECONDS,
    TOKEN_LIFETIME_SECONDS,
    FakeBetterAuth,
    MovableClock,
    presets,
    serve_jwks,
)
from support.better_auth import token_claims, token_header

pytestmark = pytest.mark.filterwarnings("ignore:EdDSA is deprecated")


def verified_claims(issuer: FakeBetterAuth, token: str) -> dict:
    """The payload, after checking the signature against the issuer's published JWKS."""
    return json.loads(
        jws.deserialize_compact(token, KeySet.import_key_set(issuer.jwks()), algorithms=["EdDSA"]).payload
    )


def test_the_clock_stands_still_until_the_test_moves_it():
    clock = MovableClock(1_000)
    issuer = FakeBetterAuth(clock=clock)
    first = token_claims(issuer.issue_token("u1"))
    clock.advance(60)
    second = token_claims(issuer.issue_token("u1"))
    assert (first["iat"], first["exp"]) == (1_000, 1_000 + TOKEN_LIFETIME_SECONDS)
    assert second["iat"] == 1_060 and clock() == 1_060.0
    clock.set(5)
    assert clock() == 5.0


def test_a_default_token_is_the_user_object_then_sub_exp_iss_aud_as_better_auth_orders_them():
    issuer = FakeBetterAuth("http://localhost:3000/")
    token = issuer.issue_token("u1")
    assert token_header(token) == {"alg": "EdDSA", "kid": issuer.current_key.kid}
    assert list(verified_claims(issuer, token)) == [
        *["iat", "name", "email", "emailVerified", "createdAt", "updatedAt", "id"],
        *["sub", "exp", "iss", "aud"],
    ]
    assert token_claims(token)["iss"] == token_claims(token)["aud"] == "http://localhost:3000"


def test_define_payload_replaces_the_user_object_and_get_subject_the_sub():
    issuer = FakeBetterAuth(clock=MovableClock(100))
    claims = token_claims(issuer.issue_token("u1", payload={"plan": "pro"}, subject="ada@example.com"))
    assert claims == {
        "iat": 100,
        "plan": "pro",
        "sub": "ada@example.com",
        "exp": 100 + TOKEN_LIFETIME_SECONDS,
        "iss": issuer.issuer,
        "aud": issuer.audience,
    }


@pytest.mark.parametrize(
    ("preset", "expected"),
    [
        pytest.param(
            presets.role(), {"role": "admin", "banned": False, "banReason": None, "banExpires": None}, id="role"
        ),
        pytest.param(
            presets.banned(expires_at=0),
            {"role": "user", "banned": True, "banReason": "Spamming", "banExpires": "1970-01-01T00:00:00.000Z"},
            id="banned-until",
        ),
        pytest.param(presets.banned(reason=None)["banExpires"], None, id="banned-forever"),
        pytest.param(
            presets.anonymous("x1"),
            {"name": "Anonymous", "email": "x1@anonymous.placeholder.invalid", "isAnonymous": True},
            id="anonymous",
        ),
        pytest.param(
            presets.organization("org-1", team_id="t-1"),
            {"activeOrganizationId": "org-1", "activeTeamId": "t-1"},
            id="organization",
        ),
    ],
)
def test_presets_carry_the_plugins_field_names_and_json_types(preset, expected):
    assert preset == expected


def test_an_access_token_is_at_jwt_with_scope_client_and_an_issuer_that_includes_the_base_path():
    issuer = FakeBetterAuth("http://localhost:3000", clock=MovableClock(50))
    token = issuer.issue_access_token("u1", ["openid", "tasks:read"], audience="http://localhost:8000", sid="s1")
    assert token_header(token) == {"typ": "at+jwt", "alg": "EdDSA", "kid": issuer.current_key.kid}
    claims = verified_claims(issuer, token)
    jti = claims.pop("jti")
    assert isinstance(jti, str) and len(jti) == 32
    assert claims == {
        "sub": "u1",
        "aud": "http://localhost:8000",
        "client_id": "tasks-test-client",
        "azp": "tasks-test-client",
        "scope": "openid tasks:read",
        "sid": "s1",
        "iss": "http://localhost:3000/api/auth",
        "iat": 50,
        "exp": 50 + ACCESS_TOKEN_LIFETIME_SECONDS,
    }


def test_the_session_cookie_cache_jwt_has_its_own_typ_and_audience():
    issuer = FakeBetterAuth()
    token = issuer.issue_session_cache_token("u1")
    claims = verified_claims(issuer, token)
    assert token_header(token)["typ"] == "better-auth.session-cache+jwt"
    assert claims["aud"] == "better-auth:session-cache" and claims["sub"] == "u1"
    assert claims["sid"] == claims["session"]["token"]


def test_the_real_port_host_serves_keys_with_a_date_then_the_rate_limiters_429():
    with serve_jwks("ES256") as issuer:
        served = httpx.get(issuer.jwks_url)
        issuer.refuse_jwks(retry_after_seconds=7)
        refused = httpx.get(issuer.jwks_url)
        issuer.refuse_jwks(None)
        again = httpx.get(issuer.jwks_url)
        missing = httpx.get(f"{issuer.base_url}/api/auth/other")
    assert served.status_code == 200 and served.json() == issuer.jwks()
    assert abs(parsedate_to_datetime(served.headers["date"]).timestamp() - time.time()) < 5
    assert "cache-control" not in served.headers
    assert refused.status_code == 429 and refused.headers["x-retry-after"] == "7"
    assert "retry-after" not in refused.headers
    assert again.status_code == 200 and missing.status_code == 404
    assert issuer.jwks_requests == 3


async def test_the_respx_route_answers_the_rate_limiters_429_too():
    import respx

    issuer = FakeBetterAuth()
    issuer.refuse_jwks(retry_after_seconds=3)
    with respx.mock(assert_all_called=True) as router:
        issuer.mock(router)
        async with httpx.AsyncClient() as http:
            response = await http.get(issuer.jwks_url)
    assert response.status_code == 429 and response.headers["x-retry-after"] == "3"
    assert issuer.jwks_requests == 1
