"""Request bodies: JSON objects without repeated members, text fields under the text rules, and
an OpenAPI schema that says so. Parsing is tested directly; what is stored, through the API."""

from __future__ import annotations

import re

import orjson
import pytest

from service.errors import InvalidRequest
from service.tasks.schemas import TaskCreate, TaskPatch, TaskReplace, parse_body
from service.tasks.text import DESCRIPTION_PATTERN, TITLE_PATTERN
from support.app import assert_problem, create

JSON = "application/json"


def refused_fields(model: type, body: bytes) -> list[str]:
    with pytest.raises(InvalidRequest) as refused:
        parse_body(model, JSON, body)
    return [error["field"] for error in refused.value.errors or []]


# -- repeated members -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body, fields",
    [
        pytest.param(b'{"title": "a", "title": "b"}', ["title"], id="title-twice"),
        pytest.param(b'{"title": "a", "title": "a"}', ["title"], id="same-value-twice"),
        pytest.param(b'{"title": "a:b", "title": "c"}', ["title"], id="colon-in-a-string"),
        pytest.param(b'{"title": "a", "\\u0074itle": "b"}', ["title"], id="escaped-spelling"),
        pytest.param(b'{"title": "a", "description": "", "description": "x"}', ["description"], id="description"),
        pytest.param(b'{"title": "a", "title": "b", "x": 1, "x": 2}', ["title", "x"], id="every-name-reported"),
        pytest.param(b'{"title": {"a": 1, "a": 2}, "title": "b"}', ["title", "body"], id="inside-a-replaced-object"),
        pytest.param(
            b'{"title": ' + b"[" * 1000 + b"]" * 1000 + b', "title": "b"}', ["body"], id="deeply-nested-replaced"
        ),
    ],
)
def test_repeated_members_are_refused_naming_them(body, fields):
    assert refused_fields(TaskCreate, body) == fields


def test_a_repeated_members_name_is_shown_shortened():
    name = "n" * 10_000
    body = orjson.dumps({"title": "a"})[:-1] + f', "{name}": 1, "{name}": 2}}'.encode()
    assert refused_fields(TaskCreate, body) == ["n" * 64]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(b'{"title": "a"}', id="one-member"),
        pytest.param(b'{"title": "a:b", "description": "see: https://example.com"}', id="colons-in-strings"),
        pytest.param(b'{"title": "\\"title\\": 1", "description": ""}', id="member-like-text-in-a-string"),
    ],
)
def test_bodies_without_repeated_members_are_accepted(body):
    assert parse_body(TaskCreate, JSON, body).title


def test_a_nested_value_is_refused_naming_its_field_not_a_500():
    assert refused_fields(TaskCreate, b'{"title": {"a": {"b": [1, {"c": ":"}]}}}') == ["title"]


# -- text fields ------------------------------------------------------------------------------


def test_lengths_are_counted_after_normalisation():
    decomposed = "e\u0301" * 200  # 400 code points sent, 200 stored
    body = parse_body(TaskCreate, JSON, orjson.dumps({"title": decomposed, "description": "\r\n" * 1000}))
    assert body.title == "\u00e9" * 200 and body.description == "\n" * 1000
    expanding = "b" * 199 + "\u0344"  # COMBINING GREEK DIALYTIKA TONOS: one code point sent, two stored
    assert refused_fields(TaskCreate, orjson.dumps({"title": expanding})) == ["title"]


@pytest.mark.parametrize("model", [TaskCreate, TaskReplace, TaskPatch])
def test_every_body_applies_the_text_rules(model):
    body = {"title": "Cafe\u0301", "description": "a\r\nb", "completed": False}
    if model is TaskCreate:
        del body["completed"]
    parsed = parse_body(model, JSON, orjson.dumps(body))
    assert (parsed.title, parsed.description) == ("Caf\u00e9", "a\nb")
    fields = refused_fields(model, orjson.dumps({**body, "title": "\u200b", "description": "\u202e"}))
    assert fields == ["title", "description"]


def test_the_openapi_schema_carries_the_patterns_and_lengths():
    for model in (TaskCreate, TaskReplace, TaskPatch):
        properties = model.model_json_schema()["properties"]
        assert properties["title"]["pattern"] == TITLE_PATTERN and properties["title"]["maxLength"] == 200
        assert properties["description"]["pattern"] == DESCRIPTION_PATTERN
        assert properties["description"]["maxLength"] == 1000
    assert re.fullmatch(TITLE_PATTERN, "Buy milk") and not re.fullmatch(TITLE_PATTERN, "\u200b")


# -- through the API: 422 problems, stored forms ----------------------------------------------


async def test_a_repeated_member_gets_422_naming_it(client, alice):
    headers = {**alice.headers, "Content-Type": JSON}
    response = await client.post(alice.url(), content=b'{"title": "a", "title": "b"}', headers=headers)
    problem = assert_problem(response, 422, "validation_failed")
    assert problem["errors"] == [{"field": "title", "message": "duplicate member"}]
    task = await create(client, alice)
    response = await client.patch(
        alice.url(f"/{task['id']}"), content=b'{"completed": true, "completed": false}', headers=headers
    )
    assert_problem(response, 422, "validation_failed")
    assert (await client.get(alice.url(f"/{task['id']}"), headers=alice.headers)).json()["completed"] is False


@pytest.mark.parametrize(
    "body, field",
    [
        pytest.param({"title": "\u200b\u200b"}, "title", id="zero-width-only-title"),
        pytest.param({"title": "\u3000\ufeff"}, "title", id="ideographic-space-and-bom-title"),
        pytest.param({"title": "Buy milk\n"}, "title", id="newline-in-title"),
        pytest.param({"title": "a\tb"}, "title", id="tab-in-title"),
        pytest.param({"title": "a\x9bb"}, "title", id="c1-in-title"),
        pytest.param({"title": "invoice\u202egnp.exe"}, "title", id="rlo-in-title"),
        pytest.param({"title": "a\u2066b\u2069"}, "title", id="isolate-in-title"),
        pytest.param({"title": "ok", "description": "a\x1b[2Jb"}, "description", id="escape-in-description"),
        pytest.param({"title": "ok", "description": "a\x0bb"}, "description", id="vertical-tab-in-description"),
        pytest.param({"title": "ok", "description": "\u202dx"}, "description", id="lro-in-description"),
    ],
)
async def test_text_that_breaks_the_rules_gets_422_naming_the_field(client, alice, body, field):
    problem = assert_problem(await client.post(alice.url(), json=body, headers=alice.headers), 422, "validation_failed")
    assert [error["field"] for error in problem["errors"]] == [field]


async def test_text_is_stored_normalised(client, alice):
    task = await create(client, alice, "\u00a0Cafe\u0301 ", description="line 1\r\nline 2\ttabbed\r")
    assert task["title"] == "Caf\u00e9"
    assert task["description"] == "line 1\nline 2\ttabbed\n"
    stored = (await client.get(alice.url(f"/{task['id']}"), headers=alice.headers)).json()
    assert (stored["title"], stored["description"]) == (task["title"], task["description"])
    patched = await client.patch(alice.url(f"/{task['id']}"), json={"title": "Ange\u0301lique"}, headers=alice.headers)
    assert patched.status_code == 200 and patched.json()["title"] == "Ang\u00e9lique"


async def test_the_same_text_in_either_spelling_is_the_same_idempotent_request(client, alice):
    headers = {**alice.headers, "Idempotency-Key": "nfc"}
    first = await client.post(alice.url(), json={"title": "Caf\u00e9"}, headers=headers)
    again = await client.post(alice.url(), json={"title": "Cafe\u0301"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == first.json()["id"]
