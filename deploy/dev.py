"""`make dev`: PostgreSQL, the tasks service and the reference Next.js app (deploy/nextjs), together.

1. PostgreSQL: the embedded server `make run` uses (.data/postgres), or the server of DATABASE_URL.
   Better Auth gets a database of its own on it, `nextjs_auth` (AUTH_DATABASE_URL overrides),
   created if missing; `deploy/nextjs/scripts/migrate.ts` creates its tables without a prompt.
2. `npm ci` in deploy/nextjs (skipped while node_modules is that install), then the service
   (`python -m service run`) and the app (`next dev`) start side by side: neither waits for the
   other, the service fetches the app's JWKS as soon as it answers.
3. Once all three are ready: signs a dev user up (or in), prints the URL to open and a curl with a
   fresh JWT. Ctrl-C or SIGTERM stops the service, then the app, then PostgreSQL.

`make auth-migrate` (`deploy/dev.py --migrate`) only does step 1 and exits.

Environment (all optional):
  APP_PORT (3000), PORT (8000)      the app's and the service's ports, on 127.0.0.1
  DATABASE_URL, AUTH_DATABASE_URL   the service's and Better Auth's databases (see above)
  BETTER_AUTH_SECRET                default: one made on the first run, kept in .data/nextjs-auth-secret
                                    (it encrypts the signing keys in the database: it must not change)
  NEXT_COMMAND                      `dev` (default: compiles on demand, reloads on edit) or `start`
                                    (serves the build of `npm run build`)
  DEV_EMAIL, DEV_PASSWORD           the dev user
"""

from __future__ import annotations

import argparse
import os
import secrets
import shlex
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "deploy")]  # this checkout's service/, and devtools

from devtools import (  # noqa: E402 - after the path set-up above
    DevError,
    Interrupted,
    Supervisor,
    answers_200,
    check_port_free,
    claims,
    npm_ci,
    port_from_env,
)

NEXTJS_DIR = REPO_ROOT / "deploy" / "nextjs"
SECRET_FILE = REPO_ROOT / ".data" / "nextjs-auth-secret"
AUTH_DATABASE = "nextjs_auth"
SESSION_COOKIE = "better-auth.session_token"
HOST = "127.0.0.1"

APP_START_DEADLINE_SECONDS = 120.0  # `next dev` compiles each route on its first request
SERVICE_START_DEADLINE_SECONDS = 120.0  # the first start runs initdb
MIGRATE_TIMEOUT_SECONDS = 120.0


def auth_secret() -> str:
    """BETTER_AUTH_SECRET, or the one kept for this checkout (made on the first run)."""
    if os.environ.get("BETTER_AUTH_SECRET"):
        return os.environ["BETTER_AUTH_SECRET"]
    if not SECRET_FILE.is_file():
        SECRET_FILE.parent.mkdir(parents=True, exist_ok=True)
        SECRET_FILE.touch(mode=0o600)
        SECRET_FILE.write_text(secrets.token_urlsafe(32) + "\n")
    return SECRET_FILE.read_text().strip()


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def prepare_auth_database(stack: list) -> str:
    """Better Auth's database, created if missing: AUTH_DATABASE_URL, or `nextjs_auth` on the
    service's server. With the embedded server, keeps a handle on it in `stack` (released at exit)."""
    import asyncio

    from service.db.embedded import ensure_database, start_embedded_postgres
    from service.settings import load_settings

    if os.environ.get("AUTH_DATABASE_URL"):
        return os.environ["AUTH_DATABASE_URL"]
    settings = load_settings()
    if settings.database_url is not None:
        admin_dsn = settings.database_url.get_secret_value()
    else:
        server = start_embedded_postgres(settings.embedded_pg_data_dir)
        stack.append(server)
        admin_dsn = server.admin_dsn()
    try:
        asyncio.run(ensure_database(admin_dsn, AUTH_DATABASE))
    except Exception as exc:
        raise DevError(f"cannot create the database {AUTH_DATABASE!r} ({exc}); set AUTH_DATABASE_URL") from exc
    return with_database(admin_dsn, AUTH_DATABASE)


def migrate(node: str, env: dict[str, str]) -> None:
    import subprocess

    command = [node, "--import", "tsx", "scripts/migrate.ts"]
    result = subprocess.run(
        command, cwd=NEXTJS_DIR, env=env, capture_output=True, text=True, timeout=MIGRATE_TIMEOUT_SECONDS
    )
    if result.returncode != 0:
        raise DevError(f"Better Auth's migration failed:\n{result.stdout}{result.stderr}")
    print(f"dev: {result.stdout.strip()}", flush=True)


def sign_in_dev_user(app_url: str, email: str, password: str) -> tuple[str, str]:
    """Sign up (or, if the email is taken, sign in) through Better Auth's endpoints: (user id, cookie)."""
    with httpx.Client(base_url=app_url, timeout=30, headers={"Origin": app_url}) as http:
        response = http.post("/api/auth/sign-up/email", json={"email": email, "password": password, "name": "Dev"})
        if response.status_code != 200:
            response = http.post("/api/auth/sign-in/email", json={"email": email, "password": password})
        if response.status_code != 200 or SESSION_COOKIE not in response.cookies:
            raise DevError(f"could not sign {email} up or in: {response.status_code} {response.text}")
        return response.json()["user"]["id"], f"{SESSION_COOKIE}={response.cookies[SESSION_COOKIE]}"


def fetch_token(app_url: str, cookie: str) -> str:
    response = httpx.get(f"{app_url}/api/auth/token", headers={"Cookie": cookie}, timeout=30)
    response.raise_for_status()
    return response.json()["token"]


def banner(app_url: str, service_url: str, email: str, password: str, user_id: str, cookie: str, token: str) -> str:
    minutes = (claims(token)["exp"] - claims(token)["iat"]) / 60
    tasks = f"{service_url}/api/{user_id}/tasks"
    auth = shlex.quote(f"Authorization: Bearer {token}")
    token_curl = f"curl -s {app_url}/api/auth/token -H {shlex.quote(f'Cookie: {cookie}')}"
    return f"""
================================================================================
Open {app_url} in a browser: sign up, or sign in as {email} / {password}.

Next.js app   {app_url}   (Better Auth at /api/auth, JWKS at /api/auth/jwks; tasks via /api/tasks)
tasks service {service_url}   (API docs: {service_url}/docs)
dev user      {email}   id {user_id}

The service straight from a shell (the token is valid for {minutes:g} minutes):

curl -s -X POST {tasks} -H {auth} -H 'Content-Type: application/json' -d '{{"title": "Try the tasks API"}}'

curl -s {tasks} -H {auth}

Another token for this user (the "token" field):

{token_curl}

or straight into a variable:

TOKEN=$({token_curl} | {shlex.quote(sys.executable)} -c 'import json,sys; print(json.load(sys.stdin)["token"])')
curl -s {tasks} -H "Authorization: Bearer $TOKEN"

Ctrl-C stops all three.
================================================================================
"""


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--migrate", action="store_true", help="only create Better Auth's database and tables")
    args = parser.parse_args(argv)
    try:
        app_port, service_port = port_from_env("APP_PORT", 3000), port_from_env("PORT", 8000)
    except DevError as exc:
        print(f"dev: {exc}", file=sys.stderr)
        return 2
    email = os.environ.get("DEV_EMAIL") or "dev@example.com"
    password = os.environ.get("DEV_PASSWORD") or "dev-password-1234"
    next_command = os.environ.get("NEXT_COMMAND") or "dev"
    app_url, service_url = f"http://{HOST}:{app_port}", f"http://{HOST}:{service_port}"

    held: list = []  # the embedded PostgreSQL handle, released last
    supervisor = Supervisor()
    try:
        if not args.migrate:
            check_port_free(HOST, app_port, "APP_PORT")
            check_port_free(HOST, service_port, "PORT")
        node = npm_ci(NEXTJS_DIR, NEXTJS_DIR / "node_modules" / ".nextjs-install-stamp")  # the tests' stamp
        # No BETTER_AUTH_* from the shell but the secret: the app's own URL, as the service expects.
        app_env = {name: value for name, value in os.environ.items() if not name.startswith("BETTER_AUTH_")}
        app_env.update(
            DATABASE_URL=prepare_auth_database(held),
            BETTER_AUTH_SECRET=auth_secret(),
            BETTER_AUTH_URL=app_url,
            BETTER_AUTH_TRUSTED_ORIGINS=f"http://localhost:{app_port}",  # the same app, as many type it
            TASKS_API_URL=service_url,
            NEXT_TELEMETRY_DISABLED="1",
        )
        migrate(node, app_env)
        if args.migrate:
            return 0

        service_env = {
            **os.environ,
            "BETTER_AUTH_URL": app_url,
            "JWKS_URL": "", "JWT_ISSUER": "", "JWT_AUDIENCE": "",  # empty: derived from BETTER_AUTH_URL, masking .env
            "HOST": HOST,
            "PORT": str(service_port),
            "LOG_FORMAT": os.environ.get("LOG_FORMAT") or "text",
            "PYTHONUNBUFFERED": "1",
        }  # fmt: skip
        next_bin = str(NEXTJS_DIR / "node_modules" / "next" / "dist" / "bin" / "next")
        started = time.monotonic()
        # Both at once: start order does not matter, the service retries the JWKS until the app answers.
        app = supervisor.spawn(
            "app", [node, next_bin, next_command, "-H", HOST, "-p", str(app_port)], NEXTJS_DIR, app_env
        )
        service = supervisor.spawn("service", [sys.executable, "-m", "service", "run"], REPO_ROOT, service_env)
        # The JWKS route answering 200 means Better Auth, its database and its key are ready.
        supervisor.wait_until(lambda: answers_200(f"{app_url}/api/auth/jwks"), app, APP_START_DEADLINE_SECONDS)
        app_ready = time.monotonic()
        supervisor.wait_until(lambda: answers_200(f"{service_url}/readyz"), service, SERVICE_START_DEADLINE_SECONDS)
        service_ready = time.monotonic()
        print(
            f"dev: app ready after {app_ready - started:.1f} s, service ready "
            f"{max(0.0, service_ready - app_ready):.1f} s after the app's JWKS answered",
            flush=True,
        )
        answers_200(f"{app_url}/sign-in")  # `next dev` compiles the first page now, not on the first click

        user_id, cookie = sign_in_dev_user(app_url, email, password)
        token = fetch_token(app_url, cookie)
        print(banner(app_url, service_url, email, password, user_id, cookie, token), flush=True)
        supervisor.watch()
        return 0
    except Interrupted:
        return 130
    except (DevError, httpx.HTTPError) as exc:
        print(f"dev: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        supervisor.stop_all()
        for server in held:
            server.stop()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
