"""Liveness, readiness and Prometheus metrics. These routes need no token."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response

from .metrics import CONTENT_TYPE, ServiceMetrics
from .resources import resources

router = APIRouter(tags=["health"])
log = logging.getLogger("service.health")

READINESS_DB_TIMEOUT_SECONDS = 1.0


@router.get("/healthz", summary="The process is alive")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get(
    "/readyz",
    summary="The database answers and at least one signing key is usable",
    responses={
        503: {
            "description": "Not ready; `problems` says what (details are in the log)",
            "content": {"application/json": {}},
        }
    },
)
async def readyz(request: Request) -> Response:
    probe: ReadinessProbe = request.app.state.readiness
    ready, body = await probe.check(resources(request))
    return Response(body, status_code=200 if ready else 503, media_type="application/json")


class ReadinessProbe:
    """Probes the database at most once per RESULT_TTL_SECONDS, shared by concurrent callers, so a
    flood of unauthenticated probes cannot take connections away from the API.

    The answer is public: it says what is not ready, never which host or what error. The details
    go to the log, once each time they change (and stay in /metrics and `python -m service jwks`)."""

    RESULT_TTL_SECONDS = 1.0

    def __init__(self) -> None:
        self._lock = asyncio.Lock()
        self._checked_at = -1e18
        self._result: tuple[bool, bytes] = (False, b"{}")
        self._logged: tuple[str, ...] = ()

    async def check(self, resources: Any) -> tuple[bool, bytes]:
        async with self._lock:
            if time.monotonic() - self._checked_at >= self.RESULT_TTL_SECONDS:
                self._result = await self._probe(resources)
                self._checked_at = time.monotonic()
            return self._result

    async def _probe(self, resources: Any) -> tuple[bool, bytes]:
        problems: list[str] = []
        details: list[str] = []
        try:
            async with asyncio.timeout(READINESS_DB_TIMEOUT_SECONDS):
                await resources.pool.fetchval("SELECT 1")
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"
            problems.append("database: not answering")
            details.append(f"database: {type(exc).__name__}: {exc}")
        held = resources.jwks.usable_set()
        if held is None or not held.keys:
            problems.append("signing keys: none usable")
            details.append(f"signing keys: none usable ({resources.jwks.stats.last_error or 'not fetched yet'})")
        self._log_change(tuple(details))
        body = {
            "status": "not ready" if problems else "ready",
            "problems": problems,
            "keys": len(held.keys) if held else 0,
        }
        return not problems, orjson.dumps(body)

    def _log_change(self, details: tuple[str, ...]) -> None:
        if details == self._logged:
            return
        if details:
            log.warning("not ready: %s", "; ".join(details))
        else:
            log.info("ready")
        self._logged = details


@router.get(
    "/metrics",
    summary="Prometheus text format",
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
async def metrics(request: Request) -> Response:
    service_metrics: ServiceMetrics = request.app.state.metrics
    return Response(service_metrics.render(), media_type=CONTENT_TYPE)
