"""The service against the real Better Auth (pinned in issuer/package-lock.json): users signed up
over HTTP, JWTs from `/api/auth/token` and from `get-session`'s `set-auth-jwt` header, keys from
its JWKS, and Better Auth's own key rotation, restart, expiry and custom issuer/audience."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import httpx
import pytest

from support.app import assert_problem
from support.better_auth import (
    ALGORITHMS,
    BetterAuthUser,
    IssuerConfig,
    bearer,
    held_kids,
    issuer_client,
    running_issuers,
    sign_up,
    token_claims,
    token_header,
)
from support.waiting import wait_until

# What Better Auth's JWKS publishes for each `jwks.keyPairConfig.alg` (RSA: modulusLength 2048).
JWK_SHAPES = {
    "EdDSA": {"kty": "OKP", "crv": "Ed25519"},
    "ES256": {"kty": "EC", "crv": "P-256"},
    "ES512": {"kty": "EC", "crv": "P-521"},
    "RS256": {"kty": "RSA"},
    "PS256": {"kty": "RSA"},
}
RSA_MODULUS_BYTES = 2048 // 8
DEFAULT_EXPIRATION_SECONDS = 15 * 60


def assert_better_auth_token(token: str, user: BetterAuthUser, alg: str, issuer_url: str) -> None:
    """The header and claims the service relies on, as Better Auth emits them."""
    assert token_header(token) == {"alg": alg, "kid": token_header(token)["kid"]}  # no typ
    claims = token_claims(token)
    assert claims["sub"] == user.id == claims["id"]
    assert claims["iss"] == claims["aud"] == issuer_url
    assert claims["exp"] - claims["iat"] == DEFAULT_EXPIRATION_SECONDS
    assert claims["email"] == user.email


# -- every algorithm, the whole API, two users ---------------------------------------------------


async def exercise_own_tasks(client: httpx.AsyncClient, user: BetterAuthUser, tokens: list[str]) -> dict:
    """Every route on the user's own tasks, alternating the user's tokens. Returns a task left in place."""
    first, second = tokens

    response = await client.post(user.url(), json={"title": "Buy milk", "description": "2 L"}, headers=bearer(first))
    assert response.status_code == 201, response.text
    kept = response.json()
    assert kept["user_id"] == user.id and response.headers["location"] == user.url(f"/{kept['id']}")
    response = await client.post(user.url(), json={"title": "Call the plumber"}, headers=bearer(second))
    assert response.status_code == 201, response.text
    doomed = response.json()

    response = await client.get(user.url(), params={"sort": "created_at"}, headers=bearer(second))
    assert response.status_code == 200, response.text
    assert [task["id"] for task in response.json()] == [kept["id"], doomed["id"]]

    response = await client.get(user.url(f"/{kept['id']}"), headers=bearer(first))
    assert response.status_code == 200 and response.json() == kept
    etag = response.headers["etag"]

    body = {"title": "Buy oat milk", "description": "1 L", "completed": False}
    response = await client.put(user.url(f"/{kept['id']}"), json=body, headers={**bearer(second), "If-Match": etag})
    assert response.status_code == 200, response.text
    assert {k: response.json()[k] for k in body} == body

    response = await client.patch(user.url(f"/{kept['id']}"), json={"description": "2 L"}, headers=bearer(first))
    assert response.status_code == 200 and response.json()["description"] == "2 L", response.text

    for token, completed in ((second, True), (first, False), (second, True)):
        response = await client.patch(user.url(f"/{kept['id']}/complete"), headers=bearer(token))
        assert response.status_code == 200 and response.json()["completed"] is completed, response.text

    response = await client.delete(user.url(f"/{doomed['id']}"), headers=bearer(first))
    assert response.status_code == 204, response.text
    assert_problem(await client.get(user.url(f"/{doomed['id']}"), headers=bearer(second)), 404, "task_not_found")

    response = await client.get(user.url(f"/{kept['id']}"), headers=bearer(first))
    assert response.status_code == 200, response.text
    return response.json()


async def assert_confined(
    client: httpx.AsyncClient, intruder: BetterAuthUser, token: str, owner: BetterAuthUser, task: dict
) -> None:
    """403 with the owner's id in the path, 404 for the owner's task under the intruder's own path."""
    own_path_routes = [
        ("GET", "", None),
        ("PUT", "", {"title": "mine now", "description": "", "completed": False}),
        ("PATCH", "", {"title": "mine now"}),
        ("PATCH", "/complete", None),
        ("DELETE", "", None),
    ]
    for method, suffix, body in [("GET", "", None), ("POST", "", {"title": "planted"})]:
        response = await client.request(method, owner.url(suffix), json=body, headers=bearer(token))
        assert_problem(response, 403, "forbidden")
    for method, suffix, body in own_path_routes:
        response = await client.request(method, owner.url(f"/{task['id']}{suffix}"), json=body, headers=bearer(token))
        assert_problem(response, 403, "forbidden")
        response = await client.request(
            method, intruder.url(f"/{task['id']}{suffix}"), json=body, headers=bearer(token)
        )
        assert_problem(response, 404, "task_not_found")
    response = await client.get(intruder.url(), headers=bearer(token))
    assert task["id"] not in [t["id"] for t in response.json()]


@pytest.mark.parametrize("alg", [pytest.param(alg, id=alg) for alg in ALGORITHMS])
async def test_each_algorithm_drives_the_whole_api_and_confines_each_user_to_their_own_tasks(
    alg, issuers_by_algorithm, start_service
):
    issuer = issuers_by_algorithm[alg]
    async with issuer_client(issuer) as http:
        alice, bob = await sign_up(http, "Alice"), await sign_up(http, "Bob")
        tokens = {user.id: [await user.token(), await user.token_from_get_session()] for user in (alice, bob)}
        jwks = (await http.get("/api/auth/jwks")).json()

    (key,) = jwks["keys"]
    assert {k: key[k] for k in JWK_SHAPES[alg]} == JWK_SHAPES[alg] and key["alg"] == alg
    if key["kty"] == "RSA":
        assert len(key["n"]) == -(-RSA_MODULUS_BYTES * 4 // 3)  # base64url of 256 bytes, unpadded
    for user in (alice, bob):
        for token in tokens[user.id]:
            assert_better_auth_token(token, user, alg, issuer.base_url)
            assert token_header(token)["kid"] == key["kid"]

    async with start_service(issuer) as client:
        alice_task = await exercise_own_tasks(client, alice, tokens[alice.id])
        bob_task = await exercise_own_tasks(client, bob, tokens[bob.id])
        await assert_confined(client, alice, tokens[alice.id][1], bob, bob_task)
        await assert_confined(client, bob, tokens[bob.id][0], alice, alice_task)
        for user, task in ((alice, alice_task), (bob, bob_task)):  # nothing the intruder tried changed anything
            response = await client.get(user.url(), headers=bearer(tokens[user.id][0]))
            assert response.status_code == 200 and response.json() == [task]


# -- key rotation under traffic ----------------------------------------------------------------

ROTATION_INTERVAL_SECONDS = 2  # jwks.rotationInterval: a new key for the first token signed after it
ROTATIONS_WANTED = 2  # three kids served, so the pick-up is shown twice
REQUESTS_WITH_LATEST_KID = 5
TRAFFIC_WORKERS = 2
TRAFFIC_PAUSE_SECONDS = 0.01
TOKEN_REFETCH_PAUSE_SECONDS = 0.2
ROTATION_DEADLINE_SECONDS = 30.0


async def test_key_rotation_under_traffic_fails_no_request_and_the_new_kid_is_picked_up_without_restart(
    start_issuer, start_service
):
    issuer = start_issuer(IssuerConfig(alg="ES256", rotation_interval_seconds=ROTATION_INTERVAL_SECONDS))
    # The routine refresh stays at its default (300 s): new kids arrive through the unknown-kid refetch.
    async with issuer_client(issuer) as http, start_service(issuer, JWKS_MIN_REFETCH_INTERVAL_SECONDS="1") as client:
        alice = await sign_up(http, "Alice")
        current = {"token": await alice.token()}
        first_kid = token_header(current["token"])["kid"]
        served: Counter[str] = Counter()  # kid -> 2xx answers
        failures: list[str] = []
        stop = asyncio.Event()

        async def refetch_tokens() -> None:
            while not stop.is_set():
                current["token"] = await alice.token()
                await asyncio.sleep(TOKEN_REFETCH_PAUSE_SECONDS)

        async def traffic(worker: int) -> None:
            sent = 0
            while not stop.is_set():
                token = current["token"]
                if sent % 5 == 0:
                    response = await client.post(
                        alice.url(), json={"title": f"w{worker}-{sent}"}, headers=bearer(token)
                    )
                else:
                    response = await client.get(alice.url(), params={"limit": 5}, headers=bearer(token))
                sent += 1
                if response.is_success:
                    served[token_header(token)["kid"]] += 1
                else:
                    failures.append(f"{response.request.method} -> {response.status_code} {response.text}")
                await asyncio.sleep(TRAFFIC_PAUSE_SECONDS)

        def rotated_enough() -> bool:
            latest = token_header(current["token"])["kid"]
            return bool(failures) or (len(served) > ROTATIONS_WANTED and served[latest] >= REQUESTS_WITH_LATEST_KID)

        tasks = [asyncio.create_task(refetch_tokens())]
        tasks += [asyncio.create_task(traffic(n)) for n in range(TRAFFIC_WORKERS)]
        try:
            await wait_until(
                lambda: rotated_enough() or any(t.done() for t in tasks),
                ROTATION_DEADLINE_SECONDS,
                f"{ROTATIONS_WANTED} key rotations served",
            )
        finally:
            stop.set()
            await asyncio.gather(*tasks)  # re-raises a crashed loop's exception

        assert failures == [], f"{len(failures)} non-2xx answers during rotation, first: {failures[:3]}"
        assert len(served) > ROTATIONS_WANTED and first_kid in served, served
        latest = token_header(current["token"])["kid"]
        assert latest != first_kid and latest in held_kids(client)  # picked up, no restart
        published = {key["kid"] for key in (await http.get("/api/auth/jwks")).json()["keys"]}
        assert set(served) <= published  # rotated-out keys stay published for the grace period


# -- Better Auth restarted (memory adapter: a new key set) --------------------------------------

# The refresher polls every REFRESH_INTERVAL and, while the host fails, retries after 1 s, 2 s, then
# every REFRESH_INTERVAL. Better Auth stays down until the third failed poll, as in a redeploy that
# takes a few seconds, so the service has surely seen it down; the refresher's next poll is then
# REFRESH_INTERVAL away, so the first requests after the restart meet the service still "failing".
REFRESH_INTERVAL_SECONDS = 3
FAILED_POLLS_WHILE_DOWN = 3


async def test_after_a_better_auth_restart_new_tokens_work_at_once_and_old_ones_get_401_from_the_next_refresh(
    start_issuer, start_service
):
    issuer = start_issuer(IssuerConfig(alg="EdDSA"))
    refresh = {
        "JWKS_REFRESH_INTERVAL_SECONDS": str(REFRESH_INTERVAL_SECONDS),
        "JWKS_MIN_REFETCH_INTERVAL_SECONDS": "0.5",
    }
    async with start_service(issuer, **refresh) as client:
        jwks = client.app.state.resources.jwks
        async with issuer_client(issuer) as http:
            old_user = await sign_up(http, "Alice")
            old_token = await old_user.token()
        response = await client.post(old_user.url(), json={"title": "before the restart"}, headers=bearer(old_token))
        assert response.status_code == 201, response.text

        failed_before = jwks.stats.failed
        await asyncio.to_thread(issuer.stop)
        await wait_until(
            lambda: jwks.stats.failed >= failed_before + FAILED_POLLS_WHILE_DOWN,
            REFRESH_INTERVAL_SECONDS + 2 * FAILED_POLLS_WHILE_DOWN + 2,
            f"{FAILED_POLLS_WHILE_DOWN} failed JWKS polls while Better Auth is down",
        )
        await asyncio.to_thread(issuer.start)
        restarted_at = time.time()

        async with issuer_client(issuer) as http:
            new_user = await sign_up(http, "Alice")  # the memory adapter forgot every user too
            new_token = await new_user.token()
        assert token_header(new_token)["kid"] != token_header(old_token)["kid"]
        response = await client.post(new_user.url(), json={"title": "after the restart"}, headers=bearer(new_token))
        assert response.status_code == 201, response.text  # the first request with the new key

        held = jwks.usable_set
        await wait_until(
            lambda: held() is not None and held().fetch_started_at >= restarted_at,
            REFRESH_INTERVAL_SECONDS + 2,
            "a key set fetched after the restart",
        )
        for _ in range(2):  # refused, and stays refused (its verification was dropped from the cache)
            problem = assert_problem(await client.get(old_user.url(), headers=bearer(old_token)), 401, "invalid_token")
            assert "kid" in problem["detail"], problem
        response = await client.get(new_user.url(), headers=bearer(new_token))
        assert response.status_code == 200 and [t["title"] for t in response.json()] == ["after the restart"]


# -- expiry ------------------------------------------------------------------------------------

SHORT_EXPIRATION_SECONDS = 2


async def test_token_is_refused_with_401_once_its_expiration_time_has_passed(start_issuer, start_service):
    issuer = start_issuer(IssuerConfig(expiration_time=f"{SHORT_EXPIRATION_SECONDS}s"))
    async with issuer_client(issuer) as http, start_service(issuer, JWT_LEEWAY_SECONDS="0") as client:
        alice, bob = await sign_up(http, "Alice"), await sign_up(http, "Bob")
        used, unused = await alice.token(), await bob.token()  # bob's is first presented once expired
        for token in (used, unused):
            claims = token_claims(token)
            assert claims["exp"] - claims["iat"] == SHORT_EXPIRATION_SECONDS
        response = await client.get(alice.url(), headers=bearer(used))
        assert response.status_code == 200, response.text  # and now in the verified-token cache

        expired_at = max(token_claims(t)["exp"] for t in (used, unused)) + 1  # exp is whole seconds
        await asyncio.sleep(max(0.0, expired_at - time.time()))
        for user, token in ((alice, used), (bob, unused)):
            problem = assert_problem(await client.get(user.url(), headers=bearer(token)), 401, "invalid_token")
            assert "expired" in problem["detail"]
        response = await client.get(alice.url(), headers=bearer(await alice.token()))
        assert response.status_code == 200, response.text  # a fresh token from the same session works


# -- custom jwt.issuer / jwt.audience -----------------------------------------------------------

CUSTOM_ISSUER = "https://auth.example.test"
CUSTOM_AUDIENCE = "https://tasks.example.test"
OTHER = "https://other.example.test"


@pytest.fixture(scope="module")
def custom_claims_issuer(node_issuer_installed, tmp_path_factory):
    config = IssuerConfig(alg="ES512", issuer=CUSTOM_ISSUER, audience=CUSTOM_AUDIENCE)
    with running_issuers(node_issuer_installed, {"custom": config}, tmp_path_factory.mktemp("custom")) as issuers:
        yield issuers["custom"]


@pytest.mark.parametrize(
    "environ, accepted",
    [
        pytest.param({"JWT_ISSUER": CUSTOM_ISSUER, "JWT_AUDIENCE": CUSTOM_AUDIENCE}, True, id="both-match"),
        pytest.param({"JWT_ISSUER": OTHER, "JWT_AUDIENCE": CUSTOM_AUDIENCE}, False, id="issuer-differs"),
        pytest.param({"JWT_ISSUER": CUSTOM_ISSUER, "JWT_AUDIENCE": OTHER}, False, id="audience-differs"),
        pytest.param({}, False, id="defaults-to-better-auth-url"),
    ],
)
async def test_custom_issuer_and_audience_are_accepted_only_when_the_service_expects_them(
    custom_claims_issuer, start_service, environ, accepted
):
    issuer = custom_claims_issuer
    async with issuer_client(issuer) as http:
        alice = await sign_up(http, "Alice")
        token = await alice.token()
    assert (token_claims(token)["iss"], token_claims(token)["aud"]) == (CUSTOM_ISSUER, CUSTOM_AUDIENCE)
    async with start_service(issuer, **environ) as client:
        response = await client.post(alice.url(), json={"title": "Buy milk"}, headers=bearer(token))
        if accepted:
            assert response.status_code == 201, response.text
        else:
            problem = assert_problem(response, 401, "invalid_token")
            assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
            assert "iss" in problem["detail"] or "aud" in problem["detail"], problem
