"""Shared fixtures: a real PostgreSQL (embedded, or TEST_DATABASE_URL), a fake Better Auth
issuer whose JWKS respx serves, and the app running in-process with its real lifespan.

Helpers live in tests/support/; this file only declares fixtures."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator

import asyncpg
import httpx
import pytest
import respx

from service.db.embedded import start_embedded_postgres
from service.settings import REPO_ROOT
from service.testing import FakeBetterAuth
from support.app import ISSUER_URL, StartApp, User, new_user_id, running_app, test_settings, with_database
from support.fixtures import migrated, start_app_at  # noqa: F401 - fixtures for every test module


@pytest.fixture(scope="session")
def postgres_admin_dsn() -> Iterator[str]:
    """A superuser DSN on a real server: TEST_DATABASE_URL, or an embedded one under .data/."""
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        yield url
        return
    server = start_embedded_postgres(REPO_ROOT / ".data" / "postgres-test")
    yield server.admin_dsn()
    server.stop()


@pytest.fixture(scope="session")
async def database_url(postgres_admin_dsn: str) -> AsyncIterator[str]:
    """A fresh database for this test session, dropped at the end."""
    name = f"tasks_test_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(postgres_admin_dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    yield with_database(postgres_admin_dsn, name)
    admin = await asyncpg.connect(postgres_admin_dsn)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.close()


@pytest.fixture
def issuer() -> FakeBetterAuth:
    return FakeBetterAuth(ISSUER_URL)


@pytest.fixture
def jwks_router(issuer: FakeBetterAuth) -> Iterator[respx.Router]:
    """respx mocks only the JWKS host; every route it holds must be called."""
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        issuer.mock(router)
        yield router


@pytest.fixture
def start_app(database_url: str, issuer: FakeBetterAuth, jwks_router: respx.Router) -> StartApp:
    """start_app(**settings_overrides) -> async context manager yielding a client."""

    def start(**overrides):  # type: ignore[no-untyped-def]
        return running_app(test_settings(overrides.pop("database_url", database_url), issuer, **overrides))

    return start


@pytest.fixture
async def client(start_app: StartApp) -> AsyncIterator[httpx.AsyncClient]:
    async with start_app() as client:
        yield client


@pytest.fixture
def make_user(issuer: FakeBetterAuth) -> Callable[[], User]:
    def make() -> User:
        user_id = new_user_id()
        return User(user_id, issuer.issue_token(user_id))

    return make


@pytest.fixture
def alice(make_user: Callable[[], User]) -> User:
    return make_user()


@pytest.fixture
def bob(make_user: Callable[[], User]) -> User:
    return make_user()
