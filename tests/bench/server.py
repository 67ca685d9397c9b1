"""The service under test, started as in production by tests/support/service_process.py
(`python -m service run` in a subprocess, in its own session so that a stop reaches every
worker): uvicorn with WORKERS processes (uvloop + httptools), LOG_LEVEL=WARNING.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator

import psutil

from support.service_process import ServiceProcess, ServiceProcessError, service_env

from .database import BenchSetupError


def bench_env(
    *, database_url: str, better_auth_url: str, port: int, workers: int, overrides: dict[str, str]
) -> dict[str, str]:
    """The service's environment for a run: WORKERS processes, quiet logs, then `--env` overrides."""
    settings = {
        "WORKERS": str(workers),
        "LOG_LEVEL": "WARNING",
        "ACCESS_LOG": "false",  # no log line per request: the figures are the requests', not the logging's
        **overrides,
    }
    return service_env(better_auth_url=better_auth_url, port=port, database_url=database_url, **settings)


class BenchService(ServiceProcess):
    """The service as the bench drives it: its worker processes, their memory and CPU time."""

    def fail(self, message: str) -> BenchSetupError:
        return BenchSetupError(str(self.error(message)))

    def wait_ready(self) -> None:
        try:
            self.wait_until_answers("/readyz", 200)
        except ServiceProcessError as exc:
            raise BenchSetupError(str(exc)) from None

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


@contextlib.contextmanager
def sampling_rss(service: BenchService, interval_seconds: float) -> Iterator[list[list]]:
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
