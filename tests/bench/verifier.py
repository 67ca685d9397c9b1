"""Micro-benchmarks of token verification, in-process, per algorithm:

- miss: `TokenVerifier.verify_token` with the token cache off (every call parses, checks the
  claims, finds the key and checks the signature);
- joserfc: the joserfc algorithm's `verify` alone (what `verify_token` delegates to);
- raw: `cryptography`'s verify of the same signature with the same key and signing input (ECDSA
  signatures converted to DER beforehand: the floor, nothing else);
- hit: `verify_token` with the cache on, the same token again.

Each figure is the median over REPEATS timed loops of time.perf_counter_ns, the four
figures' loops interleaved.
"""

from __future__ import annotations

import asyncio
import base64
import statistics
import time
from collections.abc import Awaitable, Callable
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from joserfc.jws import JWSRegistry

from service.auth.jwks import JWKSCache
from service.auth.keys import import_jwks
from service.auth.tokens import TokenVerifier
from service.testing import FakeBetterAuth

ALGORITHMS = ("EdDSA", "ES256", "ES512", "RS256", "PS256")
REPEATS = 7
LOOP_SECONDS = 0.06  # each timed loop runs about this long
ISSUER_URL = "http://127.0.0.1:3000"
_HASHES = {"ES256": hashes.SHA256, "ES512": hashes.SHA512, "RS256": hashes.SHA256, "PS256": hashes.SHA256}


def _b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def raw_verifier(alg: str, public_key: Any, signing_input: bytes, signature: bytes) -> Callable[[], None]:
    """A call that verifies `signature` with cryptography directly (raises if it does not verify)."""
    if alg == "EdDSA":
        return lambda: public_key.verify(signature, signing_input)
    digest = _HASHES[alg]
    if alg.startswith("ES"):
        half = len(signature) // 2
        der = encode_dss_signature(int.from_bytes(signature[:half], "big"), int.from_bytes(signature[half:], "big"))
        scheme = ec.ECDSA(digest())
        return lambda: public_key.verify(der, signing_input, scheme)
    pad = (
        padding.PKCS1v15()
        if alg.startswith("RS")
        else padding.PSS(mgf=padding.MGF1(digest()), salt_length=digest.digest_size)
    )
    return lambda: public_key.verify(signature, signing_input, pad, digest())


def _calibrate(run_loop: Callable[[int], int]) -> int:
    """Calls per loop so that one loop lasts about LOOP_SECONDS."""
    calls = 1
    while True:
        elapsed = run_loop(calls)
        if elapsed >= LOOP_SECONDS * 1e9 / 4 or calls >= 1 << 20:
            return max(1, int(calls * LOOP_SECONDS * 1e9 / max(elapsed, 1)))
        calls *= 4


def sync_loop(call: Callable[[], Any]) -> Callable[[int], int]:
    def run_loop(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            call()
        return time.perf_counter_ns() - start

    return run_loop


def async_loop(loop: asyncio.AbstractEventLoop, call: Callable[[], Awaitable[Any]]) -> Callable[[int], int]:
    async def timed(n: int) -> int:
        start = time.perf_counter_ns()
        for _ in range(n):
            await call()
        return time.perf_counter_ns() - start

    return lambda n: loop.run_until_complete(timed(n))


def measure(loops: dict[str, Callable[[int], int]]) -> dict[str, float]:
    """Median ns per call of each loop. The repeats are interleaved (a, b, c, a, b, c, ...), so a
    burst of load from elsewhere on the machine hits every figure alike, not one of them."""
    calls = {name: _calibrate(run_loop) for name, run_loop in loops.items()}
    samples: dict[str, list[float]] = {name: [] for name in loops}
    for _ in range(REPEATS):
        for name, run_loop in loops.items():
            samples[name].append(run_loop(calls[name]) / calls[name])
    return {name: statistics.median(values) for name, values in samples.items()}


def _verifier(issuer: FakeBetterAuth, loop: asyncio.AbstractEventLoop, cache_entries: int) -> TokenVerifier:
    jwks = issuer.jwks()

    async def fetch() -> Any:
        return import_jwks(jwks)

    cache = JWKSCache(
        fetch,
        min_refetch_interval_seconds=5,
        refresh_interval_seconds=300,
        max_staleness_seconds=86400,
        clock_skew_seconds=30,
    )
    loop.run_until_complete(cache.refresh())  # the key set is held before timing starts
    return TokenVerifier(
        cache, algorithms=ALGORITHMS, issuers=(issuer.issuer,), audiences=(issuer.audience,), leeway_seconds=30,
        max_token_bytes=8192, token_cache_max_entries=cache_entries,
    )  # fmt: skip


def bench_algorithm(alg: str, loop: asyncio.AbstractEventLoop) -> dict[str, float]:
    issuer = FakeBetterAuth(ISSUER_URL, alg=alg)
    token = issuer.issue_token("user-0123456789abcdef0123456789ab")
    header_b64, payload_b64, signature_b64 = token.split(".")
    signing_input = f"{header_b64}.{payload_b64}".encode()
    signature = _b64decode(signature_b64)
    key = import_jwks(issuer.jwks()).keys[issuer.current_key.kid]

    uncached = _verifier(issuer, loop, cache_entries=0)
    cached = _verifier(issuer, loop, cache_entries=100)
    loop.run_until_complete(cached.verify_token(token))  # the next calls are hits
    algorithm = JWSRegistry.algorithms[alg]
    if not algorithm.verify(signing_input, signature, key.key):
        raise RuntimeError(f"{alg}: the joserfc check of a fresh token failed")
    raw = raw_verifier(alg, key.key.public_key, signing_input, signature)
    raw()  # raises InvalidSignature if the raw setup is wrong

    ns = measure({
        "miss": async_loop(loop, lambda: uncached.verify_token(token)),
        "joserfc": sync_loop(lambda: algorithm.verify(signing_input, signature, key.key)),
        "raw": sync_loop(raw),
        "hit": async_loop(loop, lambda: cached.verify_token(token)),
    })  # fmt: skip
    miss_ns, joserfc_ns, raw_ns, hit_ns = ns["miss"], ns["joserfc"], ns["raw"], ns["hit"]
    return {
        "miss_us": round(miss_ns / 1000, 2),
        "joserfc_us": round(joserfc_ns / 1000, 2),
        "raw_us": round(raw_ns / 1000, 2),
        "hit_us": round(hit_ns / 1000, 3),
        "miss_over_raw": round(miss_ns / raw_ns, 2),
        "joserfc_over_raw": round(joserfc_ns / raw_ns, 2),
        "hit_over_miss": round(hit_ns / miss_ns, 4),
    }


def run_micro(algorithms: tuple[str, ...] = ALGORITHMS) -> dict[str, dict[str, float]]:
    loop = asyncio.new_event_loop()
    try:
        return {alg: bench_algorithm(alg, loop) for alg in algorithms}
    finally:
        loop.close()
