"""A text/event-stream of one user's changes: one event per change, `id:` its sync token.

The stream sends the page read when it opened, then waits for its subscription to be woken (a
notification of a newer change), reads the feed from its last token through the pool, and sends
what it read. While idle it holds no database connection, and sends a comment every heartbeat
so that proxies keep the connection open. It ends when the token that opened it expires, when
the service shuts down, or when the feed cannot be read; its last block is then a bare `id:`
line with a fresh token, which an EventSource keeps (without firing an event) and sends back as
Last-Event-ID when it reconnects, so nothing is lost across the reconnection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from ..db.pool import UNAVAILABLE_ERRORS
from ..errors import ServiceError
from .feed import Page
from .hub import EventHub, Subscription
from .tokens import SyncToken

log = logging.getLogger("service.sync")

HEARTBEAT = b": keep-alive\n\n"
MEDIA_TYPE = "text/event-stream"
# Failures that end a stream (its client reconnects), rather than the process.
READ_FAILURES: tuple[type[Exception], ...] = (ServiceError, *UNAVAILABLE_ERRORS)


def event(token: str, change: str) -> bytes:
    # A change is one line of JSON (PostgreSQL escapes control characters inside strings).
    return f"id: {token}\ndata: {change}\n\n".encode()


def last_id(token: str) -> bytes:
    return f"id: {token}\n\n".encode()


async def stream_changes(
    first: Page,
    read_after: Callable[[SyncToken], Awaitable[Page]],
    encode: Callable[[SyncToken], str],
    now: Callable[[], float],
    hub: EventHub,
    subscription: Subscription,
    heartbeat_seconds: float,
    closes_at: float,
) -> AsyncIterator[bytes]:
    """The stream's body. `closes_at` is the wall-clock expiry of the token that opened it."""
    page = first
    while True:
        for token, change in page.changes:
            yield event(encode(token), change)
        position = page.next
        subscription.seen_seq = position.seq
        if not page.more:
            while not subscription.closing and (left := closes_at - now()) > 0:
                try:
                    async with asyncio.timeout(min(heartbeat_seconds, left)):
                        await subscription.wakeup.wait()
                    break
                except TimeoutError:
                    yield HEARTBEAT
                    if not hub.listening:  # notifications may be missed: look anyway
                        break
            if subscription.closing or closes_at <= now():
                yield last_id(encode(position.reissued(now())))
                return
        subscription.wakeup.clear()
        try:
            page = await read_after(position)
        except READ_FAILURES as exc:
            log.warning("event stream ended, the feed cannot be read: %s", type(exc).__name__)
            yield last_id(encode(position.reissued(now())))
            return


class EventStreamResponse(StreamingResponse):
    """A streaming response that frees its subscription however it ends (also when the client
    leaves before the first byte, when its body iterator never starts)."""

    def __init__(self, body: AsyncIterator[bytes], release: Callable[[], None]) -> None:
        super().__init__(
            body,
            media_type=MEDIA_TYPE,
            headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},  # no proxy buffering
        )
        self._release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()
