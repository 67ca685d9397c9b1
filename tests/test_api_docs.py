"""The served OpenAPI document describes every route, status and header the API really uses."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute

from service.tasks.params import inputs_of
from service.tasks.routes import router as tasks_router
from support.app import assert_problem, create

ERRORS = {401, 403, 422, 503}
# (method, path) -> statuses the route's code can answer (see service/tasks/routes.py)
EXPECTED = {
    ("GET", "/api/{user_id}/tasks"): {200} | ERRORS,
    ("POST", "/api/{user_id}/tasks"): {201, 413, 415} | ERRORS,
    ("GET", "/api/{user_id}/tasks/{task_id}"): {200, 404} | ERRORS,
    ("PUT", "/api/{user_id}/tasks/{task_id}"): {200, 404, 412, 413, 415} | ERRORS,
    ("PATCH", "/api/{user_id}/tasks/{task_id}"): {200, 404, 412, 413, 415} | ERRORS,
    ("PATCH", "/api/{user_id}/tasks/{task_id}/complete"): {200, 404, 412} | ERRORS,
    ("DELETE", "/api/{user_id}/tasks/{task_id}"): {204, 404, 412} | ERRORS,
    ("POST", "/api/{user_id}/tasks/{task_id}/move"): {200, 404, 412, 413, 415} | ERRORS,
    ("GET", "/api/{user_id}/labels"): {200} | ERRORS,
    ("GET", "/healthz"): {200},
    ("GET", "/readyz"): {200, 503},
    ("GET", "/metrics"): {200},
    ("GET", "/.well-known/oauth-protected-resource"): {200, 404},
}
HEADERS = {
    ("GET", "/api/{user_id}/tasks", "200"): {"Link", "X-Request-ID"},
    ("POST", "/api/{user_id}/tasks", "201"): {"Location", "ETag", "Idempotent-Replayed"},
    ("GET", "/api/{user_id}/tasks/{task_id}", "200"): {"ETag"},
    ("PUT", "/api/{user_id}/tasks/{task_id}", "200"): {"ETag"},
    ("PATCH", "/api/{user_id}/tasks/{task_id}", "200"): {"ETag"},
    ("PATCH", "/api/{user_id}/tasks/{task_id}/complete", "200"): {"ETag"},
    ("POST", "/api/{user_id}/tasks/{task_id}/move", "200"): {"ETag"},
}


@pytest.fixture
async def spec(client):
    response = await client.get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def operation(spec, method, path):
    return spec["paths"][path][method.lower()]


def api_routes(routes):
    """APIRoutes, through the routers FastAPI includes lazily."""
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):
            yield from api_routes(route.original_router.routes)


async def test_every_route_is_documented_and_nothing_else(client, spec):
    served = {(m, r.path) for r in api_routes(client.app.routes) for m in r.methods}
    assert served == set(EXPECTED)
    documented = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert documented == set(EXPECTED)


@pytest.mark.parametrize("method, path", list(EXPECTED), ids=[f"{m} {p}" for m, p in EXPECTED])
async def test_every_status_a_route_answers_is_documented(spec, method, path):
    assert {int(s) for s in operation(spec, method, path)["responses"]} == EXPECTED[(method, path)]


@pytest.mark.parametrize("method, path", [k for k in EXPECTED if k[1].startswith("/api/")])
async def test_api_routes_require_the_bearer_scheme_and_errors_are_problem_details(spec, method, path):
    assert spec["components"]["securitySchemes"]["HTTPBearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "A JWT from Better Auth's /api/auth/token",
    }
    op = operation(spec, method, path)
    assert op["security"] == [{"HTTPBearer": []}]
    for status, response in op["responses"].items():
        if int(status) < 400:
            continue
        problem = response["content"]["application/problem+json"]
        assert set(problem["schema"]["required"]) >= {"title", "status", "detail", "code"}
        assert problem["example"]["status"] == int(status) and problem["example"]["code"]
    assert "WWW-Authenticate" in op["responses"]["401"]["headers"]
    assert "Retry-After" in op["responses"]["503"]["headers"]


@pytest.mark.parametrize("key", list(HEADERS), ids=[" ".join(k) for k in HEADERS])
async def test_success_headers_are_documented(spec, key):
    method, path, status = key
    assert HEADERS[key] <= set(operation(spec, method, path)["responses"][status]["headers"])


async def test_docs_page_is_served(client):
    response = await client.get("/docs")
    assert response.status_code == 200 and "swagger" in response.text.lower()


# -- parameters: each route's declaration (service/tasks/params.Inputs) is the only list ------------

DECLARED = [
    (method, route.path, inputs)
    for route in tasks_router.routes
    if isinstance(route, APIRoute) and (inputs := inputs_of(route.endpoint)) is not None
    for method in sorted(route.methods)
]
VALID_BODIES = {"Move": {"after": None}}
VALID_BODY = {"title": "t", "description": "", "completed": False}


def test_every_tasks_route_declares_its_inputs():
    api = {(m, r.path) for r in tasks_router.routes if isinstance(r, APIRoute) for m in r.methods}
    assert {(method, path) for method, path, _ in DECLARED} == api
    assert api == {key for key in EXPECTED if key[1].startswith("/api/")}


@pytest.mark.parametrize("method, path, inputs", [pytest.param(*d, id=f"{d[0]} {d[1]}") for d in DECLARED])
async def test_parameters_are_documented_as_declared_once_and_path_ones_are_required(spec, method, path, inputs):
    parameters = operation(spec, method, path).get("parameters", [])
    assert [(p["name"], p["in"]) for p in parameters] == [(p.name, p.location) for p in inputs.params]
    in_path = {p["name"] for p in parameters if p["in"] == "path"}
    assert in_path == set(re.findall(r"{(\w+)}", path))
    assert all(p["required"] for p in parameters if p["in"] == "path")
    assert all("type" in p["schema"] for p in parameters)
    body = operation(spec, method, path).get("requestBody")
    if inputs.body is None:
        assert body is None
    else:
        assert body["content"]["application/json"]["schema"]["title"] == inputs.body.__name__


def invalid_value(schema: dict) -> str:
    """A value the schema refuses."""
    if schema["type"] == "array":
        return invalid_value(schema["items"])
    if "enum" in schema:
        return "not-one-of-them"
    if schema["type"] in ("integer", "boolean"):
        return "x"
    return "x" * (schema["maxLength"] + 1)


@pytest.mark.parametrize(
    "method, path, inputs, param",
    [pytest.param(*d, p, id=f"{d[0]} {d[1]} {p.name}") for d in DECLARED for p in d[2].params],
)
async def test_every_declared_parameter_is_enforced(client, alice, method, path, inputs, param):
    """What the documentation promises for a parameter is what the route refuses: 422 naming it."""
    task = await create(client, alice)
    values = {"user_id": quote(alice.id, safe=""), "task_id": str(task["id"])}
    headers, query = dict(alice.headers), {}
    bad = invalid_value(param.schema)
    if param.location == "path":
        values[param.name] = bad
    elif param.location == "query":
        query[param.name] = bad
    else:
        headers[param.name] = bad
    url = path.format(**values)
    response = await client.request(
        method,
        url,
        params=query,
        headers=headers,
        json=VALID_BODIES.get(inputs.body.__name__, VALID_BODY) if inputs.body else None,
    )
    problem = assert_problem(response, 422, "validation_failed")
    assert param.name in {error["field"] for error in problem["errors"]}
