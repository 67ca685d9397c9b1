"""A cache of the issuer's keys that follows key rotation (fetching itself is in fetch.py).

Rules (DESIGN §3.4): one fetch at a time; a routine refresh runs in the background so no request
waits for it; an unknown `kid` triggers at most one refetch per `min_refetch_interval`, counted
from the last attempt; a request with an unknown `kid` waits (bounded) for the next allowed fetch
unless the set we hold was fetched after the token was issued; on failure the last good keys are
kept up to `max_staleness`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .fetch import JWKSFetchError
from .keys import ImportedKeys, PublicKey

log = logging.getLogger("service.auth.jwks")

BACKOFF_INITIAL_SECONDS = 1.0


@dataclass(frozen=True)
class KeySet:
    keys: dict[str, PublicKey]
    fetch_started_at: float  # wall clock when the request that produced it was sent


@dataclass
class FetchStats:
    """Counters read by /metrics and /readyz."""

    ok: int = 0
    failed: int = 0
    fetch_seconds_total: float = 0.0  # with ok + failed: the mean fetch latency
    unknown_kid_refetches: int = 0  # fetches scheduled because of an unknown kid
    cooldown_waits: int = 0  # requests that waited for the next allowed fetch
    unknown_kid_rejections: int = 0
    last_error: str | None = None


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
        on_keys_removed: Callable[[set[str]], None] | None = None,
    ) -> None:
        self._fetch = fetch
        self.min_refetch_interval = min_refetch_interval_seconds
        self.refresh_interval = refresh_interval_seconds
        self.max_staleness = max_staleness_seconds
        self.clock_skew = clock_skew_seconds
        self._clock = clock
        self._sleep = sleep
        self.on_keys_removed = on_keys_removed
        self._current: KeySet | None = None
        self._flight: asyncio.Task[KeySet | None] | None = None
        self._flight_started_at = -math.inf
        self._scheduled: asyncio.Task[KeySet | None] | None = None
        self._last_attempt = -math.inf
        self._next_retry_at = -math.inf  # when the refresher tries again after a failure
        self._failing = False
        self.stats = FetchStats()

    # -- reading ---------------------------------------------------------------------------

    def usable_set(self) -> KeySet | None:
        """The cached set, unless it is older than the maximum staleness."""
        current = self._current
        if current is None or self._clock() - current.fetch_started_at > self.max_staleness:
            return None
        return current

    def stale_seconds(self) -> float | None:
        return None if self._current is None else self._clock() - self._current.fetch_started_at

    def retry_after_seconds(self) -> int:
        """When a client may usefully retry after a 503: the refresher's next attempt."""
        next_try = max(self._next_retry_at, self._last_attempt + self.min_refetch_interval)
        return max(1, math.ceil(next_try - self._clock()))

    async def get_key(self, kid: str, issued_at: float) -> PublicKey:
        """The key for `kid`, refetching if it is unknown.

        Raises UnknownKidError when the issuer does not publish it, KeysUnavailableError when we
        cannot tell because no usable key set can be had.
        """
        key = self._decide(kid, issued_at, final=False)
        if key is not None:
            return key
        if (
            self._failing
            and self._flight is None
            and self._scheduled is None
            and self._clock() < self._last_attempt + self.min_refetch_interval
        ):
            # The host failed moments ago: answer now rather than wait. Once a refetch is allowed
            # again the request tries one (the host may be back, with a new key set).
            raise KeysUnavailableError(self.stats.last_error or "the JWKS host is failing")
        if self._flight is not None:
            # A fetch under way (at start-up, or a refresh) may already bring the key.
            await asyncio.shield(self._flight)
            key = self._decide(kid, issued_at, final=False)
            if key is not None:
                return key
        await self._next_allowed_fetch()
        return self._decide(kid, issued_at, final=True)

    def _decide(self, kid: str, issued_at: float, *, final: bool) -> PublicKey | None:
        """The key; or UnknownKidError once the set we hold proves it unpublished; or, before the
        final fetch, None (wait for it); after it, KeysUnavailableError if we could not learn."""
        held = self.usable_set()
        if held is not None and kid in held.keys:
            return held.keys[kid]
        if held is not None and self._postdates(held, issued_at):
            # Our set was fetched after this token was signed, so its key would be in it.
            self.stats.unknown_kid_rejections += 1
            raise UnknownKidError(kid)
        if not final:
            return None
        if held is None or self._failing:
            # Not the token's fault: we could not learn whether its key exists.
            raise KeysUnavailableError(self.stats.last_error or "no key set fetched yet")
        self.stats.unknown_kid_rejections += 1
        raise UnknownKidError(kid)

    def _postdates(self, held: KeySet, issued_at: float) -> bool:
        """The set was fetched after the token was signed (allowing for skew), and not, by a clock
        stepped back since, apparently in the future."""
        return issued_at + self.clock_skew <= held.fetch_started_at <= self._clock()

    # -- fetching --------------------------------------------------------------------------

    async def refresh(self) -> KeySet | None:
        """Fetch now (joining a fetch already in flight). Returns the new set, or None on failure."""
        if self._flight is None:
            self._flight_started_at = self._clock()
            self._flight = asyncio.create_task(self._fetch_once(self._flight_started_at))
        return await asyncio.shield(self._flight)

    async def _next_allowed_fetch(self) -> None:
        """Wait for the next allowed fetch, shared by every request that needs it."""
        if self._scheduled is None:
            # Clamped: a wall clock stepped back must not turn the cooldown into an hour.
            delay = min(
                max(0.0, self._last_attempt + self.min_refetch_interval - self._clock()), self.min_refetch_interval
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
        return self._install(KeySet(keys=imported.keys, fetch_started_at=started_at))

    def _install(self, new: KeySet) -> KeySet:
        old = self._current
        self.stats.ok += 1
        if self._failing:
            log.info("jwks fetch recovered: %d key(s) held", len(new.keys))
            self._failing = False
        # One fetch at a time (single flight), so each result is newer than the one it replaces.
        self._current = new
        removed = set(old.keys) - set(new.keys) if old is not None else set()
        added = set(new.keys) - set(old.keys) if old is not None else set(new.keys)
        if added or removed:
            log.info("jwks keys changed: added %s, removed %s", sorted(added), sorted(removed))
        if removed and self.on_keys_removed is not None:
            self.on_keys_removed(removed)
        return new

    def _record_failure(self, exc: BaseException) -> None:
        reason = str(exc) if isinstance(exc, JWKSFetchError) else f"{type(exc).__name__}"
        self.stats.failed += 1
        self.stats.last_error = reason
        if not self._failing:  # log once per state change, not once per attempt
            log.warning(
                "jwks fetch failing (%s); %s",
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
                self._next_retry_at = self._clock() + backoff
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.refresh_interval)


class KeysUnavailableError(Exception):
    """No usable key set is held and none could be fetched."""


class UnknownKidError(Exception):
    """The issuer's current key set has no key with this kid."""
