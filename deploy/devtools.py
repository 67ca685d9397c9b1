"""Process plumbing for deploy/dev.py: `npm ci` once per lock file, children with prefixed logs,
bounded waits that Ctrl-C interrupts, and an orderly stop."""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

MIN_NODE_MAJOR = 20
POLL_INTERVAL_SECONDS = 0.2
STOP_DEADLINE_SECONDS = 30.0


class DevError(Exception):
    """Something the developer must fix; printed as one message."""


class Interrupted(Exception):
    """Ctrl-C or SIGTERM while starting."""


def npm_ci(directory: Path, stamp: Path) -> str:
    """`npm ci` in `directory` unless node_modules is already that install; returns the node binary."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        raise DevError("node and npm (Node 20.19+) are needed for the Next.js app")
    version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout.strip()
    if int(version.lstrip("v").split(".")[0]) < MIN_NODE_MAJOR:
        raise DevError(f"Node 20.19+ is needed, found {version}")
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((directory / name).read_bytes())
    fingerprint = f"node {version.split('.')[0].lstrip('v')}\n{digest.hexdigest()}\n"  # as tests/support/node.py
    with (directory / "package-lock.json").open("rb") as lock:  # as the tests do: one `npm ci` at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (stamp.is_file() and stamp.read_text() == fingerprint):
            print(f"dev: npm ci in {directory} …", flush=True)
            result = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"], cwd=directory)
            if result.returncode != 0:
                raise DevError(f"`npm ci` in {directory} failed ({result.returncode})")
            stamp.write_text(fingerprint)
    return node


def check_port_free(host: str, port: int, variable: str) -> None:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            raise DevError(
                f"{host}:{port} is in use (`make dev` already running?); pick another with {variable}=…"
            ) from None


def port_from_env(name: str, default: int) -> int:
    raw = os.environ.get(name) or str(default)
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise DevError(f"{name}: expected a port number, got {raw!r}")
    return int(raw)


def answers_200(url: str) -> bool:
    try:
        return httpx.get(url, timeout=30).status_code == 200
    except httpx.TransportError:
        return False


def claims(token: str) -> dict:
    payload = token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def pump(name: str, stream) -> None:
    """Copy a child's output to ours, each line prefixed with its name."""
    for line in iter(stream.readline, ""):
        sys.stdout.write(f"[{name}] {line}")
        sys.stdout.flush()


class Supervisor:
    """The children of `make dev`: started in order, stopped in reverse order. Installs SIGINT and
    SIGTERM handlers that make the waits raise Interrupted."""

    def __init__(self) -> None:
        self.stopping = threading.Event()
        self.children: list[tuple[str, subprocess.Popen]] = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda *_: self.stopping.set())

    def spawn(self, name: str, args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.Popen:
        # Its own session: a Ctrl-C at the terminal reaches only us, and we stop the children in order.
        process = subprocess.Popen(
            args, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, start_new_session=True,
        )  # fmt: skip
        threading.Thread(target=pump, args=(name, process.stdout), daemon=True).start()
        self.children.append((name, process))
        return process

    def _check(self) -> None:
        if self.stopping.is_set():
            raise Interrupted
        for name, process in self.children:
            if process.poll() is not None:
                raise DevError(f"{name} exited with code {process.returncode} (see its log above)")

    def wait_until(self, ready: Callable[[], bool], process: subprocess.Popen, deadline_seconds: float) -> None:
        name = next(name for name, child in self.children if child is process)
        deadline = time.monotonic() + deadline_seconds
        while not ready():
            self._check()
            if time.monotonic() > deadline:
                raise DevError(f"{name} was not ready within {deadline_seconds:g} s")
            time.sleep(POLL_INTERVAL_SECONDS)

    def watch(self) -> None:
        """Until Ctrl-C or SIGTERM (returns), or until a child exits (raises DevError)."""
        while not self.stopping.wait(POLL_INTERVAL_SECONDS):
            try:
                self._check()
            except Interrupted:
                return

    def stop_all(self) -> None:
        if self.children:
            print("dev: stopping …", flush=True)
        for _name, process in reversed(self.children):
            if process.poll() is None:
                # The whole group: `next dev` runs its server in a child process of its own.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=STOP_DEADLINE_SECONDS)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
        if self.children:
            print("dev: stopped", flush=True)
        self.children.clear()
