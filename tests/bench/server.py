"""The service under test, started as in production: `python -m service run` in a subprocess,
uvicorn with WORKERS processes (uvloop + httptools), LOG_LEVEL=WARNING, its own session so
that a stop reaches every worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import psutil

from .database import BenchSetupError

START_DEADLINE_SECONDS = 60.0
STOP_DEADLINE_SECONDS = 20.0
KILL_DEADLINE_SECONDS = 5.0
POLL_INTERVAL_SECONDS = 0.2
PROBE_TIMEOUT_SECONDS = 2.0
LOG_TAIL_CHARS = 4000


def access_log_setting() -> dict[str, str]:
    """ACCESS_LOG=false if the service has such a setting (uvicorn's access log off)."""
    from service import settings

    parsers = getattr(settings, "_PARSERS", {})
    return {"ACCESS_LOG": "false"} if "ACCESS_LOG" in parsers else {}


def service_env(
    *, database_url: str, better_auth_url: str, port: int, workers: int, overrides: dict[str, str]
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DATABASE_URL=database_url,
        BETTER_AUTH_URL=better_auth_url,
        JWKS_URL="",  # empty = the default derived from BETTER_AUTH_URL, whatever the caller exported
        JWT_ISSUER="",
        JWT_AUDIENCE="",
        HOST="127.0.0.1",
        PORT=str(port),
        WORKERS=str(workers),
        LOG_LEVEL="WARNING",
        PYTHONUNBUFFERED="1",
        **access_log_setting(),
    )
    env.update(overrides)
    return env


@dataclass
class ServiceProcess:
    process: subprocess.Popen
    base_url: str
    log_path: Path
    env: dict[str, str] = field(repr=False)

    def log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-LOG_TAIL_CHARS:]
        except OSError:
            return "(no log)"

    def fail(self, message: str) -> BenchSetupError:
        return BenchSetupError(f"{message}\n--- service log, last lines ({self.log_path}) ---\n{self.log_tail()}")

    def wait_ready(self, deadline_seconds: float = START_DEADLINE_SECONDS) -> None:
        deadline = time.monotonic() + deadline_seconds
        last = "no answer"
        with httpx.Client(base_url=self.base_url, timeout=PROBE_TIMEOUT_SECONDS) as client:
            while True:
                code = self.process.poll()
                if code is not None:
                    raise self.fail(f"the service exited with code {code} before /readyz answered 200")
                try:
                    response = client.get("/readyz")
                    if response.status_code == 200:
                        return
                    last = f"{response.status_code} {response.text[:300]}"
                except httpx.TransportError as exc:
                    last = type(exc).__name__
                if time.monotonic() > deadline:
                    raise self.fail(f"/readyz did not answer 200 within {deadline_seconds:g} s (last: {last})")
                time.sleep(POLL_INTERVAL_SECONDS)

    def worker_pids(self) -> list[int]:
        """The uvicorn worker processes (children running the app), or the process itself with one worker."""
        try:
            children = psutil.Process(self.process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []
        workers = []
        for child in children:
            try:
                cmdline = " ".join(child.cmdline())
            except psutil.Error:
                continue
            if "multiprocessing" in cmdline and "resource_tracker" not in cmdline:
                workers.append(child.pid)
        return sorted(workers) or [self.process.pid]

    def rss_mib(self) -> dict[int, float]:
        sizes = {}
        for pid in self.worker_pids():
            try:
                sizes[pid] = round(psutil.Process(pid).memory_info().rss / 2**20, 1)
            except psutil.Error:
                pass
        return sizes

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the service's processes (master and workers)."""
        return process_tree_cpu_seconds(self.process.pid)

    def stop(self) -> int | None:
        """SIGTERM (graceful, as a process manager would), then SIGKILL to the session if it hangs."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=STOP_DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # our own session: the service and its workers
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=KILL_DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                pass
        return self.process.returncode


@contextlib.contextmanager
def sampling_rss(service: ServiceProcess, interval_seconds: float) -> Iterator[list[list]]:
    """Every `interval_seconds` while the block runs: [seconds since start, {worker pid: RSS MiB}]."""
    samples: list[list] = []
    stop = threading.Event()
    started = time.monotonic()

    def sample() -> None:
        while True:
            samples.append([round(time.monotonic() - started, 1), service.rss_mib()])
            if stop.wait(interval_seconds):
                return

    thread = threading.Thread(target=sample, name="rss-sampler", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join()
        samples.append([round(time.monotonic() - started, 1), service.rss_mib()])


def process_tree_cpu_seconds(pid: int) -> float:
    """CPU time of a process, its live descendants and its children that have exited (PostgreSQL
    backends of closed connections). Unlike req/s, CPU per request hardly moves when other work on
    the machine takes the cores: the figure to compare changes with."""
    total = 0.0
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
        reaped = root.cpu_times()
        total += reaped.children_user + reaped.children_system
    except psutil.Error:
        return total
    for process in processes:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def start_service(env: dict[str, str], log_path: Path, cwd: Path) -> ServiceProcess:
    """Start `python -m service run`. `cwd` has no .env, so only `env` configures it."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "run"],
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches us, and we stop it in order
        )
    return ServiceProcess(process=process, base_url=f"http://127.0.0.1:{env['PORT']}", log_path=log_path, env=env)
