"""User ids are whatever Better Auth puts in `sub` (an app may choose it: an email, a UUID, an id
from elsewhere). Every route works for every subject the service accepts, and every URL it hands
out (Location, Link) leads back to the same user's tasks."""

from __future__ import annotations

import re
from urllib.parse import quote

import asyncpg
import pytest

from service.tasks.routing import tasks_path
from support.app import assert_problem

ACCEPTED = [
    pytest.param("Ωμέγα-名前", id="non-latin-1"),
    pytest.param("🙂 user 👍🏽", id="emoji"),
    pytest.param("cafe\u0301", id="decomposed-accent"),  # not normalised: "café" in NFC is someone else
    pytest.param("%41", id="percent-escape-lookalike"),
    pytest.param("<script>", id="angle-brackets"),
    pytest.param('"quoted" o\'brien', id="quotes"),
    pytest.param("a;b", id="semicolon"),
    pytest.param("a,b", id="comma"),
    pytest.param("first last", id="spaces"),
    pytest.param(" padded ", id="leading-and-trailing-space"),
    pytest.param("a/b", id="slash"),
    pytest.param("/", id="only-a-slash"),
    pytest.param("what?", id="question-mark"),
    pytest.param("#hash", id="hash"),
    pytest.param("a+b&c=d", id="query-characters"),
    pytest.param("back\\slash", id="backslash"),
    pytest.param("...", id="three-dots"),
    pytest.param("alice+tag@example.com", id="email"),
    pytest.param("x" * 255, id="longest-ascii"),
    pytest.param("🙂" * 255, id="longest-four-byte-characters"),
]

# The URI of a Link or Location: nothing that could end the <…> or start another link relation.
URI = re.compile(r"[A-Za-z0-9\-._~%/?=&+!'()*]+")


def bearer(issuer, sub: str) -> dict[str, str]:
    # The user object's own fields stay short: the subject alone is what is being tried (a token
    # repeating 255 emoji four times would be refused for its size).
    token = issuer.issue_token(sub, claims={"id": "u1", "name": "User", "email": "user@example.com"})
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def fresh(database_url):
    """Forget the subject's tasks from any earlier run on this database."""

    async def forget(user_id: str) -> None:
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("DELETE FROM tasks WHERE user_id = $1", user_id)
        finally:
            await conn.close()

    return forget


@pytest.mark.parametrize("sub", ACCEPTED)
async def test_every_route_works_for_the_subject_and_its_urls_lead_back(client, issuer, fresh, sub):
    await fresh(sub)
    headers = bearer(issuer, sub)
    base = f"/api/{quote(sub, safe='')}/tasks"

    created = []
    for n in range(3):
        response = await client.post(base, json={"title": f"task {n}"}, headers=headers)
        assert response.status_code == 201, response.text
        task = response.json()
        assert task["user_id"] == sub
        location = response.headers["location"]
        assert URI.fullmatch(location) and location == f"{tasks_path(sub)}/{task['id']}"
        created.append(task)

    # List, one per page, following Link to the end: each page is this user's next task.
    seen, url, params = [], base, {"limit": 1, "sort": "created_at", "q": "task"}
    while url is not None:
        response = await client.get(url, params=params, headers=headers)
        assert response.status_code == 200, response.text
        seen += response.json()
        link = response.headers.get("link")
        if link is None:
            url = None
        else:
            match = re.fullmatch(r'<([^<>]*)>; rel="next"', link)
            assert match and URI.fullmatch(match.group(1)), link
            url, params = match.group(1), None
            assert url.startswith(tasks_path(sub) + "?")
    assert seen == created

    first = created[0]
    location = f"{tasks_path(sub)}/{first['id']}"
    got = await client.get(location, headers=headers)
    assert got.status_code == 200 and got.json() == first
    etag = {"If-Match": got.headers["etag"]}
    body = {"title": "replaced", "description": "d", "completed": False}
    replaced = await client.put(location, json=body, headers={**headers, **etag})
    assert replaced.status_code == 200 and replaced.json()["title"] == "replaced"
    patched = await client.patch(location, json={"description": "patched"}, headers=headers)
    assert patched.status_code == 200 and patched.json()["description"] == "patched"
    completed = await client.patch(f"{location}/complete", headers=headers)
    assert completed.status_code == 200 and completed.json()["completed"] is True
    moved = await client.post(f"{location}/move", json={"after": created[-1]["id"]}, headers=headers)
    assert moved.status_code == 200, moved.text
    labelled = await client.patch(location, json={"labels": ["x"]}, headers=headers)
    assert labelled.status_code == 200
    labels = await client.get(f"/api/{quote(sub, safe='')}/labels", headers=headers)
    assert labels.status_code == 200 and labels.json() == [{"label": "x", "tasks": 1}]
    deleted = await client.delete(location, headers=headers)
    assert deleted.status_code == 204
    assert_problem(await client.get(location, headers=headers), 404, "task_not_found")


async def test_a_subject_is_not_another_one_that_decodes_or_normalises_to_the_same(client, issuer, fresh):
    """No double decoding ("%41" is not "A") and no Unicode normalisation (NFD is not NFC)."""
    for sub, other in (("%41", "A"), ("cafe\u0301", "caf\u00e9")):
        await fresh(sub)
        headers = bearer(issuer, sub)
        assert_problem(await client.get(f"/api/{quote(other, safe='')}/tasks", headers=headers), 403, "forbidden")


@pytest.mark.parametrize(
    "sub, encoded",
    [
        pytest.param("o'brien (x)!*", "o'brien%20(x)!*", id="kept-as-encodeURIComponent-keeps"),
        pytest.param("a/b?c#d", "a%2Fb%3Fc%23d", id="reserved"),
        pytest.param("a;b,c", "a%3Bb%2Cc", id="link-delimiters"),
        pytest.param("caf\u00e9", "caf%C3%A9", id="utf-8"),
        pytest.param("%41", "%2541", id="percent"),
    ],
)
def test_urls_encode_the_user_id_as_javascripts_encode_uri_component(sub, encoded):
    # The Next.js proxy builds its upstream URL with encodeURIComponent and replaces that prefix
    # in Location and Link: the two encodings must be the same text.
    assert tasks_path(sub) == f"/api/{encoded}/tasks"


@pytest.mark.parametrize(
    "sub",
    [
        pytest.param("", id="empty"),
        pytest.param("   ", id="only-spaces"),
        pytest.param("a\nb", id="newline"),
        pytest.param("a\tb", id="tab"),
        pytest.param("a\x00b", id="nul"),
        pytest.param("a\x7fb", id="del"),
        pytest.param("a\x85b", id="c1-control"),
        pytest.param("a\u202eb", id="bidi-override"),
        pytest.param("x" * 256, id="too-long"),
    ],
)
async def test_subjects_with_control_characters_blank_or_too_long_are_refused(client, issuer, sub):
    headers = bearer(issuer, sub)
    response = await client.get(f"/api/{quote(sub, safe='') or 'x'}/tasks", headers=headers)
    assert_problem(response, 401, "invalid_token")


@pytest.mark.parametrize("sub", [pytest.param(".", id="dot"), pytest.param("..", id="dot-dot")])
async def test_dot_segments_cannot_name_a_user(client, issuer, sub):
    """URL resolution removes "." and ".." segments (browsers even when sent as %2E), so no URL
    could reach such a user's tasks: the path's user id is refused."""
    headers = bearer(issuer, sub)
    encoded = sub.replace(".", "%2E")
    problem = assert_problem(await client.get(f"/api/{encoded}/tasks", headers=headers), 422, "validation_failed")
    assert problem["errors"][0]["field"] == "user_id"
