"""Live updates behind pgbouncer in transaction mode: requests (and the NOTIFY their writes send)
go through the pooler, the one LISTEN connection per process goes to PostgreSQL itself
(DATABASE_LISTEN_URL)."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from support.app import create, test_settings
from support.fixtures import database_name
from support.live_server import live_server
from support.pgbouncer import Pgbouncer, running_pgbouncer
from support.sync import EventReader


@pytest.fixture
def bouncer(postgres_admin_dsn: str):
    with running_pgbouncer(postgres_admin_dsn, default_pool_size=2) as bouncer:
        yield bouncer


async def test_events_reach_streams_when_requests_go_through_pgbouncer(
    bouncer: Pgbouncer, migrated: str, database_url: str, issuer, jwks_router, alice
):
    jwks_router.route(host="127.0.0.1").pass_through()
    settings = test_settings(
        bouncer.dsn(database_name(database_url)),
        issuer,
        db_statement_cache_size=0,  # required behind pgbouncer in transaction mode
        database_listen_url=SecretStr(database_url),  # the server itself
    )
    async with live_server(settings) as server, httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        async with client.stream("GET", alice.url("/events"), headers=alice.headers) as response:
            events = EventReader(response)
            created = [await create(client, alice, f"through the pooler {i}") for i in range(3)]
            assert [block.change() for block in await events.events(3)] == [
                {"op": "upsert", "task": task} for task in created
            ]
        assert any(p["database"] == migrated for p in bouncer.show("POOLS"))  # requests used the pooler
