"""ETags and If-Match: strong comparison (RFC 9110 §8.8.3.2), byte for byte with the ETag sent."""

from __future__ import annotations

import pytest

from service.errors import InvalidRequest
from service.tasks.conditions import etag, expected_versions
from support.app import assert_problem, create


def test_etag_is_the_quoted_id_and_version():
    assert etag({"id": 7, "version": 2}) == '"7-2"'


@pytest.mark.parametrize(
    "if_match, versions",
    [
        pytest.param(None, None, id="absent-accepts-any"),
        pytest.param("*", None, id="star-accepts-any"),
        pytest.param(' "7-2" ', [2], id="exact"),
        pytest.param('"1-1", "7-2", "7-3"', [2, 3], id="list"),
        pytest.param('"7-2147483647"', [2147483647], id="largest-version"),
        pytest.param('"7-0002"', [], id="leading-zeros-are-another-tag"),
        pytest.param('"7-02"', [], id="one-leading-zero"),
        pytest.param('"7-0"', [], id="version-zero-is-never-written"),
        pytest.param('"7-+2"', [], id="sign"),
        pytest.param('"7-2 "', [], id="space-inside-the-quotes"),
        pytest.param('"7-2\u00b2"', [], id="superscript-digit"),
        pytest.param('"7-\u0662"', [], id="arabic-indic-digit"),
        pytest.param('"07-2"', [], id="leading-zero-in-the-id"),
        pytest.param('"7-2-2"', [], id="extra-part"),
        pytest.param('"7-2147483648"', [], id="past-the-integer-range"),
        pytest.param('"7-99999999999999999999"', [], id="huge"),
        pytest.param('W/"7-2"', [], id="weak-never-matches"),
        pytest.param('"8-2"', [], id="another-task"),
    ],
)
def test_if_match_accepts_only_the_exact_strong_etag(if_match, versions):
    assert expected_versions(if_match, 7) == versions


@pytest.mark.parametrize(
    "if_match",
    [
        pytest.param("7-2", id="unquoted"),
        pytest.param('w/"7-2"', id="lowercase-weak-prefix"),
        pytest.param('*, "7-2"', id="star-in-a-list"),
        pytest.param('"7-2",', id="trailing-comma"),
    ],
)
def test_malformed_if_match_is_refused(if_match):
    with pytest.raises(InvalidRequest) as refused:
        expected_versions(if_match, 7)
    assert refused.value.errors == [{"field": "If-Match", "message": "malformed"}]


@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param('"{id}-01"', id="leading-zero"),
        pytest.param('"{id}-0001"', id="leading-zeros"),
        pytest.param('W/"{id}-1"', id="weak"),
    ],
)
async def test_a_write_with_an_etag_that_is_not_byte_for_byte_the_current_one_gets_412(client, alice, spelling):
    task = await create(client, alice)
    headers = {**alice.headers, "If-Match": spelling.format(id=task["id"])}
    response = await client.patch(alice.url(f"/{task['id']}"), json={"title": "changed"}, headers=headers)
    assert_problem(response, 412, "precondition_failed")
    current = await client.get(alice.url(f"/{task['id']}"), headers=alice.headers)
    assert current.json()["title"] == task["title"] and current.headers["etag"] == f'"{task["id"]}-1"'
    exact = {**alice.headers, "If-Match": current.headers["etag"]}
    assert (await client.delete(alice.url(f"/{task['id']}"), headers=exact)).status_code == 204
