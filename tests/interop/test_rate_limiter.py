"""Better Auth's rate limiter (on by default in production; `/jwks` not exempt; 429 with
`X-Retry-After`) against the service's key cache, with the real better-auth package:

- a 429 is honoured: no fetch before its retry time, the held keys keep serving, one log line;
- many replicas behind one address (one shared bucket) flooded with unknown kids stay far below
  the limit, so the fetches that valid tokens need (real key rotations) are never refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
import time
from pathlib import Path

import httpx

from service.auth.verifier import build_verifier
from service.errors import InvalidToken, KeysUnavailable
from service.settings import load_settings
from service.testing import b64url
from support.app import assert_problem
from support.better_auth import IssuerConfig, bearer, issuer_client, sign_up

FLOOD_REPLICAS = 8
FLOOD_SECONDS = 15.0
FLOOD_CONCURRENCY = 20  # unknown-kid requests in flight per replica at any time
ROTATION_INTERVAL_SECONDS = 4  # real rotations during the flood: the fetches valid tokens need
BETTER_AUTH_LIMIT = 100  # requests per (address, path) before a 10 s silence, Better Auth's default


def forged_token(kid: str) -> str:
    """A token naming a kid nobody publishes, freshly `iat`-ed so the cache must ask the JWKS."""
    header = b64url(json.dumps({"alg": "EdDSA", "kid": kid}).encode())
    now = int(time.time())
    payload = b64url(json.dumps({"sub": "x", "iat": now, "exp": now + 60, "iss": "x", "aud": "x"}).encode())
    return f"{header}.{payload}.{b64url(secrets.token_bytes(64))}"


async def test_a_429_from_better_auth_stops_fetching_until_its_retry_time_and_stale_keys_serve(
    start_issuer, start_service, caplog
):
    # Two JWKS requests per 10 s: the service's start-up fetch and one refetch, then 429.
    issuer = start_issuer(IssuerConfig(rate_limit=True, rate_limit_jwks="10,2"))
    caplog.set_level(logging.WARNING, "service.auth.jwks")
    async with issuer_client(issuer) as http, start_service(issuer, JWKS_MIN_REFETCH_INTERVAL_SECONDS="0") as client:
        alice = await sign_up(http, "Alice")
        token = await alice.token()
        jwks = client.app.state.resources.jwks
        assert (await client.get(alice.url(), headers=bearer(token))).status_code == 200

        for _ in range(2):  # one refetch allowed, then Better Auth's 429
            await client.get(alice.url(), headers=bearer(forged_token(secrets.token_hex(16))))
        assert jwks.stats.rate_limited == 1, jwks.stats
        attempts = jwks.stats.ok + jwks.stats.failed

        # Within the retry time: a flood fetches nothing, the held key serves, a new kid gets 503.
        flood = [client.get(alice.url(), headers=bearer(forged_token(secrets.token_hex(16)))) for _ in range(50)]
        for response in await asyncio.gather(*flood):
            assert_problem(response, 503, "keys_unavailable")
            assert 1 <= int(response.headers["retry-after"]) <= 10
        assert (await client.get(alice.url(), headers=bearer(token))).status_code == 200
        assert jwks.stats.ok + jwks.stats.failed == attempts
        warnings = [r.getMessage() for r in caplog.records if "failing" in r.getMessage()]
        assert len(warnings) == 1 and "HTTP 429" in warnings[0]
        metrics = (await client.get("/metrics")).text
        assert "jwks_rate_limited_total 1.0" in metrics


async def test_many_replicas_flooded_with_unknown_kids_never_make_better_auth_refuse_a_key_fetch(start_issuer):
    """Replicas behind one address share Better Auth's bucket. Each fetches for unknown kids at most
    once per JWKS_MIN_REFETCH_INTERVAL_SECONDS (5 s by default), so the whole fleet stays far below
    100 requests, and every real rotation during the flood is picked up."""
    issuer = start_issuer(IssuerConfig(rate_limit=True, rotation_interval_seconds=ROTATION_INTERVAL_SECONDS))
    settings = load_settings({"BETTER_AUTH_URL": issuer.base_url}, dotenv=Path(os.devnull))  # defaults otherwise
    async with contextlib.AsyncExitStack() as stack, issuer_client(issuer) as http:
        replicas = []
        for _ in range(FLOOD_REPLICAS):
            client = await stack.enter_async_context(httpx.AsyncClient(follow_redirects=False))
            verifier = build_verifier(settings, client)
            refresher = asyncio.create_task(verifier.keys.run_refresher())
            stack.callback(refresher.cancel)
            stack.push_async_callback(verifier.keys.aclose)
            replicas.append(verifier)
        alice = await sign_up(http, "Alice")
        stop = asyncio.Event()
        unexpected: list[str] = []
        kids_accepted: set[str] = set()

        async def flood(verifier) -> int:
            refused = 0
            while not stop.is_set():
                try:
                    await verifier.verify_token(forged_token(secrets.token_hex(16)))
                    unexpected.append("a forged token was accepted")
                except (InvalidToken, KeysUnavailable):
                    refused += 1
            return refused

        async def valid_traffic() -> None:
            while not stop.is_set():
                token = await alice.token()  # signing after the interval makes Better Auth rotate
                for verifier in replicas:
                    try:
                        principal = await verifier.verify_token(token)
                    except (InvalidToken, KeysUnavailable) as exc:
                        unexpected.append(f"valid token refused: {exc.status} {exc.detail}")
                    else:
                        kids_accepted.add(principal.kid)
                await asyncio.sleep(0.2)

        tasks = [asyncio.create_task(flood(v)) for v in replicas for _ in range(FLOOD_CONCURRENCY)]
        tasks.append(asyncio.create_task(valid_traffic()))
        await asyncio.sleep(FLOOD_SECONDS)
        stop.set()
        refused = sum(r for r in await asyncio.gather(*tasks) if r is not None)

    fetches = sum(v.keys.stats.ok + v.keys.stats.failed for v in replicas)
    print(
        f"\nflood: {FLOOD_REPLICAS} replicas, {FLOOD_SECONDS:g} s, {refused} forged tokens refused, "
        f"{fetches} JWKS fetches in all, {len(kids_accepted)} kids rotated through"
    )
    assert unexpected == [], unexpected[:3]
    assert all(v.keys.stats.rate_limited == 0 and v.keys.stats.failed == 0 for v in replicas)
    assert len(kids_accepted) >= 2  # real rotations happened under the flood, and were picked up
    assert refused >= 2 * FLOOD_REPLICAS * FLOOD_CONCURRENCY  # every flooding task was refused again and again
    assert fetches < BETTER_AUTH_LIMIT / 2
