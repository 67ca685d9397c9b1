"""One bench run, in order: database (seeded), verifier micro-benchmarks, pgbench floors, then
the service under wrk. Everything started is stopped in `finally`, whatever fails."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import platform
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from service.settings import SettingsError, load_settings
from service.testing import serve_jwks
from support.ports import free_port

from . import dbfloor, load, profile, report, search, verifier
from .baseline import check_out
from .database import (
    BenchSetupError,
    mark_written,
    migrate_and_seed,
    open_server,
    recreate_database,
    redacted,
    seed_tag,
    task_ids,
)
from .issuer import TokenFile, pick_users
from .server import BenchService, bench_env, process_tree_cpu_seconds, sampling_rss

# Order matters: healthz first (the ceiling the others are divided by), creates last but one so
# that list, get and toggle see exactly the seeded 50 tasks per user. Search reads users of its own.
WORKLOADS = ("healthz", "list", "get", "toggle", "search", "create", "mixed")
ADDING_WORKLOADS = ("create", "mixed")  # add rows: afterwards the data no longer matches its seed
IDS_PER_USER = 50  # task ids per user in the wrk data file
RSS_SAMPLES_PER_RUN = 20  # worker memory sampled this many times during each run (at most every 1 s)
SMOKE_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class BenchOptions:
    users: int
    tasks_per_user: int
    token_users: int
    database_url: str | None
    data_dir: Path
    duration_seconds: float
    connections: tuple[int, ...]
    workloads: tuple[str, ...]
    warmup_seconds: float
    workers: int
    env_overrides: dict[str, str]
    baseline: str | None
    reuse_data: bool
    skip_http: bool
    skip_db_floor: bool
    skip_verifier: bool
    profile: tuple[str, int] | None
    profile_native: bool
    bench_dir: Path
    output: Path | None


BUSY_LOAD_PER_CPU = 0.5  # above this 1-minute load per CPU before we start, warn: figures will be noisy


class Progress:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.phases: dict[str, float] = {}

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)

    @contextlib.contextmanager
    def phase(self, name: str):
        started = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] = round(time.monotonic() - started, 1)


def run_bench(options: BenchOptions) -> dict[str, Any]:
    progress = Progress()
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    output = options.output or options.bench_dir / f"{stamp}.json"
    work_dir = options.bench_dir / "work"
    work_dir.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "complete": False,
        "machine": _machine(),
        "options": {
            k: (str(v) if isinstance(v, Path) else v)
            for k, v in dataclasses.asdict(options).items()
            if k != "database_url"
        },
        "http": [],
        "db_floor": [],
        "verifier": {},
        "profile": None,
    }
    # Fail before any set-up when a tool is missing.
    wrk = None if options.skip_http else load.ensure_wrk(progress)
    pgbench = None if options.skip_db_floor else dbfloor.find_pgbench()
    py_spy = profile.find_py_spy() if options.profile and not options.skip_http else None
    if options.profile and not options.skip_http and py_spy is None:
        raise BenchSetupError("--profile needs py-spy: .venv/bin/pip install py-spy")

    load_per_cpu = os.getloadavg()[0] / (os.cpu_count() or 1)
    if load_per_cpu > BUSY_LOAD_PER_CPU:
        progress(
            f"warning: the machine is busy before we start (1-min load {os.getloadavg()[0]:.1f} on "
            f"{os.cpu_count()} CPUs): other work shares the cores, figures will be noisy"
        )

    server = None
    try:
        with progress.phase("database"):
            progress("starting PostgreSQL" + (" (DATABASE_URL)" if options.database_url else f" in {options.data_dir}"))
            server = open_server(options.database_url, options.data_dir)
            record["database"] = {"server": server.description, "dsn": redacted(server.dsn)}
            tag = seed_tag(options.users, options.tasks_per_user)
            record["database"].update(asyncio.run(recreate_database(server.dsn, tag, options.reuse_data)))
            reused = record["database"]["reused"]
            progress(
                f"{'reusing the seeded' if reused else 'seeding'} {options.users:,} users x {options.tasks_per_user} tasks"
            )
            record["database"]["seed"] = asyncio.run(
                migrate_and_seed(server.dsn, options.users, options.tasks_per_user, progress, seed=not reused)
            )
            if not reused:
                progress(
                    f"seeded {record['database']['seed']['rows']:,} rows in {record['database']['seed']['seed_seconds']} s"
                )
        if "search" in options.workloads:
            with progress.phase("search_seed"):
                record["search"] = asyncio.run(search.seed_search_users(server.dsn, progress))
                progress("search terms' matches: " + search.describe_matches(record["search"]))
        if not options.skip_verifier:
            with progress.phase("verifier"):
                progress("verifier micro-benchmarks (" + ", ".join(verifier.ALGORITHMS) + ")")
                record["verifier"] = verifier.run_micro()
        if pgbench:
            with progress.phase("db_floor"):
                _db_floors(options, pgbench, server, work_dir, record, progress)
        if wrk:
            with progress.phase("http"):
                _http_runs(options, wrk, server, work_dir, py_spy, record, progress, stamp)
        record["complete"] = True
    finally:
        if server is not None:
            if server.embedded is not None:
                progress("stopping PostgreSQL")
            with contextlib.suppress(Exception):
                server.stop()
        record["phases_seconds"] = progress.phases
        _finish(record, output, progress)
    return record


def _db_floors(options: BenchOptions, pgbench: str, server, work_dir: Path, record: dict, progress: Progress) -> None:
    dsn, postmaster = server.dsn, server.postmaster_pid()
    roles = asyncio.run(dbfloor.check_scripts(dsn, min(options.tasks_per_user, dbfloor.LIST_DEFAULT_LIMIT)))
    record["db_floor_roles"] = roles
    # Variants interleaved at each connection count: a burst of other load hits them alike.
    for connections in options.connections:
        for variant in dbfloor.VARIANTS:
            progress(f"pgbench {variant:<13} -c {connections:<3} {options.duration_seconds:g} s")
            cpu_before = process_tree_cpu_seconds(postmaster) if postmaster else None
            result = dbfloor.run_pgbench(
                pgbench, dsn, variant, users=options.users, connections=connections,
                duration_seconds=options.duration_seconds, work_dir=work_dir,
            )  # fmt: skip
            cpu = process_tree_cpu_seconds(postmaster) - cpu_before if postmaster else None
            record["db_floor"].append({
                "variant": variant, "connections": connections, **result.as_dict(),
                "postgres_cpu_us_per_request": round(cpu / result.transactions * 1e6, 1) if cpu is not None and result.transactions else None,
            })  # fmt: skip


def _http_runs(
    options: BenchOptions,
    wrk: str,
    server,
    work_dir: Path,
    py_spy: str | None,
    record: dict,
    progress: Progress,
    stamp: str,
) -> None:
    dsn = server.dsn
    numbers = pick_users(options.users, options.token_users)
    ids = asyncio.run(task_ids(dsn, numbers, IDS_PER_USER))
    if not ids:
        raise BenchSetupError("the seeded database has no tasks for the chosen users")
    with serve_jwks() as issuer:
        tokens = TokenFile(work_dir / "users.txt", issuer, ids)
        tokens.refresh_for(0)
        progress(f"minted {tokens.users:,} EdDSA tokens; JWKS on {issuer.base_url}")
        env = bench_env(
            database_url=dsn, better_auth_url=issuer.base_url, port=free_port(), workers=options.workers,
            overrides=options.env_overrides,
        )  # fmt: skip
        try:
            settings = load_settings(environ=env, dotenv=work_dir / "no.env")  # what the service will read
        except SettingsError as exc:
            raise BenchSetupError(f"the service would refuse its settings: {exc}") from None
        record["service"] = {
            "workers": options.workers,
            "env_overrides": options.env_overrides,
            "access_log_setting": "ACCESS_LOG" in env,
            "settings": {k: str(v) for k, v in _settings_values(settings).items() if k != "database_url"},
        }
        baseline = check_out(options.baseline, options.bench_dir) if options.baseline else None
        services: dict[str, BenchService] = {}
        try:
            progress(f"starting the service: python -m service run, WORKERS={options.workers}")
            services["checkout"] = BenchService.spawn(env, work_dir / "service.log")  # in work_dir: no .env applies
            if baseline is not None:
                progress(
                    f"starting the baseline's service ({baseline.ref}, {baseline.commit[:12]}) from {baseline.path}"
                )
                record["baseline"] = {"ref": baseline.ref, "commit": baseline.commit}
                baseline_env = {**env, "PORT": str(free_port()), "PYTHONPATH": str(baseline.path)}
                services["baseline"] = BenchService.spawn(baseline_env, work_dir / "service-baseline.log")
            for service in services.values():
                service.wait_ready()
                _smoke(service, tokens.sample, options)
            if "search" in options.workloads:
                for service in services.values():
                    problems = search.smoke_search(
                        service.base_url, issuer, record["search"]["users"], SMOKE_TIMEOUT_SECONDS
                    )
                    if problems:
                        raise service.fail("smoke check of the search: " + "; ".join(problems))
            record["service"]["rss_mib_start"] = services["checkout"].rss_mib()
            if options.warmup_seconds > 0:
                progress(
                    f"warm-up {options.warmup_seconds:g} s (list, get, toggle at {max(options.connections)} conns)"
                )
                for service in services.values():
                    load.run_wrk(
                        wrk, service.base_url, tokens.path, "warmup", max(options.connections), options.warmup_seconds
                    )
            order = list(services)
            for workload in options.workloads:
                if workload in ADDING_WORKLOADS:
                    asyncio.run(mark_written(dsn))
                for search_run in search.search_runs() if workload == "search" else [None]:
                    for connections in options.connections:
                        data_file = (
                            search_run.write_data_file(work_dir / "search.txt", issuer) if search_run else tokens.path
                        )
                        for version in order:
                            record["http"].append(
                                _one_run(options, wrk, services[version], server.postmaster_pid(), tokens, workload,
                                         connections, py_spy if version == "checkout" else None, record, progress,
                                         stamp, data_file=data_file, search_run=search_run, version=version)
                            )  # fmt: skip
                        order.reverse()  # the other one first next time
            record["service"]["rss_mib_end"] = services["checkout"].rss_mib()
        finally:
            for version, service in services.items():
                progress("stopping the service" + (" of the baseline" if version == "baseline" else ""))
                code = service.stop()
                (record["service"] if version == "checkout" else record["baseline"])["exit_code"] = code
                if code not in (0, None):
                    progress(f"the service exited with code {code}; log: {service.log_path}")


def _one_run(options, wrk, service: BenchService, postmaster: int | None, tokens: TokenFile, workload: str,
             connections: int, py_spy, record: dict, progress: Progress, stamp: str, *, data_file: Path,
             search_run: search.SearchRun | None = None, version: str = "checkout") -> dict[str, Any]:  # fmt: skip
    tokens.refresh_for(options.duration_seconds)  # rewrites tokens.path only: a search run's file is fresh
    name = search_run.name if search_run else workload
    rss_before = service.rss_mib()
    cpu_before = (service.cpu_seconds(), process_tree_cpu_seconds(postmaster) if postmaster else None)
    recordings: list[tuple[Any, Path, int]] = []
    if py_spy and options.profile == (workload, connections) and record["profile"] is None:  # search: its first run
        # Every worker: which one the connections land on is the kernel's choice (at one
        # connection, one worker does all the work). The busiest one is reported.
        for pid in service.worker_pids():
            collapsed = options.bench_dir / f"{stamp}-profile-{name.replace(' ', '-')}-{connections}-{pid}.txt"
            process = profile.start_recording(
                py_spy, pid, options.duration_seconds, collapsed, native=options.profile_native
            )
            recordings.append((process, collapsed, pid))
    try:
        with sampling_rss(service, max(1.0, options.duration_seconds / RSS_SAMPLES_PER_RUN)) as rss_samples:
            result = load.run_wrk(wrk, service.base_url, data_file, workload, connections, options.duration_seconds)
    except BaseException:
        for process, _, _ in recordings:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
        raise
    cpu_after = (service.cpu_seconds(), process_tree_cpu_seconds(postmaster) if postmaster else None)
    if recordings:
        summaries, messages = [], []
        for process, collapsed, pid in recordings:
            messages.append(profile.finish_recording(process, options.duration_seconds))
            if collapsed.exists():
                summaries.append({"workload": workload, "connections": connections, "pid": pid,
                                  "file": str(collapsed), "native": options.profile_native,
                                  **profile.summarize(collapsed)})  # fmt: skip
        if summaries:
            record["profile"] = max(summaries, key=lambda summary: summary["samples"])
        else:
            record["profile"] = {"error": "\n".join(messages).strip()[-1000:]}
            progress(f"py-spy failed: {' '.join(messages).strip()[-300:]}")
    per_request = lambda before, after: (  # noqa: E731
        round((after - before) / result.requests * 1e6, 1) if before is not None and result.requests else None
    )
    row = {"workload": workload, "name": name, "version": version, "connections": connections,
           "profiled": bool(recordings),
           **({"search_user": search_run.user.label, "term_class": search_run.term_class} if search_run else {}),
           **result.as_dict(),
           "service_cpu_us_per_request": per_request(cpu_before[0], cpu_after[0]),
           "postgres_cpu_us_per_request": per_request(cpu_before[1], cpu_after[1]),
           "rss_mib_before": rss_before, "rss_mib_after": service.rss_mib(), "rss_mib_samples": rss_samples}  # fmt: skip
    lat = result.latency_us
    progress(
        f"{name + (' [base]' if version == 'baseline' else ''):<8} -c {connections:<3} {result.rps:8.0f} req/s  p50 {lat['p50'] / 1000:6.2f} ms  "
        f"p99 {lat['p99'] / 1000:7.2f} ms  errors {result.error_count}  service CPU {row['service_cpu_us_per_request']} µs/req"
    )
    if service.process.poll() is not None:
        raise service.fail(
            f"the service exited (code {service.process.returncode}) during {name} at {connections} conns"
        )
    return row


def _settings_values(settings: Any) -> dict[str, Any]:
    """The settings as a dict: a pydantic model now, a dataclass in services benched through PYTHONPATH."""
    if dataclasses.is_dataclass(settings):
        return dataclasses.asdict(settings)
    return settings.model_dump()


def _smoke(service: BenchService, sample: dict[str, Any], options: BenchOptions) -> None:
    """One request of each read kind, so a misconfiguration fails here, clearly, not as 100 % errors."""
    headers = {"Authorization": f"Bearer {sample['token']}"}
    tasks = f"/api/{sample['user_id']}/tasks"
    expected = min(options.tasks_per_user, 100)
    with httpx.Client(base_url=service.base_url, timeout=SMOKE_TIMEOUT_SECONDS, headers=headers) as client:
        for path, check in (
            (tasks, lambda body: len(body) == expected),
            (f"{tasks}/{sample['task_id']}", lambda body: body["id"] == sample["task_id"]),
        ):
            response = client.get(path)
            if response.status_code != 200 or not check(response.json()):
                raise service.fail(f"smoke check GET {path}: {response.status_code} {response.text[:300]}")


def _finish(record: dict, output: Path, progress: Progress) -> None:
    """Print the table and write the JSON; never raises (it runs in `finally`, maybe mid-error)."""
    try:
        _report(record, output, progress)
    except Exception as exc:
        progress(f"could not report the results: {type(exc).__name__}: {exc}")


def _report(record: dict, output: Path, progress: Progress) -> None:
    record["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    record["machine"]["loadavg_end"] = os.getloadavg()
    report.add_ratios(record["http"], record["db_floor"])
    record["rls_cost"] = report.rls_cost(record["db_floor"])
    record["targets"] = report.evaluate_targets(record)
    record["targets_issue16"] = report.evaluate_issue16_targets(record)
    report.write_json(record, output)  # first: a closed stdout (`| head`) must not lose it
    if record["http"] or record["db_floor"] or record["verifier"]:
        print(report.format_tables(record))
        if record.get("profile") and "own" in record["profile"]:
            print()
            print(report.format_profile(record["profile"]))
    progress(f"{'results' if record['complete'] else 'partial results'} written to {output}")


def _machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "loadavg_start": os.getloadavg(),
    }
