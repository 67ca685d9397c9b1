"""deploy/nextjs as the tests run it: installed (`npm ci`, once per lock file), built (`next build`,
once per change of its sources), its Better Auth database made and migrated, and served by
`next start` on a free port.

The build is skipped while .next/ holds a build of the same sources (a stamp of their hash), and
`next build` itself reuses its cache in .next/cache. A lock keeps two test runs in one checkout
from building over each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import signal
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest

from service.settings import REPO_ROOT
from support.recording_proxy import RecordingProxy

from .app import with_database
from .node import npm_ci

NEXTJS_DIR = REPO_ROOT / "deploy" / "nextjs"
INSTALL_STAMP = NEXTJS_DIR / "node_modules" / ".nextjs-install-stamp"  # the same stamp as `make dev`
BUILD_STAMP = NEXTJS_DIR / ".next" / "tests-build-stamp"
BUILD_INPUTS = ("app", "components", "lib", "next.config.ts", "tsconfig.json", "package-lock.json")
NEXT_BIN = NEXTJS_DIR / "node_modules" / "next" / "dist" / "bin" / "next"

BUILD_TIMEOUT_SECONDS = 300.0  # ~30 s from scratch on 2 cores, TypeScript check included
MIGRATE_TIMEOUT_SECONDS = 60.0
APP_START_DEADLINE_SECONDS = 60.0
APP_STOP_DEADLINE_SECONDS = 10.0
POLL_INTERVAL_SECONDS = 0.1


def install_nextjs() -> str:
    """`npm ci` in deploy/nextjs unless node_modules is already that install. Returns node."""
    return npm_ci(NEXTJS_DIR, INSTALL_STAMP, "the deploy/nextjs tests")


def run_node(node: str, args: list[str], env: dict[str, str] | None, timeout: float, what: str) -> str:
    """Node in deploy/nextjs; fails the test with its output on an error or a timeout."""
    try:
        result = subprocess.run(
            [node, *args],
            cwd=NEXTJS_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{what} did not finish within {timeout:g} s:\n{exc.stdout}\n{exc.stderr}", pytrace=False)
    if result.returncode != 0:
        pytest.fail(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}", pytrace=False)
    return result.stdout


def sources_digest() -> str:
    digest = hashlib.sha256()
    for name in BUILD_INPUTS:
        root = NEXTJS_DIR / name
        for path in sorted([root] if root.is_file() else root.rglob("*")):
            if path.is_file():
                digest.update(str(path.relative_to(NEXTJS_DIR)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class Build:
    node: str
    seconds: float  # 0 when the build of these sources was already there


def build_nextjs(node: str, env: dict[str, str]) -> Build:
    """`next build` unless .next/ already holds the build of these sources."""
    with (NEXTJS_DIR / "package-lock.json").open("rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        digest = sources_digest()
        if (
            BUILD_STAMP.is_file()
            and BUILD_STAMP.read_text() == digest
            and (NEXTJS_DIR / ".next" / "BUILD_ID").is_file()
        ):
            return Build(node, 0.0)
        started = time.monotonic()
        run_node(node, [str(NEXT_BIN), "build"], env, BUILD_TIMEOUT_SECONDS, "next build in deploy/nextjs")
        BUILD_STAMP.write_text(digest)
        return Build(node, time.monotonic() - started)


def migrate_auth_database(node: str, database_url: str, env: dict[str, str]) -> str:
    """scripts/migrate.ts: Better Auth's tables and first signing key, without a prompt."""
    env = {**env, "DATABASE_URL": database_url}
    return run_node(node, ["--import", "tsx", "scripts/migrate.ts"], env, MIGRATE_TIMEOUT_SECONDS, "migrate.ts")


@contextlib.asynccontextmanager
async def auth_database(admin_dsn: str) -> AsyncIterator[str]:
    """A fresh database for Better Auth on the tests' server, dropped at the end. Yields its DSN."""
    name = f"nextjs_auth_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        yield with_database(admin_dsn, name)
    finally:
        admin = await asyncpg.connect(admin_dsn)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def app_env(
    base_env: dict[str, str], app_url: str, database_url: str, tasks_api_url: str, **extra: str
) -> dict[str, str]:
    """The app's environment: no BETTER_AUTH_* from the developer's shell, a random secret."""
    env = {name: value for name, value in base_env.items() if not name.startswith("BETTER_AUTH_")}
    env.update(
        BETTER_AUTH_URL=app_url,
        BETTER_AUTH_SECRET=secrets.token_urlsafe(32),
        DATABASE_URL=database_url,
        TASKS_API_URL=tasks_api_url,
        NODE_ENV="production",
        NEXT_TELEMETRY_DISABLED="1",
    )
    env.update(extra)
    return env


def wait_until_ready(process: subprocess.Popen, url: str, log_path: Path) -> None:
    """Poll `url` until it answers 200; fail with the log if `process` exits or the deadline passes."""
    deadline = time.monotonic() + APP_START_DEADLINE_SECONDS
    while True:
        if process.poll() is not None:
            pytest.fail(f"next start exited with {process.returncode}:\n{log_path.read_text()[-5000:]}", pytrace=False)
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        if time.monotonic() > deadline:
            message = f"next start was not ready within {APP_START_DEADLINE_SECONDS:g} s"
            pytest.fail(f"{message}:\n{log_path.read_text()[-5000:]}", pytrace=False)
        time.sleep(POLL_INTERVAL_SECONDS)


@contextlib.contextmanager
def running_nextjs(node: str, port: int, env: dict[str, str], log_path: Path) -> Iterator[str]:
    """`next start` on 127.0.0.1:`port`, until Better Auth's JWKS answers 200. Yields its URL.
    A session of its own: the stop reaches every process it started."""
    base_url = f"http://127.0.0.1:{port}"
    args = [node, str(NEXT_BIN), "start", "-H", "127.0.0.1", "-p", str(port)]
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            args, cwd=NEXTJS_DIR, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_until_ready(process, f"{base_url}/api/auth/jwks", log_path)
        yield base_url
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=APP_STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass(frozen=True)
class Stack:
    """The running stack the browser tests drive."""

    app_url: str
    service_url: str
    auth_database_url: str  # Better Auth's tables: user, session, account, verification, jwks
    recorder: RecordingProxy  # every request the app's proxy sent to the service
