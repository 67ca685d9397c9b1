"""deploy/nextjs/ (the Next.js side of the integration), checked with its own tools:

- `tsc --noEmit`: the app and the files teams copy type-check against the pinned better-auth
  1.7.25 and Next.js types;
- `node --test` (TypeScript through tsx): the API client (the task model, move, labels, changes
  and live events included), the event-stream reader, the /api/tasks proxy (event streams passed
  on live, Last-Event-ID) and its per-session JWT cache against the real service, started as `python -m service run` does (a subprocess, on
  this session's PostgreSQL), and the real Better Auth issuer (issuer/server.mjs) with a short
  `jwt.expirationTime`.

deploy/nextjs/ is installed with `npm ci` from its package-lock.json, skipped while node_modules
matches (a stamp, as for the issuer). A missing Node or npm fails these tests, like the interop suite.
The app itself, built and served, is tested in a browser by tests/e2e/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from support.better_auth import IssuerConfig
from support.nextjs_app import NEXTJS_DIR, install_nextjs, run_node
from support.service_process import running_service

TOKEN_LIFETIME_SECONDS = 3  # the issuer's jwt.expirationTime: the client's refresh and 401 retry are real
TSC_TIMEOUT_SECONDS = 150.0  # better-auth's and Next.js's types take ~15 s to check
NODE_TESTS_TIMEOUT_SECONDS = 120.0


@pytest.fixture(scope="session")
def nextjs_installed() -> str:
    """`npm ci` in deploy/nextjs unless node_modules is already that install. Returns the node binary."""
    return install_nextjs()


def test_nextjs_files_type_check_against_the_pinned_better_auth_and_nextjs(nextjs_installed: str):
    tsc = str(NEXTJS_DIR / "node_modules" / "typescript" / "bin" / "tsc")
    run_node(nextjs_installed, [tsc, "--noEmit", "-p", "."], dict(os.environ), TSC_TIMEOUT_SECONDS, "tsc --noEmit")


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
        command = ["--import", "tsx", "--test", "--test-reporter=spec", *tests]
        try:
            run_node(nextjs_installed, command, env, NODE_TESTS_TIMEOUT_SECONDS, "node --test in deploy/nextjs")
        except pytest.fail.Exception as failure:
            pytest.fail(f"{failure}\n--- service log ---\n{service.log()[-5000:]}", pytrace=False)
