"""The HTTP server: uvicorn's httptools protocol, with limits on what one client may hold.

Left alone, uvicorn reads a request head of any size and waits for ever for a request to finish
arriving. This protocol bounds, per connection: the size of the request head (431), the time to
send it (408, then closed), the rate of the body (closed) and, per process, the connections
served at once (503 past it). uvicorn answers everything else as before.
"""

from __future__ import annotations

import asyncio
import enum
import functools
import http
import logging
import uuid
from dataclasses import dataclass
from typing import Any, cast

import orjson
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .settings import Settings

log = logging.getLogger("service.server")

KEEP_ALIVE_TIMEOUT_SECONDS = 5  # idle time allowed between two requests on one connection
OVERLOAD_RETRY_AFTER_SECONDS = 1
# Bytes on the wire for one body (chunk framing and trailers included) past which the connection
# is cut: by then the app has refused the body with a 413, and trailers cannot grow memory.
BODY_WIRE_FACTOR = 2


@dataclass(frozen=True)
class HttpLimits:
    max_header_bytes: int
    header_timeout_seconds: float
    min_body_bytes_per_second: int
    max_body_bytes: int
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> HttpLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout_seconds=settings.header_timeout_seconds,
            min_body_bytes_per_second=settings.min_body_bytes_per_second,
            max_body_bytes=settings.max_body_bytes,
            max_connections=settings.max_connections,
        )


@dataclass(frozen=True)
class Refusal:
    """A problem+json answer given by the server itself, before the app, on a closing connection."""

    status: int
    title: str
    code: str
    detail: str
    retry_after_seconds: int | None = None

    def headers(self, body: bytes) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"content-type", b"application/problem+json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"x-request-id", uuid.uuid4().hex.encode()),
        ]
        if self.retry_after_seconds is not None:
            headers.append((b"retry-after", str(self.retry_after_seconds).encode()))
        return headers

    def body(self) -> bytes:
        fields = {"type": "about:blank", "title": self.title, "status": self.status, "detail": self.detail}
        return orjson.dumps({**fields, "code": self.code})

    def raw(self) -> bytes:
        """The whole response, for when no request reached uvicorn's request cycle."""
        body = self.body()
        status_line = f"HTTP/1.1 {self.status} {http.HTTPStatus(self.status).phrase}\r\n".encode()
        lines = b"".join(name + b": " + value + b"\r\n" for name, value in self.headers(body))
        return status_line + lines + b"\r\n" + body

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """The same answer as an ASGI app, for a request whose head uvicorn has parsed."""
        body = self.body()
        await send({"type": "http.response.start", "status": self.status, "headers": self.headers(body)})
        await send({"type": "http.response.body", "body": body})


TOO_MANY_CONNECTIONS = Refusal(
    503, "Service Unavailable", "too_many_connections", "the server is at its connection limit; retry later",
    retry_after_seconds=OVERLOAD_RETRY_AFTER_SECONDS,
)  # fmt: skip
REQUEST_TIMEOUT = Refusal(408, "Request Timeout", "request_timeout", "the request head took too long to arrive")


def headers_too_large(limits: HttpLimits) -> Refusal:
    detail = f"the request line and headers exceed {limits.max_header_bytes} bytes"
    return Refusal(431, "Request Header Fields Too Large", "headers_too_large", detail)


class Phase(enum.Enum):
    AWAITING = "awaiting"  # connected, no byte of a request yet
    HEAD = "head"  # request line and headers arriving
    BODY = "body"  # body (and trailers) arriving
    IDLE = "idle"  # between requests: the app answers, then uvicorn's keep-alive timeout applies


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    """One connection. A single timer, re-armed lazily when it fires, enforces the deadlines, so a
    request costs a few attribute writes rather than timer churn."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
        *,
        limits: HttpLimits,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits
        self.served_app = self.app
        self.phase = Phase.AWAITING
        self.phase_started = 0.0
        self.phase_bytes = 0  # bytes received in this phase (by whole reads)
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # as uvicorn's
        super().connection_made(transport)
        self.enter(Phase.AWAITING)
        self.arm()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        phase = self.phase
        self.phase_bytes += len(data)
        super().data_received(data)
        if self.phase is not phase or self.transport.is_closing():
            return
        # Still in the phase this read began in, so all of it belongs to the phase.
        if phase is Phase.HEAD and self.phase_bytes > self.limits.max_header_bytes:
            self.cut("request head too large", headers_too_large(self.limits) if self.idle_cycle() else None)
        elif phase is Phase.BODY and self.phase_bytes > BODY_WIRE_FACTOR * self.limits.max_body_bytes:
            self.cut("request body too large", None)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.phase is not Phase.AWAITING:  # a keep-alive request: its own head deadline
            self.enter(Phase.HEAD)
            self.arm()
        self.phase = Phase.HEAD

    def on_headers_complete(self) -> None:
        self.enter(Phase.BODY)
        head_bytes = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if head_bytes > self.limits.max_header_bytes:
            refusal: Refusal | None = headers_too_large(self.limits)
        elif len(self.connections) > self.limits.max_connections:
            refusal = TOO_MANY_CONNECTIONS
        else:
            refusal = None
        if refusal is None:
            super().on_headers_complete()
            return
        log.info("refused a request: %s", refusal.code)
        self.app = refusal  # uvicorn runs self.app for this request: a refusal, with its full cycle
        try:
            super().on_headers_complete()
        finally:
            self.app = self.served_app

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self.enter(Phase.IDLE)

    def enter(self, phase: Phase) -> None:
        self.phase, self.phase_started, self.phase_bytes = phase, self.loop.time(), 0

    def deadline(self) -> float:
        allowance = self.limits.header_timeout_seconds
        if self.phase is Phase.BODY:  # a grace period, then at least the minimum rate on average
            allowance += self.phase_bytes / self.limits.min_body_bytes_per_second
        return self.phase_started + allowance

    def arm(self) -> None:
        deadline = self.deadline()
        if self.timer is not None:
            if self.timer.when() <= deadline:
                return  # it fires first and re-arms for whatever phase is current then
            self.timer.cancel()
        self.timer = self.loop.call_at(deadline, self.on_deadline)

    def on_deadline(self) -> None:
        self.timer = None
        if self.phase is Phase.IDLE or self.transport.is_closing():
            return
        if self.server_is_waiting():  # the client is not to blame: its allowance starts again
            self.phase_started = self.loop.time()
        elif self.loop.time() >= self.deadline():
            if self.phase is Phase.BODY:
                self.cut("request body slower than the minimum rate", None)
            else:  # a client that sent nothing gets no answer; one that began a request, a 408
                began = self.phase is Phase.HEAD and self.idle_cycle()
                self.cut("request head not complete in time", REQUEST_TIMEOUT if began else None)
            return
        self.arm()

    def server_is_waiting(self) -> bool:
        """Reading paused by uvicorn (pipelining, a full buffer), or the client rightly waits for
        100 Continue: either way the time is the server's."""
        waiting_for_continue = (
            self.phase is Phase.BODY and self.cycle is not None and self.cycle.waiting_for_100_continue
        )
        return self.flow.read_paused or waiting_for_continue

    def idle_cycle(self) -> bool:
        """No response is being written: a refusal written now cannot interleave with one."""
        return self.cycle is None or self.cycle.response_complete

    def cut(self, reason: str, answer: Refusal | None) -> None:
        log.info("closed a connection: %s", reason)
        if answer is not None:
            self.transport.write(answer.raw())
        self.transport.close()


def server_options(settings: Settings) -> dict[str, Any]:
    """uvicorn's settings for `python -m service run`, in one place for one or many workers."""
    # A partial pickles by reference, so worker processes (spawned) rebuild the same protocol.
    protocol = functools.partial(LimitedHttpToolsProtocol, limits=HttpLimits.from_settings(settings))
    return dict(
        host=settings.host,
        port=settings.port,
        http=cast(type[asyncio.Protocol], protocol),  # uvicorn only calls it, as it would a class
        timeout_keep_alive=KEEP_ALIVE_TIMEOUT_SECONDS,
        log_level=settings.log_level.lower(),
        log_config=None,  # ours (configure_logging), in JSON by default
        access_log=False,  # one structured line per request comes from ObservabilityMiddleware
        proxy_headers=False,  # client addresses from X-Forwarded-For only via TRUSTED_PROXIES
        server_header=False,
        timeout_graceful_shutdown=settings.shutdown_timeout_seconds,
    )
