"""deploy/nextjs/ (the Next.js side of the integration), checked with its own tools:

- `tsc --noEmit`: the files type-check against the pinned better-auth 1.7.25 types;
- `node --test` (TypeScript through tsx): the API client and the /api/tasks proxy against the real
  service, started as `python -m service run` does (a subprocess, on this session's PostgreSQL),
  and the real Better Auth issuer (issuer/server.mjs) with a short `jwt.expirationTime`.

deploy/nextjs/ is installed with `npm ci` from its package-lock.json, skipped while node_modules
matches (a stamp, as for the issuer). A missing Node or npm fails these tests, like the interop suite.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support.better_auth import BetterAuthIssuer, IssuerConfig
from support.node import npm_ci
from support.ports import free_port

REPO_ROOT = Path(__file__).resolve().parents[2]
NEXTJS_DIR = REPO_ROOT / "deploy" / "nextjs"
INSTALL_STAMP = NEXTJS_DIR / "node_modules" / ".nextjs-install-stamp"

TOKEN_LIFETIME_SECONDS = 3  # the issuer's jwt.expirationTime: the client's refresh and 401 retry are real
TSC_TIMEOUT_SECONDS = 120.0  # better-auth's types take ~10 s to check
NODE_TESTS_TIMEOUT_SECONDS = 120.0
SERVICE_START_DEADLINE_SECONDS = 60.0
SERVICE_STOP_DEADLINE_SECONDS = 20.0
POLL_INTERVAL_SECONDS = 0.1


# -- installing deploy/nextjs ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def nextjs_installed() -> str:
    """`npm ci` in deploy/nextjs unless node_modules is already that install. Returns the node binary."""
    return npm_ci(NEXTJS_DIR, INSTALL_STAMP, "the deploy/nextjs tests")


# -- the service, as a subprocess on this session's database ------------------------------------


@contextlib.contextmanager
def running_service(database_url: str, issuer: BetterAuthIssuer, log_path: Path) -> Iterator[str]:
    """`python -m service run` trusting `issuer`, until /readyz answers 200. Yields its base URL."""
    port = free_port()
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    env.update(
        DATABASE_URL=database_url,
        BETTER_AUTH_URL=issuer.base_url,
        JWKS_URL="", JWT_ISSUER="", JWT_AUDIENCE="",  # empty: the defaults, masking a developer's .env
        JWT_LEEWAY_SECONDS="0",  # an expired token is refused at once (the client's 401 retry)
        HOST="127.0.0.1",
        PORT=str(port),
        PYTHONUNBUFFERED="1",
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "run"],
            cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + SERVICE_START_DEADLINE_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"the service exited with {process.returncode}:\n{log_path.read_text()}", pytrace=False)
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(f"{base_url}/readyz", timeout=1).status_code == 200:
                    break
            if time.monotonic() > deadline:
                message = f"the service was not ready within {SERVICE_START_DEADLINE_SECONDS:g} s"
                pytest.fail(f"{message}:\n{log_path.read_text()}", pytrace=False)
            time.sleep(POLL_INTERVAL_SECONDS)
        yield base_url
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=SERVICE_STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def run_node(node_args: list[str], env: dict[str, str], timeout: float, what: str, context: str | Path = "") -> None:
    """Run node in deploy/nextjs; on failure or timeout, fail with its output (and `context`'s log file)."""

    def fail(message: str) -> None:
        log = f"\n--- {context} ---\n{Path(context).read_text(errors='replace')[-5000:]}" if context else ""
        pytest.fail(f"{message}{log}", pytrace=False)

    try:
        result = subprocess.run(
            node_args,
            cwd=NEXTJS_DIR,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        fail(f"{what} did not finish within {timeout:g} s:\n{exc.stdout}\n{exc.stderr}")
    if result.returncode != 0:
        fail(f"{what} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")


# -- tests -----------------------------------------------------------------------------------------


def test_nextjs_files_type_check_against_the_pinned_better_auth(nextjs_installed: str):
    tsc = str(NEXTJS_DIR / "node_modules" / "typescript" / "bin" / "tsc")
    command = [nextjs_installed, tsc, "--noEmit", "-p", "."]
    run_node(command, dict(os.environ), TSC_TIMEOUT_SECONDS, "tsc --noEmit in deploy/nextjs")


def test_nextjs_api_client_and_proxy_pass_their_node_tests_against_the_real_service_and_better_auth(
    nextjs_installed: str, start_issuer, database_url: str, tmp_path: Path
):
    issuer = start_issuer(IssuerConfig(alg="EdDSA", expiration_time=f"{TOKEN_LIFETIME_SECONDS}s"))
    with running_service(database_url, issuer, tmp_path / "service.log") as service_url:
        env = dict(os.environ, TASKS_API_URL=service_url, ISSUER_URL=issuer.base_url)
        env["TOKEN_LIFETIME_SECONDS"] = str(TOKEN_LIFETIME_SECONDS)
        tests = [str(path.relative_to(NEXTJS_DIR)) for path in sorted((NEXTJS_DIR / "tests").glob("*.test.ts"))]
        assert tests, "no deploy/nextjs/tests/*.test.ts"
        command = [nextjs_installed, "--import", "tsx", "--test", "--test-reporter=spec", *tests]
        log = tmp_path / "service.log"
        run_node(command, env, NODE_TESTS_TIMEOUT_SECONDS, "node --test in deploy/nextjs", context=log)
