"""The tasks service as `python -m service run` starts it: a subprocess on a given database,
trusting a given Better Auth, until /readyz answers 200 (for the tests that drive real processes)."""

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

from service.settings import REPO_ROOT

SERVICE_START_DEADLINE_SECONDS = 60.0
SERVICE_STOP_DEADLINE_SECONDS = 20.0
POLL_INTERVAL_SECONDS = 0.1


def service_env(database_url: str, better_auth_url: str, port: int, **extra: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name != "DATABASE_URL"}
    env.update(
        DATABASE_URL=database_url,
        BETTER_AUTH_URL=better_auth_url,
        JWKS_URL="", JWT_ISSUER="", JWT_AUDIENCE="",  # empty: the defaults, masking a developer's .env
        HOST="127.0.0.1",
        PORT=str(port),
        PYTHONUNBUFFERED="1",
    )  # fmt: skip
    env.update(extra)
    return env


def wait_until_ready(process: subprocess.Popen, url: str, deadline_seconds: float, what: str, log_path: Path) -> None:
    """Poll `url` until it answers 200; fail with the log if `process` exits or the deadline passes."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        if process.poll() is not None:
            pytest.fail(f"{what} exited with {process.returncode}:\n{log_path.read_text()[-5000:]}", pytrace=False)
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(url, timeout=5).status_code == 200:
                return
        if time.monotonic() > deadline:
            message = f"{what} was not ready within {deadline_seconds:g} s"
            pytest.fail(f"{message}:\n{log_path.read_text()[-5000:]}", pytrace=False)
        time.sleep(POLL_INTERVAL_SECONDS)


def stop_process(process: subprocess.Popen, deadline_seconds: float) -> None:
    """SIGTERM to its process group, then SIGKILL if it does not exit in time."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=deadline_seconds)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextlib.contextmanager
def spawned(args: list[str], cwd: Path, env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """A child in its own process group, output to `log_path`, stopped (with its children) at the end."""
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process
    finally:
        stop_process(process, SERVICE_STOP_DEADLINE_SECONDS)


@contextlib.contextmanager
def running_service(database_url: str, better_auth_url: str, port: int, log_path: Path, **extra: str) -> Iterator[str]:
    """`python -m service run` trusting `better_auth_url`, until /readyz answers 200. Yields its URL."""
    env = service_env(database_url, better_auth_url, port, **extra)
    base_url = f"http://127.0.0.1:{port}"
    with spawned([sys.executable, "-m", "service", "run"], REPO_ROOT, env, log_path) as process:
        wait_until_ready(process, f"{base_url}/readyz", SERVICE_START_DEADLINE_SECONDS, "the service", log_path)
        yield base_url
