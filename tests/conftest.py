"""Shared fixtures: a real PostgreSQL (embedded, or TEST_DATABASE_URL), a fake Better Auth
issuer whose JWKS respx serves, and the app running in-process with its real lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import secrets
import uuid
from typing import AsyncIterator, Callable
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
import respx

from service.app import create_app
from service.db.embedded import start_embedded_postgres
from service.settings import REPO_ROOT, Settings
from service.testing import FakeBetterAuth

ISSUER_URL = "http://issuer.test:3000"


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


@pytest.fixture(scope="session")
def postgres_admin_dsn() -> str:
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
def jwks_router(issuer: FakeBetterAuth) -> respx.Router:
    """respx mocks only the JWKS host; every route it holds must be called."""
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        issuer.mock(router)
        yield router


def test_settings(database_url: str, issuer: FakeBetterAuth, **overrides) -> Settings:
    base = Settings(
        better_auth_url=issuer.base_url,
        jwks_url=issuer.jwks_url,
        jwt_issuer=issuer.issuer,
        jwt_audience=issuer.audience,
        database_url=database_url,
        jwks_min_refetch_interval_seconds=0,  # tests of the cooldown set their own
    )
    return dataclasses.replace(base, **overrides)


test_settings.__test__ = False  # a helper, not a test


@contextlib.asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its real lifespan (migrations, pool, JWKS fetch), called in-process."""
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        jwks = app.state.resources.jwks
        while jwks.stats.ok + jwks.stats.failed == 0:  # the start-up fetch has been answered
            await asyncio.sleep(0.005)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service.test") as client:
            client.app = app  # type: ignore[attr-defined]
            yield client


StartApp = Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]


@pytest.fixture
def start_app(database_url: str, issuer: FakeBetterAuth, jwks_router: respx.Router) -> StartApp:
    """start_app(**settings_overrides) -> async context manager yielding a client."""
    def start(**overrides):
        return running_app(test_settings(overrides.pop("database_url", database_url), issuer, **overrides))

    return start


@pytest.fixture
async def client(start_app: StartApp) -> AsyncIterator[httpx.AsyncClient]:
    async with start_app() as client:
        yield client


def new_user_id() -> str:
    return f"user_{secrets.token_hex(8)}"


@dataclasses.dataclass
class User:
    """A signed-in user: their id and the headers that carry their token."""

    id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def url(self, suffix: str = "") -> str:
        return f"/api/{self.id}/tasks{suffix}"


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


async def create(client: httpx.AsyncClient, user: User, title: str = "Buy milk", **fields) -> dict:
    response = await client.post(user.url(), json={"title": title, **fields}, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()


def assert_problem(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["code"] == code, body
    assert body["title"] and body["detail"]
    return body
