"""Bounded waits for async tests: a condition, or /readyz reaching a status. Every wait has a
deadline and fails with what it was waiting for."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import pytest

from service.health import ReadinessProbe

POLL_INTERVAL_SECONDS = 0.05
READY_CACHE_SECONDS = ReadinessProbe.RESULT_TTL_SECONDS  # /readyz may answer a result this old

T = TypeVar("T")


async def wait_until(predicate: Callable[[], object], deadline_seconds: float, what: str) -> None:
    """Poll `predicate` until it is true; fail naming `what` at the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {deadline_seconds:g} s", pytrace=False)
        await asyncio.sleep(POLL_INTERVAL_SECONDS)


async def timed(request: Awaitable[T]) -> tuple[T, float]:
    """The answer and the seconds it took."""
    started = time.monotonic()
    answer = await request
    return answer, time.monotonic() - started


async def readyz_becomes(client: httpx.AsyncClient, status: int, within_seconds: float) -> httpx.Response:
    """Poll /readyz until it answers `status` (it caches its result for READY_CACHE_SECONDS);
    each answer must itself come within the bound."""
    deadline = time.monotonic() + within_seconds
    while True:
        response, seconds = await timed(client.get("/readyz"))
        assert seconds < within_seconds, "/readyz itself hung"
        if response.status_code == status:
            return response
        assert time.monotonic() < deadline, (
            f"/readyz still {response.status_code} {response.text} after {within_seconds} s"
        )
        await asyncio.sleep(POLL_INTERVAL_SECONDS)
