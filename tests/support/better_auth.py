"""A real Better Auth for the interop tests: the pinned `better-auth` npm package
(tests/interop/issuer/) run by Node on 127.0.0.1, started and stopped by the tests; users signed
up and tokens fetched over real HTTP; the service's settings for trusting it.

The fixtures that install and start it are in tests/interop/conftest.py.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import os
import secrets
import signal
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from service.settings import Settings, load_settings

# INTEROP_ISSUER_DIR: a copy with other package versions (`make interop-latest`); default the pinned one.
ISSUER_DIR = Path(os.environ.get("INTEROP_ISSUER_DIR") or Path(__file__).resolve().parents[1] / "interop" / "issuer")
INSTALL_STAMP = ISSUER_DIR / "node_modules" / ".interop-install-stamp"  # `npm ci` wipes it with the rest
ALGORITHMS = ("EdDSA", "ES256", "ES512", "RS256", "PS256")

ISSUER_START_DEADLINE_SECONDS = 30.0  # Node loads better-auth in 1-2 s; a busy 2-core box is slower
ISSUER_STOP_DEADLINE_SECONDS = 5.0
ISSUER_REQUEST_TIMEOUT_SECONDS = 10.0
POLL_INTERVAL_SECONDS = 0.02
PASSWORD = "correct horse battery staple"
SESSION_COOKIE = "better-auth.session_token"


# -- running it --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class IssuerConfig:
    """The Better Auth options the issuer takes from its environment (see tests/interop/issuer/server.mjs)."""

    alg: str = "EdDSA"
    rotation_interval_seconds: float | None = None  # jwks.rotationInterval
    grace_period_seconds: float | None = None  # jwks.gracePeriod
    expiration_time: str | None = None  # jwt.expirationTime, e.g. "2s"
    issuer: str | None = None  # jwt.issuer
    audience: str | None = None  # jwt.audience
    rate_limit: bool = False  # Better Auth's rate limiter, as in production
    rate_limit_jwks: str | None = None  # "WINDOW,MAX" or "off": a customRules entry for /jwks
    oauth_resource: str | None = None  # @better-auth/oauth-provider on, for this resource
    session_status_secret: str | None = None  # the sessionStatus plugin on, and `sid` in the JWT
    admin: bool = False  # the admin plugin; emails starting with "admin-" are admins

    def env(self) -> dict[str, str]:
        values = {
            "ISSUER_ALG": self.alg,
            "ISSUER_ROTATION_INTERVAL_SECONDS": self.rotation_interval_seconds,
            "ISSUER_GRACE_PERIOD_SECONDS": self.grace_period_seconds,
            "ISSUER_JWT_EXPIRATION": self.expiration_time,
            "ISSUER_JWT_ISSUER": self.issuer,
            "ISSUER_JWT_AUDIENCE": self.audience,
            "ISSUER_RATE_LIMIT": "on" if self.rate_limit else None,
            "ISSUER_RATE_LIMIT_JWKS": self.rate_limit_jwks,
            "ISSUER_OAUTH_RESOURCE": self.oauth_resource,
            "ISSUER_SESSION_STATUS_SECRET": self.session_status_secret,
            "ISSUER_ADMIN": "on" if self.admin else None,
        }
        return {name: str(value) for name, value in values.items() if value is not None}


class BetterAuthIssuer:
    """One `node server.mjs` process. `base_url` is also what Better Auth puts in `iss`/`aud`."""

    def __init__(self, node: str, config: IssuerConfig, log_dir: Path) -> None:
        self.node = node
        self.config = config
        self.log_dir = log_dir
        self.port = 0  # the first start picks a free port; a stop and start again keeps it
        self.starts = 0
        self.process: subprocess.Popen | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def jwks_url(self) -> str:
        return f"{self.base_url}/api/auth/jwks"

    def _paths(self) -> tuple[Path, Path]:
        return self.log_dir / f"stdout.{self.starts}.log", self.log_dir / f"stderr.{self.starts}.log"

    def log(self) -> str:
        out, err = self._paths()
        return "".join(f"--- {p.name} ---\n{p.read_text(errors='replace')}" for p in (out, err) if p.exists())

    def spawn(self) -> None:
        """Start the process; `wait_ready` then waits for its ready line."""
        assert self.process is None, "already running"
        self.starts += 1
        out, err = self._paths()
        # NODE_ENV as deployed: "test" would make Better Auth skip its origin check.
        # No BETTER_AUTH_* from the developer's shell: only what the config says reaches Better Auth.
        env = {name: value for name, value in os.environ.items() if not name.startswith("BETTER_AUTH_")}
        env.update(self.config.env(), ISSUER_PORT=str(self.port), NODE_ENV="production")
        with out.open("wb") as stdout, err.open("wb") as stderr:
            self.process = subprocess.Popen(
                [self.node, "server.mjs"],
                cwd=ISSUER_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
            )

    def wait_ready(self) -> None:
        assert self.process is not None
        out, _ = self._paths()
        deadline = time.monotonic() + ISSUER_START_DEADLINE_SECONDS
        while True:
            for line in out.read_text(errors="replace").splitlines():
                word, _, port = line.partition(" ")
                if word == "listening" and port.isdigit():
                    assert self.port in (0, int(port)), f"restarted on port {port}, not {self.port}"
                    self.port = int(port)
                    return
            code = self.process.poll()
            if code is not None:
                self.process = None
                message = f"the Better Auth issuer exited with code {code} before it was ready"
                pytest.fail(f"{message}\n{self.log()}", pytrace=False)
            if time.monotonic() > deadline:
                self.stop()
                message = f"the Better Auth issuer was not ready within {ISSUER_START_DEADLINE_SECONDS:g} s"
                pytest.fail(f"{message}\n{self.log()}", pytrace=False)
            time.sleep(POLL_INTERVAL_SECONDS)

    def start(self) -> None:
        self.spawn()
        self.wait_ready()

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time. Safe to call when not running."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=ISSUER_STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=ISSUER_STOP_DEADLINE_SECONDS)


@contextlib.contextmanager
def running_issuers(
    node: str, configs: dict[str, IssuerConfig], log_root: Path
) -> Iterator[dict[str, BetterAuthIssuer]]:
    """Start several issuers at once (Node's start-up is the slow part) and stop them all at the end."""
    issuers = {}
    try:
        for name, config in configs.items():
            log_dir = log_root / name
            log_dir.mkdir(parents=True, exist_ok=True)
            issuers[name] = BetterAuthIssuer(node, config, log_dir)
            issuers[name].spawn()
        for issuer in issuers.values():
            issuer.wait_ready()
        yield issuers
    finally:
        for issuer in issuers.values():
            issuer.stop()


# -- users and tokens, over HTTP -------------------------------------------------------------


def decode_segment(token: str, index: int) -> dict:
    segment = token.split(".")[index]
    return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))


def token_header(token: str) -> dict:
    return decode_segment(token, 0)


def token_claims(token: str) -> dict:
    return decode_segment(token, 1)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclasses.dataclass
class BetterAuthUser:
    """A user signed up on a Better Auth issuer, holding its session cookie."""

    http: httpx.AsyncClient  # to the issuer
    id: str
    email: str
    session_cookie: str

    def url(self, suffix: str = "") -> str:
        return f"/api/{self.id}/tasks{suffix}"

    async def token(self) -> str:
        """GET /api/auth/token with the session cookie: {"token": <jwt>}."""
        response = await self.http.get("/api/auth/token", headers={"Cookie": self.session_cookie})
        assert response.status_code == 200, response.text
        return response.json()["token"]

    async def token_from_get_session(self) -> str:
        """GET /api/auth/get-session: the jwt plugin sets the token in the `set-auth-jwt` header."""
        response = await self.http.get("/api/auth/get-session", headers={"Cookie": self.session_cookie})
        assert response.status_code == 200, response.text
        assert response.json()["user"]["id"] == self.id
        return response.headers["set-auth-jwt"]


async def sign_up(http: httpx.AsyncClient, name: str, *, email_prefix: str = "") -> BetterAuthUser:
    """POST /api/auth/sign-up/email, as the Better Auth client does; signed in at once."""
    email = f"{email_prefix}{name.lower()}-{secrets.token_hex(6)}@example.com"
    # A browser sends Origin on a POST; Better Auth refuses a cookie-carrying POST without one.
    headers = {"Origin": str(http.base_url).rstrip("/")}
    body = {"email": email, "password": PASSWORD, "name": name}
    response = await http.post("/api/auth/sign-up/email", json=body, headers=headers)
    assert response.status_code == 200, response.text
    cookie = response.cookies.get(SESSION_COOKIE)
    assert cookie, f"no {SESSION_COOKIE} cookie in {response.headers.get_list('set-cookie')}"
    http.cookies.clear()  # each user sends their own cookie explicitly; the client keeps none
    user_id = response.json()["user"]["id"]
    return BetterAuthUser(http=http, id=user_id, email=email, session_cookie=f"{SESSION_COOKIE}={cookie}")


@contextlib.asynccontextmanager
async def issuer_client(issuer: BetterAuthIssuer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=issuer.base_url, timeout=ISSUER_REQUEST_TIMEOUT_SECONDS) as http:
        yield http


# -- the service, pointed at an issuer ---------------------------------------------------------


def service_settings(database_url: str, issuer: BetterAuthIssuer, **environ: str) -> Settings:
    """Settings as `python -m service run` reads them, for BETTER_AUTH_URL=<the issuer> and the
    given variables (e.g. JWT_LEEWAY_SECONDS="0"); a developer's `.env` is not read."""
    env = {"BETTER_AUTH_URL": issuer.base_url, "DATABASE_URL": database_url, **environ}
    return load_settings(env, dotenv=Path(os.devnull))  # not a regular file: read as empty


StartService = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


def held_kids(client: httpx.AsyncClient) -> set[str]:
    """The kids of the key set the service holds now."""
    held = client.app.state.resources.jwks.usable_set()  # type: ignore[attr-defined]
    return set(held.keys) if held is not None else set()
