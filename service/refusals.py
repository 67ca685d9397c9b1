"""Answers the HTTP server gives by itself, before the app: problem details on a closing connection."""

from __future__ import annotations

import http
import uuid
from dataclasses import dataclass
from typing import Any

from .problems import PROBLEM_MEDIA_TYPE, problem_body


@dataclass(frozen=True)
class Refusal:
    """One answer, as bytes to write to a connection or as an ASGI app for uvicorn to run."""

    status: int
    title: str
    code: str
    detail: str
    retry_after_seconds: int | None = None

    def headers(self, body: bytes) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"content-type", PROBLEM_MEDIA_TYPE.encode()),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
            (b"x-request-id", uuid.uuid4().hex.encode()),
        ]
        if self.retry_after_seconds is not None:
            headers.append((b"retry-after", str(self.retry_after_seconds).encode()))
        return headers

    def body(self) -> bytes:
        return problem_body(self.status, self.title, self.detail, self.code)

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
    retry_after_seconds=1,
)  # fmt: skip
REQUEST_TIMEOUT = Refusal(408, "Request Timeout", "request_timeout", "the request head took too long to arrive")


def headers_too_large(max_header_bytes: int) -> Refusal:
    detail = f"the request line and headers exceed {max_header_bytes} bytes"
    return Refusal(431, "Request Header Fields Too Large", "headers_too_large", detail)
