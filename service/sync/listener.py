"""The process's one LISTEN connection: every committed change, from any replica, reaches the
streams of this process through it.

LISTEN belongs to a session, so this connection must reach PostgreSQL itself, never a pooler
in transaction mode (which would hand the session to other clients between transactions and
drop the registration): DATABASE_LISTEN_URL. NOTIFY itself is sent by the writers' own
transactions (a trigger), so writes may go through any pooler. When the connection is lost the
listener reconnects with backoff, and then wakes every stream, which reads its feed again:
notifications sent while nobody listened are not replayed by PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import asyncpg

from ..db.pool import CONNECT_TIMEOUT_SECONDS
from . import queries
from .hub import EventHub

log = logging.getLogger("service.sync")

CHANNEL = "task_changes"
PING_INTERVAL_SECONDS = 30.0  # a connection that died silently (no RST) is found within this
RETRY_DELAYS_SECONDS = (0.5, 1.0, 2.0, 5.0)


class ChangeListener:
    def __init__(self, dsn: str, hub: EventHub) -> None:
        self._dsn = dsn
        self._hub = hub
        self._connection: asyncpg.Connection | None = None
        self.connected = asyncio.Event()

    def _on_notification(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        seq, _, user_id = payload.partition(":")  # "seq:user_id"; a user id may hold ":"
        if seq.isdigit() and user_id:
            self._hub.notify(user_id, int(seq))

    async def run(self) -> None:
        """Listen until cancelled, reconnecting whenever the connection is lost."""
        failures = 0
        while True:
            try:
                await self._listen_once()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - any failure means: reconnect
                log.warning("LISTEN connection failed: %s", type(exc).__name__)
                failures += 1
            finally:
                self._hub.listening = False
                self.connected.clear()
                await self._close()
            await asyncio.sleep(RETRY_DELAYS_SECONDS[min(failures, len(RETRY_DELAYS_SECONDS) - 1)])

    async def _listen_once(self) -> None:
        lost = asyncio.Event()
        # No statement cache: this connection only runs LISTEN and a ping.
        conn = await asyncpg.connect(
            self._dsn,
            timeout=CONNECT_TIMEOUT_SECONDS,
            statement_cache_size=0,
            server_settings={"application_name": "tasks-service-listen"},
        )
        self._connection = conn
        conn.add_termination_listener(lambda _: lost.set())
        await conn.add_listener(CHANNEL, self._on_notification)
        self._hub.listening = True
        self.connected.set()
        self._hub.wake_all()  # changes committed while nobody listened
        log.info("listening for task changes")
        while not lost.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(PING_INTERVAL_SECONDS):
                    await lost.wait()
            if not lost.is_set():
                async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                    await queries.ping(conn)
        raise ConnectionError("the LISTEN connection was closed")

    async def _close(self) -> None:
        conn, self._connection = self._connection, None
        if conn is not None and not conn.is_closed():
            try:
                async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                    await conn.close()
            except Exception:  # noqa: BLE001 - a connection that cannot close cleanly is dropped
                conn.terminate()
