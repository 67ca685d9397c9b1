"""Live updates and the manual order in the reference Next.js app: what one tab (or a plain API
call) changes shows in another tab without a reload, and a reorder is kept by the service."""

from __future__ import annotations

import pytest
from playwright.async_api import expect

from support.app_pages import (
    add_task,
    complete_task,
    delete_task,
    live_updates,
    move_task,
    new_account,
    open_tasks,
    sign_up,
    sort_tasks,
    task_list,
    task_titles,
)
from support.nextjs_app import Stack

pytestmark = pytest.mark.timeout(420)  # the first test of a run also builds the app


async def test_changes_in_another_tab_or_through_the_api_appear_without_a_reload(stack: Stack, browsing):
    a = await browsing.open("alice")
    await sign_up(a.page, new_account("Alice"))
    await expect(live_updates(a.page)).to_have_text("Live updates: on")
    user_id = (await (await a.page.request.get("/api/auth/get-session")).json())["user"]["id"]
    other_tab = await a.page.context.new_page()  # the same user, the same cookies
    await open_tasks(other_tab)

    for title in ("one", "two", "three"):
        await add_task(a.page, title)
    await expect(task_titles(other_tab)).to_have_text(["one", "two", "three"])

    await complete_task(other_tab, "two")
    await expect(a.page.get_by_role("checkbox", name="Done: two")).to_be_checked()
    await delete_task(other_tab, "one")
    await expect(task_titles(a.page)).to_have_text(["two", "three"])

    created = await a.page.request.post("/api/tasks", data={"title": "from the API", "priority": "high"})
    assert created.status == 201, await created.text()
    for page in (a.page, other_tab):
        await expect(task_titles(page)).to_have_text(["two", "three", "from the API"])
        await expect(task_list(page).get_by_role("listitem", name="from the API")).to_contain_text("High")

    # The filters read the same list: a label another client just used is offered at once.
    labelled = await a.page.request.post("/api/tasks", data={"title": "water plants", "labels": ["home"]})
    assert labelled.status == 201, await labelled.text()
    label_filter = a.page.get_by_role("combobox", name="Label filter")
    await expect(label_filter.get_by_role("option", name="home (1)")).to_be_attached()
    await label_filter.select_option(label="home (1)")
    await expect(task_titles(a.page)).to_have_text(["water plants"])
    await label_filter.select_option(label="Any")
    await a.page.get_by_role("combobox", name="Priority filter").select_option(label="High")
    await expect(task_titles(a.page)).to_have_text(["from the API"])
    await a.page.get_by_role("combobox", name="Due filter").select_option(label="With a due date")
    await expect(task_list(a.page).get_by_role("status")).to_have_text("No tasks match.")

    # Every stream the tabs opened reached the service with a Bearer JWT for the user, no cookie.
    streams = [r for r in stack.recorder.since(0) if r.path.startswith(f"/api/{user_id}/tasks/events")]
    assert len(streams) >= 2, "one stream per tab"
    for request in streams:
        assert "cookie" not in request.headers
        assert request.bearer_claims()["sub"] == user_id
        assert request.status == 200
    assert a.errors() == []


async def test_a_reorder_shows_in_the_other_tab_at_once_and_persists_after_a_reload(stack: Stack, browsing):
    a = await browsing.open("alice")
    await sign_up(a.page, new_account("Alice"))
    for title in ("first", "second", "third"):
        await add_task(a.page, title)
    await sort_tasks(a.page, "My order")
    await expect(task_titles(a.page)).to_have_text(["third", "second", "first"])  # a new task goes to the top
    await expect(a.page.get_by_role("button", name='Move "third" up')).to_be_disabled()
    await expect(a.page.get_by_role("button", name='Move "first" down')).to_be_disabled()
    other_tab = await a.page.context.new_page()
    await open_tasks(other_tab)
    await sort_tasks(other_tab, "My order")
    await expect(task_titles(other_tab)).to_have_text(["third", "second", "first"])

    await move_task(a.page, "first", "up")
    await expect(task_titles(a.page)).to_have_text(["third", "first", "second"])
    await move_task(a.page, "third", "down")
    await expect(task_titles(a.page)).to_have_text(["first", "third", "second"])
    await move_task(a.page, "second", "up")
    await expect(task_titles(a.page)).to_have_text(["first", "second", "third"])
    await expect(task_titles(other_tab)).to_have_text(["first", "second", "third"])

    await a.page.reload()
    await expect(live_updates(a.page)).to_have_text("Live updates: on")
    await sort_tasks(a.page, "My order")
    await expect(task_titles(a.page)).to_have_text(["first", "second", "third"])
    await sort_tasks(a.page, "Oldest first")
    await expect(task_titles(a.page)).to_have_text(["first", "second", "third"])
    await sort_tasks(a.page, "Newest first")
    await expect(task_titles(a.page)).to_have_text(["third", "second", "first"])
    await expect(a.page.get_by_role("button", name='Move "third" up')).to_have_count(0)  # only in "My order"
    await expect(a.page.get_by_role("main").get_by_role("alert")).to_have_count(0)
    assert a.errors() == []
