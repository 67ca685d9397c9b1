"""TLS to the database, set by `sslmode` in DATABASE_URL with libpq's meanings.

The embedded PostgreSQL is built without OpenSSL (`pg_config --configure` has no `--with-ssl`),
so it cannot speak TLS itself. The TLS end here is a real pgbouncer (Debian's, built with
OpenSSL) on 127.0.0.1 with `client_tls_sslmode = require` and a certificate from a throw-away CA
for IP 127.0.0.1: the way managed poolers (Neon, Supabase) terminate TLS in front of PostgreSQL.
pgbouncer's log shows, per login, the TLS version the client negotiated.
"""

from __future__ import annotations

import re
import ssl
from pathlib import Path

import asyncpg
import pytest
from cryptography.hazmat.primitives import serialization

from service.db.pool import create_pool
from service.settings import Settings
from support.pgbouncer import Pgbouncer, running_pgbouncer
from support.tls import make_ca, make_certificates

TLS_LOGIN = re.compile(r"login attempt: db=(\S+) user=\S+ tls=(TLSv1\.[23])/")


@pytest.fixture(scope="module")
def certificates():
    return make_certificates(ip_addresses=("127.0.0.1",))  # no DNS name: "localhost" must not verify


@pytest.fixture
def ca_files(tmp_path: Path, certificates) -> dict[str, str]:
    right = tmp_path / "ca.pem"
    right.write_bytes(certificates.ca_pem)
    wrong = tmp_path / "other-ca.pem"
    wrong.write_bytes(make_ca("some other CA")[1].public_bytes(serialization.Encoding.PEM))
    return {"right": str(right), "wrong": str(wrong)}


@pytest.fixture
def tls_bouncer(postgres_admin_dsn: str, certificates, tmp_path: Path, monkeypatch) -> Pgbouncer:
    # No ~/.postgresql/root.crt or PGSSL* of the developer's may change what the URL says.
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in ("PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGSSLCRL"):
        monkeypatch.delenv(name, raising=False)
    extra = {
        "client_tls_sslmode": "require",  # plain-text clients are refused
        "client_tls_key_file": "{folder}/server.key",
        "client_tls_cert_file": "{folder}/server.crt",
        "log_connections": "1",
    }
    files = {"server.key": certificates.server_key_pem, "server.crt": certificates.server_cert_pem}
    with running_pgbouncer(postgres_admin_dsn, extra=extra, files=files) as bouncer:
        yield bouncer


def tls_logins(bouncer: Pgbouncer, database: str) -> list[str]:
    return [version for db, version in TLS_LOGIN.findall(bouncer.log()) if db == database]


def settings() -> Settings:
    return Settings(db_statement_cache_size=0, db_pool_min_size=2, db_pool_max_size=2)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({"sslmode": "require"}, id="require"),
        pytest.param({"sslmode": "verify-ca", "sslrootcert": "right"}, id="verify-ca"),
        pytest.param({"sslmode": "verify-full", "sslrootcert": "right"}, id="verify-full"),
    ],
)
async def test_the_pool_connects_over_tls_as_the_url_says(tls_bouncer: Pgbouncer, migrated: str, ca_files, query):
    query = {k: ca_files.get(v, v) if k == "sslrootcert" else v for k, v in query.items()}
    pool = await create_pool(tls_bouncer.dsn(migrated, **query), settings())
    try:
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT 41 + 1") == 42
            tls = conn._con._transport.get_extra_info("ssl_object")  # the client's view of the socket
            assert tls is not None and tls.version() in ("TLSv1.2", "TLSv1.3")
    finally:
        await pool.close()
    assert len(tls_logins(tls_bouncer, migrated)) >= 2  # the pooler's view: each connection logged in over TLS


@pytest.mark.parametrize(
    "host, query, error",
    [
        pytest.param(
            "127.0.0.1",
            {"sslmode": "verify-full", "sslrootcert": "wrong"},
            "unable to get local issuer certificate",
            id="verify-full-wrong-ca",
        ),
        pytest.param(
            "127.0.0.1",
            {"sslmode": "verify-ca", "sslrootcert": "wrong"},
            "unable to get local issuer certificate",
            id="verify-ca-wrong-ca",
        ),
        # libpq: with a root certificate given, `require` verifies the chain too.
        pytest.param(
            "127.0.0.1",
            {"sslmode": "require", "sslrootcert": "wrong"},
            "unable to get local issuer certificate",
            id="require-with-wrong-ca",
        ),
        pytest.param(
            "localhost",
            {"sslmode": "verify-full", "sslrootcert": "right"},
            "Hostname mismatch",
            id="verify-full-wrong-host",
        ),
    ],
)
async def test_certificate_checks_fail_the_connection(
    tls_bouncer: Pgbouncer, migrated: str, ca_files, host, query, error
):
    query = {k: ca_files.get(v, v) if k == "sslrootcert" else v for k, v in query.items()}
    dsn = tls_bouncer.dsn(migrated, **query).replace("@127.0.0.1:", f"@{host}:")
    with pytest.raises(ssl.SSLCertVerificationError, match=error):
        await create_pool(dsn, settings())
    assert tls_logins(tls_bouncer, migrated) == []


async def test_verify_ca_does_not_check_the_host_name(tls_bouncer: Pgbouncer, migrated: str, ca_files):
    dsn = tls_bouncer.dsn(migrated, sslmode="verify-ca", sslrootcert=ca_files["right"]).replace(
        "@127.0.0.1:", "@localhost:"
    )
    pool = await create_pool(dsn, settings())
    await pool.close()


async def test_verify_full_without_a_root_certificate_is_a_configuration_error(tls_bouncer: Pgbouncer, migrated: str):
    with pytest.raises(asyncpg.ClientConfigurationError, match="root certificate file"):
        await create_pool(tls_bouncer.dsn(migrated, sslmode="verify-full"), settings())


async def test_a_plain_text_connection_is_refused_by_a_tls_only_server(tls_bouncer: Pgbouncer, migrated: str):
    with pytest.raises(asyncpg.ProtocolViolationError, match="SSL required"):
        await create_pool(tls_bouncer.dsn(migrated, sslmode="disable"), settings())


async def test_the_service_runs_over_tls_with_verify_full(
    start_app_at, tls_bouncer: Pgbouncer, migrated: str, ca_files, alice
):
    """The whole app: migrations at start, the pool, requests; every login over TLS."""
    dsn = tls_bouncer.dsn(migrated, sslmode="verify-full", sslrootcert=ca_files["right"])
    async with start_app_at(dsn, db_statement_cache_size=0, db_pool_min_size=2, db_pool_max_size=2) as client:
        response = await client.post(alice.url(), json={"title": "over TLS"}, headers=alice.headers)
        assert response.status_code == 201, response.text
        response = await client.get(alice.url(f"/{response.json()['id']}"), headers=alice.headers)
        assert response.status_code == 200 and response.json()["title"] == "over TLS"
        assert (await client.get("/readyz")).status_code == 200
    assert len(tls_logins(tls_bouncer, migrated)) >= 3  # the migration connection and the pool's two


async def test_the_service_does_not_start_when_the_certificate_does_not_verify(
    issuer, tls_bouncer: Pgbouncer, migrated: str, ca_files
):
    from support.app import running_app, test_settings

    dsn = tls_bouncer.dsn(migrated, sslmode="verify-full", sslrootcert=ca_files["wrong"])
    with pytest.raises(ssl.SSLCertVerificationError):
        async with running_app(test_settings(dsn, issuer, db_statement_cache_size=0)):
            pass
