"""SESSION_CHECK=http on its own: answers cached for a few seconds and shared by concurrent
requests, an ended session refused, and Better Auth unreachable failing closed or open as set.

The session-status endpoint is an httpx.MockTransport here (tests/interop asks the real Better
Auth plugin); the clock is fake, so the cache's lifetime is exact."""

from __future__ import annotations

import asyncio
import json
import logging

import httpx
import pytest

from service.auth.claims import Principal
from service.auth.session_check import SessionChecker
from service.errors import InvalidToken, SessionCheckUnavailable, TokenRejection
from support.clock import FakeClock

URL = "http://auth.internal:3000/api/auth/session-status"
SECRET = "s3cret-for-the-session-check"
CACHE_SECONDS = 5.0


class StatusHost:
    """What the sessionStatus plugin answers, and what it was asked."""

    def __init__(self) -> None:
        self.alive: set[str] = {"alive"}
        self.asked: list[str] = []
        self.failure: httpx.Response | Exception | None = None
        self.gate: asyncio.Event | None = None

    async def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"] == f"Bearer {SECRET}"
        sid = json.loads(request.content)["sid"]
        self.asked.append(sid)
        if self.gate is not None:
            await self.gate.wait()
        if isinstance(self.failure, Exception):
            raise self.failure
        if self.failure is not None:
            return self.failure
        return httpx.Response(200, json={"active": sid in self.alive})


@pytest.fixture
def host() -> StatusHost:
    return StatusHost()


@pytest.fixture
async def make_checker(host: StatusHost, clock: FakeClock):
    clients = []

    def make(fail_open: bool = False, cache_seconds: float = CACHE_SECONDS) -> SessionChecker:
        client = httpx.AsyncClient(transport=httpx.MockTransport(host.handle))
        clients.append(client)
        return SessionChecker(
            client, URL, SECRET, cache_seconds=cache_seconds, timeout_seconds=1, fail_open=fail_open, clock=clock
        )

    yield make
    for client in clients:
        await client.aclose()


def principal(sid: str | None) -> Principal:
    return Principal(user_id="user-1", kid="k", expires_at=2e9, claims={}, session_id=sid)


async def test_a_live_session_passes_and_its_answer_is_reused_for_the_cache_time(make_checker, host, clock):
    checker = make_checker()
    for _ in range(3):
        await checker.require_active(principal("alive"))
        await clock.advance(CACHE_SECONDS / 3 - 0.01)
    assert host.asked == ["alive"]
    await clock.advance(0.1)  # the answer is now older than the cache time
    await checker.require_active(principal("alive"))
    assert host.asked == ["alive", "alive"] and checker.stats.cache_hits == 2


async def test_a_signed_out_session_is_401_session_ended_within_the_cache_time(make_checker, host, clock):
    checker = make_checker()
    await checker.require_active(principal("alive"))
    host.alive.clear()  # the user signs out
    await checker.require_active(principal("alive"))  # still the cached answer
    await clock.advance(CACHE_SECONDS)
    with pytest.raises(InvalidToken) as refused:
        await checker.require_active(principal("alive"))
    assert refused.value.reason is TokenRejection.SESSION_ENDED and refused.value.status == 401
    assert checker.stats.ended == 1


async def test_a_token_without_sid_is_refused_with_a_clear_reason(make_checker, host):
    with pytest.raises(InvalidToken, match="sid"):
        await make_checker().require_active(principal(None))
    assert host.asked == []


async def test_concurrent_requests_for_one_session_ask_once(make_checker, host):
    checker = make_checker()
    host.gate = asyncio.Event()
    waiting = [asyncio.create_task(checker.require_active(principal("alive"))) for _ in range(50)]
    await asyncio.sleep(0)
    host.gate.set()
    await asyncio.gather(*waiting)
    assert host.asked == ["alive"]


FAILURES = [
    pytest.param(httpx.Response(500), id="http-500"),
    pytest.param(httpx.Response(404), id="plugin-missing-404"),
    pytest.param(httpx.Response(200, text="<html>"), id="not-json"),
    pytest.param(httpx.Response(200, json={"active": "yes"}), id="no-boolean"),
    pytest.param(httpx.ConnectError("refused"), id="unreachable"),
]


@pytest.mark.parametrize("failure", FAILURES)
async def test_failing_closed_answers_503_and_logs_once_without_caching_the_failure(
    make_checker, host, clock, caplog, failure
):
    caplog.set_level(logging.WARNING, "service.auth.session_check")
    checker = make_checker()
    host.failure = failure
    for _ in range(3):
        with pytest.raises(SessionCheckUnavailable) as refused:
            await checker.require_active(principal("alive"))
        assert refused.value.status == 503 and "Retry-After" in refused.value.headers
    assert len(host.asked) == 3 and checker.stats.failed == 3
    assert len([r for r in caplog.records if "failing" in r.getMessage()]) == 1
    host.failure = None
    await checker.require_active(principal("alive"))  # recovers at once


@pytest.mark.parametrize("failure", FAILURES)
async def test_failing_open_lets_the_request_through_and_counts_it(make_checker, host, failure):
    checker = make_checker(fail_open=True)
    host.failure = failure
    await checker.require_active(principal("alive"))
    assert checker.stats.failed_open == 1


async def test_a_zero_cache_time_asks_every_time(make_checker, host):
    checker = make_checker(cache_seconds=0)
    for _ in range(3):
        await checker.require_active(principal("alive"))
    assert host.asked == ["alive"] * 3
