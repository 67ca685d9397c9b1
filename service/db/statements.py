"""Statements that run as their owner in one round trip.

A request whose database work is one statement (a read, or a create) sends it as a call of a
function of its own in the schema `owned_statements` (migration 0007). The function is made by
`install_owned_statements` from the statement's SQL text: it switches to the unprivileged role
for its own duration (`SET role`), sets the user id that row-level security compares with
(`set_config('app.user_id', $1, true)`, and the task quota for a create), and runs the text as
is. The call is one statement, so it runs in its own implicit transaction and nothing outlives
it. The SQL stays where it was, in the query modules, checked like every other statement there.

A function's name is a hash of its statement and of the migrations it was made against, so two
versions of the service (a rolling deploy) each find their own functions, and a changed
statement or schema gets a new one. A function that is missing (made by nobody yet, or dropped)
is not an error: the statement then runs in an ordinary transaction.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from functools import cache, cached_property

import asyncpg

from .migrate import MigrationError, find_migrations, take_migration_lock
from .session import APP_ROLE

log = logging.getLogger("service.db.statements")

SCHEMA = "owned_statements"  # created by migration 0007
_PARAMETER = re.compile(r"\$(\d+)")
# Every function's settings, for its own duration: the unprivileged role, and UTC for the
# timestamps PostgreSQL writes into JSON responses.
FUNCTION_SETTINGS = f"SET role = {APP_ROLE} SET TimeZone = 'UTC'"


@cache
def schema_fingerprint() -> str:
    """What the functions' types depend on: every migration, by its checksum."""
    return hashlib.sha256("".join(m.sha256 for m in find_migrations()).encode()).hexdigest()


@dataclass(frozen=True)
class OwnedStatement:
    """One statement a request may send in one round trip. `$1` is the owner; with `sets_quota`,
    the function also takes the owner's task quota, after the statement's own parameters."""

    sql: str
    sets_quota: bool = False

    @cached_property
    def parameters(self) -> int:
        numbers = {int(n) for n in _PARAMETER.findall(self.sql)}
        if not numbers or numbers != set(range(1, max(numbers) + 1)):
            raise ValueError("an owned statement numbers its parameters $1..$n, $1 the owner")
        return max(numbers)

    @cached_property
    def name(self) -> str:
        made_from = f"{schema_fingerprint()}\0{FUNCTION_SETTINGS}\0{self.body}"
        digest = hashlib.sha256(made_from.encode()).hexdigest()
        return f"s_{digest[:32]}"

    @cached_property
    def body(self) -> str:
        """The function's body: the user (and quota), then the statement, verbatim."""
        quota = ""
        if self.sets_quota:
            quota = (
                f"    IF ${self.parameters + 1} IS NOT NULL THEN\n"
                f"        PERFORM set_config('app.max_tasks', ${self.parameters + 1}::text, true);\n"
                "    END IF;\n"
            )
        return (
            "#variable_conflict use_column\n"
            "BEGIN\n"
            "    PERFORM set_config('app.user_id', $1, true);\n"
            f"{quota}"
            f"    RETURN QUERY {self.sql};\n"
            "END\n"
        )

    @cached_property
    def call(self) -> str:
        """What the service sends: the function's call with the statement's parameters."""
        count = self.parameters + (1 if self.sets_quota else 0)
        arguments = ", ".join(f"${n}" for n in range(1, count + 1))
        return f"SELECT * FROM {SCHEMA}.{self.name}({arguments})"


async def install_owned_statements(conn: asyncpg.Connection, statements: list[OwnedStatement]) -> list[str]:
    """Make the functions of `statements` that do not exist yet; return their names.

    Under the migrations' lock, so replicas starting together make each once. A function that
    exists must hold the body its name stands for: an edited one stops start-up, as an edited
    migration does. Functions of other versions of the service are left alone (and not read).
    """
    wanted = {statement.name: statement for statement in statements}
    made: list[str] = []
    async with conn.transaction():
        await take_migration_lock(conn)
        present = {
            row["proname"]: row["prosrc"]
            for row in await conn.fetch(
                "SELECT proname, prosrc FROM pg_proc WHERE pronamespace = $1::regnamespace AND proname = ANY($2::text[])",
                SCHEMA,
                list(wanted),
            )
        }
        for name, statement in sorted(wanted.items()):
            if name in present:
                if present[name] != statement.body:
                    raise MigrationError(
                        f"{SCHEMA}.{name} was changed after it was made; drop it to have it made again"
                    )
                continue
            await conn.execute(await function_definition(conn, statement))
            made.append(name)
    if made:
        log.info("made %d owned statement functions", len(made))
    return made


async def function_definition(conn: asyncpg.Connection, statement: OwnedStatement) -> str:
    """CREATE FUNCTION for `statement`, its types as PostgreSQL infers them when preparing it."""
    prepared = await conn.prepare(statement.sql)
    parameters = [parameter.oid for parameter in prepared.get_parameters()]
    if len(parameters) != statement.parameters:
        raise MigrationError(
            f"the statement of {statement.name} has {len(parameters)} parameters, not $1..${statement.parameters}"
        )
    columns = prepared.get_attributes()
    types: list[str] = await conn.fetchval(
        "SELECT array_agg(format_type(t, NULL) ORDER BY i) FROM unnest($1::oid[]) WITH ORDINALITY AS u(t, i)",
        parameters + [column.type.oid for column in columns],
    )
    inputs = types[: len(parameters)] + (["integer"] if statement.sets_quota else [])
    outputs = ", ".join(
        f'"{column.name}" {kind}' for column, kind in zip(columns, types[len(parameters) :], strict=True)
    )
    function = f"{SCHEMA}.{statement.name}({', '.join(inputs)})"
    return (
        f"CREATE FUNCTION {function} RETURNS TABLE ({outputs}) LANGUAGE plpgsql"
        f" {FUNCTION_SETTINGS} AS $owned${statement.body}$owned$;\n"
        f"REVOKE ALL ON FUNCTION {function} FROM PUBLIC;\n"
        f"GRANT EXECUTE ON FUNCTION {function} TO {APP_ROLE};\n"
    )
