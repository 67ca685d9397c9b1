"""Helpers for tests that run the app in-process: settings, the app with its real lifespan,
users with tokens, and the assertions every API test makes."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import secrets
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from service.app import create_app
from service.settings import Settings
from service.testing import FakeBetterAuth

ISSUER_URL = "http://issuer.test:3000"


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{database}"))


def test_settings(database_url: str, issuer: FakeBetterAuth, **overrides: Any) -> Settings:
    base = Settings(
        better_auth_url=issuer.base_url,
        jwks_url=issuer.jwks_url,
        jwt_issuer=issuer.issuer,
        jwt_audience=issuer.audience,
        database_url=database_url,
        jwks_min_refetch_interval_seconds=0,  # tests of the cooldown set their own
    )
    # Not validated, on purpose: tests shorten timings below what production allows (a 0.2 s
    # refresh interval). Pass the types Settings holds (tuples, floats).
    return base.model_copy(update=overrides)


test_settings.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


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


async def create(client: httpx.AsyncClient, user: User, title: str = "Buy milk", **fields: Any) -> dict[str, Any]:
    response = await client.post(user.url(), json={"title": title, **fields}, headers=user.headers)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["code"] == code, body
    assert body["title"] and body["detail"]
    return body  # type: ignore[no-any-return]
