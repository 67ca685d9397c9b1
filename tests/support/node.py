"""Node for the tests that run real npm packages: find it, and `npm ci` a folder once per lock file.

A missing or too old Node fails the test that needs it (never a skip): those tests prove
interop with the real packages, which nothing else can.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

MIN_NODE_VERSION = (20, 19)  # better-auth 1.7's dependencies need 20.19+
NPM_CI_TIMEOUT_SECONDS = 170.0  # under pytest-timeout's 180 s: a first install downloads ~25 MB


def npm_ci(directory: Path, stamp: Path, purpose: str) -> str:
    """`npm ci` in `directory` unless `stamp` says node_modules is already that install (same
    lock file, package.json and Node major version). Returns the node binary."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        missing = " and ".join(name for name, path in (("node", node), ("npm", npm)) if path is None)
        pytest.fail(f"{missing} not found on PATH: {purpose} need Node {_wanted()}+ with npm", pytrace=False)
    version = subprocess.run([node, "--version"], capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    if tuple(int(part) for part in version.lstrip("v").split(".")[:2]) < MIN_NODE_VERSION:
        pytest.fail(f"{purpose} need Node {_wanted()}+, found {version} at {node}", pytrace=False)
    digest = hashlib.sha256()
    for name in ("package.json", "package-lock.json"):
        digest.update((directory / name).read_bytes())
    fingerprint = f"node {version.split('.')[0].lstrip('v')}\n{digest.hexdigest()}\n"
    # Two test runs at once must not run `npm ci` over each other: lock the lock file (npm only reads it).
    with (directory / "package-lock.json").open("rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.is_file() and stamp.read_text() == fingerprint:
            return node
        try:
            result = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=directory, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=NPM_CI_TIMEOUT_SECONDS,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            pytest.fail(f"`npm ci` in {directory} did not finish within {NPM_CI_TIMEOUT_SECONDS:g} s", pytrace=False)
        if result.returncode != 0:
            pytest.fail(
                f"`npm ci` in {directory} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}",
                pytrace=False,
            )
        stamp.write_text(fingerprint)
    return node


def _wanted() -> str:
    return ".".join(map(str, MIN_NODE_VERSION))
