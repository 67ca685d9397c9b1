"""The ASGI application: resources opened in the lifespan, routes, middlewares and error handlers."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable
from urllib.parse import urlsplit

import httpx
from fastapi import APIRouter, FastAPI
from starlette.middleware.cors import CORSMiddleware

from .api_docs import document_bearer_auth
from .auth.dependencies import PROTECTED_PREFIX, BearerAuthMiddleware
from .auth.verifier import build_verifier
from .body_limit import BodyLimitMiddleware
from .db.embedded import DATABASE_NAME, EmbeddedPostgres, ensure_database, start_embedded_postgres
from .db.maintenance import idempotency_sweep, run_periodically
from .db.pool import connect, create_pool
from .head import HeadAsGetMiddleware
from .health import ReadinessProbe
from .health import router as health_router
from .metrics import ServiceMetrics, read_stats
from .oauth_metadata import router as oauth_metadata_router
from .observability import ObservabilityMiddleware, configure_logging, parse_networks
from .problems import install_error_handlers
from .resources import Resources, app_resources, install
from .schema import prepare_database
from .settings import Settings
from .sync.routes import router as sync_router
from .sync.runtime import start_live_updates
from .tasks.routes import router as tasks_router

log = logging.getLogger("service")

LOOPBACK = {"localhost", "127.0.0.1", "::1"}


async def open_database(settings: Settings, stack: contextlib.AsyncExitStack) -> str:
    """The DSN to use: DATABASE_URL, or an embedded server started (and stopped) with the app."""
    if settings.database_url:
        return settings.database_url.get_secret_value()
    server: EmbeddedPostgres = await asyncio.to_thread(start_embedded_postgres, settings.embedded_pg_data_dir)
    stack.callback(server.stop)
    await ensure_database(server.admin_dsn(), DATABASE_NAME)
    return server.dsn()


def create_app(settings: Settings, *, clock: Callable[[], float] = time.time) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            dsn = await open_database(settings, stack)
            conn = await connect(dsn, settings)
            try:
                await prepare_database(conn)
            finally:
                await conn.close()
            pool = await create_pool(dsn, settings)
            stack.push_async_callback(pool.close)
            await start_live_updates(app, settings, dsn, pool, stack)
            http = httpx.AsyncClient(
                follow_redirects=False,
                timeout=settings.jwks_fetch_timeout_seconds,
                limits=httpx.Limits(max_connections=4),
                headers={"User-Agent": "tasks-service"},
            )
            stack.push_async_callback(http.aclose)

            verifier = build_verifier(settings, http, clock=clock)
            jwks = verifier.keys
            install(app, Resources(
                settings=settings, pool=pool, pool_gate=asyncio.Semaphore(settings.db_pool_max_size),
                http=http, jwks=jwks, verifier=verifier,
            ))  # fmt: skip
            await stack.enter_async_context(app.state.metrics.publishing())
            refresher = asyncio.create_task(jwks.run_refresher(), name="jwks-refresher")
            stack.push_async_callback(jwks.aclose)
            stack.push_async_callback(_cancel, refresher)
            sweeper = asyncio.create_task(
                run_periodically(
                    "idempotency key sweep",
                    idempotency_sweep(pool, settings.idempotency_key_ttl_hours),
                    settings.idempotency_sweep_interval_seconds,
                ),
                name="idempotency-sweeper",
            )
            stack.push_async_callback(_cancel, sweeper)
            log.info("serving; keys from %s", settings.jwks_file or settings.jwks_url)
            jwks_url = urlsplit(settings.jwks_url)
            if settings.jwks_file is None and jwks_url.scheme == "http" and jwks_url.hostname not in LOOPBACK:
                log.warning(
                    "JWKS_URL is plain http: whoever can answer it can mint tokens; use https or a private network"
                )
            # What start-up made (the app, its routes, libraries' tables) lives as long as the
            # process: frozen out of the cyclic collector's way, a full collection walks only what
            # requests made. Before, each one walked ~77,000 objects and paused the worker for tens
            # of milliseconds, the p99 of a loaded worker. No gc.collect() first: it would cost
            # every app start in a test process a full collection of that process's heap.
            gc.freeze()
            try:
                yield
            finally:
                gc.unfreeze()

    app = FastAPI(
        title="Tasks service",
        version="0.1.0",
        description="Per-user tasks for a Next.js app using Better Auth; Bearer JWTs verified offline against its JWKS.",
        lifespan=lifespan,
        # A trailing slash is a 404, not a redirect built from the Host header.
        redirect_slashes=False,
        # Our own /metrics and logs; FastAPI's built-in OpenTelemetry hooks cost time on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    for router in (
        health_router,
        sync_router,
        tasks_router,
        oauth_metadata_router,
    ):  # /tasks/changes before /tasks/{task_id}
        add_routes(app, router)
    document_bearer_auth(app, PROTECTED_PREFIX)
    app.state.metrics = ServiceMetrics(lambda: read_stats(app_resources(app)))
    app.state.readiness = ReadinessProbe()
    # Each add_middleware wraps the previous ones: the last added runs first. The Bearer check runs
    # before the size limit, so an anonymous caller gets 401 whatever it sends.
    app.add_middleware(BodyLimitMiddleware, max_body_bytes=settings.max_body_bytes)
    app.add_middleware(BearerAuthMiddleware)
    app.add_middleware(HeadAsGetMiddleware)  # around the answers the two above render too
    if settings.cors_origins:  # outside the Bearer check: preflights carry no token
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "If-Match",
                "Idempotency-Key",
                "Last-Event-ID",
                "X-Request-ID",
            ],
            expose_headers=["ETag", "Location", "Link", "Retry-After", "X-Request-ID", "Idempotent-Replayed"],
            max_age=600,
        )
    app.add_middleware(
        ObservabilityMiddleware,
        metrics=app.state.metrics.requests,
        access_log=settings.access_log,
        trusted_proxies=parse_networks(settings.trusted_proxies),
    )
    return app


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """The router's routes, in the app's own route list. FastAPI's include_router keeps a router
    as a branch that it resolves again on every request (a cost on every request: see
    tests/bench/README.md);
    everything the router sets (prefix, tags, responses) is already in each of its routes."""
    app.router.routes.extend(router.routes)


def create_app_from_env() -> FastAPI:
    """Factory for uvicorn's worker processes: each reads the same environment."""
    from .settings import load_settings

    settings = load_settings()
    configure_logging(settings.log_level, settings.log_format)
    return create_app(settings)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
