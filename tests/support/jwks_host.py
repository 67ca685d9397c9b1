"""A Better Auth stand-in on a real port (for service processes, which respx cannot reach):
GET /api/auth/jwks answers FakeBetterAuth's keys, like tests/test_run.py's `jwks_host`, but as a
context manager so that a module-scoped fixture can hold it."""

from __future__ import annotations

import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterator

from service.testing import FakeBetterAuth

JWKS_PATH = "/api/auth/jwks"


@contextlib.contextmanager
def serving_jwks() -> Iterator[FakeBetterAuth]:
    issuer_ref: list[FakeBetterAuth] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's naming
            if self.path != JWKS_PATH:
                self.send_error(404)
                return
            issuer = issuer_ref[0]
            issuer.jwks_requests += 1
            body = json.dumps(issuer.jwks()).encode()
            self.send_response(200)  # like Better Auth: JSON, no Cache-Control
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    issuer_ref.append(FakeBetterAuth(base_url=f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield issuer_ref[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
