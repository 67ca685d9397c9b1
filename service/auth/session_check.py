"""SESSION_CHECK=http: is the session behind a token (its `sid`) still alive at Better Auth?

Offline verification trusts a token until `exp`, sign-out or not. With the check on, the
session-status endpoint (a small Better Auth plugin, shown in the README) is asked about each
`sid`; answers are reused for a few seconds, and concurrent requests for one `sid` share one
question. When Better Auth cannot answer, the request fails closed (503) or open, as configured.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from cachetools import TTLCache

from ..errors import InvalidToken, SessionCheckUnavailable, TokenRejection
from .claims import Principal

log = logging.getLogger("service.auth.session_check")

MAX_CACHED_SESSIONS = 100_000
MAX_ANSWER_BYTES = 4096


class SessionCheckFailed(Exception):
    """Better Auth gave no usable answer; the message never names the URL."""


@dataclass
class SessionCheckStats:
    """Counters read by /metrics."""

    cache_hits: int = 0
    asked: int = 0  # questions sent to Better Auth
    ended: int = 0  # answers "no such session"
    failed: int = 0  # questions without a usable answer
    failed_open: int = 0  # requests let through although the check failed


class SessionChecker:
    def __init__(
        self,
        http: httpx.AsyncClient,
        url: str,
        secret: str,
        *,
        cache_seconds: float,
        timeout_seconds: float,
        fail_open: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._http = http
        self._url = url
        self._headers = {"Authorization": f"Bearer {secret}", "Accept": "application/json"}
        self._timeout = timeout_seconds
        self._fail_open = fail_open
        self._answers: TTLCache[str, bool] | None = (
            TTLCache(maxsize=MAX_CACHED_SESSIONS, ttl=cache_seconds, timer=clock) if cache_seconds > 0 else None
        )
        self._asking: dict[str, asyncio.Future[bool]] = {}
        self._failing = False
        self.stats = SessionCheckStats()

    async def require_active(self, principal: Principal) -> None:
        """Return when the token's session is alive; InvalidToken (401) when it has ended,
        SessionCheckUnavailable (503) when we cannot tell and fail closed."""
        sid = principal.session_id
        if sid is None:
            raise InvalidToken(TokenRejection.CLAIMS, "the token carries no 'sid' claim, which the session check needs")
        active = self._answers.get(sid) if self._answers is not None else None
        if active is not None:
            self.stats.cache_hits += 1
        else:
            try:
                active = await self._ask_once(sid)
            except SessionCheckFailed:
                if not self._fail_open:
                    raise SessionCheckUnavailable() from None
                self.stats.failed_open += 1
                return
        if not active:
            raise InvalidToken(TokenRejection.SESSION_ENDED, "the session behind this token has ended")

    async def _ask_once(self, sid: str) -> bool:
        """One question per `sid` at a time, whoever asks."""
        pending = self._asking.get(sid)
        if pending is None:
            pending = asyncio.ensure_future(self._ask(sid))
            self._asking[sid] = pending
            pending.add_done_callback(lambda _: self._asking.pop(sid, None))
        return await asyncio.shield(pending)

    async def _ask(self, sid: str) -> bool:
        self.stats.asked += 1
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._http.post(
                    self._url, json={"sid": sid}, headers=self._headers, follow_redirects=False
                )
            active = _read_answer(response)
        except (TimeoutError, httpx.HTTPError, SessionCheckFailed) as exc:
            self.stats.failed += 1
            reason = str(exc) if isinstance(exc, SessionCheckFailed) else type(exc).__name__
            if not self._failing:  # log once per state change
                log.warning(
                    "session check at %s failing (%s); requests %s",
                    self._url,
                    reason,
                    "pass (fail open)" if self._fail_open else "get 503 (fail closed)",
                )
                self._failing = True
            raise SessionCheckFailed(reason) from None
        if self._failing:
            log.info("session check recovered")
            self._failing = False
        if not active:
            self.stats.ended += 1
        if self._answers is not None:
            self._answers[sid] = active
        return active


def _read_answer(response: httpx.Response) -> bool:
    if response.status_code != 200:
        raise SessionCheckFailed(f"HTTP {response.status_code}")
    if len(response.content) > MAX_ANSWER_BYTES:
        raise SessionCheckFailed("answer too large")
    try:
        body = response.json()
    except ValueError:
        raise SessionCheckFailed("answer is not JSON") from None
    active = body.get("active") if isinstance(body, dict) else None
    if not isinstance(active, bool):
        raise SessionCheckFailed('answer lacks a boolean "active"')
    return active
