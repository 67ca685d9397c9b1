"""pytest plugin `better_auth_testing`: the test kit as fixtures.

Installed with the package (a `pytest11` entry point), so a team's tests just name the fixtures:

    fake_better_auth          a FakeBetterAuth (EdDSA at http://localhost:3000 by default)
    better_auth_clock         the MovableClock it stamps tokens with
    better_auth_respx         a respx router, active for the test, serving the fake's JWKS
    better_auth_jwks_route    that JWKS route (`.call_count`, `.calls`)
    better_auth_jwks_server   another FakeBetterAuth on a real 127.0.0.1 port

The issuer's origin and algorithm come from the `better_auth` marker, else the ini options
`better_auth_url` / `better_auth_alg`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .clock import MovableClock
from .issuer import FakeBetterAuth
from .server import serve_jwks

if TYPE_CHECKING:
    import respx

DEFAULT_URL = "http://localhost:3000"
DEFAULT_ALG = "EdDSA"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini("better_auth_url", "origin of the fake Better Auth issuer (fake_better_auth)", default=DEFAULT_URL)
    parser.addini("better_auth_alg", "signing algorithm of the fake Better Auth issuers", default=DEFAULT_ALG)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "better_auth(url=None, alg=None): origin and signing algorithm of this test's fake Better Auth"
    )


def _option(request: pytest.FixtureRequest, name: str) -> str:
    marker = request.node.get_closest_marker("better_auth")
    value: Any = marker.kwargs.get(name) if marker is not None else None
    return str(value or request.config.getini(f"better_auth_{name}"))


@pytest.fixture
def better_auth_clock() -> MovableClock:
    """Stands at the test's start until moved: `better_auth_clock.advance(16 * 60)`."""
    return MovableClock()


@pytest.fixture
def fake_better_auth(request: pytest.FixtureRequest, better_auth_clock: MovableClock) -> FakeBetterAuth:
    """A fake Better Auth: `issue_token`, `issue_access_token`, `rotate`, `refuse_jwks`, ..."""
    return FakeBetterAuth(_option(request, "url"), _option(request, "alg"), clock=better_auth_clock)


@pytest.fixture
def _better_auth_mock(fake_better_auth: FakeBetterAuth) -> Iterator[tuple[respx.MockRouter, respx.Route]]:
    import respx  # the kit's users have it; the service itself does not need it

    with respx.mock(assert_all_called=False) as router:
        yield router, fake_better_auth.mock(router)


@pytest.fixture
def better_auth_respx(_better_auth_mock: tuple[respx.MockRouter, respx.Route]) -> respx.MockRouter:
    """respx mocks httpx for the test and serves the fake's JWKS; add your own routes to it.
    As with respx.mock, a request no route matches fails the test."""
    return _better_auth_mock[0]


@pytest.fixture
def better_auth_jwks_route(_better_auth_mock: tuple[respx.MockRouter, respx.Route]) -> respx.Route:
    """The JWKS route on `better_auth_respx`: `.call_count` is how often your code fetched keys."""
    return _better_auth_mock[1]


@pytest.fixture
def better_auth_jwks_server(
    request: pytest.FixtureRequest, better_auth_clock: MovableClock
) -> Iterator[FakeBetterAuth]:
    """A fake Better Auth answering GET /api/auth/jwks on a real port (its `base_url`), for an
    app in another process or an HTTP client respx does not patch."""
    with serve_jwks(_option(request, "alg"), clock=better_auth_clock) as issuer:
        yield issuer
