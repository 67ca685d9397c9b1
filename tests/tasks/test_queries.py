"""Every SQL statement on user data is a single-user statement: `user_id = $1` in its WHERE, and
`$1` is the owner. That is DESIGN invariant 1, and what makes each statement a Citus router
query (one shard) if `tasks` and `idempotency_keys` are distributed by `user_id`.

Static, from the source: `service/tasks/queries.py` is parsed with `ast`; the SQL passed to
`db.fetch / fetchrow / fetchval / execute / executemany`, or as an `OwnedStatement` to
`db.one_row` (run in one round trip by a function made from that same text), is rebuilt from
string constants, f-strings over module constants, and (for the list's builders) every statement
the builder can produce. The checker is itself tested against mutations of that source.
Every query function takes a `UserConnection` (a transaction as the owner), never a pool.
"""

from __future__ import annotations

import ast
import re
import types
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import asyncpg
import orjson
import pytest

from service.db.statements import OwnedStatement
from service.settings import REPO_ROOT
from service.tasks.queries import DOCUMENT_FIELDS
from service.tasks.schemas import Task

SERVICE = REPO_ROOT / "service"
QUERIES = SERVICE / "tasks" / "queries.py"
USER_TABLES = ("tasks", "idempotency_keys", "task_changes", "sync_counters")
EXECUTOR_METHODS = {"fetch", "fetchrow", "fetchval", "execute", "executemany", "one_row"}
# The only modules that may run SQL at all; of them, only queries.py may touch user tables.
# The modules whose SQL touches user tables: every such statement is checked for its owner filter.
QUERY_MODULES = ("tasks/queries.py", "sync/queries.py")
SQL_MODULES = {
    *QUERY_MODULES,
    "db/migrate.py",
    "db/statements.py",
    "db/session.py",
    "db/embedded.py",
    "db/maintenance.py",
    "health.py",
}
# SQL builders: every statement each can produce, from the executed module.
BUILDERS: dict[str, Callable[[types.ModuleType], Iterable[tuple]]] = {
    "list_statement": lambda m: ((shape,) for shape in m.ListShape.every()),
    "owned_list_statement": lambda m: ((shape,) for shape in m.ListShape.every()),
}
PLACEHOLDER = "«{}»"  # an f-string part that is not a module constant

TABLE_USE = re.compile(r"\b(FROM|JOIN|UPDATE|INTO)\s+(\w+)", re.IGNORECASE)
OWNER = re.compile(r"^(\w+\.)?user_id\s*=\s*\$1$", re.IGNORECASE)
CLAUSE_END = re.compile(r"\b(ORDER\s+BY|GROUP\s+BY|LIMIT|RETURNING|ON\s+CONFLICT|WINDOW|UNION|HAVING)\b", re.IGNORECASE)


@dataclass
class Statement:
    function: str
    line: int
    sql: str


# -- collecting the statements -------------------------------------------------------------


def module_constants(module: types.ModuleType) -> dict[str, str]:
    """The module's string constants, as executed (so f-strings over other constants resolve),
    and its owned statements' SQL."""
    return {
        name: value if isinstance(value, str) else value.sql
        for name, value in vars(module).items()
        if (isinstance(value, str) or isinstance(value, OwnedStatement)) and not name.startswith("__")
    }


def sql_text(node: ast.expr, constants: dict[str, str]) -> str | None:
    """The SQL of a string expression; None when it is not built from strings."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.Name) and node.id in constants:
        return constants[node.id]
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(value.value)
            elif isinstance(value.value, ast.Name) and value.value.id in constants:
                parts.append(constants[value.value.id])
            else:
                parts.append(PLACEHOLDER.format(ast.unparse(value.value)))
        return "".join(parts)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = sql_text(node.left, constants), sql_text(node.right, constants)
        return None if left is None or right is None else left + right
    return None


def assignment_of(function: ast.AsyncFunctionDef, name: str) -> ast.expr | None:
    for node in ast.walk(function):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets) and node.value is not None:
                return node.value
    return None


def executor_calls(function: ast.AsyncFunctionDef) -> list[ast.Call]:
    executor = function.args.args[0].arg if function.args.args else None
    return [
        node
        for node in ast.walk(function)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in EXECUTOR_METHODS
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == executor
    ]


def load(source: str) -> tuple[ast.Module, types.ModuleType]:
    module = types.ModuleType("queries_under_test")
    module.__package__ = "service.tasks"  # for its relative imports
    exec(compile(source, str(QUERIES), "exec"), module.__dict__)
    return ast.parse(source), module


def statements_and_problems(source: str) -> tuple[list[Statement], list[str]]:
    """Every statement of the queries module, and every broken rule (empty when all is well)."""
    tree, module = load(source)
    constants = module_constants(module)
    statements: list[Statement] = []
    problems: list[str] = []
    for function in (n for n in tree.body if isinstance(n, ast.AsyncFunctionDef)):
        calls = executor_calls(function)
        if not calls:
            continue
        params = [a.arg for a in function.args.args]
        where = f"{function.name} (line {function.lineno})"
        if params[1:2] != ["user_id"]:
            problems.append(f"{where}: the first parameter after the executor must be user_id, not {params[1:2]}")
        executor_type = function.args.args[0].annotation if function.args.args else None
        if executor_type is None or ast.unparse(executor_type) != "UserConnection":
            problems.append(f"{where}: the executor must be a UserConnection (a transaction as the owner), not a pool")
        for call in calls:
            if not call.args:
                problems.append(f"{where}: {call.func.attr}() without SQL")
                continue
            problems += owner_binding_problems(function, call, where)
            sql_node = call.args[0]
            text = sql_text(sql_node, constants)
            if text is not None:
                statements.append(Statement(function.name, call.lineno, text))
                continue
            built = assignment_of(function, sql_node.id) if isinstance(sql_node, ast.Name) else None
            builder = built.func.id if isinstance(built, ast.Call) and isinstance(built.func, ast.Name) else None
            if builder not in BUILDERS:
                problems.append(
                    f"{where}: cannot see the SQL of {ast.unparse(sql_node)!r}; use a literal or a builder in BUILDERS"
                )
                continue
            for arguments in BUILDERS[builder](module):
                built_sql = getattr(module, builder)(*arguments)
                sql = built_sql.sql if isinstance(built_sql, OwnedStatement) else built_sql
                statements.append(Statement(f"{function.name} via {builder}{arguments}", call.lineno, sql))
    for statement in statements:
        problems += [
            f"{statement.function} (line {statement.line}): {p}\n    {statement.sql}"
            for p in sql_problems(statement.sql)
        ]
    return statements, problems


def owner_binding_problems(function: ast.AsyncFunctionDef, call: ast.Call, where: str) -> list[str]:
    """$1 is bound to the owner: the first argument after the SQL is `user_id` (directly, or
    first in the list spread with `*args`)."""
    if len(call.args) < 2:
        return [f"{where}: no parameters bound, so no $1 = user_id"]
    first = call.args[1]
    if isinstance(first, ast.Starred) and isinstance(first.value, ast.Name):
        spread = assignment_of(function, first.value.id)
        if isinstance(spread, ast.List) and spread.elts and isinstance(spread.elts[0], ast.Name):
            first = spread.elts[0]
    if not (isinstance(first, ast.Name) and first.id == "user_id"):
        return [f"{where}: $1 must be bound to user_id, not {ast.unparse(first)}"]
    return []


# -- checking one statement ------------------------------------------------------------------


def depth_map(sql: str) -> list[int]:
    """Parenthesis depth at each character (string literals are not expected in our SQL)."""
    depths, depth = [], 0
    for char in sql:
        if char == ")":
            depth -= 1
        depths.append(depth)
        if char == "(":
            depth += 1
    return depths


def region(sql: str, depths: list[int], at: int) -> tuple[int, int]:
    """The span of the parenthesised group (or the whole statement) that contains position `at`."""
    level = depths[at]
    start = at
    while start > 0 and depths[start - 1] >= level:
        start -= 1
    end = at
    while end < len(sql) and depths[end] >= level:
        end += 1
    return start, end


def keyword_at_level(sql: str, depths: list[int], pattern: str, start: int, end: int, level: int) -> list[re.Match]:
    """Matches of `pattern` within sql[start:end] at parenthesis depth `level` (absolute positions)."""
    return [m for m in re.compile(pattern, re.IGNORECASE).finditer(sql, start, end) if depths[m.start()] == level]


def split_top_level(text: str, word: str) -> list[str]:
    depths = depth_map(text)
    parts, last = [], 0
    for match in re.finditer(rf"\b{word}\b", text, re.IGNORECASE):
        if depths[match.start()] == 0:
            parts.append(text[last : match.start()].strip())
            last = match.end()
    parts.append(text[last:].strip())
    return parts


def clause_after(sql: str, depths: list[int], position: int, end: int, stop: str | None = None) -> str:
    """The text from `position` to the end of the clause at the same depth."""
    level = depths[position]
    finish = end
    terminator = CLAUSE_END if stop is None else re.compile(stop, re.IGNORECASE)
    for match in terminator.finditer(sql, position, end):
        if depths[match.start()] == level:
            finish = match.start()
            break
    return sql[position:finish].strip()


def sql_problems(sql: str) -> list[str]:
    problems = []
    depths = depth_map(sql)
    for use in TABLE_USE.finditer(sql):
        keyword, table = use.group(1).upper(), use.group(2).lower()
        if table not in USER_TABLES:
            continue
        start, end = region(sql, depths, use.start())
        level = depths[use.start()]
        if keyword == "INTO":
            problems += insert_problems(sql[use.start() : end])
            continue
        if keyword == "JOIN":
            on = keyword_at_level(sql, depths, r"\bON\b", use.end(), end, level)
            condition = (
                clause_after(sql, depths, on[0].end(), end, r"\b(WHERE|JOIN|LEFT|RIGHT|INNER|FULL|CROSS)\b")
                if on
                else ""
            )
            if not any(
                re.fullmatch(r"\w+\.user_id\s*=\s*\w+\.user_id", c, re.IGNORECASE)
                for c in split_top_level(condition, "AND")
            ):
                problems.append(f"JOIN {table} must join on user_id equality (a co-located join), got ON {condition!r}")
        wheres = [
            m
            for m in keyword_at_level(sql, depths, r"\bWHERE\b", start, end, level)
            if not after_do_update(sql, depths, m.start(), start)
        ]
        if not wheres:
            problems.append(f"{keyword} {table} without a WHERE")
            continue
        condition = clause_after(sql, depths, wheres[0].end(), end)
        if len(split_top_level(condition, "OR")) > 1:
            problems.append(f"{keyword} {table}: OR at the top of the WHERE can widen it past the owner: {condition!r}")
        if not any(OWNER.match(conjunct) for conjunct in split_top_level(condition, "AND")):
            problems.append(f"{keyword} {table}: no `user_id = $1` in the WHERE: {condition!r}")
    return problems


def after_do_update(sql: str, depths: list[int], position: int, start: int) -> bool:
    """A WHERE of `ON CONFLICT … DO UPDATE` (its row is the conflicting one, on the primary key)."""
    return bool(keyword_at_level(sql, depths, r"\bDO\s+UPDATE\b", start, position, depths[position]))


def insert_problems(insert: str) -> list[str]:
    match = re.match(r"INTO\s+(\w+)\s*\(([^)]*)\)\s*VALUES\s*\(", insert, re.IGNORECASE)
    values_text = balanced_group(insert, match.end() - 1) if match else None
    if not match or values_text is None:
        return [f"INSERT must name its columns and take VALUES (user_id bound from $1): {insert[:80]!r}"]
    columns = [c.strip().lower() for c in match.group(2).split(",")]
    values = split_top_level_commas(values_text)
    problems = []
    if "user_id" not in columns or len(columns) != len(values) or values[columns.index("user_id")] != "$1":
        problems.append(f"INSERT INTO {match.group(1)}: user_id must be bound from $1 in VALUES: {match.group(0)!r}")
    conflict = re.search(r"ON\s+CONFLICT\s*(\(([^)]*)\))?", insert, re.IGNORECASE)
    if conflict and "user_id" not in [c.strip().lower() for c in (conflict.group(2) or "").split(",")]:
        problems.append(f"INSERT INTO {match.group(1)}: ON CONFLICT must target a key that includes user_id")
    return problems


def balanced_group(text: str, opening: int) -> str | None:
    """The text inside the parenthesis that opens at `opening` (None when it never closes)."""
    depth = 0
    for index in range(opening, len(text)):
        depth += {"(": 1, ")": -1}.get(text[index], 0)
        if depth == 0:
            return text[opening + 1 : index]
    return None


def split_top_level_commas(text: str) -> list[str]:
    depths = depth_map(text)
    parts, last = [], 0
    for index, char in enumerate(text):
        if char == "," and depths[index] == 0:
            parts.append(text[last:index].strip())
            last = index + 1
    parts.append(text[last:].strip())
    return parts


# -- the tests -------------------------------------------------------------------------------


def test_every_statement_on_user_tables_filters_on_the_owner_as_1():
    statements, problems = statements_and_problems(QUERIES.read_text(encoding="utf-8"))
    assert problems == [], "\n".join(problems)
    touching = [s for s in statements if any(t.group(2).lower() in USER_TABLES for t in TABLE_USE.finditer(s.sql))]
    functions = {s.function.split(" via ")[0] for s in touching}
    # Every query function was seen (a new one that the collector misses would go unchecked).
    tree = ast.parse(QUERIES.read_text(encoding="utf-8"))
    with_sql = {f.name for f in tree.body if isinstance(f, ast.AsyncFunctionDef) and executor_calls(f)}
    assert functions == with_sql and len(with_sql) >= 10, (functions, with_sql)
    assert len(touching) >= 10 + 9 * 3 * 2 * 2 * 2  # the list builder's 216 statements are all checked


def test_every_sync_statement_filters_on_the_owner_as_1():
    """The change feed's statements are module constants built from pieces; checked as built."""
    from service.sync import queries as sync_queries

    statements = {
        "OWNED_CHANGES_AFTER": sync_queries.OWNED_CHANGES_AFTER.sql,
        "OWNED_TASKS_AFTER": sync_queries.OWNED_TASKS_AFTER.sql,
    }
    for name, sql in statements.items():
        assert sql_problems(sql) == [], name
    tree = ast.parse((SERVICE / "sync" / "queries.py").read_text(encoding="utf-8"))
    user_functions = [
        f for f in tree.body if isinstance(f, ast.AsyncFunctionDef) and f.args.args and f.args.args[0].arg == "db"
    ]
    for function in user_functions:  # each request statement is one of the checked constants, owner first
        (call,) = executor_calls(function)
        assert isinstance(call.args[0], ast.Name) and call.args[0].id in statements, function.name
        assert ast.unparse(call.args[1]) == "user_id", function.name


def service_sources() -> dict[str, str]:
    return {str(p.relative_to(SERVICE)): p.read_text(encoding="utf-8") for p in sorted(SERVICE.rglob("*.py"))}


def outside_problems(sources: dict[str, str]) -> list[str]:
    """SQL run outside the SQL modules, or user tables touched outside queries.py."""
    problems = []
    for name, source in sources.items():
        tree = ast.parse(source)
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.body and isinstance(node.body[0], ast.Expr) and isinstance(node.body[0].value, ast.Constant)
        }  # fmt: skip
        for node in ast.walk(tree):
            if name not in SQL_MODULES and isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                if node.func.attr in EXECUTOR_METHODS:
                    problems.append(
                        f"{name}:{node.lineno}: runs SQL ({ast.unparse(node)[:80]}); SQL belongs in {sorted(SQL_MODULES)}"
                    )
            if name not in QUERY_MODULES and isinstance(node, ast.Constant) and isinstance(node.value, str):
                if id(node) in docstrings:
                    continue
                for use in TABLE_USE.finditer(node.value):
                    if use.group(2).lower() in USER_TABLES:
                        problems.append(
                            f"{name}:{node.lineno}: SQL on {use.group(2)} outside {' and '.join(QUERY_MODULES)}: {node.value[:80]!r}"
                        )
    return problems


def test_no_sql_on_user_tables_outside_the_queries_module():
    sources = service_sources()
    assert "tasks/queries.py" in sources and "db/migrate.py" in sources
    assert outside_problems(sources) == []


# -- the checker catches what it is for --------------------------------------------------------

MUTATIONS = [
    pytest.param(
        'OWNED_TASK = "user_id = $1 AND id = $2"',
        'OWNED_TASK = "id = $2"',
        "no `user_id = $1`",
        id="owned-task-predicate-without-owner",
    ),
    pytest.param(
        'f"SELECT {TASK_COLUMNS} FROM tasks WHERE {OWNED_TASK}"',
        'f"SELECT {TASK_COLUMNS} FROM tasks WHERE id = $2"',
        "no `user_id = $1`",
        id="select-without-owner-filter",
    ),
    pytest.param(
        'f"DELETE FROM tasks WHERE {OWNED_TASK_AT_VERSION} RETURNING 1"',
        'f"DELETE FROM tasks WHERE id = $2 RETURNING 1"',
        "no `user_id = $1`",
        id="delete-without-owner-filter",
    ),
    pytest.param(
        'OWNED_TASK_AT_VERSION = f"{OWNED_TASK} AND',
        'OWNED_TASK_AT_VERSION = f"{OWNED_TASK} OR',
        "OR at the top",
        id="conditional-write-owner-filter-or-ed-away",
    ),
    pytest.param(
        'where = "user_id = $1" + STATUS_FILTERS[status]',
        'where = "user_id = $1 OR true" + STATUS_FILTERS[status]',
        "OR at the top",
        id="list-owner-filter-or-ed-away",
    ),
    pytest.param(
        'where = "user_id = $1" + STATUS_FILTERS[status]',
        'where = "user_id = $2" + STATUS_FILTERS[status]',
        "no `user_id = $1`",
        id="list-owner-as-2",
    ),
    pytest.param(
        "VALUES ($1, $2, $3, {DUE_KEY",
        "VALUES ($2, $1, $3, {DUE_KEY",
        "user_id must be bound from $1",
        id="insert-owner-from-2",
    ),
    pytest.param(
        "ON CONFLICT (user_id, key)",
        "ON CONFLICT ON CONSTRAINT idempotency_keys_pkey",
        "ON CONFLICT must target",
        id="on-conflict-without-owner",
    ),
    pytest.param(
        "t.user_id = k.user_id AND t.id = k.task_id",
        "t.id = k.task_id",
        "co-located join",
        id="join-without-owner",
    ),
    pytest.param(
        "WHERE user_id = $1 AND key = $2",
        "WHERE key = $2",
        "no `user_id = $1`",
        id="cte-update-without-owner-filter",
    ),
    pytest.param(
        "async def get_task(db: UserConnection, user_id: str, task_id: int)",
        "async def get_task(db: UserConnection, task_id: int, user_id: str)",
        "first parameter after the executor must be user_id",
        id="owner-not-first-parameter",
    ),
    pytest.param(
        "async def get_task(db: UserConnection,",
        "async def get_task(db: asyncpg.Pool,",
        "must be a UserConnection",
        id="query-on-the-pool",
    ),
    pytest.param(
        "    return bool(deleted)",
        "    return bool(deleted)\n\n\nasync def count_tasks(db: UserConnection) -> int:\n"
        '    return await db.fetchval("SELECT count(*) FROM tasks")',
        "without a WHERE",
        id="new-unfiltered-statement",
    ),
    pytest.param(
        "await db.one_row(statement, user_id, *args)",
        "await db.one_row(statement, limit, *args)",
        "$1 must be bound to user_id",
        id="list-binds-owner-second",
    ),
    pytest.param(
        '" WHERE user_id = $1 GROUP BY label) AS counted"',
        '" GROUP BY label) AS counted"',
        "without a WHERE",
        id="owned-statement-without-owner-filter",
    ),
    pytest.param(
        'f"SELECT 1 FROM tasks WHERE {OWNED_TASK}", user_id, task_id',
        'f"SELECT 1 FROM tasks WHERE {OWNED_TASK}", task_id, user_id',
        "$1 must be bound to user_id",
        id="binds-swapped",
    ),
]


@pytest.mark.parametrize("old, new, expected", MUTATIONS)
def test_the_checker_rejects_a_mutated_queries_module(old: str, new: str, expected: str):
    source = QUERIES.read_text(encoding="utf-8")
    assert old in source, f"the mutation no longer applies to queries.py: {old!r}"
    _, problems = statements_and_problems(source.replace(old, new, 1))
    assert any(expected in p for p in problems), "\n".join(problems) or "no problem found"


def test_the_checker_rejects_sql_on_user_tables_elsewhere():
    sources = {
        "tasks/routes.py": 'async def f(db):\n    return await db.fetch("SELECT * FROM tasks")\n',
        "health.py": 'COUNT = "SELECT count(*) FROM idempotency_keys"\n',
    }
    problems = outside_problems(sources)
    assert any("tasks/routes.py:2: runs SQL" in p for p in problems), problems
    assert any("SQL on tasks outside" in p for p in problems), problems
    assert any("health.py:1: SQL on idempotency_keys" in p for p in problems), problems


# -- the task's shape: one list of fields in three places -------------------------------------

# Each field of schemas.Task as PostgreSQL types it (the tasks table's column of the same name).
PG_TYPES = {
    "id": "bigint",
    "user_id": "text",
    "title": "text",
    "description": "text",
    "completed": "boolean",
    "created_at": "timestamp with time zone",
    "updated_at": "timestamp with time zone",
    "due": "text",
    "priority": "task_priority",
    "labels": "text[]",
    "position": "bigint",
    "completed_at": "timestamp with time zone",
}


async def attributes(conn: asyncpg.Connection, relation: str) -> list[tuple[str, str]]:
    rows = await conn.fetch(
        "SELECT a.attname, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a"
        " WHERE a.attrelid = $1::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        relation,
    )
    return [(row["attname"], row["type"]) for row in rows]


async def test_the_task_schema_the_document_fields_and_the_row_type_agree(database_url, migrated):
    """schemas.Task (the documented response), queries.DOCUMENT_FIELDS (what the statements
    select) and the task_document row type (what PostgreSQL writes as the body): same fields, in
    the same order, of the same types as the tasks table's columns."""
    conn = await asyncpg.connect(database_url)
    try:
        row_type = await attributes(conn, "task_document")
        table = dict(await attributes(conn, "tasks"))
        document = await conn.fetchval(
            "SELECT to_json(ROW(1, 'u', 't', '', true, now(), now(), '2026-05-01', 'high', ARRAY['a'], -3, now())"
            "::task_document)::text"
        )
    finally:
        await conn.close()
    fields = [name.strip() for name in DOCUMENT_FIELDS.split(",")]
    assert [name for name, _ in row_type] == fields == list(Task.model_fields)
    assert row_type == [(name, table[name]) for name in fields]
    assert row_type == [(name, PG_TYPES[name]) for name in Task.model_fields]
    assert list(orjson.loads(document)) == fields
    Task.model_validate_json(document)
