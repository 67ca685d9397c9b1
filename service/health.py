"""Liveness, readiness and Prometheus metrics. These routes need no token."""

from __future__ import annotations

import asyncio
import time

import orjson
from fastapi import APIRouter, Request, Response

router = APIRouter(tags=["health"])

READINESS_DB_TIMEOUT_SECONDS = 1.0


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get(
    "/readyz",
    summary="The database answers and at least one signing key is usable",
    responses={503: {"description": "Not ready; `problems` says why", "content": {"application/json": {}}}},
)
async def readyz(request: Request) -> Response:
    probe: ReadinessProbe = request.app.state.readiness
    ready, body = await probe.check(request.app.state.resources)
    return Response(body, status_code=200 if ready else 503, media_type="application/json")


class ReadinessProbe:
    """Probes the database at most once per RESULT_TTL_SECONDS, shared by concurrent callers, so a
    flood of unauthenticated probes cannot take connections away from the API."""

    RESULT_TTL_SECONDS = 1.0

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._checked_at = -1e18
        self._result: tuple[bool, bytes] = (False, b"{}")

    async def check(self, resources) -> tuple[bool, bytes]:
        async with self._lock:
            if time.monotonic() - self._checked_at >= self.RESULT_TTL_SECONDS:
                self._result = await self._probe(resources)
                self._checked_at = time.monotonic()
            return self._result

    async def _probe(self, resources) -> tuple[bool, bytes]:
        problems: list[str] = []
        try:
            async with asyncio.timeout(READINESS_DB_TIMEOUT_SECONDS):
                await resources.pool.fetchval("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready", with its kind
            problems.append(f"database: {type(exc).__name__}")
        held = resources.jwks.usable_set()
        if held is None or not held.keys:
            reason = resources.jwks.stats.last_error or "not fetched yet"
            problems.append(f"signing keys: none usable ({reason})")
        body = {
            "status": "not ready" if problems else "ready",
            "problems": problems,
            "keys": len(held.keys) if held else 0,
        }
        return not problems, orjson.dumps(body)


@router.get(
    "/metrics",
    summary="Prometheus text format",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    resources = request.app.state.resources
    stats = resources.jwks.stats
    held = resources.jwks.usable_set()
    stale = resources.jwks.stale_seconds()
    verifier = resources.verifier
    fetches = stats.ok + stats.failed
    lines = [
        "# HELP jwks_fetches_total JWKS fetches by result.",
        "# TYPE jwks_fetches_total counter",
        f'jwks_fetches_total{{result="ok"}} {stats.ok}',
        f'jwks_fetches_total{{result="failed"}} {stats.failed}',
        "# HELP jwks_fetch_seconds Time spent fetching the JWKS.",
        "# TYPE jwks_fetch_seconds summary",
        f"jwks_fetch_seconds_sum {stats.fetch_seconds_total:.6f}",
        f"jwks_fetch_seconds_count {fetches}",
        "# HELP jwks_unknown_kid_refetches_total Fetches scheduled because a token named an unknown kid.",
        "# TYPE jwks_unknown_kid_refetches_total counter",
        f"jwks_unknown_kid_refetches_total {stats.unknown_kid_refetches}",
        "# HELP jwks_cooldown_waits_total Requests that waited for the next allowed fetch.",
        "# TYPE jwks_cooldown_waits_total counter",
        f"jwks_cooldown_waits_total {stats.cooldown_waits}",
        "# HELP jwks_keys Usable keys held.",
        "# TYPE jwks_keys gauge",
        f"jwks_keys {len(held.keys) if held else 0}",
        "# HELP jwks_stale_seconds Age of the key set held (-1: none).",
        "# TYPE jwks_stale_seconds gauge",
        f"jwks_stale_seconds {stale if stale is not None else -1:.3f}",
        "# HELP token_cache_lookups_total Verified-token cache lookups.",
        "# TYPE token_cache_lookups_total counter",
        f'token_cache_lookups_total{{result="hit"}} {verifier.cache_hits}',
        f'token_cache_lookups_total{{result="miss"}} {verifier.cache_misses}',
        "# TYPE token_cache_evictions_total counter",
        f"token_cache_evictions_total {verifier.cache_evictions}",
        "# TYPE token_cache_entries gauge",
        f"token_cache_entries {verifier.cache_size}",
        "# HELP token_verifications_total Bearer verifications by outcome.",
        "# TYPE token_verifications_total counter",
        *(
            f'token_verifications_total{{outcome="{outcome}"}} {count}'
            for outcome, count in sorted(verifier.outcomes.items())
        ),
        "# TYPE db_pool_connections gauge",
        f'db_pool_connections{{state="total"}} {resources.pool.get_size()}',
        f'db_pool_connections{{state="idle"}} {resources.pool.get_idle_size()}',
    ]
    lines += request.app.state.request_metrics.render()
    return Response("\n".join(lines) + "\n", media_type="text/plain; version=0.0.4")
