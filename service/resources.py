"""What a request may reach (settings, pool, HTTP client, key cache, verifier), opened by the
lifespan and read through one typed accessor."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import cast

import asyncpg
import httpx
from starlette.applications import Starlette
from starlette.requests import HTTPConnection

from .auth.jwks import JWKSCache
from .auth.tokens import TokenVerifier
from .db.session import UserConnection, user_transaction
from .settings import Settings


@dataclass(frozen=True)
class Resources:
    """Everything a request may reach, opened and closed by the lifespan."""

    settings: Settings
    pool: asyncpg.Pool
    pool_gate: asyncio.Semaphore  # first come, first served for the pool (see db.session)
    http: httpx.AsyncClient
    jwks: JWKSCache
    verifier: TokenVerifier

    def transaction(self, user_id: str) -> contextlib.AbstractAsyncContextManager[UserConnection]:
        """A transaction as `user_id`, through the gate, with the configured timeouts: the only
        way requests reach the database."""
        return user_transaction(
            self.pool,
            user_id,
            acquire_timeout_seconds=self.settings.db_pool_acquire_timeout_seconds,
            statement_timeout_ms=self.settings.db_statement_timeout_ms,
            max_tasks=self.settings.max_tasks_per_user,
            gate=self.pool_gate,
        )


def install(app: Starlette, opened: Resources) -> None:
    app.state.resources = opened


def app_resources(app: Starlette) -> Resources:
    """The app's resources (for ASGI middleware, which has the app but no Request)."""
    return cast(Resources, app.state.resources)


def resources(request: HTTPConnection) -> Resources:
    """The resources of the app serving `request`."""
    return cast(Resources, request.app.state.resources)
