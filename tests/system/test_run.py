"""`make run` end to end: the service started as a subprocess (`python -m service run`) with its
own embedded PostgreSQL, a real HTTP JWKS host, and every call over real HTTP.

No respx here: the service runs in another process, so the JWKS host is a small
`ThreadingHTTPServer` serving `FakeBetterAuth.jwks()` on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import secrets
import shutil
import stat
import subprocess
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from service.settings import REPO_ROOT
from service.testing import FakeBetterAuth
from support.embedded_postgres import assert_postgres_stopped, kill_leftover_postgres, new_data_dir, postmasters_on
from support.jwks_host import serving_jwks
from support.ports import free_port
from support.service_process import running_service

STOP_DEADLINE_SECONDS = 20.0
REQUEST_TIMEOUT_SECONDS = 15.0  # > JWKS_MIN_REFETCH_INTERVAL_SECONDS: the longest a request may wait on keys


@pytest.fixture
def jwks_host() -> Iterator[FakeBetterAuth]:
    """A Better Auth stand-in on a real port: GET /api/auth/jwks answers the issuer's keys."""
    with serving_jwks() as issuer:
        yield issuer


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """The service's embedded PostgreSQL folder, kept across the restarts within a test."""
    with new_data_dir(prefix="tasks-run-") as path:
        yield path


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- tests ------------------------------------------------------------------------------------


def test_make_run_serves_tasks_over_http_and_keeps_them_across_restarts(
    jwks_host: FakeBetterAuth, data_dir: Path, tmp_path: Path
):
    user_id = f"user_{secrets.token_hex(8)}"
    token = jwks_host.issue_token(user_id)  # Better Auth's header and claims
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    assert header == {"alg": "EdDSA", "kid": jwks_host.current_key.kid}
    tasks_url = f"/api/{user_id}/tasks"

    with (
        running_service(tmp_path / "service-1.log", better_auth_url=jwks_host.base_url, data_dir=data_dir) as service,
        service.client(timeout=REQUEST_TIMEOUT_SECONDS) as http,
    ):
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

        service.stop_gracefully()  # SIGTERM: exit 0 in time, after the lifespan's shutdown
        assert_postgres_stopped(data_dir)

    with (
        running_service(tmp_path / "service-2.log", better_auth_url=jwks_host.base_url, data_dir=data_dir) as service,
        service.client(timeout=REQUEST_TIMEOUT_SECONDS) as http,
    ):
        response = http.get(tasks_url, headers=bearer(token))
        assert response.status_code == 200, response.text
        assert response.json() == [task]

        response = http.get(f"{tasks_url}/{task['id']}", headers=bearer(token))
        assert response.status_code == 200, response.text
        assert response.json() == task

        service.stop_gracefully()
        assert_postgres_stopped(data_dir)


def test_a_clean_stop_after_a_crash_still_stops_postgres(jwks_host: FakeBetterAuth, data_dir: Path, tmp_path: Path):
    with running_service(tmp_path / "crash.log", better_auth_url=jwks_host.base_url, data_dir=data_dir) as service:
        service.process.kill()  # SIGKILL: no shutdown, PostgreSQL left running, our pid left behind
        service.process.wait(timeout=STOP_DEADLINE_SECONDS)
        assert postmasters_on(data_dir), "the crash should have left PostgreSQL running"
    with running_service(
        tmp_path / "after-crash.log", better_auth_url=jwks_host.base_url, data_dir=data_dir
    ) as service:
        service.stop_gracefully()  # must stop PostgreSQL although the crashed process never let go of it
        assert_postgres_stopped(data_dir)


def test_make_run_starts_without_the_jwks_host_and_is_not_ready(data_dir: Path, tmp_path: Path):
    """Alive but not ready, for the keys alone. (What an API call gets meanwhile, a prompt 503
    `keys_unavailable`, is tests/auth/test_jwks_outage.py's.)"""
    down_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there

    with (
        running_service(
            tmp_path / "service.log", better_auth_url=down_url, data_dir=data_dir, ready_path="/healthz"
        ) as service,
        service.client(timeout=REQUEST_TIMEOUT_SECONDS) as http,
    ):
        response = http.get("/readyz")
        assert response.status_code == 503, response.text
        body = response.json()
        assert body["status"] == "not ready" and body["keys"] == 0, body
        # One problem, the keys; the database is fine.
        assert len(body["problems"]) == 1 and body["problems"][0].startswith("signing keys"), body

        service.stop_gracefully()


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
