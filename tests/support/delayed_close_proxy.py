"""A TCP proxy in front of PostgreSQL that holds back the server's closing of a connection, to
show what the service does with a pooled connection the server has already given up on."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qsl, urlsplit, urlunsplit


class DelayedCloseProxy:
    """A TCP proxy to PostgreSQL that forwards everything at once, except the server's closing of
    a connection: that reaches the client `hold_close_seconds` later. So the client has read the
    server's last words (e.g. FATAL "terminating connection") while its socket still looks open,
    which is the window a busy service hits by chance when the database shuts down."""

    def __init__(self, upstream_dsn: str, hold_close_seconds: float) -> None:
        parts = urlsplit(upstream_dsn)
        query = dict(parse_qsl(parts.query))
        self.upstream_host = query.get("host") or parts.hostname or "localhost"
        self.upstream_port = int(query.get("port") or parts.port or 5432)
        self.upstream_dsn = upstream_dsn
        self.hold_close_seconds = hold_close_seconds
        self.server_closed = asyncio.Event()  # set when the server closed one of the connections
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task] = set()

    def dsn(self, database_url: str) -> str:
        """`database_url` (same user and database) through the proxy."""
        parts = urlsplit(database_url)
        host, port = self._server.sockets[0].getsockname()[:2]
        netloc = f"{parts.username or 'postgres'}@{host}:{port}"
        return urlunsplit(parts._replace(netloc=netloc, query=""))

    async def __aenter__(self) -> DelayedCloseProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _open_upstream(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self.upstream_host.startswith("/"):
            return await asyncio.open_unix_connection(f"{self.upstream_host}/.s.PGSQL.{self.upstream_port}")
        return await asyncio.open_connection(self.upstream_host, self.upstream_port)

    async def _serve(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._tasks.add(task)
        try:
            server_reader, server_writer = await self._open_upstream()
            to_server = asyncio.create_task(self._pump(client_reader, server_writer, hold=0))
            to_client = asyncio.create_task(self._pump(server_reader, client_writer, hold=self.hold_close_seconds))
            try:
                await asyncio.wait({to_server, to_client}, return_when=asyncio.FIRST_COMPLETED)
                if to_client.done():
                    to_server.cancel()
                else:
                    await to_client
            finally:
                to_server.cancel()
                to_client.cancel()
                for writer in (server_writer, client_writer):
                    writer.close()
        except (OSError, asyncio.CancelledError):
            client_writer.close()
        finally:
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, hold: float) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if hold:
            self.server_closed.set()
            await asyncio.sleep(hold)
