"""The reference Next.js app in Chromium: what a person sees, and what reached the service."""

from __future__ import annotations

import asyncio
import time

import asyncpg
import pytest
from playwright.async_api import expect

from support.app_pages import (
    add_task,
    complete_task,
    delete_task,
    edit_task,
    new_account,
    sign_in,
    sign_out,
    sign_up,
    task_list,
    task_titles,
)
from support.nextjs_app import Stack
from support.recording_proxy import Recorded

# The first test also installs and builds the app (the session's fixtures), a minute or two from scratch.
pytestmark = pytest.mark.timeout(420)

ROTATION_DEADLINE_SECONDS = 30.0
SESSION_COOKIE = "better-auth.session_token"  # a few JWT lifetimes (conftest.JWT_LIFETIME)


async def signed_in_user_id(page) -> str:
    response = await page.request.get("/api/auth/get-session")
    assert response.status == 200
    return (await response.json())["user"]["id"]


def assert_bearer_only(reached: list[Recorded], user_id: str) -> None:
    """Each call that reached the service: the user's own path, a Bearer JWT for them, no cookie."""
    assert reached, "nothing reached the service"
    for request in reached:
        assert "cookie" not in request.headers, f"{request.method} {request.path} carried a cookie"
        assert request.headers.get("authorization", "").startswith("Bearer "), f"{request.method} {request.path}"
        assert request.bearer_claims()["sub"] == user_id, f"{request.method} {request.path}"
        assert request.path.startswith((f"/api/{user_id}/tasks", f"/api/{user_id}/labels")), request.path


async def test_a_user_signs_up_manages_tasks_and_finds_them_after_a_reload_and_after_signing_in_again(
    stack: Stack, browsing
):
    mark = stack.recorder.mark()
    alice = new_account("Alice")
    a = await browsing.open("alice")
    await sign_up(a.page, alice)
    alice_id = await signed_in_user_id(a.page)
    await expect(task_list(a.page).get_by_role("status")).to_have_text("No tasks yet.")

    for title in ("Buy milk", "Write report", "Call the bank"):
        await add_task(a.page, title)
    await expect(task_titles(a.page)).to_have_text(["Buy milk", "Write report", "Call the bank"])
    await complete_task(a.page, "Buy milk")
    changes = {"Title": "Write the report", "Description": "by Friday", "Due date": "2026-12-24", "Priority": "High"}
    await edit_task(a.page, "Write report", {**changes, "Labels": "work, Writing, work"})
    await delete_task(a.page, "Call the bank")

    remaining = ["Buy milk", "Write the report"]
    await a.page.reload()
    await expect(task_titles(a.page)).to_have_text(remaining)
    await expect(a.page.get_by_role("checkbox", name="Done: Buy milk")).to_be_checked()
    await expect(a.page.get_by_role("checkbox", name="Done: Write the report")).not_to_be_checked()
    edited = task_list(a.page).get_by_role("listitem", name="Write the report")
    for shown in ("by Friday", "2026-12-24", "High", "work, Writing"):  # labels: one per spelling
        await expect(edited).to_contain_text(shown)
    await expect(task_list(a.page).get_by_role("listitem", name="Buy milk")).not_to_contain_text("Priority")

    show = a.page.get_by_role("combobox", name="Show")
    await show.select_option("Completed")
    await expect(task_titles(a.page)).to_have_text(["Buy milk"])
    await show.select_option("Pending")
    await expect(task_titles(a.page)).to_have_text(["Write the report"])
    await show.select_option("All")
    search = a.page.get_by_role("searchbox", name="Search")
    await search.fill("report")
    await search.press("Enter")
    await expect(task_titles(a.page)).to_have_text(["Write the report"])
    await search.fill("")
    await search.press("Enter")
    await expect(task_titles(a.page)).to_have_text(remaining)

    # Signing out drops the JWT the proxy held for the session: the old cookie, replayed at once
    # (well within the JWT's reuse time), gets nothing.
    [session_cookie] = [c for c in await a.page.context.cookies() if c["name"] == SESSION_COOKIE]
    assert (await a.page.request.get("/api/tasks")).status == 200  # the proxy holds a JWT for it now
    await sign_out(a.page)
    replayed = await a.page.request.get("/api/tasks", headers={"Cookie": f"{SESSION_COOKIE}={session_cookie['value']}"})
    assert replayed.status == 401
    assert (await replayed.json())["code"] == "not_signed_in"
    await a.page.goto("/tasks")
    await expect(a.page.get_by_role("heading", name="Sign in")).to_be_visible()
    refused = await a.page.request.get("/api/tasks")
    assert refused.status == 401
    assert (await refused.json())["code"] == "not_signed_in"

    await sign_in(a.page, alice)
    await expect(task_titles(a.page)).to_have_text(remaining)
    await expect(a.page.get_by_role("main").get_by_role("alert")).to_have_count(0)
    assert a.errors() == []
    assert_bearer_only(stack.recorder.since(mark), alice_id)


# Paths a browser can send to the proxy hoping to reach another user's tasks, and what it answers:
# 404 every time, from one of three places. The proxy refuses dots and escapes before sending
# anything (not_found); Next.js resolves a plain `..` itself and serves its own 404 page (no code);
# what is left goes to the service under the signed-in user's own path, where the other user's
# task or path does not exist (task_not_found, not_found).
PATH_TRICKS = [
    pytest.param("/api/tasks/..%2F{alice}%2Ftasks", 404, "not_found", id="encoded-slash-dotdot"),
    pytest.param("/api/tasks/%2e%2e/%2e%2e/{alice}/tasks", 404, None, id="encoded-dotdot-resolved-by-nextjs"),
    pytest.param("/api/tasks/{task}%2F..%2F..%2F..%2F{alice}%2Ftasks", 404, "not_found", id="dotdot-after-id"),
    pytest.param("/api/tasks/%252e%252e/{alice}/tasks", 404, "not_found", id="double-encoded"),
    pytest.param("/api/tasks//{alice}/tasks", 404, "not_found", id="double-slash"),
    pytest.param("/api/tasks/{alice}/tasks/{task}", 404, "not_found", id="user-id-in-the-suffix"),
    pytest.param("/api/tasks/{task}", 404, "task_not_found", id="other-users-task-id"),
]


async def test_another_user_sees_none_of_the_first_users_tasks_and_no_path_trick_through_the_proxy_reaches_them(
    stack: Stack, browsing
):
    a = await browsing.open("alice")
    await sign_up(a.page, new_account("Alice"))
    await add_task(a.page, "Alice's secret")
    alice_id = await signed_in_user_id(a.page)
    [alice_task] = await (await a.page.request.get("/api/tasks")).json()

    b = await browsing.open("bob")
    await sign_up(b.page, new_account("Bob"))
    bob_id = await signed_in_user_id(b.page)
    await expect(task_list(b.page).get_by_role("status")).to_have_text("No tasks yet.")

    mark = stack.recorder.mark()
    for trick in PATH_TRICKS:
        template, status, code = trick.values
        path = template.format(alice=alice_id, task=alice_task["id"])
        for method in ("GET", "PATCH", "DELETE"):
            data = '{"title": "taken"}' if method == "PATCH" else None
            headers = {"Content-Type": "application/json"} if data else {}
            response = await b.page.request.fetch(path, method=method, data=data, headers=headers)
            body = await response.text()
            assert response.status == status, f"{trick.id} {method} {path}: {response.status} {body}"
            assert "Alice's secret" not in body, f"{trick.id} {method} {path}"
            if code is not None:
                assert (await response.json())["code"] == code, f"{trick.id} {method} {path}: {body}"
    # Headers cannot name another user either: the proxy drops the browser's Authorization.
    forged = await b.page.request.get("/api/tasks", headers={"Authorization": f"Bearer {alice_id}"})
    assert forged.status == 200
    assert await forged.json() == []

    assert_bearer_only(stack.recorder.since(mark), bob_id)
    await a.page.reload()
    await expect(task_titles(a.page)).to_have_text(["Alice's secret"])
    await expect(b.page.get_by_role("main").get_by_role("alert")).to_have_count(0)


async def test_a_key_rotation_in_better_auth_while_signed_in_causes_no_error_on_the_page(stack: Stack, browsing):
    a = await browsing.open("alice")
    await sign_up(a.page, new_account("Alice"))
    alice_id = await signed_in_user_id(a.page)
    mark = stack.recorder.mark()
    await add_task(a.page, "Before the rotation")
    old_kids = {request.bearer_kid() for request in stack.recorder.since(mark)}

    # Better Auth signs with its newest key that has not expired, and makes a new one when none is
    # left: expiring the current keys is a rotation, as `jwks.rotationInterval` would do it.
    conn = await asyncpg.connect(stack.auth_database_url)
    try:
        await conn.execute('UPDATE jwks SET "expiresAt" = now()')
    finally:
        await conn.close()

    # The page goes on; the proxy first reuses the JWT it holds (its key is still published), then
    # gets one signed with the new key, which the service has never seen.
    titles = ["Before the rotation"]
    deadline = time.monotonic() + ROTATION_DEADLINE_SECONDS
    while not {request.bearer_kid() for request in stack.recorder.since(mark)} - old_kids:
        assert time.monotonic() < deadline, (
            f"no JWT with a new key reached the service in {ROTATION_DEADLINE_SECONDS:g} s"
        )
        titles.append(f"After the rotation {len(titles)}")
        await add_task(a.page, titles[-1])
        await asyncio.sleep(1)

    await a.page.reload()
    await expect(task_titles(a.page)).to_have_text(titles)
    await expect(a.page.get_by_role("main").get_by_role("alert")).to_have_count(0)
    assert a.errors() == []
    reached = stack.recorder.since(mark)
    assert_bearer_only(reached, alice_id)
    assert all(request.status < 400 for request in reached), [(r.method, r.path, r.status) for r in reached]
    published = {key["kid"] for key in (await (await a.page.request.get("/api/auth/jwks")).json())["keys"]}
    assert {request.bearer_kid() for request in reached} <= published
