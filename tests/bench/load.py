"""wrk, the HTTP load generator: found (or installed from Debian's packages as root), run with
bench/tasks.lua, and its `done()` line parsed.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .database import BenchSetupError

LUA_SCRIPT = Path(__file__).with_name("tasks.lua")
RESULT_MARKER = "BENCH_RESULT "
REQUEST_TIMEOUT = "5s"  # wrk counts a request slower than this as a timeout error
MAX_THREADS = 2
INSTALL_TIMEOUT_SECONDS = 300
EXTRA_SECONDS = 30  # wrk's own start and stop, beyond the run's duration


def ensure_wrk(progress) -> str:
    """The wrk binary; installed with apt-get when missing and we are root, else a clear error."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchSetupError("wrk is not installed: run `sudo apt-get install -y wrk` (Debian/Ubuntu), then again")
    progress("wrk not found: apt-get install -y wrk")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "install", "-y", "-q", "wrk"],
        ["apt-get", "update", "-q"],
        ["apt-get", "install", "-y", "-q", "wrk"],
    ):
        try:
            subprocess.run(
                command,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=INSTALL_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BenchSetupError(f"installing wrk failed ({' '.join(command)}: {exc}); install it by hand") from exc
        found = shutil.which("wrk")
        if found:
            return found
    raise BenchSetupError("apt-get could not install wrk; install it by hand (`apt-get install -y wrk`)")


@dataclass(frozen=True)
class LoadResult:
    requests: int
    seconds: float
    errors: dict[str, int]
    latency_us: dict[str, float]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "rps": round(self.rps, 1),
            "errors": self.errors,
            "errors_total": self.error_count,
            "latency_us": self.latency_us,
        }


def run_wrk(
    wrk: str, base_url: str, data_file: Path, workload: str, connections: int, duration_seconds: float
) -> LoadResult:
    threads = max(1, min(MAX_THREADS, connections))  # wrk needs connections >= threads
    command = [
        wrk, f"-t{threads}", f"-c{connections}", f"-d{duration_seconds:g}s", f"--timeout={REQUEST_TIMEOUT}",
        "-s", str(LUA_SCRIPT), base_url, "--", str(data_file), workload,
    ]  # fmt: skip
    try:
        completed = subprocess.run(
            command, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=duration_seconds + EXTRA_SECONDS
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchSetupError(
            f"wrk did not finish within {duration_seconds + EXTRA_SECONDS:g} s: {' '.join(command)}"
        ) from exc
    line = next((l for l in completed.stdout.splitlines() if l.startswith(RESULT_MARKER)), None)
    if completed.returncode != 0 or line is None:
        raise BenchSetupError(
            f"wrk failed (exit {completed.returncode}): {' '.join(command)}\n{completed.stdout[-2000:]}{completed.stderr[-2000:]}"
        )
    data = json.loads(line[len(RESULT_MARKER) :])
    return LoadResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        errors=data["errors"],
        latency_us=data["latency_us"],
    )
