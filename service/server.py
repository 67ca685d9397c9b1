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
import logging
from dataclasses import dataclass, fields
from typing import Any, cast

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from .refusals import REQUEST_TIMEOUT, TOO_MANY_CONNECTIONS, Refusal, headers_too_large
from .settings import Settings

log = logging.getLogger("service.server")

KEEP_ALIVE_TIMEOUT_SECONDS = 5  # idle time allowed between two requests on one connection
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
        return cls(**{field.name: getattr(settings, field.name) for field in fields(cls)})


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
        self.read_bytes = 0  # size of the read being parsed
        self.carried_bytes = 0  # the read a keep-alive request began in: part of its head, maybe
        self.timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]  # Transport, as uvicorn's
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
        self.read_bytes = len(data)
        self.phase_bytes += self.read_bytes
        super().data_received(data)
        if self.phase is not phase or self.transport.is_closing():
            return
        # Still in the phase this read began in, so all of it belongs to the phase.
        if phase is Phase.HEAD and self.phase_bytes > self.limits.max_header_bytes:
            self.cut(
                "request head too large", headers_too_large(self.limits.max_header_bytes) if self.idle_cycle() else None
            )
        elif phase is Phase.BODY and self.phase_bytes > BODY_WIRE_FACTOR * self.limits.max_body_bytes:
            self.cut("request body too large", None)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        if self.phase is Phase.AWAITING:  # the first request: its head counts from the connection
            self.phase = Phase.HEAD
        else:  # a keep-alive request: its own head deadline
            self.enter(Phase.HEAD)
            self.carried_bytes = self.read_bytes
            self.arm()

    def on_headers_complete(self) -> None:
        # The head lies within the reads since it began: count it only if those are big.
        may_be_too_large = self.phase_bytes + self.read_bytes + self.carried_bytes > self.limits.max_header_bytes
        self.enter(Phase.BODY)
        self.carried_bytes = 0
        if may_be_too_large and self.head_bytes() > self.limits.max_header_bytes:
            refusal: Refusal | None = headers_too_large(self.limits.max_header_bytes)
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
        self.phase = Phase.IDLE

    def head_bytes(self) -> int:
        """The request line and headers as sent, give or take the method and version."""
        return len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)

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
