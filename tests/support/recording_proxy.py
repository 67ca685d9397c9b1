"""An HTTP forwarder that records what reaches the service: put between a client (the Next.js
app's proxy) and the tasks service, it keeps each request's method, path and headers, and passes
requests and answers on unchanged (keep-alive on both sides). An event stream is passed on as
it arrives, on a connection of its own that closes when the stream ends."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-connection"}
UPSTREAM_TIMEOUT_SECONDS = 30.0


@dataclass(frozen=True)
class Recorded:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # lower-case names
    status: int

    def bearer_claims(self) -> dict:
        """The claims of the Bearer token (not verified: the service did that); {} without one."""
        scheme, _, token = self.headers.get("authorization", "").partition(" ")
        if scheme != "Bearer" or token.count(".") != 2:
            return {}
        payload = token.split(".")[1]
        return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))

    def bearer_kid(self) -> str | None:
        token = self.headers.get("authorization", "").partition(" ")[2]
        header = token.split(".")[0]
        return json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4))).get("kid") if token else None


class RecordingProxy:
    def __init__(self, upstream_url: str) -> None:
        self.upstream = urlsplit(upstream_url)
        self.recorded: list[Recorded] = []
        self._lock = threading.Lock()
        self._local = threading.local()  # one upstream connection per handler thread

    def since(self, mark: int) -> list[Recorded]:
        with self._lock:
            return self.recorded[mark:]

    def mark(self) -> int:
        with self._lock:
            return len(self.recorded)

    def _connection(self) -> http.client.HTTPConnection:
        if getattr(self._local, "conn", None) is None:
            assert self.upstream.hostname and self.upstream.port
            self._local.conn = http.client.HTTPConnection(
                self.upstream.hostname, self.upstream.port, timeout=UPSTREAM_TIMEOUT_SECONDS
            )
        return self._local.conn

    def forward(self, method: str, path: str, headers: dict[str, str], body: bytes | None):
        try:
            conn = self._connection()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
        except (OSError, http.client.HTTPException):
            self._local.conn = None  # a stale keep-alive connection: once more on a new one
            conn = self._connection()
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
        if (response.getheader("content-type") or "").startswith("text/event-stream"):
            return response.status, response.getheaders(), response  # passed on as it arrives
        return response.status, response.getheaders(), response.read()

    def stream(self, response: http.client.HTTPResponse, write) -> None:
        """Copy an event stream to the client until either side ends it; the upstream connection
        goes with it."""
        try:
            self._local.conn.sock.settimeout(None)  # idle between events and heartbeats
            while chunk := response.read1(65536):
                write(chunk)
        except OSError:
            pass  # the client left (or the service went away): the stream is over
        finally:
            response.close()
            self._local.conn.close()
            self._local.conn = None

    @contextlib.contextmanager
    def serving(self, port: int) -> Iterator[str]:
        """Listen on 127.0.0.1:`port` until the block ends. Yields the URL to use instead of the service's."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def handle_one(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {name.lower(): value for name, value in self.headers.items()}
                upstream_headers = {name: value for name, value in headers.items() if name not in HOP_BY_HOP}
                status, response_headers, content = proxy.forward(self.command, self.path, upstream_headers, body)
                with proxy._lock:
                    proxy.recorded.append(Recorded(self.command, self.path, headers, status))
                self.send_response(status)
                for name, value in response_headers:
                    if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                        self.send_header(name, value)
                if isinstance(content, http.client.HTTPResponse):
                    self.send_header("Connection", "close")  # the stream's end is the connection's
                    self.end_headers()
                    self.close_connection = True
                    proxy.stream(content, self.wfile.write)
                    return
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = handle_one

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            server.shutdown()
            server.server_close()
