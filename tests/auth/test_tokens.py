"""Bearer verification through the HTTP API: real keys, real signatures, a respx-served JWKS."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time

import httpx
import pytest
from joserfc.jwk import OKPKey

from service.testing import SUPPORTED_TEST_ALGORITHMS, SigningKey, sign_compact
from support.app import assert_problem, new_user_id


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unsigned(header: dict, claims: dict, signature: bytes = b"") -> str:
    return ".".join([b64(json.dumps(header).encode()), b64(json.dumps(claims).encode()), b64(signature)])


async def get_tasks(client, user_id: str, token: str) -> httpx.Response:
    return await client.get(f"/api/{user_id}/tasks", headers={"Authorization": f"Bearer {token}"})


def assert_invalid_token(response: httpx.Response, detail_fragment: str) -> None:
    problem = assert_problem(response, 401, "invalid_token")
    assert detail_fragment in problem["detail"], problem["detail"]
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer error="invalid_token", error_description="')


@pytest.mark.parametrize("alg", SUPPORTED_TEST_ALGORITHMS)
async def test_tokens_of_every_better_auth_algorithm_are_accepted(start_app, issuer, alg):
    issuer.rotate(alg)
    user = new_user_id()
    async with start_app(jwt_algorithms=("EdDSA", "ES256", "ES384", "ES512", "RS256", "PS256")) as client:
        response = await get_tasks(client, user, issuer.issue_token(user))
        assert response.status_code == 200, response.text


async def test_missing_token_gets_a_bare_bearer_challenge(client):
    response = await client.get(f"/api/{new_user_id()}/tasks")
    assert_problem(response, 401, "missing_token")
    assert response.headers["www-authenticate"] == 'Bearer realm="tasks"'


@pytest.mark.parametrize(
    "authorization, fragment",
    [
        pytest.param("Basic dXNlcjpwYXNz", "scheme must be Bearer", id="basic-scheme"),
        pytest.param("Bearer", "empty or malformed", id="no-token"),
        pytest.param("Bearer a b", "empty or malformed", id="two-tokens"),
        pytest.param("Bearer not-a-jwt", "three dot-separated segments", id="garbled"),
        pytest.param("Bearer a.b.c.d.e", "JWE", id="jwe"),
        pytest.param("Bearer e30.e30.", "unpadded base64url", id="empty-signature"),
        pytest.param("Bearer e30=.e30.AA", "malformed", id="padded"),
        pytest.param("Bearer " + "a" * 9000, "exceeds", id="oversized"),
    ],
)
async def test_malformed_authorization_is_401(client, authorization, fragment):
    response = await client.get(f"/api/{new_user_id()}/tasks", headers={"Authorization": authorization})
    assert_invalid_token(response, fragment)


async def test_two_authorization_headers_are_refused(client, issuer):
    user = new_user_id()
    token = issuer.issue_token(user)
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    assert_invalid_token(await client.get(f"/api/{user}/tasks", headers=headers), "exactly one")


async def test_token_elsewhere_than_the_header_is_not_accepted(client, issuer):
    user = new_user_id()
    token = issuer.issue_token(user)
    response = await client.get(
        f"/api/{user}/tasks", params={"access_token": token}, headers={"Cookie": f"token={token}"}
    )
    assert_problem(response, 401, "missing_token")


@pytest.mark.parametrize(
    "claims, drop, fragment",
    [
        pytest.param({"exp": int(time.time()) - 120, "iat": int(time.time()) - 1000}, (), "expired", id="expired"),
        pytest.param({"iss": "http://evil.test"}, (), "iss", id="wrong-iss"),
        pytest.param({"aud": "http://other.test"}, (), "aud", id="wrong-aud"),
        pytest.param({"aud": ["http://other.test"]}, (), "aud", id="aud-list-without-us"),
        pytest.param({}, ("sub",), "sub", id="missing-sub"),
        pytest.param({"sub": ""}, (), "sub", id="empty-sub"),
        pytest.param({"sub": 42}, (), "sub", id="numeric-sub"),
        pytest.param({}, ("exp",), "exp", id="missing-exp"),
        pytest.param({"exp": str(int(time.time()) + 600)}, (), "exp", id="exp-as-string"),
        pytest.param({"nbf": int(time.time()) + 600}, (), "nbf", id="nbf-in-future"),
        pytest.param({"iat": int(time.time()) + 600}, (), "iat", id="iat-in-future"),
    ],
)
async def test_bad_claims_are_401(client, issuer, claims, drop, fragment):
    user = new_user_id()
    assert_invalid_token(
        await get_tasks(client, user, issuer.issue_token(user, claims=claims, drop_claims=drop)), fragment
    )


async def test_token_within_leeway_after_exp_is_still_accepted(client, issuer):
    user = new_user_id()
    token = issuer.issue_token(user, claims={"exp": int(time.time()) - 5})
    assert (await get_tasks(client, user, token)).status_code == 200


async def test_signature_by_a_key_outside_the_jwks_with_a_known_kid_is_401(client, issuer):
    user = new_user_id()
    impostor = SigningKey(kid=issuer.current_key.kid, alg="EdDSA", private=OKPKey.generate_key("Ed25519"))
    assert_invalid_token(await get_tasks(client, user, issuer.issue_token(user, key=impostor)), "signature")


async def test_tampered_payload_is_401(client, issuer):
    user = new_user_id()
    header, _, signature = issuer.issue_token(user).split(".")
    other = issuer.issue_token(new_user_id()).split(".")[1]
    assert_invalid_token(await get_tasks(client, user, f"{header}.{other}.{signature}"), "signature")


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_is_401(client, issuer, alg):
    user = new_user_id()
    token = unsigned({"alg": alg, "kid": issuer.current_key.kid}, issuer.claims_for(user))
    assert_invalid_token(await get_tasks(client, user, token + "AA"), "not allowed")


@pytest.mark.parametrize("alg", ["HS256", "HS384", "HS512"])
async def test_hmac_signed_with_the_public_key_is_401(client, issuer, alg):
    user = new_user_id()
    public_jwk = json.dumps(issuer.current_key.public_jwk()).encode()
    header = b64(json.dumps({"alg": alg, "kid": issuer.current_key.kid}).encode())
    payload = b64(json.dumps(issuer.claims_for(user)).encode())
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    signature = hmac.new(public_jwk, f"{header}.{payload}".encode(), digest).digest()
    assert_invalid_token(await get_tasks(client, user, f"{header}.{payload}.{b64(signature)}"), "not allowed")


async def test_key_type_must_match_alg(start_app, issuer):
    rsa = issuer.rotate("RS256")
    user = new_user_id()
    # An RS256 key's kid under an ES256 header: the key is RSA, so it may not verify ES256.
    token = issuer.issue_token(user, key=SigningKey(kid=rsa.kid, alg="ES256", private=issuer.rotate("ES256").private))
    async with start_app() as client:
        assert_invalid_token(await get_tasks(client, user, token), "cannot verify")


@pytest.mark.parametrize("member", ["jwk", "jku", "x5u", "x5c", "crit", "b64"])
async def test_headers_that_bring_their_own_key_or_processing_are_refused(client, issuer, member):
    user = new_user_id()
    value = {
        "jwk": issuer.current_key.public_jwk(),
        "jku": "http://evil.test/jwks",
        "x5u": "http://evil.test/cert",
        "x5c": ["MIIB"],
        "crit": ["exp"],
        "b64": False,
    }[member]
    token = issuer.issue_token(user, header={member: value})
    assert_invalid_token(await get_tasks(client, user, token), member)


async def test_duplicate_json_members_are_refused(client, issuer):
    user = new_user_id()
    key = issuer.current_key
    claims = json.dumps(issuer.claims_for(user))[:-1] + f', "sub": "{new_user_id()}"}}'
    token = sign_compact({"alg": key.alg, "kid": key.kid}, claims, key.private, key.alg)
    assert_invalid_token(await get_tasks(client, user, token), "duplicate")


async def test_new_kid_after_rotation_is_fetched_and_accepted(start_app, issuer, jwks_router):
    user = new_user_id()
    async with start_app() as client:
        assert (await get_tasks(client, user, issuer.issue_token(user))).status_code == 200
        fetches = issuer.jwks_requests
        old = issuer.current_key
        issuer.rotate()
        assert (await get_tasks(client, user, issuer.issue_token(user))).status_code == 200
        assert issuer.jwks_requests == fetches + 1
        # The old key stays valid during its grace period.
        assert (await get_tasks(client, user, issuer.issue_token(user, key=old))).status_code == 200


async def test_retired_key_stops_verifying_after_the_next_fetch(start_app, issuer):
    user = new_user_id()
    async with start_app() as client:
        old = issuer.current_key
        old_token = issuer.issue_token(user, key=old)
        assert (await get_tasks(client, user, old_token)).status_code == 200  # now cached as verified
        issuer.rotate()
        issuer.retire(old.kid)
        await client.app.state.resources.jwks.refresh()
        assert_invalid_token(await get_tasks(client, user, old_token), "no published key")


async def test_unknown_kid_is_401_after_one_refetch(start_app, issuer):
    user = new_user_id()
    async with start_app() as client:
        fetches = issuer.jwks_requests
        stranger = SigningKey(kid="k" * 32, alg="EdDSA", private=OKPKey.generate_key("Ed25519"))
        assert_invalid_token(await get_tasks(client, user, issuer.issue_token(user, key=stranger)), "no published key")
        assert issuer.jwks_requests == fetches + 1


JWKS_OUTAGES = [
    pytest.param(httpx.Response(500), id="http-500"),
    pytest.param(httpx.ConnectError("cannot connect to issuer.test:3000 (10.0.0.7)"), id="connection-refused"),
    pytest.param(httpx.Response(302, headers={"Location": "http://internal.test/jwks"}), id="redirect"),
    pytest.param(httpx.Response(200, content=b"<html>issuer.test</html>"), id="garbage"),
]


@pytest.mark.parametrize("failure", JWKS_OUTAGES)
async def test_jwks_host_down_at_start_gives_503_that_names_no_internal_url_or_host(
    start_app, issuer, jwks_router, failure, caplog
):
    if isinstance(failure, Exception):
        jwks_router.routes[0].mock(side_effect=failure)
    else:
        jwks_router.routes[0].mock(return_value=failure)
    caplog.set_level(logging.WARNING, "service.auth.jwks")
    user = new_user_id()
    async with start_app() as client:
        response = await get_tasks(client, user, issuer.issue_token(user))
        problem = assert_problem(response, 503, "keys_unavailable")
        assert problem["detail"] == "signing keys are temporarily unavailable, retry later"
        assert int(response.headers["retry-after"]) >= 1
        public = response.text + "".join(f"{name}: {value}\n" for name, value in response.headers.items())
        for internal in ("issuer.test", "internal.test", "10.0.0.7", "://", "/api/auth/jwks"):
            assert internal not in public, public
        ready = await client.get("/readyz")
        assert ready.status_code == 503 and "signing keys" in ready.json()["problems"][0]
    assert any(issuer.jwks_url in record.getMessage() for record in caplog.records)  # ops find it in the log


async def test_health_and_readiness_need_no_token(client):
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready" and ready.json()["keys"] == 1
    metrics = await client.get("/metrics")
    assert 'jwks_fetches_total{result="ok"} 1' in metrics.text
