"""A cache of the issuer's keys that follows key rotation (fetching is in fetch.py, what to do
with an unknown `kid` in kid_decision.py).

Rules: one fetch at a time; a routine refresh runs in the background so no request waits for it;
an unknown `kid` triggers at most one refetch per `min_refetch_interval`, counted from the last
attempt, and the request waits (bounded) for it unless the decision says otherwise; on failure
the last good keys are kept up to `max_staleness`. When the host answers 429 (or 503) with a retry
time, nothing is fetched before that time, by the refresher or for unknown kids.

Nothing here knows who reads the keys: readers that keep results derived from a key (the token
cache) watch `generation`, which moves on whenever a key is withdrawn or replaced.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ..errors import InvalidToken, KeysUnavailable, TokenRejection
from .keys import ImportedKeys, JWKSError, KeySet, PublicKey
from .kid_decision import FetchState, KidDecision, decide_kid

log = logging.getLogger("service.auth.jwks")

BACKOFF_INITIAL_SECONDS = 1.0
# With no usable key the service is not ready: it retries at least this often, so it becomes
# ready within seconds of the issuer appearing, whichever of the two started first.
BACKOFF_MAX_WITHOUT_KEYS_SECONDS = 5.0


@dataclass
class FetchStats:
    """Counters read by /metrics and /readyz."""

    ok: int = 0
    failed: int = 0
    fetch_seconds_total: float = 0.0  # with ok + failed: the mean fetch latency
    unknown_kid_refetches: int = 0  # fetches scheduled because of an unknown kid
    cooldown_waits: int = 0  # requests that waited for the next allowed fetch
    rate_limited: int = 0  # 429 (or 503 with a retry time) answers, each honoured
    last_error: str | None = None  # why the last fetch failed; never a URL (it reaches /readyz)


class JWKSCache:
    def __init__(
        self,
        fetch: Callable[[], Awaitable[ImportedKeys]],
        *,
        min_refetch_interval_seconds: float,
        refresh_interval_seconds: float,
        max_staleness_seconds: float,
        clock_skew_seconds: float,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        source: str = "the JWKS host",
    ) -> None:
        self._fetch = fetch
        self.min_refetch_interval = min_refetch_interval_seconds
        self.refresh_interval = refresh_interval_seconds
        self.max_staleness = max_staleness_seconds
        self.clock_skew = clock_skew_seconds
        self._clock = clock
        self._sleep = sleep
        self._source = source  # for the log only: where the keys come from
        self._current: KeySet | None = None
        self._generation = 0
        self._flight: asyncio.Task[KeySet | None] | None = None
        self._scheduled: asyncio.Task[KeySet | None] | None = None
        self._last_attempt = -math.inf
        self._next_retry_at = -math.inf  # when the refresher tries again after a failure
        self._held_off_until = -math.inf  # no fetch before this: the host's 429/503 retry time
        self._failing = False
        self.stats = FetchStats()

    # -- reading ---------------------------------------------------------------------------

    @property
    def generation(self) -> int:
        """Moves on whenever a key is withdrawn or replaced: whatever was derived from an older
        generation's keys may be derived from a key that is no longer published."""
        return self._generation

    def usable_set(self) -> KeySet | None:
        """The cached set, unless it is older than the maximum staleness."""
        current = self._current
        if current is None or self._clock() > current.usable_until:
            return None
        return current

    def stale_seconds(self) -> float | None:
        return None if self._current is None else self._clock() - self._current.fetch_started_at

    def retry_after_seconds(self) -> int:
        """When a client may usefully retry after a 503: the refresher's next attempt."""
        next_try = max(self._next_retry_at, self._last_attempt + self.min_refetch_interval, self._held_off_until)
        return max(1, math.ceil(next_try - self._clock()))

    async def get_key(self, kid: str, issued_at: float) -> PublicKey:
        """The published key for `kid`, fetching the set again if it may have appeared since.
        `issued_at` is the token's unverified `iat`: it only decides how long to wait.

        Raises InvalidToken (unknown_kid) when the issuer does not publish it, KeysUnavailable
        when we cannot tell because no usable key set can be had."""
        state, decision = self._decide(kid, issued_at, fetched_since_asked=False)
        if decision is KidDecision.WAIT and self._flight is not None:
            # A fetch under way (at start-up, or a refresh) may already bring the key.
            await asyncio.shield(self._flight)
            state, decision = self._decide(kid, issued_at, fetched_since_asked=False)
        if decision is KidDecision.WAIT:
            await self._next_allowed_fetch()
            state, decision = self._decide(kid, issued_at, fetched_since_asked=True)
        if decision is KidDecision.USE and state.held is not None:
            return state.held.keys[kid]
        if decision is KidDecision.REFUSE_UNKNOWN:
            raise InvalidToken(TokenRejection.UNKNOWN_KID, f"no published key has kid {kid[:64]!r}")
        log.debug("signing keys unavailable for a request: %s", self.stats.last_error or "no key set fetched yet")
        raise KeysUnavailable(retry_after_seconds=self.retry_after_seconds())

    def _decide(self, kid: str, issued_at: float, *, fetched_since_asked: bool) -> tuple[FetchState, KidDecision]:
        state = FetchState(
            held=self.usable_set(),
            failing=self._failing,
            last_attempt=self._last_attempt,
            fetch_pending=self._flight is not None or self._scheduled is not None,
            held_off_until=self._held_off_until,
        )
        decision = decide_kid(
            state,
            kid,
            issued_at,
            self._clock(),
            cooldown=self.min_refetch_interval,
            skew=self.clock_skew,
            fetched_since_asked=fetched_since_asked,
        )
        return state, decision

    # -- fetching --------------------------------------------------------------------------

    async def refresh(self) -> KeySet | None:
        """Fetch now (joining a fetch already in flight). Returns the new set, or None on failure
        or while the host has asked us to hold off."""
        if self._flight is None and self._clock() < self._held_off_until:
            return None
        if self._flight is None:
            self._flight = asyncio.create_task(self._fetch_once(self._clock()))
        return await asyncio.shield(self._flight)

    async def _next_allowed_fetch(self) -> None:
        """Wait for the next allowed fetch, shared by every request that needs it."""
        if self._scheduled is None:
            # Clamped: a wall clock stepped back must not turn the cooldown into an hour.
            now = self._clock()
            delay = min(
                max(0.0, self._last_attempt + self.min_refetch_interval - now, self._held_off_until - now),
                self.min_refetch_interval,  # _decide refuses waits beyond it
            )
            self.stats.unknown_kid_refetches += 1
            self._scheduled = asyncio.create_task(self._refetch_after(delay))
        self.stats.cooldown_waits += 1
        await asyncio.shield(self._scheduled)

    async def _refetch_after(self, delay: float) -> KeySet | None:
        try:
            if delay > 0:
                await self._sleep(delay)
            return await self.refresh()  # joins a flight that started while we waited
        finally:
            self._scheduled = None

    async def _fetch_once(self, started_at: float) -> KeySet | None:
        self._last_attempt = started_at
        try:
            imported = await self._fetch()
        except Exception as exc:  # noqa: BLE001 - any failure keeps the last good keys
            self._record_failure(exc)
            return None
        finally:
            self.stats.fetch_seconds_total += max(0.0, self._clock() - started_at)
            self._flight = None
        return self._install(imported.keys, started_at)

    def _install(self, keys: dict[str, PublicKey], started_at: float) -> KeySet:
        old = self._current.keys if self._current is not None else {}
        self.stats.ok += 1
        if self._failing:
            log.info("jwks fetch recovered: %d key(s) held", len(keys))
            self._failing = False
        withdrawn = {kid for kid, key in old.items() if kid not in keys or not _same_key(key, keys[kid])}
        added = set(keys) - set(old)
        if added or withdrawn:
            log.info("jwks keys changed: added %s, withdrawn or replaced %s", sorted(added), sorted(withdrawn))
        if withdrawn:
            self._generation += 1
        # One fetch at a time (single flight), so each result is newer than the one it replaces.
        self._current = KeySet(
            keys=keys,
            fetch_started_at=started_at,
            usable_until=started_at + self.max_staleness,
            generation=self._generation,
        )
        return self._current

    def _record_failure(self, exc: BaseException) -> None:
        reason = str(exc) if isinstance(exc, JWKSError) else type(exc).__name__
        self.stats.failed += 1
        self.stats.last_error = reason
        if isinstance(exc, JWKSError) and exc.retry_after_seconds is not None:
            self.stats.rate_limited += 1
            self._held_off_until = self._clock() + exc.retry_after_seconds
        if not self._failing:  # log once per state change, not once per attempt
            log.warning(
                "jwks fetch from %s failing (%s); %s",
                self._source,
                reason,
                "keeping the last good keys" if self._current else "no keys held yet",
            )
            self._failing = True

    async def aclose(self) -> None:
        """Cancel a fetch or a scheduled refetch still pending at shutdown."""
        for task in (self._scheduled, self._flight):
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    # -- background ------------------------------------------------------------------------

    async def run_refresher(self) -> None:
        """Keep the set fresh forever: refresh every interval, retry failures with backoff."""
        backoff = BACKOFF_INITIAL_SECONDS
        while True:
            try:
                result = await self.refresh()
            except Exception:
                log.exception("jwks refresh raised")
                result = None
            if result is not None:
                backoff = BACKOFF_INITIAL_SECONDS
                await self._sleep(self.refresh_interval)
            else:
                ceiling = self.refresh_interval if self.usable_set() else BACKOFF_MAX_WITHOUT_KEYS_SECONDS
                wait = max(min(backoff, ceiling), self._held_off_until - self._clock())
                self._next_retry_at = self._clock() + wait
                await self._sleep(wait)
                backoff = min(backoff * 2, self.refresh_interval)


def _same_key(old: PublicKey, new: PublicKey) -> bool:
    """The same key material under the same kid (a refetch builds new objects for the same keys)."""
    return old.alg == new.alg and old.key.as_dict(private=False) == new.key.as_dict(private=False)
