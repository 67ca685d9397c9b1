"""A test kit for apps that call this service, or for this service's own tests.

`FakeBetterAuth` stands in for a Next.js host running Better Auth's JWT plugin: it holds real key
pairs, publishes their JWKS (through a respx route, or any HTTP server you hand `jwks()` to) and
signs tokens with exactly Better Auth's header and claim shapes (better-auth 1.x):

    issuer = FakeBetterAuth("http://localhost:3000")             # EdDSA / Ed25519, like the default
    with respx.mock(assert_all_called=True) as router:
        issuer.mock(router)                                      # GET /api/auth/jwks -> the keys
        token = issuer.issue_token("user-123")
        ...  # call the service with Authorization: Bearer <token>
        issuer.rotate()                                          # a new kid, the old key kept
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from joserfc.jwk import ECKey, OKPKey, RSAKey
from joserfc.jws import JWSRegistry

TOKEN_LIFETIME_SECONDS = 15 * 60  # Better Auth's jwt.expirationTime default: "15m"
_KEY_FACTORIES: dict[str, Callable[[], Any]] = {
    "EdDSA": lambda: OKPKey.generate_key("Ed25519"),
    "ES256": lambda: ECKey.generate_key("P-256"),
    "ES384": lambda: ECKey.generate_key("P-384"),
    "ES512": lambda: ECKey.generate_key("P-521"),
    "RS256": lambda: RSAKey.generate_key(2048),
    "PS256": lambda: RSAKey.generate_key(2048),
}
SUPPORTED_TEST_ALGORITHMS = tuple(_KEY_FACTORIES)


def new_kid() -> str:
    """A 32-character random id, as Better Auth's generateId() makes for each key."""
    alphabet = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
    return "".join(secrets.choice(alphabet) for _ in range(32))


@dataclass
class SigningKey:
    kid: str
    alg: str
    private: Any  # a joserfc key holding the private part

    def public_jwk(self) -> dict[str, Any]:
        """The JWKS entry Better Auth publishes: the public members plus alg and kid, no `use`."""
        return {"alg": self.alg, **self.private.as_dict(private=False), "kid": self.kid}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sign_compact(header: dict[str, Any], payload: bytes | str, key: Any, alg: str) -> str:
    """Sign a JWS with exactly `header`, as given: no `typ` added and no header checks, so tests
    can also make tokens a careful issuer never would (`crit`, `b64`, `jku`, ...)."""
    data = payload.encode() if isinstance(payload, str) else payload
    signing_input = f"{b64url(json.dumps(header, separators=(',', ':')).encode())}.{b64url(data)}"
    signature = JWSRegistry.algorithms[alg].sign(signing_input.encode("ascii"), key)
    return f"{signing_input}.{b64url(signature)}"


class FakeBetterAuth:
    """Key pairs, a JWKS and Better Auth-shaped tokens, for respx-mocked integration tests."""

    def __init__(
        self, base_url: str = "http://localhost:3000", alg: str = "EdDSA", *, clock: Callable[[], float] = time.time
    ):
        self.base_url = base_url.rstrip("/")
        self.jwks_url = f"{self.base_url}/api/auth/jwks"
        self.issuer = self.audience = self.base_url
        self.clock = clock
        self.keys: list[SigningKey] = []
        self.jwks_requests = 0
        self.rotate(alg)

    @property
    def current_key(self) -> SigningKey:
        return self.keys[-1]

    def rotate(self, alg: str | None = None) -> SigningKey:
        """Make a new signing key, as Better Auth does when `rotationInterval` elapses; older keys
        stay published (its grace period) until `retire()`."""
        alg = alg or (self.keys[-1].alg if self.keys else "EdDSA")
        if alg not in _KEY_FACTORIES:
            raise ValueError(f"unsupported algorithm {alg!r}; one of {', '.join(_KEY_FACTORIES)}")
        key = SigningKey(kid=new_kid(), alg=alg, private=_KEY_FACTORIES[alg]())
        self.keys.append(key)
        return key

    def retire(self, kid: str) -> None:
        """Stop publishing a key (its grace period is over)."""
        self.keys = [key for key in self.keys if key.kid != kid]

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk() for key in self.keys]}

    def claims_for(self, user_id: str, *, name: str | None = None, email: str | None = None) -> dict[str, Any]:
        """Better Auth's payload, in its order: iat, the user object (no `image` when the user has
        none), then sub, exp, iss, aud (as observed from better-auth 1.7.25's /api/auth/token)."""
        now = int(self.clock())
        stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return {
            "iat": now,
            "name": name or f"User {user_id}",
            "email": email or f"{user_id.lower()}@example.com",
            "emailVerified": False,
            "createdAt": stamp,
            "updatedAt": stamp,
            "id": user_id,
            "sub": user_id,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "iss": self.issuer,
            "aud": self.audience,
        }

    def issue_token(
        self,
        user_id: str,
        *,
        key: SigningKey | None = None,
        claims: dict[str, Any] | None = None,
        drop_claims: Iterable[str] = (),
        header: dict[str, Any] | None = None,
    ) -> str:
        """A token for `user_id`; `claims` overrides or adds members, `drop_claims` removes some,
        `header` overrides the protected header (default: exactly {alg, kid})."""
        key = key or self.current_key
        payload = {**self.claims_for(user_id), **(claims or {})}
        for name in drop_claims:
            payload.pop(name, None)
        protected = {"alg": key.alg, "kid": key.kid, **(header or {})}
        return sign_compact(protected, json.dumps(payload, separators=(",", ":")), key.private, key.alg)

    def jwks_response(self, request: httpx.Request) -> httpx.Response:
        self.jwks_requests += 1
        return httpx.Response(200, json=self.jwks())

    def mock(self, router: Any) -> Any:
        """Serve the JWKS at `jwks_url` from a respx router (e.g. `respx.mock(...)`); the route
        reads the current keys on every call, so `rotate()` and `retire()` show at once."""
        return router.get(self.jwks_url).mock(side_effect=self.jwks_response)


@contextlib.contextmanager
def serve_jwks(alg: str = "EdDSA") -> Iterator[FakeBetterAuth]:
    """A FakeBetterAuth on a real 127.0.0.1 port, for a service in another process (respx cannot
    reach it): GET /api/auth/jwks answers the current keys, as Better Auth does (no Cache-Control)."""
    issuer_ref: list[FakeBetterAuth] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            issuer = issuer_ref[0]
            if self.path != "/api/auth/jwks":
                self.send_error(404)
                return
            issuer.jwks_requests += 1
            body = json.dumps(issuer.jwks()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    issuer_ref.append(FakeBetterAuth(f"http://127.0.0.1:{server.server_address[1]}", alg))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield issuer_ref[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
