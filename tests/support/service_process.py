"""`python -m service run` as a child process, as production starts it: the one way the tests
(tests/system, tests/interop) and the bench start the service.

    with running_service(log_path, better_auth_url=..., data_dir=...) as service: ...       # sync
    async with running_service_async(log_path, better_auth_url=..., database_url=...) as service: ...

Keyword arguments beyond the named ones are the service's environment variables
(`DB_POOL_MAX_SIZE="4"`). The child runs in the log's folder, which has no `.env`, so only the
environment given here configures it; this checkout's `service` package comes first on
PYTHONPATH. It gets a session of its own, so a kill reaches uvicorn's worker processes too, and a
Ctrl-C at the terminal reaches the caller, which then stops it.

Failures raise ServiceProcessError with the service's log in the message (no pytest here: the
bench uses this module too).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Self

import httpx

from service.settings import REPO_ROOT

from .embedded_postgres import kill_leftover_postgres
from .ports import free_port

START_DEADLINE_SECONDS = 60.0  # a first start on a new embedded data folder runs initdb
STOP_DEADLINE_SECONDS = 20.0  # SIGTERM: in-flight requests finish, the lifespan closes the pool
KILL_DEADLINE_SECONDS = 10.0
POLL_INTERVAL_SECONDS = 0.1
PROBE_TIMEOUT_SECONDS = 1.0
LOG_TAIL_CHARS = 6000
# The lifespan's last line: a stop that printed it was graceful.
SHUTDOWN_LOG_LINE = "Application shutdown complete."


class ServiceProcessError(RuntimeError):
    """The service did not start, answer or stop as asked; the message ends with its log."""


def service_env(
    *, better_auth_url: str, port: int, database_url: str | None = None, data_dir: Path | None = None, **settings: str
) -> dict[str, str]:
    """This process's environment with the service's variables set: the database (a DSN, or the
    embedded PostgreSQL in `data_dir`), the issuer, 127.0.0.1:`port`, then `settings`."""
    if (database_url is None) == (data_dir is None):
        raise ValueError("give either database_url or data_dir (the embedded PostgreSQL's folder)")
    pythonpath = [str(REPO_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url or "",  # empty: the embedded PostgreSQL
        EMBEDDED_PG_DATA_DIR=str(data_dir or ""),
        BETTER_AUTH_URL=better_auth_url,
        # Empty means "the default, from BETTER_AUTH_URL", whatever the caller's shell exported.
        JWKS_URL="",
        JWT_ISSUER="",
        JWT_AUDIENCE="",
        HOST="127.0.0.1",
        PORT=str(port),
        PYTHONUNBUFFERED="1",  # the log file is current when a test reads it
        PYTHONPATH=os.pathsep.join(pythonpath),
    )
    env.update(settings)
    return env


@dataclass
class ServiceProcess:
    """One running `python -m service run`, its base URL and its log file (stdout and stderr)."""

    process: subprocess.Popen[bytes]
    base_url: str
    log_path: Path
    env: dict[str, str] = field(repr=False)

    @classmethod
    def spawn(cls, env: dict[str, str], log_path: Path) -> Self:
        """Start it (no waiting); `env` comes from service_env. Runs in the log's folder."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "service", "run"],
                cwd=log_path.parent, env=env, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        return cls(process=process, base_url=f"http://127.0.0.1:{env['PORT']}", log_path=log_path, env=env)

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"

    def error(self, message: str) -> ServiceProcessError:
        tail = self.log()[-LOG_TAIL_CHARS:]
        return ServiceProcessError(f"{message}\n--- service log, last lines ({self.log_path}) ---\n{tail}")

    def client(self, **options: Any) -> httpx.Client:
        return httpx.Client(base_url=self.base_url, **options)

    def async_client(self, **options: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, **options)

    def wait_until_answers(
        self, path: str = "/readyz", status: int = 200, deadline_seconds: float = START_DEADLINE_SECONDS
    ) -> httpx.Response:
        """Poll `path` until it answers `status`; raise (with the log) if the process exits or
        the deadline passes first."""
        deadline = time.monotonic() + deadline_seconds
        last = "no answer"
        with self.client(timeout=PROBE_TIMEOUT_SECONDS) as probe:
            while True:
                code = self.process.poll()
                if code is not None:
                    raise self.error(f"the service exited with code {code} before {path} answered {status}")
                try:
                    response = probe.get(path)
                    if response.status_code == status:
                        return response
                    last = f"{response.status_code} {response.text[:300]}"
                except httpx.TransportError as exc:
                    last = type(exc).__name__
                if time.monotonic() > deadline:
                    raise self.error(f"{path} did not answer {status} within {deadline_seconds:g} s (last: {last})")
                time.sleep(POLL_INTERVAL_SECONDS)

    def stop(self, deadline_seconds: float = STOP_DEADLINE_SECONDS) -> int:
        """SIGTERM, as a process manager sends; past the deadline, SIGKILL to its whole session.
        Never raises: for clean-up. Returns the exit code (negative: killed by that signal)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self._wait_or_kill(time.monotonic() + deadline_seconds)

    def stop_gracefully(self, deadline_seconds: float = STOP_DEADLINE_SECONDS) -> None:
        """SIGTERM; the service must exit 0 within the deadline after its lifespan's shutdown."""
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=deadline_seconds)
        except subprocess.TimeoutExpired:
            self.stop(0)
            raise self.error(f"the service did not exit within {deadline_seconds:g} s of SIGTERM") from None
        if code != 0:
            raise self.error(f"the service exited with code {code} after SIGTERM, not 0")
        if SHUTDOWN_LOG_LINE not in self.log():
            raise self.error("the service exited without running its lifespan's shutdown")

    def _wait_or_kill(self, deadline: float) -> int:
        with contextlib.suppress(subprocess.TimeoutExpired):
            return self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)  # its own session: the service and its workers
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=KILL_DEADLINE_SECONDS)
        return self.process.returncode


def spawn_service(
    log_path: Path,
    *,
    better_auth_url: str,
    database_url: str | None = None,
    data_dir: Path | None = None,
    **settings: str,
) -> ServiceProcess:
    """Start `python -m service run` on a free port; it is not ready yet (see wait_until_answers)."""
    env = service_env(
        better_auth_url=better_auth_url, port=free_port(), database_url=database_url, data_dir=data_dir, **settings
    )
    return ServiceProcess.spawn(env, log_path)


def stop_all(services: Iterable[ServiceProcess], deadline_seconds: float = STOP_DEADLINE_SECONDS) -> list[int]:
    """SIGTERM to every one at once (they shut down side by side), then wait; kill what is left
    at the deadline. Returns their exit codes."""
    services = list(services)
    for service in services:
        if service.process.poll() is None:
            service.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + deadline_seconds
    return [service._wait_or_kill(deadline) for service in services]


@contextlib.contextmanager
def running_service(
    log_path: Path,
    *,
    better_auth_url: str,
    database_url: str | None = None,
    data_dir: Path | None = None,
    ready_path: str = "/readyz",
    ready_status: int = 200,
    **settings: str,
) -> Iterator[ServiceProcess]:
    """The service, once `ready_path` answers `ready_status`; always stopped on the way out
    (SIGTERM, then kill), and with `data_dir`, no embedded PostgreSQL left running on it."""
    service = spawn_service(
        log_path, better_auth_url=better_auth_url, database_url=database_url, data_dir=data_dir, **settings
    )
    try:
        service.wait_until_answers(ready_path, ready_status)
        yield service
    finally:
        _stop_and_clean_up(service, data_dir)


@contextlib.asynccontextmanager
async def running_service_async(
    log_path: Path,
    *,
    better_auth_url: str,
    database_url: str | None = None,
    data_dir: Path | None = None,
    ready_path: str = "/readyz",
    ready_status: int = 200,
    **settings: str,
) -> AsyncIterator[ServiceProcess]:
    """running_service for async tests: starting, waiting and stopping happen off the event loop."""
    service = await asyncio.to_thread(
        spawn_service,
        log_path, better_auth_url=better_auth_url, database_url=database_url, data_dir=data_dir, **settings,
    )  # fmt: skip
    try:
        await asyncio.to_thread(service.wait_until_answers, ready_path, ready_status)
        yield service
    finally:
        await asyncio.to_thread(_stop_and_clean_up, service, data_dir)


def _stop_and_clean_up(service: ServiceProcess, data_dir: Path | None) -> None:
    service.stop()
    if data_dir is not None:
        kill_leftover_postgres(data_dir)  # a crashed or killed service leaves its server behind
