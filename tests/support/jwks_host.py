"""The real-port JWKS host for service processes: `service.testing.serve_jwks`."""

from service.testing import serve_jwks as serving_jwks  # noqa: F401 - the name the tests use
