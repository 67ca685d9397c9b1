"""The process's open event streams, by user: bounded, woken by notifications, closed together.

The listener calls `notify(user_id, seq)` for every committed change it hears of; each of that
user's streams notes the seq and wakes up. A stream never holds a database connection while it
waits here: it reads the feed (briefly, through the pool) only when woken.
"""

from __future__ import annotations

import asyncio
import logging

from ..errors import ServiceError

log = logging.getLogger("service.sync")

RETRY_AFTER_SECONDS = 5


class TooManyStreams(ServiceError):
    status = 503
    code = "too_many_streams"
    title = "Service Unavailable"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


class Subscription:
    """One open stream's mailbox: woken when a change after `seen_seq` (what the stream has
    read up to) commits, or when it must stop."""

    __slots__ = ("closing", "seen_seq", "user_id", "wakeup")

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.seen_seq = 0
        self.closing = False
        self.wakeup = asyncio.Event()


class EventHub:
    def __init__(self, max_streams: int, max_streams_per_user: int) -> None:
        self.max_streams = max_streams
        self.max_streams_per_user = max_streams_per_user
        self.listening = False  # the LISTEN connection is up: streams may wait for notifications
        self.closing = False
        self._by_user: dict[str, set[Subscription]] = {}
        self._count = 0

    @property
    def open_streams(self) -> int:
        return self._count

    def subscribe(self, user_id: str) -> Subscription:
        """A new stream's mailbox; 503 when the process or the user has all the streams allowed."""
        if self.closing:
            raise TooManyStreams("the service is shutting down; reconnect shortly")
        if self._count >= self.max_streams:
            raise TooManyStreams("too many event streams are open on this server; retry shortly")
        streams = self._by_user.setdefault(user_id, set())
        if len(streams) >= self.max_streams_per_user:
            raise TooManyStreams(f"at most {self.max_streams_per_user} event streams per user; close one first")
        subscription = Subscription(user_id)
        streams.add(subscription)
        self._count += 1
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        streams = self._by_user.get(subscription.user_id)
        if streams is None or subscription not in streams:
            return
        streams.discard(subscription)
        self._count -= 1
        if not streams:
            del self._by_user[subscription.user_id]

    def notify(self, user_id: str, seq: int) -> None:
        for subscription in self._by_user.get(user_id, ()):
            if seq > subscription.seen_seq:
                subscription.wakeup.set()

    def wake_all(self) -> None:
        """After notifications may have been missed (the LISTEN connection was lost): every
        stream reads its feed again."""
        for streams in self._by_user.values():
            for subscription in streams:
                subscription.wakeup.set()

    def close_all(self) -> None:
        """Shutting down: every stream ends (cleanly, with its last token) and no new one opens."""
        if not self.closing:
            log.info("closing %d event streams", self._count)
        self.closing = True
        for streams in self._by_user.values():
            for subscription in streams:
                subscription.closing = True
                subscription.wakeup.set()
