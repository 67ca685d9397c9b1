"""`python -m bench.events`: live updates with many open streams (see bench/README.md).

Seeds one task list per stream's user, starts the service as production does (`python -m
service run`, WORKERS = CPU count), opens `--streams` event streams (one user each), and
measures:
- the memory of the idle streams: the workers' RSS with every stream open and idle, minus
  before any was opened;
- the CPU the idle streams cost (heartbeats only) per second;
- each event's delay after its commit: `--writes` single-statement UPDATEs, each on a random
  stream's user, at `--rate` per second, sent straight to PostgreSQL; the clock starts when
  COMMIT returns and stops when the stream's client has read the event carrying that write.
The bench's client shares the machine with the service and PostgreSQL: its own parsing is part
of every delay measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

from service.testing import FakeBetterAuth, serve_jwks
from support.ports import free_port

from .database import connect, migrate_and_seed, open_server, recreate_database, seed_tag, user_id
from .server import BenchService, bench_env

REPO_ROOT = Path(__file__).resolve().parents[2]
TASKS_PER_USER = 5
OPEN_BATCH = 50  # streams opened at once
SETTLE_SECONDS = 3.0
IDLE_CPU_SECONDS = 10.0
PROBE = "probe "


class Streams:
    """The client side: one reader per stream, noting when each probe's event arrives."""

    def __init__(self) -> None:
        self.listed = 0  # initial events read, all streams together
        self.arrived: dict[int, float] = {}
        self.failed: list[str] = []

    async def read(self, client: httpx.AsyncClient, user: str, token: str) -> None:
        try:
            async with client.stream(
                "GET", f"/api/{user}/tasks/events", headers={"Authorization": f"Bearer {token}"}
            ) as r:
                if r.status_code != 200:
                    self.failed.append(f"{r.status_code} {(await r.aread())[:200]!r}")
                    return
                async for line in r.aiter_lines():
                    if not line.startswith("data: "):
                        continue
                    change = orjson.loads(line[6:])
                    title = change.get("task", {}).get("title", "")
                    if title.startswith(PROBE):
                        self.arrived[int(title[len(PROBE) :])] = time.perf_counter()
                    else:
                        self.listed += 1
        except (httpx.HTTPError, OSError) as exc:
            self.failed.append(type(exc).__name__)


async def measure(service: BenchService, issuer: FakeBetterAuth, dsn: str, args: argparse.Namespace) -> dict[str, Any]:
    users = [user_id(n) for n in range(1, args.streams + 1)]
    tokens = {user: issuer.issue_token(user) for user in users}
    admin = await connect(dsn)
    rows = await admin.fetch("SELECT user_id, min(id) AS id FROM tasks GROUP BY user_id")
    await admin.close()
    task_of = {row["user_id"]: row["id"] for row in rows}
    streams = Streams()
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=service.base_url, limits=limits, timeout=None) as client:
        rss_before = service.rss_mib()
        readers = []
        for first in range(0, len(users), OPEN_BATCH):
            batch = users[first : first + OPEN_BATCH]
            readers += [asyncio.create_task(streams.read(client, user, tokens[user])) for user in batch]
            expected = (first + len(batch)) * TASKS_PER_USER
            async with asyncio.timeout(60):
                while streams.listed < expected and not streams.failed:
                    await asyncio.sleep(0.02)
        if streams.failed:
            raise RuntimeError(f"streams failed to open: {streams.failed[:5]}")
        await asyncio.sleep(SETTLE_SECONDS)
        rss_idle = service.rss_mib()
        cpu_start, idle_start = service.cpu_seconds(), time.monotonic()
        await asyncio.sleep(IDLE_CPU_SECONDS)
        idle_cpu = (service.cpu_seconds() - cpu_start) / (time.monotonic() - idle_start)

        sent: dict[int, float] = {}
        cpu_start = service.cpu_seconds()
        writer = await connect(dsn)
        try:
            chance = random.Random(13)
            for k in range(args.writes):
                user = chance.choice(users)
                await writer.execute("UPDATE tasks SET title = $3, version = version + 1, updated_at = now() "
                                     "WHERE user_id = $1 AND id = $2", user, task_of[user], f"{PROBE}{k}")  # fmt: skip
                sent[k] = time.perf_counter()
                await asyncio.sleep(1 / args.rate)
        finally:
            await writer.close()
        async with asyncio.timeout(30):
            while len(streams.arrived) < len(sent) and not streams.failed:
                await asyncio.sleep(0.05)
        write_cpu = service.cpu_seconds() - cpu_start
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    delays_ms = sorted((streams.arrived[k] - sent[k]) * 1000 for k in sent if k in streams.arrived)
    return {
        "streams": args.streams,
        "workers": args.workers,
        "rss_mib_before": rss_before,
        "rss_mib_idle_streams": rss_idle,
        "idle_streams_mib": round(sum(rss_idle.values()) - sum(rss_before.values()), 1),
        "idle_streams_cpu_percent": round(idle_cpu * 100, 2),
        "writes": len(sent),
        "events_missing": len(sent) - len(delays_ms),
        "delay_ms": {
            "p50": round(statistics.median(delays_ms), 1),
            "p99": round(delays_ms[max(0, int(len(delays_ms) * 0.99) - 1)], 1),
            "max": round(delays_ms[-1], 1),
        }
        if delays_ms
        else None,
        "service_cpu_ms_per_write": round(write_cpu * 1000 / max(1, len(sent)), 2),
        "stream_failures": streams.failed[:10],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.events", description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=1000, help="open event streams, one user each (1000)")
    parser.add_argument("--writes", type=int, default=300, help="probe writes whose events are timed (300)")
    parser.add_argument("--rate", type=float, default=30.0, help="probe writes per second (30)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="WORKERS (CPU count)")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="a service setting")
    parser.add_argument("--bench-dir", type=Path, default=REPO_ROOT / ".bench")
    args = parser.parse_args(argv)
    overrides = dict(pair.split("=", 1) for pair in args.env)
    overrides.setdefault("EVENT_STREAMS_MAX", str(args.streams))
    overrides.setdefault("EVENT_STREAMS_PER_USER", "5")
    work_dir = args.bench_dir / "work"
    work_dir.mkdir(parents=True, exist_ok=True)
    server = open_server(os.environ.get("DATABASE_URL"), args.bench_dir / "postgres")
    try:
        asyncio.run(recreate_database(server.dsn, seed_tag(args.streams, TASKS_PER_USER), reuse=False))
        asyncio.run(migrate_and_seed(server.dsn, args.streams, TASKS_PER_USER, lambda m: print(m, file=sys.stderr)))
        with serve_jwks() as issuer:
            env = bench_env(database_url=server.dsn, better_auth_url=issuer.base_url, port=free_port(),
                            workers=args.workers, overrides=overrides)  # fmt: skip
            service = BenchService.spawn(env, work_dir / "events-service.log")
            try:
                service.wait_ready()
                result = asyncio.run(measure(service, issuer, server.dsn, args))
            finally:
                result_code = service.stop()
    finally:
        with contextlib.suppress(Exception):
            server.stop()
    result["service_exit_code"] = result_code
    result["load_average"] = os.getloadavg()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = args.bench_dir / f"events-{stamp}.json"
    output.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(f"written to {output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
