"""Request ids, one structured log line per request, and per-route request metrics.

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
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,128}")
DURATION_BUCKETS_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
UNROUTED = "unrouted"
KNOWN_METHODS = frozenset(
    {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}
)  # answered before routing (401 from the Bearer check, 413, 404)

request_log = logging.getLogger("service.request")


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


class RequestMetrics:
    """Request counts by method, route template and status; duration histograms by route."""

    def __init__(self) -> None:
        self.counts: dict[tuple[str, str, int], int] = defaultdict(int)
        self.buckets: dict[str, list[int]] = defaultdict(lambda: [0] * len(DURATION_BUCKETS_SECONDS))
        self.sums: dict[str, float] = defaultdict(float)
        self.observations: dict[str, int] = defaultdict(int)

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.counts[(method, route, status)] += 1
        buckets = self.buckets[route]
        for index, bound in enumerate(DURATION_BUCKETS_SECONDS):
            if seconds <= bound:
                buckets[index] += 1
        self.sums[route] += seconds
        self.observations[route] += 1

    def render(self) -> Iterable[str]:
        yield "# HELP http_requests_total Requests by method, route template and status."
        yield "# TYPE http_requests_total counter"
        for (method, route, status), count in sorted(self.counts.items()):
            yield f'http_requests_total{{method="{method}",route="{route}",status="{status}"}} {count}'
        yield "# HELP http_request_duration_seconds Time to the end of the response, by route template."
        yield "# TYPE http_request_duration_seconds histogram"
        for route in sorted(self.observations):
            for bound, count in zip(DURATION_BUCKETS_SECONDS, self.buckets[route], strict=True):
                yield f'http_request_duration_seconds_bucket{{route="{route}",le="{bound}"}} {count}'
            yield f'http_request_duration_seconds_bucket{{route="{route}",le="+Inf"}} {self.observations[route]}'
            yield f'http_request_duration_seconds_sum{{route="{route}"}} {self.sums[route]:.6f}'
            yield f'http_request_duration_seconds_count{{route="{route}"}} {self.observations[route]}'


def parse_networks(value: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(part.strip(), strict=False) for part in value.split(",") if part.strip())


def client_address(scope: dict, trusted: tuple) -> str | None:
    """The peer, or behind trusted proxies the right-most X-Forwarded-For hop they did not add."""
    peer = (scope.get("client") or (None,))[0]
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


def _is_trusted(address: str, trusted: tuple) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in network for network in trusted)


class ObservabilityMiddleware:
    """Outermost: gives every request an id, times it, counts it and logs one line for it."""

    def __init__(self, app, metrics: RequestMetrics, *, access_log: bool, trusted_proxies: tuple = ()) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        self.trusted_proxies = trusted_proxies

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = next((v for k, v in scope["headers"] if k == REQUEST_ID_HEADER and _REQUEST_ID.fullmatch(v)), None)
        request_id = request_id or uuid.uuid4().hex.encode()
        scope.setdefault("state", {})["request_id"] = request_id.decode()
        status = 500

        async def send_with_id(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (REQUEST_ID_HEADER, request_id)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
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
