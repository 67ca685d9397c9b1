"""The JWKS host failing (HTTP 500, hanging past the fetch timeout, unreachable), end to end
through the app in-process: cached keys keep serving; with no usable key, a prompt 503 with
Retry-After (never a 401, never a hang), and recovery by itself once the host is back."""

from __future__ import annotations

import asyncio

import httpx
import pytest
import respx

from service.testing import FakeBetterAuth
from support.app import assert_problem
from support.waiting import READY_CACHE_SECONDS, readyz_becomes, timed, wait_until

FETCH_TIMEOUT_SECONDS = 0.3
HANG_SECONDS = 3.0  # far beyond the fetch timeout
QUICK_SECONDS = 1.0  # the bound on any answer while the host misbehaves
JWKS_FAST = dict(
    jwks_fetch_timeout_seconds=FETCH_TIMEOUT_SECONDS,
    jwks_refresh_interval_seconds=0.2,  # the refresher keeps hitting the broken host
    jwks_min_refetch_interval_seconds=0,
    token_cache_max_entries=0,  # every request looks its key up: no verified-token shortcut
)
HOST_FAILURES = [pytest.param(m, id=m) for m in ("http-500", "hangs", "unreachable")]


def break_host(route: respx.Route, issuer: FakeBetterAuth, mode: str) -> None:
    if mode == "http-500":
        route.side_effect = lambda request: httpx.Response(500, text="boom")
    elif mode == "hangs":

        async def hang(request: httpx.Request) -> httpx.Response:
            await asyncio.sleep(HANG_SECONDS)
            return issuer.jwks_response(request)

        route.side_effect = hang
    elif mode == "unreachable":
        route.side_effect = httpx.ConnectError
    else:
        raise ValueError(mode)


def jwks_route(router: respx.Router) -> respx.Route:
    (route,) = list(router.routes)
    return route


@pytest.mark.parametrize("mode", HOST_FAILURES)
async def test_jwks_host_failing_with_keys_cached_still_serves_known_kids(
    start_app, issuer, jwks_router, make_user, mode
):
    async with start_app(**JWKS_FAST) as client:
        jwks = client.app.state.resources.jwks
        user = make_user()
        assert (await client.get(user.url(), headers=user.headers)).status_code == 200
        failed_before = jwks.stats.failed
        break_host(jwks_route(jwks_router), issuer, mode)
        try:
            await wait_until(lambda: jwks.stats.failed > failed_before, 3, "the refresher hitting the broken host")
            for _ in range(8):  # fresh users: fresh tokens, same (cached) kid
                user = make_user()
                response, seconds = await timed(client.get(user.url(), headers=user.headers))
                assert response.status_code == 200, response.text
                assert seconds < QUICK_SECONDS, seconds
                await asyncio.sleep(0.05)  # spread over refresher attempts (and in-flight hanging fetches)
            ready = await client.get("/readyz")  # this app's first probe: a fresh result, not a cached one
            assert ready.status_code == 200, ready.text  # the cached keys are still usable

            # A kid we never saw cannot be checked while the host is down: 503, promptly, not 401.
            new_key = issuer.rotate()
            stranger = make_user()
            headers = {"Authorization": f"Bearer {issuer.issue_token(stranger.id, key=new_key)}"}
            response, seconds = await timed(client.get(stranger.url(), headers=headers))
            assert_problem(response, 503, "keys_unavailable")
            assert int(response.headers["retry-after"]) >= 1
            assert seconds < QUICK_SECONDS + FETCH_TIMEOUT_SECONDS, seconds
        finally:
            jwks_route(jwks_router).side_effect = issuer.jwks_response


@pytest.mark.parametrize("mode", HOST_FAILURES)
async def test_jwks_host_failing_with_no_keys_cached_gets_prompt_503_then_recovers(
    start_app, issuer, jwks_router, make_user, mode
):
    route = jwks_route(jwks_router)
    break_host(route, issuer, mode)
    try:
        async with start_app(**JWKS_FAST) as client:
            jwks = client.app.state.resources.jwks
            assert jwks.stats.ok == 0
            for _ in range(5):
                user = make_user()
                response, seconds = await timed(client.get(user.url(), headers=user.headers))
                assert_problem(response, 503, "keys_unavailable")
                assert int(response.headers["retry-after"]) >= 1
                assert seconds < QUICK_SECONDS, seconds
                await asyncio.sleep(0.05)
            ready = await readyz_becomes(client, 503, READY_CACHE_SECONDS + QUICK_SECONDS)
            assert any(p.startswith("signing keys") for p in ready.json()["problems"]), ready.text

            route.side_effect = issuer.jwks_response  # the host is back
            await wait_until(lambda: jwks.stats.ok > 0, 4, "the keys fetched once the host was back")
            user = make_user()
            response = await client.get(user.url(), headers=user.headers)
            assert response.status_code == 200, response.text
            await readyz_becomes(client, 200, READY_CACHE_SECONDS + 1)
    finally:
        route.side_effect = issuer.jwks_response
