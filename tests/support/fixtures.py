"""Fixtures shared by the pgbouncer and TLS tests (import them into the test module)."""

from __future__ import annotations

from urllib.parse import urlsplit

import asyncpg
import pytest

from service.schema import prepare_database
from support.app import running_app, test_settings


def database_name(dsn: str) -> str:
    return urlsplit(dsn).path.lstrip("/")


@pytest.fixture
async def migrated(database_url: str) -> str:
    """The session database's name, its migrations and owned statements applied straight to the
    server (not through a pooler: tests/db/test_pgbouncer.py shows what goes wrong then)."""
    conn = await asyncpg.connect(database_url)
    try:
        await prepare_database(conn)
    finally:
        await conn.close()
    return database_name(database_url)


@pytest.fixture
def start_app_at(issuer, jwks_router):
    """start_app_at(dsn, **settings) -> the app in-process with its real lifespan, on `dsn`
    (conftest's start_app always uses the session database's direct DSN)."""
    return lambda dsn, **overrides: running_app(test_settings(dsn, issuer, **overrides))
