"""What a Bearer token must be, beyond its signature: one of the accepted issuers and audiences, a
bounded lifetime, a token type meant for APIs, a user who is not banned; OAuth access tokens
(typ at+jwt) only when enabled, and then only within their scopes. Through the HTTP API, with
real keys and signatures (service.testing), a respx-served JWKS and the real PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx
import pytest

from service.auth.bans import check_ban
from service.errors import UserBanned
from service.testing import FakeBetterAuth
from support.app import assert_problem, new_user_id

ORIGIN = "http://issuer.test:3000"  # support.app.ISSUER_URL: what /api/auth/token puts in iss and aud
BASE_PATH_ISSUER = f"{ORIGIN}/api/auth"  # what the OAuth provider puts in iss
INTERNAL = "http://auth.internal:3000"
RESOURCE = "https://tasks.example.test"  # the `resource` an OAuth client asks for: the tokens' aud
MAX_LIFETIME = 3600
OAUTH = dict(
    oauth_access_tokens=True,
    oauth_resource=RESOURCE,
    jwt_issuer=f"{ORIGIN},{BASE_PATH_ISSUER}",
    jwt_audience=f"{ORIGIN},{RESOURCE}",
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def tasks_url(user_id: str) -> str:
    return f"/api/{user_id}/tasks"


def access_token(issuer: FakeBetterAuth, user_id: str, scope: str, /, **claims: object) -> str:
    """An access token as @better-auth/oauth-provider signs it (see tests/interop for the real one)."""
    now = int(time.time())
    body: dict[str, object] = {
        "sub": user_id,
        "aud": RESOURCE,
        "client_id": "client-abc",
        "azp": "client-abc",
        "scope": scope,
        "sid": "session-1",
        "iss": BASE_PATH_ISSUER,
        "iat": now,
        "exp": now + 3600,
        "jti": "j" * 32,
        **claims,
    }
    return issuer.issue_token(user_id, claims=body, header={"typ": "at+jwt"})


def outcome(client: httpx.AsyncClient, reason: str) -> int:
    return client.app.state.resources.verifier.outcomes[reason]  # type: ignore[attr-defined]


# -- issuers, audiences, lifetime --------------------------------------------------------------


@pytest.mark.parametrize(
    "claims, accepted",
    [
        pytest.param({"iss": ORIGIN, "aud": ORIGIN}, True, id="origin"),
        pytest.param({"iss": INTERNAL, "aud": ORIGIN}, True, id="internal-issuer"),
        pytest.param({"iss": ORIGIN, "aud": RESOURCE}, True, id="second-audience"),
        pytest.param({"iss": INTERNAL, "aud": ["http://other.test", RESOURCE]}, True, id="audience-list-holds-one"),
        pytest.param({"iss": f"{ORIGIN}/", "aud": ORIGIN}, False, id="issuer-with-trailing-slash"),
        pytest.param({"iss": BASE_PATH_ISSUER, "aud": ORIGIN}, False, id="issuer-not-listed"),
        pytest.param({"iss": ORIGIN, "aud": ["http://other.test"]}, False, id="no-listed-audience"),
        pytest.param({"iss": [ORIGIN], "aud": ORIGIN}, False, id="issuer-as-list"),
    ],
)
async def test_any_listed_issuer_and_audience_is_accepted_and_nothing_else(start_app, issuer, claims, accepted):
    user = new_user_id()
    async with start_app(jwt_issuer=f"{ORIGIN}, {INTERNAL}", jwt_audience=f"{ORIGIN},{RESOURCE}") as client:
        response = await client.get(tasks_url(user), headers=bearer(issuer.issue_token(user, claims=claims)))
        if accepted:
            assert response.status_code == 200, response.text
        else:
            problem = assert_problem(response, 401, "invalid_token")
            assert "'iss'" in problem["detail"] or "'aud'" in problem["detail"], problem


@pytest.mark.parametrize(
    "lifetime, accepted",
    [
        pytest.param(15 * 60, True, id="better-auth-default-15-minutes"),
        pytest.param(MAX_LIFETIME, True, id="at-the-ceiling"),
        pytest.param(MAX_LIFETIME + 1, False, id="one-second-over"),
        pytest.param(30 * 86400, False, id="thirty-days"),
    ],
)
async def test_a_lifetime_above_the_ceiling_is_refused(start_app, issuer, lifetime, accepted):
    user = new_user_id()
    now = int(time.time())
    token = issuer.issue_token(user, claims={"iat": now, "exp": now + lifetime})
    async with start_app(jwt_max_lifetime_seconds=MAX_LIFETIME) as client:
        response = await client.get(tasks_url(user), headers=bearer(token))
        if accepted:
            assert response.status_code == 200, response.text
        else:
            problem = assert_problem(response, 401, "invalid_token")
            assert "lifetime" in problem["detail"]
            assert outcome(client, "lifetime_too_long") == 1


# -- token types -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typ, fragment",
    [
        pytest.param("better-auth.session-cache+jwt", "cookie-cache", id="session-cookie-cache"),
        pytest.param("at+jwt", "at+jwt", id="oauth-access-token-when-not-enabled"),
        pytest.param("application/at+jwt", "at+jwt", id="oauth-media-type-when-not-enabled"),
        pytest.param("JOSE", "not accepted", id="jose"),
        pytest.param("dpop+jwt", "not accepted", id="dpop-proof"),
        pytest.param("logout+jwt", "not accepted", id="logout-token"),
        pytest.param(7, "string", id="number"),
    ],
)
async def test_tokens_of_other_types_signed_with_the_same_keys_are_refused(client, issuer, typ, fragment):
    user = new_user_id()
    token = issuer.issue_token(user, header={"typ": typ})
    problem = assert_problem(await client.get(tasks_url(user), headers=bearer(token)), 401, "invalid_token")
    assert fragment in problem["detail"], problem
    assert outcome(client, "type_refused") == 1


@pytest.mark.parametrize("typ", ["JWT", "jwt", "application/jwt"])
async def test_a_plain_jwt_typ_is_a_session_jwt(client, issuer, typ):
    user = new_user_id()
    response = await client.get(tasks_url(user), headers=bearer(issuer.issue_token(user, header={"typ": typ})))
    assert response.status_code == 200, response.text


async def test_a_session_cookie_cache_token_is_refused_even_with_our_audience(client, issuer):
    user = new_user_id()
    token = issuer.issue_token(user, header={"typ": "better-auth.session-cache+jwt"})  # iss/aud ours
    problem = assert_problem(await client.get(tasks_url(user), headers=bearer(token)), 401, "invalid_token")
    assert "cookie-cache" in problem["detail"]


# -- OAuth access tokens and scopes --------------------------------------------------------------

ROUTES = [
    pytest.param("GET", "", "tasks:read", id="list"),
    pytest.param("HEAD", "", "tasks:read", id="head"),
    pytest.param("POST", "", "tasks:write", id="create"),
    pytest.param("PATCH", "/1", "tasks:write", id="patch"),
    pytest.param("PUT", "/1", "tasks:write", id="put"),
    pytest.param("DELETE", "/1", "tasks:write", id="delete"),
]


@pytest.mark.parametrize("method, suffix, needed", ROUTES)
async def test_each_method_needs_its_scope_and_a_missing_one_is_403_insufficient_scope(
    start_app, issuer, method, suffix, needed
):
    user = new_user_id()
    other = "tasks:write" if needed == "tasks:read" else "tasks:read"
    async with start_app(**OAUTH) as client:
        token = access_token(issuer, user, f"openid {other}")
        response = await client.request(method, tasks_url(user) + suffix, headers=bearer(token), json={"title": "t"})
        assert response.status_code == 403
        if method != "HEAD":
            assert_problem(response, 403, "insufficient_scope")
        challenge = response.headers["www-authenticate"]
        assert challenge.startswith(f'Bearer error="insufficient_scope", scope="{needed}"'), challenge
        assert outcome(client, "insufficient_scope") == 1

        token = access_token(issuer, user, needed)
        response = await client.request(method, tasks_url(user) + suffix, headers=bearer(token), json={"title": "t"})
        assert response.status_code not in (401, 403), response.text  # past the scope check


async def test_read_scope_reads_write_scope_writes_and_both_do_both(start_app, issuer):
    user = new_user_id()
    async with start_app(**OAUTH) as client:
        reader = bearer(access_token(issuer, user, "tasks:read"))
        writer = bearer(access_token(issuer, user, "tasks:write"))
        both = bearer(access_token(issuer, user, "tasks:read tasks:write offline_access"))
        assert (await client.post(tasks_url(user), json={"title": "by writer"}, headers=writer)).status_code == 201
        assert_problem(await client.get(tasks_url(user), headers=writer), 403, "insufficient_scope")
        assert_problem(
            await client.post(tasks_url(user), json={"title": "x"}, headers=reader), 403, "insufficient_scope"
        )
        response = await client.get(tasks_url(user), headers=reader)
        assert response.status_code == 200 and [t["title"] for t in response.json()] == ["by writer"]
        assert (await client.post(tasks_url(user), json={"title": "by both"}, headers=both)).status_code == 201
        assert len((await client.get(tasks_url(user), headers=both)).json()) == 2
        # A session JWT from /api/auth/token has no scope and keeps its user's full access.
        session_jwt = bearer(issuer.issue_token(user))
        assert (await client.post(tasks_url(user), json={"title": "plain"}, headers=session_jwt)).status_code == 201


async def test_an_access_token_still_only_reaches_its_own_user(start_app, issuer):
    user, other = new_user_id(), new_user_id()
    async with start_app(**OAUTH) as client:
        token = access_token(issuer, user, "tasks:read tasks:write")
        assert_problem(await client.get(tasks_url(other), headers=bearer(token)), 403, "forbidden")


@pytest.mark.parametrize(
    "claims, fragment",
    [
        pytest.param({"client_id": None}, "client_id", id="no-client-id"),
        pytest.param({"client_id": 5}, "client_id", id="numeric-client-id"),
        pytest.param({"sub": "client-abc"}, "client credentials", id="client-credentials-token"),
        pytest.param({"scope": ["tasks:read"]}, "scope", id="scope-as-list"),
        pytest.param({"iss": ORIGIN + "/api/other"}, "iss", id="foreign-issuer"),
        pytest.param({"aud": "https://other-api.example.test"}, "aud", id="token-for-another-resource"),
    ],
)
async def test_malformed_access_tokens_are_401(start_app, issuer, claims, fragment):
    user = new_user_id()
    async with start_app(**OAUTH) as client:
        token = access_token(issuer, user, "tasks:read", **claims)
        problem = assert_problem(await client.get(tasks_url(user), headers=bearer(token)), 401, "invalid_token")
        assert fragment in problem["detail"], problem


async def test_protected_resource_metadata_names_better_auth_and_the_scopes(start_app):
    async with start_app(**OAUTH, oauth_authorization_server=BASE_PATH_ISSUER) as client:
        response = await client.get("/.well-known/oauth-protected-resource")
        assert response.status_code == 200 and response.headers["content-type"] == "application/json"
        assert response.json() == {
            "resource": RESOURCE,
            "authorization_servers": [BASE_PATH_ISSUER],
            "scopes_supported": ["tasks:read", "tasks:write"],
            "bearer_methods_supported": ["header"],
            "resource_name": "Tasks service",
        }


async def test_protected_resource_metadata_is_404_while_oauth_is_off(client):
    assert_problem(await client.get("/.well-known/oauth-protected-resource"), 404, "not_found")


async def test_a_refused_request_learns_where_the_metadata_is_from_the_challenge(start_app, issuer):
    user = new_user_id()
    async with start_app(**OAUTH) as client:
        metadata = 'resource_metadata="https://tasks.example.test/.well-known/oauth-protected-resource"'
        missing = await client.get(tasks_url(user))
        assert missing.status_code == 401 and missing.headers["www-authenticate"].endswith(metadata)
        read_only = access_token(issuer, user, "tasks:read")
        refused = await client.post(tasks_url(user), json={"title": "x"}, headers=bearer(read_only))
        challenge = refused.headers["www-authenticate"]
        assert refused.status_code == 403 and 'error="insufficient_scope"' in challenge and challenge.endswith(metadata)


async def test_a_resource_with_a_path_points_clients_to_the_metadata_at_its_origin(start_app):
    async with start_app(**{**OAUTH, "oauth_resource": f"{RESOURCE}/tasks"}) as client:
        unauthenticated = await client.get(tasks_url(new_user_id()))
        assert (
            f'resource_metadata="{RESOURCE}/.well-known/oauth-protected-resource"'
            in unauthenticated.headers["www-authenticate"]
        )
        response = await client.get("/.well-known/oauth-protected-resource")
        assert response.status_code == 200 and response.json()["resource"] == f"{RESOURCE}/tasks"


async def test_without_oauth_the_challenge_names_no_metadata(client):
    response = await client.get(tasks_url(new_user_id()))
    assert response.headers["www-authenticate"] == 'Bearer realm="tasks"'


# -- bans (the admin plugin's claims) -------------------------------------------------------------


def iso(seconds_from_now: float) -> str:
    stamp = datetime.fromtimestamp(time.time() + seconds_from_now, UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.mark.parametrize(
    "claims, banned",
    [
        pytest.param({"role": "user", "banned": False, "banExpires": None}, False, id="not-banned"),
        pytest.param({"role": "user", "banned": None}, False, id="banned-null"),
        pytest.param({"banned": True, "banExpires": None}, True, id="banned-for-good"),
        pytest.param({"banned": True}, True, id="banned-without-expiry-claim"),
        pytest.param({"banned": True, "banExpires": iso(3600)}, True, id="ban-expires-later"),
        pytest.param({"banned": True, "banExpires": iso(-60)}, False, id="ban-expired"),
        pytest.param({"banned": True, "banExpires": "next tuesday"}, True, id="unreadable-expiry-fails-closed"),
        pytest.param({"banned": "yes"}, True, id="odd-banned-value-fails-closed"),
    ],
)
async def test_a_token_saying_its_user_is_banned_is_403_until_the_ban_expires(client, issuer, claims, banned):
    user = new_user_id()
    response = await client.get(tasks_url(user), headers=bearer(issuer.issue_token(user, claims=claims)))
    if banned:
        assert_problem(response, 403, "user_banned")
        assert outcome(client, "user_banned") == 1
    else:
        assert response.status_code == 200, response.text


async def test_a_banned_token_is_not_cached_so_it_passes_once_the_ban_has_expired(client, issuer):
    user = new_user_id()
    token = issuer.issue_token(user, claims={"banned": True, "banExpires": iso(3600)})
    for _ in range(2):
        assert_problem(await client.get(tasks_url(user), headers=bearer(token)), 403, "user_banned")
    assert client.app.state.resources.verifier.cache_size == 0


@pytest.mark.parametrize(
    "ban_expires, now, banned",
    [
        pytest.param("2027-01-01T00:00:00.000Z", datetime(2026, 12, 31, tzinfo=UTC).timestamp(), True, id="iso-ahead"),
        pytest.param("2027-01-01T00:00:00.000Z", datetime(2027, 1, 1, tzinfo=UTC).timestamp(), False, id="iso-at"),
        pytest.param("2027-01-01T00:00:00", 0.0, True, id="iso-without-zone-fails-closed"),
        pytest.param(1_800_000_100, 1_800_000_000.0, True, id="seconds-ahead"),
        pytest.param(1_800_000_000_000, 1_800_000_001.0, False, id="milliseconds-past"),
        pytest.param(float("inf"), 1_800_000_000.0, True, id="infinity-fails-closed"),
    ],
)
def test_ban_expiry_is_read_as_iso_or_numeric_time(ban_expires, now, banned):
    if banned:
        with pytest.raises(UserBanned):
            check_ban({"banned": True, "banExpires": ban_expires}, now)
    else:
        check_ban({"banned": True, "banExpires": ban_expires}, now)
