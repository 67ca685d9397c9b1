"""The reference Next.js app (deploy/nextjs) end to end: built with `next build` once per change of
its sources, served by `next start`, with Better Auth on its own database of the tests' PostgreSQL,
calling `python -m service run` through a recorder of what reaches the service, and driven by
Debian's Chromium through Playwright. Everything listens on 127.0.0.1, on free ports.

This file only declares fixtures; the helpers live in tests/support/.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from support.browser import Browsing, launched_chromium
from support.nextjs_app import (
    Build,
    Stack,
    app_env,
    auth_database,
    build_nextjs,
    install_nextjs,
    migrate_auth_database,
    running_nextjs,
)
from support.ports import free_port
from support.recording_proxy import RecordingProxy
from support.service_process import spawn_service

# Short-lived JWTs: the proxy's token reuse, its refreshes and a key rotation all happen in seconds.
JWT_LIFETIME = "6s"

BUILD_SECONDS = pytest.StashKey[float]()


def node_env() -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if not name.startswith("BETTER_AUTH_")}
    return {**env, "NEXT_TELEMETRY_DISABLED": "1"}


@pytest.fixture(scope="session")
def nextjs_build(request: pytest.FixtureRequest) -> Build:
    build = build_nextjs(install_nextjs(), node_env())
    request.config.stash[BUILD_SECONDS] = build.seconds
    return build


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    seconds = config.stash.get(BUILD_SECONDS, None)
    if seconds is not None:
        what = f"took {seconds:.1f} s" if seconds else "was current (sources unchanged), skipped"
        terminalreporter.write_line(f"deploy/nextjs: next build {what}")


@pytest.fixture(scope="package")  # stopped once the browser tests are done
async def stack(
    nextjs_build: Build, postgres_admin_dsn: str, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    logs = tmp_path_factory.mktemp("e2e-logs")
    async with auth_database(postgres_admin_dsn) as auth_dsn:
        migrate_auth_database(nextjs_build.node, auth_dsn, node_env())
        app_port = free_port()
        app_url = f"http://127.0.0.1:{app_port}"
        # The service first, the app second: the service is ready within seconds of Better Auth appearing.
        service = spawn_service(logs / "service.log", better_auth_url=app_url, database_url=database_url)
        try:
            recorder = RecordingProxy(service.base_url)
            with recorder.serving(free_port()) as recorder_url:
                env = app_env(node_env(), app_url, auth_dsn, recorder_url, JWT_EXPIRATION_TIME=JWT_LIFETIME)
                with running_nextjs(nextjs_build.node, app_port, env, logs / "next.log"):
                    service.wait_until_answers("/readyz", 200)
                    yield Stack(app_url, service.base_url, auth_dsn, recorder)
        finally:
            service.stop()


FAILED = pytest.StashKey[bool]()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[pytest.TestReport]:
    report = yield
    if report.failed:
        item.stash[FAILED] = True
    return report


@pytest.fixture
async def browsing(request: pytest.FixtureRequest, stack: Stack) -> AsyncIterator[Browsing]:
    """Pages to open, one browser context per user; on failure, screenshots and console logs are
    saved under .artifacts/e2e/<test>/."""
    async with launched_chromium() as browser:
        browsing = Browsing(browser, stack.app_url)
        try:
            yield browsing
        finally:
            if request.node.stash.get(FAILED, False):
                print(f"screenshots and console logs: {await browsing.save_artifacts(request.node.name)}")
            await browsing.close()
