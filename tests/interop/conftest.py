"""Fixtures for the interop tests: the real Better Auth (tests/support/better_auth.py), installed
with `npm ci` (skipped while node_modules matches the lock file) and started by the tests, and
the tasks service pointed at it.

The service runs in-process (`create_app` + `httpx.ASGITransport`, as in tests/conftest.py) on
the session's real PostgreSQL, and fetches the issuer's JWKS over real HTTP: no respx here.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from support.app import running_app  # the app with its real lifespan
from support.better_auth import (
    ALGORITHMS,
    INSTALL_STAMP,
    ISSUER_DIR,
    ISSUER_REQUEST_TIMEOUT_SECONDS,
    BetterAuthIssuer,
    IssuerConfig,
    StartService,
    running_issuers,
    service_settings,
)
from support.node import npm_ci

# -- installing the issuer --------------------------------------------------------------------


@pytest.fixture(scope="session")
def node_issuer_installed() -> str:
    """`npm ci` in issuer/ unless node_modules is already that install. Returns the node binary.

    A missing Node or npm fails the suite (it is not skipped): "works with Better Auth" is only
    shown by running Better Auth.
    """
    return npm_ci(
        ISSUER_DIR,
        INSTALL_STAMP,
        "the Better Auth interop tests (tests/interop) run the real better-auth npm package and",
    )


@pytest.fixture(scope="session")
def issuers_by_algorithm(node_issuer_installed: str, tmp_path_factory) -> Iterator[dict[str, BetterAuthIssuer]]:
    """One issuer per signing algorithm, default options otherwise; shared by the whole session."""
    configs = {alg: IssuerConfig(alg=alg) for alg in ALGORITHMS}
    with running_issuers(node_issuer_installed, configs, tmp_path_factory.mktemp("issuers")) as issuers:
        # Better Auth mints its first key on the first JWKS (or token) request: do it for all five
        # at once, so the RSA key generation happens side by side rather than test by test.
        with concurrent.futures.ThreadPoolExecutor(len(issuers)) as pool:
            answers = pool.map(
                lambda i: httpx.get(i.jwks_url, timeout=ISSUER_REQUEST_TIMEOUT_SECONDS), issuers.values()
            )
            for issuer, response in zip(issuers.values(), answers):
                assert response.status_code == 200, f"{issuer.jwks_url}: {response.status_code}\n{issuer.log()}"
        yield issuers


@pytest.fixture
def start_issuer(node_issuer_installed: str, tmp_path: Path) -> Iterator[Callable[[IssuerConfig], BetterAuthIssuer]]:
    """start_issuer(config) -> a running issuer of this test's own, stopped when the test ends."""
    names = itertools.count(1)
    with contextlib.ExitStack() as stack:

        def start(config: IssuerConfig) -> BetterAuthIssuer:
            name = f"issuer-{next(names)}"
            issuers = stack.enter_context(running_issuers(node_issuer_installed, {name: config}, tmp_path))
            return issuers[name]

        yield start


@pytest.fixture
def start_service(database_url: str) -> StartService:
    """start_service(issuer, **environ) -> async context manager yielding a client of the in-process
    service (real lifespan, real JWKS fetches from the issuer), configured by environment variables."""
    return lambda issuer, **environ: running_app(service_settings(database_url, issuer, **environ))
