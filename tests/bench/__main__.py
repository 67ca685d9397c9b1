"""`python -m bench` (or `make bench BENCH_ARGS="..."`): see bench/README.md."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import warnings
from pathlib import Path

from .database import BenchSetupError
from .run import WORKLOADS, BenchOptions, run_bench

DEFAULT_USERS = 1_000
DEFAULT_TASKS_PER_USER = 50
DEFAULT_CONNECTIONS = "1,16,64"
DEFAULT_DURATION_SECONDS = 5.0
DEFAULT_WARMUP_SECONDS = 2.0
DEFAULT_TOKEN_USERS = 10_000
# search seeds 100,000 more rows and takes ~2 minutes more: asked for by name only.
DEFAULT_WORKLOADS = tuple(name for name in WORKLOADS if name != "search")
REPO_ROOT = Path(__file__).resolve().parents[2]


def _csv_ints(value: str) -> tuple[int, ...]:
    try:
        numbers = tuple(int(part) for part in value.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {value!r}") from None
    if not numbers or min(numbers) < 1:
        raise argparse.ArgumentTypeError("connection counts must be >= 1")
    return numbers


def _workloads(value: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown workload(s) {unknown}; choose from {', '.join(WORKLOADS)}")
    return tuple(name for name in WORKLOADS if name in names)  # healthz first: it is the ceiling


def _env_pair(value: str) -> tuple[str, str]:
    key, sep, val = value.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {value!r}")
    return key, val


def _positive(kind):
    def parse(value: str):
        try:
            number = kind(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
        if number <= 0:
            raise argparse.ArgumentTypeError("must be > 0")
        return number

    return parse


def parse_args(argv: list[str] | None) -> BenchOptions:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    parser = argparse.ArgumentParser(
        prog="python -m bench", description="Benchmark the tasks service against its ceilings."
    )
    data = parser.add_argument_group("data")
    data.add_argument("--users", type=_positive(int), default=DEFAULT_USERS, help="seeded users (default %(default)s)")
    data.add_argument(
        "--tasks-per-user",
        type=_positive(int),
        default=DEFAULT_TASKS_PER_USER,
        help="seeded tasks per user (default %(default)s)",
    )
    data.add_argument(
        "--scale", type=_positive(float), default=1.0, help="multiply --users (e.g. 100: 100,000 users, 5 M rows)"
    )
    data.add_argument(
        "--token-users",
        type=_positive(int),
        default=DEFAULT_TOKEN_USERS,
        help="at most this many users (spread evenly) get a token in the load (default %(default)s)",
    )
    data.add_argument(
        "--database-url",
        default=os.environ.get("DATABASE_URL") or None,
        help="a superuser DSN of a server to use instead of the embedded one (default: $DATABASE_URL); the bench creates and drops database tasks_bench there",
    )
    data.add_argument(
        "--reuse-data",
        action="store_true",
        help="keep tasks_bench when it holds this seed untouched (no create/mixed since): skips minutes of seeding at --scale",
    )
    data.add_argument(
        "--data-dir",
        type=Path,
        default=REPO_ROOT / ".bench" / "postgres",
        help="embedded PostgreSQL data folder (default .bench/postgres)",
    )
    load = parser.add_argument_group("load")
    load.add_argument(
        "--duration",
        type=_positive(float),
        default=DEFAULT_DURATION_SECONDS,
        help="seconds per run (default %(default)s)",
    )
    load.add_argument(
        "--connections",
        type=_csv_ints,
        default=_csv_ints(DEFAULT_CONNECTIONS),
        help="comma-separated (default %(default)s)",
    )
    load.add_argument(
        "--workloads",
        type=_workloads,
        default=DEFAULT_WORKLOADS,
        help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all but search)",
    )
    load.add_argument(
        "--warmup",
        type=float,
        default=DEFAULT_WARMUP_SECONDS,
        help="seconds of reads before the runs (default %(default)s; 0: none)",
    )
    load.add_argument(
        "--workers", type=_positive(int), default=cpus, help="service WORKERS (default: CPU count, %(default)s)"
    )
    load.add_argument(
        "--env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra service setting, e.g. --env DB_POOL_MAX_SIZE=20 (repeatable)",
    )
    load.add_argument(
        "--baseline",
        metavar="REF",
        default=None,
        help="also bench the service of this git commit (e.g. main), alternating with this checkout run by run, "
        "and report both side by side (issue 16's targets need it)",
    )
    parts = parser.add_argument_group("parts")
    parts.add_argument("--skip-http", action="store_true", help="no service, no wrk")
    parts.add_argument("--skip-db-floor", action="store_true", help="no pgbench")
    parts.add_argument("--skip-verifier", action="store_true", help="no verifier micro-benchmarks")
    parts.add_argument(
        "--profile",
        nargs="?",
        const="list:16",
        default=None,
        metavar="WORKLOAD:CONNS",
        help="py-spy one worker during that run (default list:16); needs py-spy installed",
    )
    parts.add_argument(
        "--profile-native",
        action="store_true",
        help="with --profile: C frames too (system calls, Cython), e.g. to see what asyncpg's own time is",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=None,
        help="JSON result path, relative to the repository root (default .bench/<timestamp>.json)",
    )
    args = parser.parse_args(argv)

    profile = None
    if args.profile:
        workload, _, conns = args.profile.partition(":")
        if workload not in WORKLOADS or not conns.isdigit():
            parser.error(f"--profile: expected WORKLOAD:CONNS, e.g. list:16, got {args.profile!r}")
        profile = (workload, int(conns))
    return BenchOptions(
        users=max(1, round(args.users * args.scale)),
        tasks_per_user=args.tasks_per_user,
        token_users=args.token_users,
        database_url=args.database_url,
        data_dir=args.data_dir.resolve(),
        duration_seconds=args.duration,
        connections=args.connections,
        workloads=args.workloads,
        warmup_seconds=max(0.0, args.warmup),
        workers=args.workers,
        env_overrides=dict(args.env),
        baseline=args.baseline,
        profile_native=args.profile_native,
        reuse_data=args.reuse_data,
        skip_http=args.skip_http,
        skip_db_floor=args.skip_db_floor,
        skip_verifier=args.skip_verifier,
        profile=profile,
        bench_dir=REPO_ROOT / ".bench",
        output=REPO_ROOT / args.output if args.output else None,  # make runs us from tests/
    )


def _interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    # A SIGTERM (make interrupted, a CI timeout) unwinds like Ctrl-C, through every `finally`
    # that stops what the bench started.
    signal.signal(signal.SIGTERM, _interrupt)
    # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI); its fallback is fine.
    warnings.filterwarnings("ignore", module="platformdirs")
    try:
        run_bench(options)
    except BenchSetupError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted; everything started was stopped", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
