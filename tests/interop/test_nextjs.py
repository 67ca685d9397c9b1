"""deploy/nextjs/ (the Next.js side of the integration), checked with its own tools:

- `tsc --noEmit`: the files type-check against the pinned better-auth 1.7.25 types;
- `node --test` (TypeScript through tsx): the API client and the /api/tasks proxy against the real
  service, started as `python -m service run` does (a subprocess, on this session's PostgreSQL),
  and the real Better Auth issuer (issuer/server.mjs) with a short `jwt.expirationTime`.

deploy/nextjs/ is installed with `npm ci` from its package-lock.json, skipped while node_modules
matches (a stamp, as for the issuer). A missing Node or npm fails these tests, like the interop suite.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from service.settings import REPO_ROOT
from support.better_auth import IssuerConfig
from support.node import npm_ci
from support.service_process import running_service

NEXTJS_DIR = REPO_ROOT / "deploy" / "nextjs"
INSTALL_STAMP = NEXTJS_DIR / "node_modules" / ".nextjs-install-stamp"

TOKEN_LIFETIME_SECONDS = 3  # the issuer's jwt.expirationTime: the client's refresh and 401 retry are real
TSC_TIMEOUT_SECONDS = 120.0  # better-auth's types take ~10 s to check
NODE_TESTS_TIMEOUT_SECONDS = 120.0


# -- installing deploy/nextjs ----------------------------------------------------------------------


@pytest.fixture(scope="session")
def nextjs_installed() -> str:
    """`npm ci` in deploy/nextjs unless node_modules is already that install. Returns the node binary."""
    return npm_ci(NEXTJS_DIR, INSTALL_STAMP, "the deploy/nextjs tests")


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
    with running_service(
        tmp_path / "service.log",
        better_auth_url=issuer.base_url,
        database_url=database_url,
        JWT_LEEWAY_SECONDS="0",  # an expired token is refused at once (the client's 401 retry)
    ) as service:
        env = dict(os.environ, TASKS_API_URL=service.base_url, ISSUER_URL=issuer.base_url)
        env["TOKEN_LIFETIME_SECONDS"] = str(TOKEN_LIFETIME_SECONDS)
        tests = [str(path.relative_to(NEXTJS_DIR)) for path in sorted((NEXTJS_DIR / "tests").glob("*.test.ts"))]
        assert tests, "no deploy/nextjs/tests/*.test.ts"
        command = [nextjs_installed, "--import", "tsx", "--test", "--test-reporter=spec", *tests]
        log = tmp_path / "service.log"
        run_node(command, env, NODE_TESTS_TIMEOUT_SECONDS, "node --test in deploy/nextjs", context=log)
