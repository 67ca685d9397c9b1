"""What a person does in the reference Next.js app (deploy/nextjs), as Playwright steps: by the
labels and roles a screen reader would announce, so the tests check those too."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from playwright.async_api import Locator, Page, expect

PASSWORD = "correct horse battery staple"


@dataclass(frozen=True)
class Account:
    name: str
    email: str
    password: str = PASSWORD


def new_account(name: str) -> Account:
    return Account(name, f"{name.lower()}-{secrets.token_hex(6)}@example.com")


async def sign_up(page: Page, account: Account) -> None:
    await page.goto("/sign-up")
    form = page.get_by_role("form", name="Sign up")
    await form.get_by_label("Name").fill(account.name)
    await form.get_by_label("Email").fill(account.email)
    await form.get_by_label("Password").fill(account.password)
    await form.get_by_role("button", name="Sign up").click()
    await expect(page.get_by_role("heading", name="Your tasks")).to_be_visible()
    await expect(task_list(page)).to_have_attribute("aria-busy", "false")


async def sign_in(page: Page, account: Account) -> None:
    await page.goto("/sign-in")
    form = page.get_by_role("form", name="Sign in")
    await form.get_by_label("Email").fill(account.email)
    await form.get_by_label("Password").fill(account.password)
    await form.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Your tasks")).to_be_visible()
    await expect(task_list(page)).to_have_attribute("aria-busy", "false")


async def sign_out(page: Page) -> None:
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", name="Sign in")).to_be_visible()


def task_list(page: Page) -> Locator:
    return page.get_by_role("region", name="Tasks")


def task_titles(page: Page) -> Locator:
    """The titles of the tasks shown, in order."""
    return task_list(page).locator(".task .title")


async def add_task(page: Page, title: str, description: str = "") -> None:
    form = page.get_by_role("form", name="New task")
    await form.get_by_label("Title").fill(title)
    await form.get_by_label("Description").fill(description)
    await form.get_by_role("button", name="Add task").click()
    await expect(task_list(page).get_by_role("listitem", name=title)).to_be_visible()
    await expect(form.get_by_label("Title")).to_have_value("")


async def complete_task(page: Page, title: str) -> None:
    checkbox = page.get_by_role("checkbox", name=f"Done: {title}")
    await checkbox.check()
    await expect(checkbox).to_be_checked()
    await expect(task_list(page)).to_have_attribute("aria-busy", "false")


async def edit_task(page: Page, title: str, changes: dict[str, str]) -> None:
    """Open the task's edit form, set each labelled field (a select by its option's label), save."""
    await page.get_by_role("button", name=f'Edit "{title}"').click()
    form = page.get_by_role("form", name=f'Edit "{title}"')
    for label, value in changes.items():
        control = form.get_by_label(label, exact=True)
        if await control.evaluate("element => element.tagName") == "SELECT":
            await control.select_option(label=value)
        else:
            await control.fill(value)
    await form.get_by_role("button", name="Save").click()
    await expect(task_list(page).get_by_role("listitem", name=changes.get("Title", title))).to_be_visible()


async def delete_task(page: Page, title: str) -> None:
    await page.get_by_role("button", name=f'Delete "{title}"').click()
    await expect(task_list(page).get_by_role("listitem", name=title)).to_have_count(0)


def live_updates(page: Page) -> Locator:
    """The line that says whether the page follows the change stream ("Live updates: on")."""
    return page.locator("p.live")


async def open_tasks(page: Page) -> None:
    """The task page of the signed-in user (in a new tab, say), loaded and following the stream."""
    await page.goto("/tasks")
    await expect(task_list(page)).to_have_attribute("aria-busy", "false")
    await expect(live_updates(page)).to_have_text("Live updates: on")


async def sort_tasks(page: Page, sort: str) -> None:
    """Choose a sort by its label ("My order", "Due date", "Priority", "Oldest first", …)."""
    await page.get_by_role("combobox", name="Sort").select_option(label=sort)


async def move_task(page: Page, title: str, direction: str) -> None:
    """In "My order": the task's "Move up" or "Move down" button ("up" / "down")."""
    await page.get_by_role("button", name=f'Move "{title}" {direction}').click()
