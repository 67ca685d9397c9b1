"""`make dev`: a real Better Auth and the tasks service side by side, for local development.

Starts tests/interop/issuer (better-auth 1.7.25 with the jwt() plugin, email/password, memory
adapter; `npm ci` first if node_modules is not that install) and `python -m service run` with
BETTER_AUTH_URL pointing at it, waits until both are ready, signs a dev user up (or in), and prints
a ready-to-paste curl with a fresh JWT. Both keep running, their logs prefixed, until Ctrl-C or
SIGTERM, which stops the service (and its embedded PostgreSQL) and then the issuer.

Environment (all optional):
  ISSUER_PORT   Better Auth's port (3000)       ISSUER_ALG   EdDSA, ES256, ES512, RS256 or PS256
  PORT          the service's port (8000)       DEV_EMAIL, DEV_PASSWORD   the dev user
  ISSUER_ROTATION_INTERVAL_SECONDS, ISSUER_JWT_EXPIRATION, …   passed on (tests/interop/issuer/server.mjs)
The database is what `make run` uses: DATABASE_URL, or the embedded PostgreSQL in .data/postgres.
The memory adapter forgets users and keys on every start: the dev user gets a new id each time.
"""

from __future__ import annotations

import base64
import fcntl
import functools
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
ISSUER_DIR = REPO_ROOT / "tests" / "interop" / "issuer"
INSTALL_STAMP = ISSUER_DIR / "node_modules" / ".interop-install-stamp"  # same stamp as tests/interop/conftest.py
SESSION_COOKIE = "better-auth.session_token"
HOST = "127.0.0.1"

ISSUER_START_DEADLINE_SECONDS = 30.0
SERVICE_START_DEADLINE_SECONDS = 120.0  # the first start runs initdb
SERVICE_STOP_DEADLINE_SECONDS = 30.0
ISSUER_STOP_DEADLINE_SECONDS = 5.0
POLL_INTERVAL_SECONDS = 0.2


class DevError(Exception):
    """Something the developer must fix; printed as one message."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM while starting."""


def install_issuer() -> str:
    """`npm ci` in the issuer unless node_modules is already that install; returns the node binary."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise DevError("node and npm (Node 20.19+) are needed to run the real Better Auth")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((ISSUER_DIR / name).read_bytes())
    fingerprint = f"node {int(version.lstrip('v').split('.')[0])}\n{digest.hexdigest()}\n"
    with (ISSUER_DIR / "package-lock.json").open("rb") as lock:  # as the tests do: one `npm ci` at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (INSTALL_STAMP.is_file() and INSTALL_STAMP.read_text() == fingerprint):
            print(f"dev: npm ci in {ISSUER_DIR.relative_to(REPO_ROOT)} …", flush=True)
            subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=ISSUER_DIR, check=True)
            INSTALL_STAMP.write_text(fingerprint)
    return node


def check_port_free(port: int, variable: str) -> None:
    with socket.socket() as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            raise DevError(f"{HOST}:{port} is in use (`make dev` already running?); pick another with {variable}=…") from None


def pump(name: str, stream, listening: threading.Event) -> None:
    """Copy a child's output to ours, each line prefixed with its name; note the issuer's ready line."""
    for line in iter(stream.readline, ""):
        if line.startswith("listening "):
            listening.set()
        sys.stdout.write(f"[{name}] {line}")
        sys.stdout.flush()


def spawn(name: str, args: list[str], cwd: Path, env: dict[str, str], listening: threading.Event) -> subprocess.Popen:
    # Its own session: a Ctrl-C at the terminal reaches only us, and we stop the children in order.
    process = subprocess.Popen(
        args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, bufsize=1, start_new_session=True,
    )  # fmt: skip
    threading.Thread(target=pump, args=(name, process.stdout, listening), daemon=True).start()
    return process


def wait_until(ready, process: subprocess.Popen, name: str, deadline_seconds: float, stopping: threading.Event) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not ready():
        if stopping.is_set():
            raise Interrupted
        if process.poll() is not None:
            raise DevError(f"{name} exited with code {process.returncode} before it was ready (see its log above)")
        if time.monotonic() > deadline:
            raise DevError(f"{name} was not ready within {deadline_seconds:g} s")
        time.sleep(POLL_INTERVAL_SECONDS)


def answers_200(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def sign_in_dev_user(issuer_url: str, email: str, password: str) -> tuple[str, str]:
    """Sign up (or, if the email is taken, sign in) through Better Auth's endpoints: (user id, cookie)."""
    with httpx.Client(base_url=issuer_url, timeout=10, headers={"Origin": issuer_url}) as http:
        response = http.post("/api/auth/sign-up/email", json={"email": email, "password": password, "name": "Dev"})
        if response.status_code != 200:
            response = http.post("/api/auth/sign-in/email", json={"email": email, "password": password})
        if response.status_code != 200 or SESSION_COOKIE not in response.cookies:
            raise DevError(f"could not sign {email} up or in: {response.status_code} {response.text}")
        return response.json()["user"]["id"], f"{SESSION_COOKIE}={response.cookies[SESSION_COOKIE]}"


def fetch_token(issuer_url: str, cookie: str) -> str:
    response = httpx.get(f"{issuer_url}/api/auth/token", headers={"Cookie": cookie}, timeout=10)
    response.raise_for_status()
    return response.json()["token"]


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def banner(issuer_url: str, alg: str, service_url: str, email: str, password: str, user_id: str, cookie: str, token: str) -> str:
    minutes = (claims(token)["exp"] - claims(token)["iat"]) / 60
    tasks = f"{service_url}/api/{user_id}/tasks"
    auth = shlex.quote(f"Authorization: Bearer {token}")
    token_curl = f"curl -s {issuer_url}/api/auth/token -H {shlex.quote(f'Cookie: {cookie}')}"
    return f"""
================================================================================
Better Auth   {issuer_url}/api/auth   (jwt plugin, {alg}; JWKS at /api/auth/jwks)
tasks service {service_url}   (API docs: {service_url}/docs)
dev user      {email} / {password}   id {user_id}

Create and list tasks (the token is valid for {minutes:g} minutes):

curl -s -X POST {tasks} -H {auth} -H 'Content-Type: application/json' -d '{{"title": "Try the tasks API"}}'

curl -s {tasks} -H {auth}

Another token for this user (the "token" field):

{token_curl}

or straight into a variable:

TOKEN=$({token_curl} | {shlex.quote(sys.executable)} -c 'import json,sys; print(json.load(sys.stdin)["token"])')
curl -s {tasks} -H "Authorization: Bearer $TOKEN"

Ctrl-C stops both.
================================================================================
"""


def stop(process: subprocess.Popen | None, deadline_seconds: float) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=deadline_seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def port_from_env(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise DevError(f"{name}: expected a port number, got {raw!r}")
    return int(raw)


def main() -> int:
    try:
        issuer_port, service_port = port_from_env("ISSUER_PORT", 3000), port_from_env("PORT", 8000)
    except DevError as exc:
        print(f"dev: {exc}", file=sys.stderr)
        return 2
    alg = os.environ.get("ISSUER_ALG") or "EdDSA"
    email = os.environ.get("DEV_EMAIL") or "dev@example.com"
    password = os.environ.get("DEV_PASSWORD") or "dev-password-1234"
    issuer_url, service_url = f"http://{HOST}:{issuer_port}", f"http://{HOST}:{service_port}"

    stopping = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())
    issuer = service = None
    try:
        check_port_free(issuer_port, "ISSUER_PORT")
        check_port_free(service_port, "PORT")
        node = install_issuer()
        # No BETTER_AUTH_* from the shell (as in the tests): a random secret, the issuer's own URL.
        env = {name: value for name, value in os.environ.items() if not name.startswith("BETTER_AUTH_")}
        listening = threading.Event()
        env.update(ISSUER_PORT=str(issuer_port), ISSUER_ALG=alg)
        issuer = spawn("issuer", [node, "server.mjs"], ISSUER_DIR, env, listening)
        wait_until(listening.is_set, issuer, "Better Auth", ISSUER_START_DEADLINE_SECONDS, stopping)

        service_env = {
            **os.environ,
            "BETTER_AUTH_URL": issuer_url,
            "JWKS_URL": "", "JWT_ISSUER": "", "JWT_AUDIENCE": "",  # empty: derived from BETTER_AUTH_URL, masking .env
            "HOST": HOST,
            "PORT": str(service_port),
            "LOG_FORMAT": os.environ.get("LOG_FORMAT") or "text",
            "PYTHONUNBUFFERED": "1",
        }  # fmt: skip
        service = spawn("service", [sys.executable, "-m", "service", "run"], REPO_ROOT, service_env, threading.Event())
        ready = functools.partial(answers_200, f"{service_url}/readyz")
        wait_until(ready, service, "the tasks service", SERVICE_START_DEADLINE_SECONDS, stopping)

        user_id, cookie = sign_in_dev_user(issuer_url, email, password)
        token = fetch_token(issuer_url, cookie)
        print(banner(issuer_url, alg, service_url, email, password, user_id, cookie, token), flush=True)

        while not stopping.wait(POLL_INTERVAL_SECONDS):
            for name, process in (("Better Auth", issuer), ("the tasks service", service)):
                if process.poll() is not None:
                    raise DevError(f"{name} exited with code {process.returncode}")
        return 0
    except Interrupted:
        return 130
    except (DevError, subprocess.CalledProcessError, httpx.HTTPError) as exc:
        print(f"dev: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        if issuer is not None:
            print("dev: stopping …", flush=True)
            stop(service, SERVICE_STOP_DEADLINE_SECONDS)
            stop(issuer, ISSUER_STOP_DEADLINE_SECONDS)
            print("dev: stopped", flush=True)


if __name__ == "__main__":
    sys.exit(main())
