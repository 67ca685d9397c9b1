"""A FakeBetterAuth on a real 127.0.0.1 port, for code that respx cannot reach (another process,
or an HTTP client that is not httpx)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from .issuer import FakeBetterAuth


@contextlib.contextmanager
def serve_jwks(
    alg: str = "EdDSA", *, clock: Callable[[], float] = time.time, base_path: str = "/api/auth"
) -> Iterator[FakeBetterAuth]:
    """Yields an issuer whose `base_url` is http://127.0.0.1:<port>: GET {base_path}/jwks answers
    its current keys as Better Auth does (no Cache-Control, a Date header), or its rate limiter's
    429 while `refuse_jwks()` is in force."""
    issuer_ref: list[FakeBetterAuth] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            issuer = issuer_ref[0]
            if self.path != f"{issuer.base_path}/jwks":
                self.send_error(404)
                return
            issuer.jwks_requests += 1
            status, headers = 200, {"Content-Type": "application/json"}
            document: object = issuer.jwks()
            if issuer.jwks_refusal is not None:
                status, headers["X-Retry-After"] = 429, str(issuer.jwks_refusal)
                document = {"message": "Too many requests. Please try again later."}
            body = json.dumps(document).encode()
            self.send_response(status)  # also sends Date
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    issuer_ref.append(FakeBetterAuth(f"http://127.0.0.1:{port}", alg, clock=clock, base_path=base_path))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield issuer_ref[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
