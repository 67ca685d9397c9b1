"""Every way Better Auth 1.7 issues tokens, against the real packages (issuer/package-lock.json):
OAuth access tokens from @better-auth/oauth-provider obtained through the authorization-code flow
with PKCE, and their scopes; sign-out and bans, with SESSION_CHECK off and on (the sessionStatus
plugin in issuer/session-status.mjs, `sid` added by definePayload)."""

from __future__ import annotations

import asyncio

import pytest

from support.app import assert_problem
from support.better_auth import IssuerConfig, bearer, issuer_client, sign_up, token_claims, token_header
from support.oauth_flow import authorize_and_get_token, ban, register_client, sign_out

RESOURCE = "https://tasks.example.test"  # this service's public URL: the `resource` and the tokens' aud
SECRET = "session-status-secret-for-the-interop-tests"
CACHE_SECONDS = 1.0
OAUTH_ON = {"OAUTH_ACCESS_TOKENS": "true", "OAUTH_RESOURCE": RESOURCE}
SESSION_CHECK_ON = {
    "SESSION_CHECK": "http",
    "SESSION_CHECK_SECRET": SECRET,
    "SESSION_CHECK_CACHE_SECONDS": str(CACHE_SECONDS),
}


@pytest.fixture(scope="module")
def rich_issuer(node_issuer_installed, tmp_path_factory):
    """One Better Auth with the OAuth provider, the admin plugin and the sessionStatus plugin."""
    from support.better_auth import running_issuers

    config = IssuerConfig(alg="EdDSA", oauth_resource=RESOURCE, session_status_secret=SECRET, admin=True)
    with running_issuers(node_issuer_installed, {"rich": config}, tmp_path_factory.mktemp("rich")) as issuers:
        yield issuers["rich"]


# -- OAuth access tokens ---------------------------------------------------------------------------


async def test_an_access_token_from_the_real_oauth_provider_is_held_to_its_scopes(rich_issuer, start_service):
    async with issuer_client(rich_issuer) as http:
        alice = await sign_up(http, "Alice")
        client = await register_client(alice, "tasks:read tasks:write")
        reader = await authorize_and_get_token(alice, client, "tasks:read", RESOURCE)
        both = await authorize_and_get_token(alice, client, "tasks:read tasks:write", RESOURCE)
        session_jwt = await alice.token()

    header, claims = token_header(reader), token_claims(reader)
    assert header["typ"] == "at+jwt"
    assert claims["iss"] == f"{rich_issuer.base_url}/api/auth"  # the basePath, unlike /api/auth/token's
    assert claims["aud"] == RESOURCE and claims["scope"] == "tasks:read" and claims["sub"] == alice.id
    assert claims["client_id"] == claims["azp"] == client.client_id

    async with start_service(rich_issuer, **OAUTH_ON) as service:
        response = await service.get(alice.url(), headers=bearer(reader))
        assert response.status_code == 200, response.text
        response = await service.post(alice.url(), json={"title": "via OAuth"}, headers=bearer(reader))
        assert_problem(response, 403, "insufficient_scope")
        assert response.headers["www-authenticate"].startswith('Bearer error="insufficient_scope", scope="tasks:write"')

        response = await service.post(alice.url(), json={"title": "via OAuth"}, headers=bearer(both))
        assert response.status_code == 201, response.text
        response = await service.get(alice.url(), headers=bearer(both))
        assert [task["title"] for task in response.json()] == ["via OAuth"]
        # /api/auth/token's JWT carries no scope: the user's full access, as before.
        response = await service.post(alice.url(), json={"title": "via session"}, headers=bearer(session_jwt))
        assert response.status_code == 201, response.text

        metadata = (await service.get("/.well-known/oauth-protected-resource")).json()
        assert metadata["resource"] == RESOURCE and "tasks:write" in metadata["scopes_supported"]
        (authorization_server,) = metadata["authorization_servers"]
    # What the metadata names is where Better Auth's OAuth provider publishes its own metadata.
    async with issuer_client(rich_issuer) as http:
        response = await http.get("/api/auth/.well-known/oauth-authorization-server")
        assert response.status_code == 200, response.text
        assert response.json()["issuer"] == authorization_server


async def test_access_tokens_are_refused_while_oauth_is_not_enabled(rich_issuer, start_service):
    async with issuer_client(rich_issuer) as http:
        alice = await sign_up(http, "Alice")
        client = await register_client(alice, "tasks:read tasks:write")
        token = await authorize_and_get_token(alice, client, "tasks:read tasks:write", RESOURCE)
    async with start_service(rich_issuer) as service:
        problem = assert_problem(await service.get(alice.url(), headers=bearer(token)), 401, "invalid_token")
        assert "at+jwt" in problem["detail"]


# -- sign-out and bans -------------------------------------------------------------------------------


async def wait_for_refusal(service, user, token: str, code: str, status: int) -> float:
    """Seconds until the service refuses the token (bounded by a few cache times)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while True:
        response = await service.get(user.url(), headers=bearer(token))
        if response.status_code == status:
            assert_problem(response, status, code)
            return loop.time() - started
        assert response.status_code == 200, response.text
        assert loop.time() - started < 5 * CACHE_SECONDS + 2, "still accepted long after the cache time"
        await asyncio.sleep(0.05)


async def test_after_sign_out_the_token_passes_offline_and_is_refused_with_the_session_check(
    rich_issuer, start_service
):
    async with issuer_client(rich_issuer) as http:
        alice = await sign_up(http, "Alice")
        token = await alice.token()
        assert token_claims(token)["sid"]  # definePayload's `sid`
        async with (
            start_service(rich_issuer, **SESSION_CHECK_ON) as checked,
            start_service(rich_issuer) as offline,
        ):
            for service in (checked, offline):
                assert (await service.get(alice.url(), headers=bearer(token))).status_code == 200
            await sign_out(alice)
            seconds = await wait_for_refusal(checked, alice, token, "invalid_token", 401)
            assert seconds <= CACHE_SECONDS + 1  # within the cache time (plus a poll)
            assert (await offline.get(alice.url(), headers=bearer(token))).status_code == 200  # until exp
            counts = checked.app.state.resources.verifier.session_check_counts()
            assert counts["ended"] >= 1 and counts["asked"] >= 2


async def test_a_ban_ends_the_sessions_and_the_session_check_refuses_the_token(rich_issuer, start_service):
    async with issuer_client(rich_issuer) as http:
        admin = await sign_up(http, "Admin", email_prefix="admin-")
        mallory = await sign_up(http, "Mallory")
        token = await mallory.token()
        assert token_claims(token)["banned"] is False  # the admin plugin's claim, as of issue time
        async with (
            start_service(rich_issuer, **SESSION_CHECK_ON) as checked,
            start_service(rich_issuer) as offline,
        ):
            assert (await checked.get(mallory.url(), headers=bearer(token))).status_code == 200
            await ban(admin, mallory)
            assert (
                await mallory.http.get("/api/auth/token", headers={"Cookie": mallory.session_cookie})
            ).status_code == 401
            await wait_for_refusal(checked, mallory, token, "invalid_token", 401)
            assert (await offline.get(mallory.url(), headers=bearer(token))).status_code == 200  # until exp


@pytest.mark.parametrize(
    "on_error, status",
    [pytest.param("closed", 503, id="fail-closed"), pytest.param("open", 200, id="fail-open")],
)
async def test_a_session_check_better_auth_refuses_fails_closed_or_open_as_configured(
    rich_issuer, start_service, on_error, status
):
    async with issuer_client(rich_issuer) as http:
        alice = await sign_up(http, "Alice")
        token = await alice.token()
    wrong = {
        **SESSION_CHECK_ON,
        "SESSION_CHECK_SECRET": "not-the-secret-better-auth-knows",
        "SESSION_CHECK_ON_ERROR": on_error,
    }
    async with start_service(rich_issuer, **wrong) as service:
        response = await service.get(alice.url(), headers=bearer(token))
        assert response.status_code == status, response.text
        if status == 503:
            assert_problem(response, 503, "session_check_unavailable")
            assert "retry-after" in response.headers
