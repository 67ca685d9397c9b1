"""Live updates' share of the lifespan: the hub, the LISTEN connection, the tombstone purge,
and closing every stream as soon as the server is asked to stop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, cast

import asyncpg
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from ..settings import Settings
from .hub import EventHub
from .listener import ChangeListener
from .purge import purge_forever

log = logging.getLogger("service.sync")

LISTEN_START_SECONDS = 5.0  # start-up waits this long for LISTEN, then serves and keeps trying


async def start_live_updates(
    app: Starlette, settings: Settings, dsn: str, pool: asyncpg.Pool, stack: contextlib.AsyncExitStack
) -> EventHub:
    """Open the hub and its listener for the app; `stack` closes them (streams first)."""
    hub = EventHub(settings.event_streams_max, settings.event_streams_per_user)
    app.state.event_hub = hub
    listen_dsn = settings.database_listen_url.get_secret_value() if settings.database_listen_url else dsn
    listener = ChangeListener(listen_dsn, hub)
    tasks = [
        asyncio.create_task(listener.run(), name="sync-listener"),
        asyncio.create_task(purge_forever(pool, settings.sync_retention_days), name="sync-purge"),
    ]
    stack.push_async_callback(_cancel_all, tasks)
    stack.callback(hub.close_all)
    stack.callback(close_streams_on_signals(hub))
    try:
        async with asyncio.timeout(LISTEN_START_SECONDS):
            await listener.connected.wait()
    except TimeoutError:
        log.warning("not yet listening for task changes: event streams wait until the connection is up")
    return hub


def event_hub(request: HTTPConnection) -> EventHub:
    return cast(EventHub, request.app.state.event_hub)


def close_streams_on_signals(hub: EventHub) -> Callable[[], None]:
    """Chain the server's SIGTERM/SIGINT handlers so that streams end when a stop begins.

    uvicorn waits for open responses before it runs the lifespan's shutdown, so an event stream
    would hold a graceful stop for SHUTDOWN_TIMEOUT_SECONDS and then be cut. Only handlers a
    server installed (Python callables) are chained; the returned function restores them.
    """
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    loop = asyncio.get_running_loop()
    chained: dict[signal.Signals, Any] = {}
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if not callable(previous):
            continue

        def on_signal(number: int, frame: FrameType | None, previous: Any = previous) -> None:
            loop.call_soon_threadsafe(hub.close_all)
            previous(number, frame)

        signal.signal(signum, on_signal)
        chained[signum] = (previous, on_signal)

    def restore() -> None:
        for signum, (previous, ours) in chained.items():
            if signal.getsignal(signum) is ours:  # unless someone replaced it since
                signal.signal(signum, previous)

    return restore


async def _cancel_all(tasks: list[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task
