"""The /api/tasks proxy of the reference Next.js app against direct calls, in one run:

    cd tests && ../.venv/bin/python -m bench.proxy [--duration 5] [--connections 1,16]

Builds and starts the real app (deploy/nextjs, `next start`, Better Auth on PostgreSQL) and the
real service (`python -m service run`), signs users up through Better Auth, gives each some
tasks, then lists tasks with wrk, alternating the two paths at each connection count:

- direct: `GET {service}/api/{user id}/tasks` with the user's Bearer JWT;
- proxy:  `GET {app}/api/tasks` with the user's session cookie, as the browser sends it.

Prints p50/p95/p99 of both and the proxy's p50 as a multiple of the direct p50 (the target is at
most 3), and writes them to .bench/proxy-<UTC timestamp>.json. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(REPO_ROOT), str(REPO_ROOT / "tests")]  # this checkout's service/ and support/

import asyncpg  # noqa: E402 - after the path set-up above
import httpx  # noqa: E402
import pytest  # noqa: E402 - support/ reports its failures with pytest.fail

from bench.load import ensure_wrk  # noqa: E402
from service.db.embedded import start_embedded_postgres  # noqa: E402
from support.app import with_database  # noqa: E402
from support.nextjs_app import app_env, build_nextjs, install_nextjs, migrate_auth_database, running_nextjs  # noqa: E402
from support.ports import free_port  # noqa: E402
from support.service_process import spawn_service  # noqa: E402

BENCH_DIR = REPO_ROOT / ".bench"
TASKS_DATABASE, AUTH_DATABASE = "proxy_bench_tasks", "proxy_bench_auth"
PASSWORD = "proxy-bench-password"
WARMUP_SECONDS = 3.0
TARGET_RATIO = 3.0
WRK_EXTRA_SECONDS = 30

# One GET per request, a random line of the data file: "<path> <header name> <header value>".
LUA = r"""
local requests = {}
function init(args)
   local file = assert(io.open(args[1], "r"))
   for line in file:lines() do
      local path, name, value = line:match("^(%S+) (%S+) (.+)$")
      if path then requests[#requests + 1] = wrk.format("GET", path, { [name] = value }) end
   end
   file:close()
end
function request() return requests[math.random(#requests)] end
function done(summary, latency, _)
   local e = summary.errors
   io.write(string.format('RESULT {"requests":%d,"seconds":%.3f,"errors":%d,"p50":%d,"p95":%d,"p99":%d}\n',
      summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.status + e.timeout,
      latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def progress(message: str) -> None:
    print(f"bench.proxy: {message}", file=sys.stderr, flush=True)


async def recreate(admin_dsn: str, name: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


def sign_up_users(app_url: str, service_url: str, count: int, tasks_per_user: int) -> list[dict[str, str]]:
    """Users signed up through Better Auth, each with a session cookie, a JWT and some tasks."""
    users = []
    for number in range(count):
        # An address of its own per user (a header only): Better Auth allows 3 sign-ups per 10 s per address.
        headers = {"Origin": app_url, "X-Forwarded-For": f"192.0.2.{number + 1}"}
        with httpx.Client(base_url=app_url, headers=headers, timeout=30) as http:
            body = {"email": f"bench-{number}-{time.time_ns()}@example.com", "password": PASSWORD, "name": "Bench"}
            response = http.post("/api/auth/sign-up/email", json=body)
            response.raise_for_status()
            cookie = "; ".join(f"{name}={value}" for name, value in http.cookies.items())
            token = http.get("/api/auth/token").json()["token"]
        user = {"id": response.json()["user"]["id"], "cookie": cookie, "token": token}
        with httpx.Client(base_url=service_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as api:
            for index in range(tasks_per_user):
                api.post(f"/api/{user['id']}/tasks", json={"title": f"Task {index}"}).raise_for_status()
        users.append(user)
    return users


def run_wrk(wrk: str, lua: Path, url: str, data: Path, connections: int, seconds: float) -> dict[str, float]:
    threads = 1 if connections == 1 else 2
    command = [
        wrk,
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout=5s",
        "-s",
        str(lua),
        url,
        "--",
        str(data),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=seconds + WRK_EXTRA_SECONDS, check=False)
    line = next((line for line in done.stdout.splitlines() if line.startswith("RESULT ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout[-2000:]}{done.stderr[-2000:]}")
    result = json.loads(line.removeprefix("RESULT "))
    result["rps"] = round(result["requests"] / result["seconds"], 1)
    return result


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per run (default 5)")
    parser.add_argument("--connections", default="1,16", help="concurrent clients, comma-separated (default 1,16)")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--tasks-per-user", type=int, default=20)
    args = parser.parse_args(argv)
    connections = [int(part) for part in args.connections.split(",")]
    load_at_start = os.getloadavg()[0]
    work = BENCH_DIR / "work"
    work.mkdir(parents=True, exist_ok=True)
    wrk = ensure_wrk(progress)

    progress("PostgreSQL, next build, Better Auth's tables …")
    server = start_embedded_postgres(BENCH_DIR / "postgres")
    try:
        admin = server.admin_dsn()
        for name in (TASKS_DATABASE, AUTH_DATABASE):
            asyncio.run(recreate(admin, name))
        base_env = {name: value for name, value in os.environ.items() if not name.startswith("BETTER_AUTH_")}
        base_env["NEXT_TELEMETRY_DISABLED"] = "1"
        build = build_nextjs(install_nextjs(), base_env)
        auth_dsn = with_database(admin, AUTH_DATABASE)
        migrate_auth_database(build.node, auth_dsn, base_env)

        app_port = free_port()
        app_url = f"http://127.0.0.1:{app_port}"
        service = spawn_service(
            work / "proxy-bench-service.log",
            better_auth_url=app_url,
            database_url=with_database(admin, TASKS_DATABASE),
            LOG_LEVEL="WARNING",
            ACCESS_LOG="false",
            WORKERS=str(os.cpu_count() or 1),
        )
        service_url = service.base_url
        env = app_env(base_env, app_url, auth_dsn, service_url)
        with contextlib.ExitStack() as stack:
            stack.callback(service.stop)
            stack.enter_context(running_nextjs(build.node, app_port, env, work / "proxy-bench-next.log"))
            service.wait_until_answers("/readyz", 200)
            progress(f"{args.users} users, {args.tasks_per_user} tasks each …")
            users = sign_up_users(app_url, service_url, args.users, args.tasks_per_user)
            lua, proxy_data, direct_data = work / "proxy.lua", work / "proxy-users.txt", work / "direct-users.txt"
            lua.write_text(LUA)
            proxy_data.write_text("".join(f"/api/tasks Cookie {user['cookie']}\n" for user in users))
            direct_data.write_text("".join(f"/api/{u['id']}/tasks Authorization Bearer {u['token']}\n" for u in users))
            mine = httpx.get(f"{app_url}/api/tasks", headers={"Cookie": users[0]["cookie"]}).json()
            assert [t["user_id"] for t in mine] == [users[0]["id"]] * args.tasks_per_user, (
                "the proxy lists another list"
            )

            targets = {"direct": (service_url, direct_data), "proxy": (app_url, proxy_data)}
            for name, (url, data) in targets.items():
                run_wrk(wrk, lua, url, data, 4, WARMUP_SECONDS)  # JIT, pools and caches warm
            runs = []
            for count in connections:
                for name, (url, data) in targets.items():
                    progress(f"{name}, {count} connection(s), {args.duration:g} s …")
                    runs.append(
                        {"path": name, "connections": count, **run_wrk(wrk, lua, url, data, count, args.duration)}
                    )
    finally:
        server.stop()

    print(f"{'path':<7} {'conns':>5} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} {'errors':>6}")
    for run in runs:
        p50, p95, p99 = (run[key] / 1000 for key in ("p50", "p95", "p99"))
        print(
            f"{run['path']:<7} {run['connections']:>5} {run['rps']:>8} {p50:>7.2f} {p95:>7.2f} {p99:>7.2f} {run['errors']:>6}"
        )
    ratios = {}
    for count in connections:
        direct, proxy = (next(r for r in runs if r["path"] == p and r["connections"] == count) for p in targets)
        ratios[count] = round(proxy["p50"] / direct["p50"], 2)
        verdict = "meets" if ratios[count] <= TARGET_RATIO else "misses"
        print(
            f"{count} connection(s): proxy p50 = {ratios[count]} x direct p50 ({verdict} the target of {TARGET_RATIO:g} x)"
        )
    output = BENCH_DIR / f"proxy-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
    load = {"start": round(load_at_start, 2), "end": round(os.getloadavg()[0], 2)}
    print(f"load average (1 min): {load['start']} at the start, {load['end']} at the end, on {os.cpu_count()} CPUs")
    record = {
        "runs": runs,
        "p50_ratio": ratios,
        "build_seconds": round(build.seconds, 1),
        "cpus": os.cpu_count(),
        "load_average": load,
    }
    output.write_text(json.dumps(record, indent=2) + "\n")
    progress(f"written to {output.relative_to(REPO_ROOT)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except pytest.fail.Exception as failure:  # from support/: a step that failed, with its output
        print(f"bench.proxy: {failure}", file=sys.stderr)
        sys.exit(1)
