"""Request ids on every response, one structured log line per request, per-route request metrics,
and the 500 for an error nothing else handled (so that it too carries its request id).

The log line never holds the token or the raw user id (a short hash of it instead), so logs can
be shipped to places with weaker access control than the database.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import logging
import re
import time
import uuid
from collections.abc import Sequence
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import ServiceError
from .metrics import RequestMetrics
from .problems import render_error

REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
UNROUTED = "unrouted"
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
)  # answered before routing (401 from the Bearer check, 413, 404)

request_log = logging.getLogger("service.request")
log = logging.getLogger("service")

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields we pass."""

    _STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        entry.update({k: v for k, v in vars(record).items() if k not in self._STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(
        JSONFormatter() if fmt == "json" else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []  # propagate to ours
        logging.getLogger(name).propagate = True


def hash_user(user_id: str) -> str:
    """A stable pseudonym for logs: enough to correlate, not the id itself."""
    return hashlib.sha256(user_id.encode()).hexdigest()[:16]


def parse_networks(value: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())


def client_address(scope: Scope, trusted: Sequence[Network]) -> str | None:
    """The peer, or behind trusted proxies the right-most X-Forwarded-For hop they did not add."""
    peer: str | None = (scope.get("client") or (None,))[0]
    if not trusted or peer is None or not _is_trusted(peer, trusted):
        return peer
    hops: list[str] = []
    for name, value in scope["headers"]:
        if name == b"x-forwarded-for":
            hops += [hop.strip() for hop in value.decode("latin-1").split(",")]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop
    return hops[0] if hops else peer


def _is_trusted(address: str, trusted: Sequence[Network]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


class ObservabilityMiddleware:
    """Outermost: gives every request an id, times it, counts it and logs one line for it. An
    exception nothing inside handled becomes a 500 problem here, not in Starlette's outer error
    middleware, so that it carries the request id and is counted and logged like any answer."""

    def __init__(
        self,
        app: ASGIApp,
        metrics: RequestMetrics,
        *,
        access_log: bool,
        trusted_proxies: Sequence[Network] = (),
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = next((v for k, v in scope["headers"] if k == REQUEST_ID_HEADER and _REQUEST_ID.fullmatch(v)), None)
        request_id: bytes = given or uuid.uuid4().hex.encode()
        scope.setdefault("state", {})["request_id"] = request_id.decode()
        status = 500
        answered = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, answered
            if message["type"] == "http.response.start":
                status, answered = message["status"], True
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception:
            log.exception("unhandled error", extra={"request_id": request_id.decode()})
            if answered or not isinstance(scope, dict):
                raise  # the answer has begun (or cannot be written here): the server closes the connection
            await render_error(ServiceError("an unexpected error occurred"), scope, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or UNROUTED
            # The client names the method: only known ones become labels, or memory grows unbounded.
            method = scope["method"] if scope["method"] in KNOWN_METHODS else "other"
            self.metrics.observe(method, route, status, seconds)
            if self.access_log:
                principal = scope.get("state", {}).get("principal")
                request_log.info(
                    "request",
                    extra={
                        "request_id": request_id.decode(),
                        "method": method,
                        "route": route,
                        "status": status,
                        "duration_ms": round(seconds * 1000, 2),
                        "user": hash_user(principal.user_id) if principal else None,
                        "client": client_address(scope, self.trusted_proxies),
                    },
                )
