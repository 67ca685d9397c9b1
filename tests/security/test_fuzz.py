"""Property-based fuzzing of the whole API from its own OpenAPI schema (schemathesis): with a
valid token, no generated request may get a 5xx or a response that contradicts the schema.

`make test` runs FUZZ_EXAMPLES (default 300) cases per operation; `make fuzz` runs many more.
"""

from __future__ import annotations

import os

import hypothesis
import pytest
import respx
import schemathesis
from schemathesis.python import asgi
from schemathesis.specs.openapi.checks import positive_data_acceptance

from service.app import create_app
from service.settings import Settings
from service.testing import FakeBetterAuth
from support.app import ISSUER_URL, test_settings

FUZZ_USER = "fuzz_user"
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))


@pytest.fixture(scope="module")
def fuzz_target(database_url):
    issuer = FakeBetterAuth(ISSUER_URL)
    with respx.mock(assert_all_called=True, assert_all_mocked=True) as router:
        issuer.mock(router)
        app = create_app(test_settings(database_url, issuer))
        with asgi.get_client(app) as client:  # one lifespan for the whole run
            yield app, client, issuer.issue_token(FUZZ_USER)


@pytest.fixture(scope="module")
def fuzz_schema(fuzz_target):
    app, _, _ = fuzz_target
    return schemathesis.openapi.from_asgi("/openapi.json", app)


# Which operations to fuzz: read from the (settings-independent) schema of an app not started.
OPERATIONS = [
    (op.method.upper(), op.path)
    for op in (
        result.ok() for result in schemathesis.openapi.from_dict(create_app(Settings()).openapi()).get_all_operations()
    )
]


@pytest.mark.parametrize("method, path", OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_no_server_error_and_every_response_matches_the_schema(method, path, fuzz_schema, fuzz_target):
    _, client, token = fuzz_target
    operation = fuzz_schema[path][method]

    @hypothesis.given(case=operation.as_strategy())
    @hypothesis.settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=os.environ.get("FUZZ_RANDOM") != "1",  # CI: reproducible; `make fuzz`: explore
        suppress_health_check=list(hypothesis.HealthCheck),
        database=None,
    )
    def check(case):
        if "user_id" in (case.path_parameters or {}):
            case.path_parameters["user_id"] = FUZZ_USER  # the token's subject: reach the handlers
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {token}"}
        # Schema-valid requests the API rightly refuses: an opaque cursor that is not a position
        # in the list (422), an Idempotency-Key reused with another body (422, as the IETF draft
        # requires), an If-Match that does not match (412), a move after a task that is not
        # another of the caller's (422). Everything else must be accepted.
        headers = {name.lower() for name in case.headers}
        expected_refusal = (
            "cursor" in (case.query or {}) or bool(headers & {"idempotency-key", "if-match"}) or path.endswith("/move")
        )
        case.call_and_validate(session=client, excluded_checks=[positive_data_acceptance] if expected_refusal else None)

    check()
